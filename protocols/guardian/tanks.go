package guardian

import (
	"math"
	"strings"
	"time"
)

// The tank model: every value is a function of the device clock (time since boot)
// and of the configuration, so that two reports at the same instant agree, every
// session sees the same tanks, and the levels move on between sessions.
//
// A tank is sold from at a constant rate from its fill level down to its reorder
// level; a delivery then raises it back to the fill level in deliveryDuration, and
// the cycle repeats. The inventory, the delivery history and the shift figures all
// come from the same cycle.

// deliveryDuration is how long a delivery (a tanker unloading) takes.
const deliveryDuration = 28 * time.Minute

// Expansion coefficients per °F used for temperature-compensated volumes (net
// volume at 60 °F), by product family.
const (
	expansionGasoline = 0.00069
	expansionDiesel   = 0.00046
)

// tankState is what a report shows for one tank at one instant.
type tankState struct {
	Volume   float64 // gallons
	TCVolume float64 // gallons at 60 °F
	Ullage   float64 // gallons between the product level and the tank capacity
	Height   float64 // inches of product (water included)
	Water    float64 // inches of water
	WaterVol float64 // gallons of water
	Temp     float64 // °F
}

// delivery is one past delivery of a tank.
type delivery struct {
	Start, End    time.Time
	Before, After tankState
}

// model is a configured tank with its cycle precomputed.
type model struct {
	cfg     Tank
	boot    time.Time
	phase   float64 // hours into the cycle at boot
	selling float64 // hours from fill to reorder
	period  float64 // hours per cycle: selling plus the delivery
	fillVol float64
	lowVol  float64
	alpha   float64
}

// newModel builds the model of tank t; seed in [0, 1) places a tank whose level is
// not configured in its cycle.
func newModel(t Tank, boot time.Time, seed float64) model {
	m := model{cfg: t, boot: boot}
	m.fillVol = t.Fill * t.Capacity
	m.lowVol = t.Reorder * t.Capacity
	m.selling = (m.fillVol - m.lowVol) / t.Usage
	m.period = m.selling + deliveryDuration.Hours()
	level := t.Level
	if level == 0 {
		// Not configured: a per-install level between reorder and fill, so that two
		// installs of the same persona do not show the same inventory.
		level = t.Reorder + (t.Fill-t.Reorder)*(0.1+0.85*seed)
	}
	m.phase = (m.fillVol - level*t.Capacity) / t.Usage
	m.alpha = expansionGasoline
	if isDiesel(t.Product) {
		m.alpha = expansionDiesel
	}
	return m
}

// cycle returns how many hours the current cycle (which starts when a delivery
// ends) has run at now.
func (m model) cycle(now time.Time) float64 {
	h := m.phase + now.Sub(m.boot).Hours()
	return h - math.Floor(h/m.period)*m.period
}

// delivering reports whether a delivery is in progress at now.
func (m model) delivering(now time.Time) bool { return m.cycle(now) > m.selling }

// at returns the tank state at now.
func (m model) at(now time.Time) tankState {
	into := m.cycle(now)
	vol := m.fillVol - m.cfg.Usage*into
	if into > m.selling {
		vol = m.lowVol + (m.fillVol-m.lowVol)*(into-m.selling)/deliveryDuration.Hours()
	}
	return m.state(vol, now)
}

// state completes a state from a product volume.
func (m model) state(vol float64, when time.Time) tankState {
	vol = math.Max(0, math.Min(vol, m.cfg.Capacity))
	// Underground tanks follow the day only slightly.
	day := float64(when.Unix()%86400) / 86400
	temp := m.cfg.Temperature + 0.6*math.Sin(2*math.Pi*(day-0.3))
	waterVol := m.cfg.Capacity * cylinderFraction(m.cfg.Water/m.cfg.Diameter)
	return tankState{
		Volume:   vol,
		TCVolume: vol * (1 - m.alpha*(temp-60)),
		Ullage:   math.Max(0, m.cfg.Capacity-vol-waterVol),
		Height:   m.cfg.Diameter * cylinderHeight((vol+waterVol)/m.cfg.Capacity),
		Water:    m.cfg.Water,
		WaterVol: waterVol,
		Temp:     temp,
	}
}

// deliveries returns the last n completed deliveries, the most recent first.
func (m model) deliveries(now time.Time, n int) []delivery {
	end := now.Add(-time.Duration(m.cycle(now) * float64(time.Hour)))
	ds := make([]delivery, 0, n)
	for range n {
		start := end.Add(-deliveryDuration)
		ds = append(ds, delivery{Start: start, End: end, Before: m.state(m.lowVol, start), After: m.state(m.fillVol, end)})
		end = end.Add(-time.Duration(m.period * float64(time.Hour)))
	}
	return ds
}

// flows returns the gallons sold from the tank between from and to, and the gallons
// delivered into it, so that the volume at to is the volume at from plus delivered
// minus sold.
func (m model) flows(from, to time.Time) (sold, delivered float64) {
	sold = m.cfg.Usage * to.Sub(from).Hours()
	delivered = math.Max(0, m.at(to).Volume-m.at(from).Volume+sold)
	return sold, delivered
}

func isDiesel(product string) bool {
	return strings.Contains(strings.ToUpper(product), "DIESEL")
}

// cylinderFraction is the filled fraction of the volume of a horizontal cylinder
// filled to the fraction h of its diameter.
func cylinderFraction(h float64) float64 {
	h = math.Max(0, math.Min(h, 1))
	// Segment area of a unit-radius circle over its whole area.
	d := 1 - 2*h
	return (math.Acos(d) - d*math.Sqrt(1-d*d)) / math.Pi
}

// cylinderHeight inverts cylinderFraction: the fraction of the diameter filled when
// the fraction f of the volume is.
func cylinderHeight(f float64) float64 {
	f = math.Max(0, math.Min(f, 1))
	lo, hi := 0.0, 1.0
	for range 50 {
		mid := (lo + hi) / 2
		if cylinderFraction(mid) < f {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}
