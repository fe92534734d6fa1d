package snmp

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/pcapot/pcapot/protocols"
)

// oid is an OBJECT IDENTIFIER as its sub-identifiers. slices.Compare orders oids the
// way SNMP walks them (RFC 3416 §4.2.2): arc by arc, a prefix before its extensions.
type oid []uint32

// parseOID parses a dotted OID, with or without a leading dot.
func parseOID(s string) (oid, error) {
	s = strings.TrimPrefix(s, ".")
	if s == "" {
		return nil, errors.New("empty OID")
	}
	if n := strings.Count(s, ".") + 1; n > maxOIDArcs {
		return nil, fmt.Errorf("OID of %d sub-identifiers", n)
	}
	o := make(oid, 0, strings.Count(s, ".")+1)
	for part := range strings.SplitSeq(s, ".") {
		v, err := strconv.ParseUint(part, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("OID sub-identifier %q: %w", part, err)
		}
		o = append(o, uint32(v))
	}
	return o, nil
}

// mustOID parses an OID written in this file.
func mustOID(s string) oid {
	o, err := parseOID(s)
	if err != nil {
		panic(err)
	}
	return o
}

// String returns the dotted form without a leading dot.
func (o oid) String() string {
	b := make([]byte, 0, len(o)*4)
	for i, v := range o {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return string(b)
}

// child returns o extended by arcs, in a new slice.
func (o oid) child(arcs ...uint32) oid {
	return append(slices.Clip(o), arcs...)
}

// value is a MIB value as gosnmp encodes it.
type value struct {
	typ gosnmp.Asn1BER
	v   any
}

// maxDisplayString is the size limit of DisplayString and SnmpAdminString (RFC 2579,
// RFC 3411).
const maxDisplayString = 255

func displayString(s string) value {
	if len(s) > maxDisplayString {
		s = s[:maxDisplayString]
	}
	return value{gosnmp.OctetString, []byte(s)}
}

func octets(b []byte) value     { return value{gosnmp.OctetString, b} }
func integer(n int) value       { return value{gosnmp.Integer, n} }
func gauge(n uint32) value      { return value{gosnmp.Gauge32, n} }
func objectID(o string) value   { return value{gosnmp.ObjectIdentifier, o} }
func ipAddress(a [4]byte) value { return value{gosnmp.IPAddress, a[:]} }
func counter(n float64) value   { return value{gosnmp.Counter32, wrap32(n)} }
func timeTicks(d time.Duration) value {
	return value{gosnmp.TimeTicks, uint32(uint64(max(d, 0)/(10*time.Millisecond)) % (1 << 32))}
}

// wrap32 is a Counter32 at a modelled count: whole events, wrapping at 2^32.
func wrap32(n float64) uint32 {
	if n <= 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0
	}
	return uint32(uint64(math.Mod(math.Floor(n), 1<<32)))
}

// request is what values are computed from: one request's time and destination.
type request struct {
	up    time.Duration // since the device booted
	local netip.Addr    // the device address the request was sent to
}

// writable names the objects a read-write community may set.
type writable int

const (
	readOnly writable = iota
	writeContact
	writeName
	writeLocation
)

// object is one instance in the MIB.
type object struct {
	oid   oid
	get   func(*request) value
	write writable
}

func (o *object) pdu(r *request) gosnmp.SnmpPDU {
	v := o.get(r)
	return gosnmp.SnmpPDU{Name: o.oid.String(), Type: v.typ, Value: v.v}
}

// mib is the device's MIB: the instances that do not depend on the request, sorted,
// plus the rows that do (the ipAddrTable row of the address the request was sent to).
type mib struct {
	objects []object
	types   []oid // OBJECT-TYPEs of every instance, sorted, for noSuchInstance
	dynamic func(*request) []object
}

// view is the MIB as one request sees it.
type view struct {
	static, dynamic []object
}

func (m *mib) view(r *request) view {
	v := view{static: m.objects}
	if m.dynamic != nil {
		v.dynamic = m.dynamic(r)
	}
	return v
}

func find(objs []object, o oid) (int, bool) {
	return slices.BinarySearchFunc(objs, o, func(e object, t oid) int { return slices.Compare(e.oid, t) })
}

// get returns the instance o, or nil.
func (v view) get(o oid) *object {
	for _, objs := range [2][]object{v.static, v.dynamic} {
		if i, ok := find(objs, o); ok {
			return &objs[i]
		}
	}
	return nil
}

// next returns the first instance after o in lexicographic order, or nil at the end
// of the MIB view.
func (v view) next(o oid) *object {
	var best *object
	for _, objs := range [2][]object{v.static, v.dynamic} {
		i, ok := find(objs, o)
		if ok {
			i++
		}
		if i < len(objs) && (best == nil || slices.Compare(objs[i].oid, best.oid) < 0) {
			best = &objs[i]
		}
	}
	return best
}

// hasType reports whether o names an OBJECT-TYPE of the MIB or an instance of one,
// which makes a missing instance noSuchInstance rather than noSuchObject.
func (m *mib) hasType(o oid) bool {
	for k := 1; k <= len(o); k++ {
		if _, ok := slices.BinarySearchFunc(m.types, o[:k], slices.Compare); ok {
			return true
		}
	}
	return false
}

// mibBuilder collects instances.
type mibBuilder struct {
	objects []object
	types   []oid
}

func (b *mibBuilder) addType(t oid) {
	if !slices.ContainsFunc(b.types, func(e oid) bool { return slices.Equal(e, t) }) {
		b.types = append(b.types, t)
	}
}

// scalar adds the instance t.0 of the scalar OBJECT-TYPE t.
func (b *mibBuilder) scalar(t oid, get func(*request) value) *object {
	b.addType(t)
	b.objects = append(b.objects, object{oid: t.child(0), get: get})
	return &b.objects[len(b.objects)-1]
}

// column adds the instance t.index of the columnar OBJECT-TYPE t.
func (b *mibBuilder) column(t oid, index oid, get func(*request) value) {
	b.addType(t)
	b.objects = append(b.objects, object{oid: t.child(index...), get: get})
}

func (b *mibBuilder) build(dynamic func(*request) []object) (*mib, error) {
	slices.SortFunc(b.objects, func(x, y object) int { return slices.Compare(x.oid, y.oid) })
	for i := 1; i < len(b.objects); i++ {
		if slices.Equal(b.objects[i-1].oid, b.objects[i].oid) {
			return nil, fmt.Errorf("snmp: duplicate MIB instance %s", b.objects[i].oid)
		}
	}
	slices.SortFunc(b.types, slices.Compare)
	return &mib{objects: b.objects, types: b.types, dynamic: dynamic}, nil
}

// OIDs of the MIB modules served.
var (
	oidSystem     = mustOID("1.3.6.1.2.1.1")    // SNMPv2-MIB system (RFC 3418)
	oidInterfaces = mustOID("1.3.6.1.2.1.2")    // IF-MIB interfaces (RFC 2863)
	oidIP         = mustOID("1.3.6.1.2.1.4")    // IP-MIB ip (RFC 4293, RFC 1213 scalars)
	oidTCP        = mustOID("1.3.6.1.2.1.6")    // TCP-MIB tcp (RFC 4022)
	oidUDP        = mustOID("1.3.6.1.2.1.7")    // UDP-MIB udp (RFC 4113)
	oidSNMP       = mustOID("1.3.6.1.2.1.11")   // SNMPv2-MIB snmp (RFC 3418, RFC 1213)
	oidEntity     = mustOID("1.3.6.1.2.1.47.1") // ENTITY-MIB entityMIBObjects (RFC 4133)
	oidLLDP       = mustOID("1.0.8802.1.1.2.1") // LLDP-MIB lldpObjects (IEEE 802.1AB)
	oidIfTable    = oidInterfaces.child(2, 1)   // ifEntry
	oidAddrTable  = oidIP.child(20, 1)          // ipAddrEntry
	oidEntPhys    = oidEntity.child(1, 1, 1)    // entPhysicalEntry
	oidLLDPPorts  = oidLLDP.child(3, 7, 1)      // lldpLocPortEntry
	oidLLDPLocal  = oidLLDP.child(3)            // lldpLocalSystemData
	oidLLDPConfig = oidLLDP.child(1)            // lldpConfiguration
)

// stats are the device's SNMP counters (snmp group) and the bytes of SNMP traffic it
// saw, which also show in its interface, IP and UDP counters.
type stats struct {
	inPkts, outPkts, inBadVersions, inBadCommunityNames, inBadCommunityUses,
	inASNParseErrs, inTotalReqVars, inTotalSetVars, inGetRequests, inGetNexts,
	inSetRequests, outTooBigs, outNoSuchNames, outBadValues, outGenErrs,
	outGetResponses, silentDrops atomic.Uint32
	// SNMPv3 counters (RFC 3412 §5, RFC 3414 §5), reported in Reports only.
	unknownSecurityModels, invalidMsgs, unknownUserNames, unknownEngineIDs atomic.Uint32
	inOctets, outOctets                                                    atomic.Uint64
}

// frameOverhead is what an SNMP message gains on the wire: Ethernet header and FCS
// (ifInOctets counts framing characters, RFC 2863 §3.1.6), IPv4 and UDP headers.
const frameOverhead = 14 + 4 + 20 + 8

// device is the emulated device's state: identity, configuration, the values written
// by SET, and counters.
type device struct {
	cfg       Config
	id        protocols.Identity
	descr     string
	objectID  string
	boot      time.Time
	bridge    bool // more than one port: an integrated switch
	primary   int  // index of the first connected interface, -1 if none
	ifDescr   []string
	ifPhysAdr [][]byte
	netmask   [4]byte

	mu                      sync.RWMutex
	contact, name, location string

	stats stats
}

func newDevice(cfg Config, id protocols.Identity, boot time.Time) *device {
	d := &device{
		cfg:      cfg,
		id:       id,
		descr:    sysDescr(id),
		objectID: strings.TrimPrefix(id.SysObjectID, "."),
		boot:     boot,
		bridge:   len(cfg.Interfaces) > 1,
		primary:  -1,
		netmask:  netip.MustParseAddr(cfg.NetMask).As4(), // validated by Config.validate
		contact:  id.Contact,
		name:     cmp.Or(id.Hostname, id.ModuleName),
		location: id.Location,
	}
	for i, ifc := range cfg.Interfaces {
		if ifc.Connected && d.primary < 0 {
			d.primary = i
		}
		descr := ifc.Descr
		if descr == "" {
			descr = fmt.Sprintf("%s, Ethernet Port, X1 P%d", d.descr, i+1)
		}
		d.ifDescr = append(d.ifDescr, descr)
		d.ifPhysAdr = append(d.ifPhysAdr, portMAC(id.MAC, i))
	}
	return d
}

// sysDescr is the identity's description, or one composed from its parts the way
// automation devices describe themselves ("vendor, product, model, order number,
// HW: x, FW: y").
func sysDescr(id protocols.Identity) string {
	if id.Description != "" {
		return id.Description
	}
	parts := make([]string, 0, 6)
	for _, p := range []string{id.Vendor, id.Product, id.Model, id.OrderNumber} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if id.Hardware != "" {
		parts = append(parts, "HW: "+id.Hardware)
	}
	if id.Firmware != "" {
		parts = append(parts, "FW: "+id.Firmware)
	}
	return strings.Join(parts, ", ")
}

// portMAC is the MAC address of port i: the device MAC for the first port, then the
// following addresses, as devices with an integrated switch number their ports.
func portMAC(mac net.HardwareAddr, i int) []byte {
	out := slices.Clone(mac)
	carry := uint(i)
	for k := len(out) - 1; k >= 3 && carry > 0; k-- { // stay inside the OUI's block
		sum := uint(out[k]) + carry
		out[k] = byte(sum)
		carry = sum >> 8
	}
	return out
}

func (d *device) strings() (contact, name, location string) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.contact, d.name, d.location
}

// write stores a value set by a read-write community.
func (d *device) write(w writable, v string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch w {
	case writeContact:
		d.contact = v
	case writeName:
		d.name = v
	case writeLocation:
		d.location = v
	}
}

// traffic is the modelled traffic of one interface since it came up.
type traffic struct {
	inOctets, inUcast, inNUcast, inDiscards, inUnknown float64
	outOctets, outUcast, outNUcast                     float64
}

// Traffic model: octets grow at the configured rate with a slow ±25 % swing
// (rate·t + A·sin(ωt+φ) with A·ω = rate/4, so the counter never decreases); frames
// average a little over 100 octets; a few broadcasts and multicasts (ARP, LLDP every
// 5 s, DCP) per second.
const (
	swingPeriod    = 900.0 // seconds
	inFrameOctets  = 118.0
	outFrameOctets = 146.0
	inNUcastRate   = 0.35
	outNUcastRate  = 0.2 // LLDP every 5 s
	// outNUcastNoLLDP is the rate of a port that sends no LLDP: the odd gratuitous
	// ARP or address-server broadcast.
	outNUcastNoLLDP = 0.01
	linkUpAfter     = 9 * time.Second
)

func swing(rate, t, phase float64) float64 {
	w := 2 * math.Pi / swingPeriod
	a := rate / 4 / w
	return rate*t + a*(math.Sin(w*t+phase)-math.Sin(phase))
}

// linkUp is the uptime at which interface i came up.
func linkUp(i int) time.Duration {
	return linkUpAfter + time.Duration(i)*350*time.Millisecond
}

// traffic returns interface i's counters at uptime up, including the SNMP traffic
// the device really exchanged on its primary interface.
func (d *device) traffic(i int, up time.Duration) traffic {
	ifc := d.cfg.Interfaces[i]
	if !ifc.Connected || up < linkUp(i) {
		return traffic{}
	}
	t := (up - linkUp(i)).Seconds()
	phase := float64(i) * 1.7
	tr := traffic{
		inOctets:   swing(ifc.InOctetsPerSec, t, phase),
		outOctets:  swing(ifc.OutOctetsPerSec, t, phase+0.9),
		inNUcast:   inNUcastRate * t,
		outNUcast:  outNUcastNoLLDP * t,
		inUnknown:  t / 60, // frames of protocols the device does not run
		inDiscards: t / 7200,
	}
	if d.cfg.LLDPMIB {
		tr.outNUcast = outNUcastRate * t
	}
	tr.inUcast = tr.inOctets / inFrameOctets
	tr.outUcast = tr.outOctets / outFrameOctets
	if i == d.primary {
		tr.inOctets += float64(d.stats.inOctets.Load())
		tr.outOctets += float64(d.stats.outOctets.Load())
		tr.inUcast += float64(d.stats.inPkts.Load())
		tr.outUcast += float64(d.stats.outPkts.Load())
	}
	return tr
}

// ipTraffic sums the interfaces into IP-level counts.
type ipTraffic struct {
	inReceives, inAddrErrors, inDelivers, outRequests float64
	tcpIn, tcpOut, udpIn, udpOut, udpNoPorts          float64
}

func (d *device) ip(up time.Duration) ipTraffic {
	var in, out, nIn, nOut float64
	for i := range d.cfg.Interfaces {
		tr := d.traffic(i, up)
		in += tr.inUcast
		out += tr.outUcast
		nIn += tr.inNUcast
		nOut += tr.outNUcast
	}
	t := up.Seconds()
	snmpIn, snmpOut := float64(d.stats.inPkts.Load()), float64(d.stats.outPkts.Load())
	// Unicast frames minus the SNMP ones, which are counted where they belong.
	in -= snmpIn
	out -= snmpOut
	var r ipTraffic
	r.inReceives = in + nIn/2 + snmpIn // half the broadcasts are IP (ARP, LLDP, DCP are not)
	r.inAddrErrors = t / 1800
	r.inDelivers = r.inReceives - r.inAddrErrors
	r.outRequests = out + snmpOut
	r.tcpIn = 0.9 * in
	r.tcpOut = 0.9 * out
	r.udpNoPorts = t / 120
	r.udpIn = r.inDelivers - r.tcpIn - r.udpNoPorts
	r.udpOut = r.outRequests - r.tcpOut
	return r
}

// newMIB builds the MIB of d.
func newMIB(d *device) (*mib, error) {
	var b mibBuilder
	addSystem(&b, d)
	addInterfaces(&b, d)
	addIP(&b, d)
	addTCPUDP(&b, d)
	addSNMP(&b, d)
	if d.cfg.EntityMIB {
		addEntity(&b, d)
	}
	if d.cfg.LLDPMIB {
		addLLDP(&b, d)
	}
	return b.build(func(r *request) []object { return addrRows(d, r) })
}

func constant(v value) func(*request) value { return func(*request) value { return v } }

func addSystem(b *mibBuilder, d *device) {
	b.scalar(oidSystem.child(1), constant(displayString(d.descr)))
	b.scalar(oidSystem.child(2), constant(objectID(d.objectID)))
	b.scalar(oidSystem.child(3), func(r *request) value { return timeTicks(r.up) })
	b.scalar(oidSystem.child(4), func(*request) value {
		c, _, _ := d.strings()
		return displayString(c)
	}).write = writeContact
	b.scalar(oidSystem.child(5), func(*request) value {
		_, n, _ := d.strings()
		return displayString(n)
	}).write = writeName
	b.scalar(oidSystem.child(6), func(*request) value {
		_, _, l := d.strings()
		return displayString(l)
	}).write = writeLocation
	b.scalar(oidSystem.child(7), constant(integer(d.cfg.SysServices)))
}

// IF-MIB values.
const (
	ifTypeEthernet = 6 // ethernetCsmacd (IANAifType)
	statusUp       = 1
	statusDown     = 2
)

func addInterfaces(b *mibBuilder, d *device) {
	b.scalar(oidInterfaces.child(1), constant(integer(len(d.cfg.Interfaces))))
	for i, ifc := range d.cfg.Interfaces {
		idx := oid{uint32(i + 1)}
		col := func(c uint32, get func(*request) value) { b.column(oidIfTable.child(c), idx, get) }
		tr := func(r *request) traffic { return d.traffic(i, r.up) }
		oper := statusDown
		if ifc.Connected {
			oper = statusUp
		}
		col(1, constant(integer(i+1)))                // ifIndex
		col(2, constant(displayString(d.ifDescr[i]))) // ifDescr
		col(3, constant(integer(ifTypeEthernet)))     // ifType
		col(4, constant(integer(ifc.MTU)))            // ifMtu
		col(5, constant(gauge(ifc.Speed)))            // ifSpeed
		col(6, constant(octets(d.ifPhysAdr[i])))      // ifPhysAddress
		col(7, constant(integer(statusUp)))           // ifAdminStatus
		col(8, constant(integer(oper)))               // ifOperStatus
		col(9, func(r *request) value { return ifLastChange(ifc, i, r) })
		col(10, func(r *request) value { return counter(tr(r).inOctets) })
		col(11, func(r *request) value { return counter(tr(r).inUcast) })
		col(12, func(r *request) value { return counter(tr(r).inNUcast) })
		col(13, func(r *request) value { return counter(tr(r).inDiscards) })
		col(14, constant(counter(0))) // ifInErrors
		col(15, func(r *request) value { return counter(tr(r).inUnknown) })
		col(16, func(r *request) value { return counter(tr(r).outOctets) })
		col(17, func(r *request) value { return counter(tr(r).outUcast) })
		col(18, func(r *request) value { return counter(tr(r).outNUcast) })
		col(19, constant(counter(0)))      // ifOutDiscards
		col(20, constant(counter(0)))      // ifOutErrors
		col(21, constant(gauge(0)))        // ifOutQLen
		col(22, constant(objectID("0.0"))) // ifSpecific
	}
}

// ifLastChange is sysUpTime when the interface entered its state: link-up shortly
// after boot for a connected port, never (0) for a port without a link.
func ifLastChange(ifc Interface, i int, r *request) value {
	if !ifc.Connected || r.up < linkUp(i) {
		return timeTicks(0)
	}
	return timeTicks(linkUp(i))
}

func addIP(b *mibBuilder, d *device) {
	ip := func(r *request) ipTraffic { return d.ip(r.up) }
	zero := constant(counter(0))
	b.scalar(oidIP.child(1), constant(integer(2)))                // ipForwarding: notForwarding
	b.scalar(oidIP.child(2), constant(integer(d.cfg.DefaultTTL))) // ipDefaultTTL
	b.scalar(oidIP.child(3), func(r *request) value { return counter(ip(r).inReceives) })
	b.scalar(oidIP.child(4), zero) // ipInHdrErrors
	b.scalar(oidIP.child(5), func(r *request) value { return counter(ip(r).inAddrErrors) })
	b.scalar(oidIP.child(6), zero) // ipForwDatagrams
	b.scalar(oidIP.child(7), zero) // ipInUnknownProtos
	b.scalar(oidIP.child(8), zero) // ipInDiscards
	b.scalar(oidIP.child(9), func(r *request) value { return counter(ip(r).inDelivers) })
	b.scalar(oidIP.child(10), func(r *request) value { return counter(ip(r).outRequests) })
	b.scalar(oidIP.child(11), zero)                  // ipOutDiscards
	b.scalar(oidIP.child(12), zero)                  // ipOutNoRoutes
	b.scalar(oidIP.child(13), constant(integer(60))) // ipReasmTimeout, seconds
	for c := uint32(14); c <= 19; c++ {              // reassembly and fragmentation
		b.scalar(oidIP.child(c), zero)
	}
	for c := uint32(1); c <= 5; c++ { // ipAddrTable columns; rows in addrRows
		b.addType(oidAddrTable.child(c))
	}
}

// addrRows is the ipAddrTable row of the IPv4 address the request was sent to.
func addrRows(d *device, r *request) []object {
	a := r.local.Unmap()
	if !a.Is4() || a.IsUnspecified() {
		return nil
	}
	idx := oid{}
	for _, o := range a.As4() {
		idx = append(idx, uint32(o))
	}
	ifIndex := max(d.primary, 0) + 1
	vals := []value{
		ipAddress(a.As4()),   // ipAdEntAddr
		integer(ifIndex),     // ipAdEntIfIndex
		ipAddress(d.netmask), // ipAdEntNetMask
		integer(1),           // ipAdEntBcastAddr: all-ones broadcast
		integer(65535),       // ipAdEntReasmMaxSize
	}
	rows := make([]object, len(vals))
	for i, v := range vals {
		t := oidAddrTable.child(uint32(i + 1))
		rows[i] = object{oid: t.child(idx...), get: constant(v)}
	}
	return rows
}

// TCP-MIB constants.
const (
	tcpRtoVanj = 4 // tcpRtoAlgorithm vanj(4)
	tcpRtoMin  = 1000
	tcpRtoMax  = 60000
)

func addTCPUDP(b *mibBuilder, d *device) {
	ip := func(r *request) ipTraffic { return d.ip(r.up) }
	per := func(seconds float64) func(*request) value {
		return func(r *request) value { return counter(r.up.Seconds() / seconds) }
	}
	b.scalar(oidTCP.child(1), constant(integer(tcpRtoVanj)))
	b.scalar(oidTCP.child(2), constant(integer(tcpRtoMin)))
	b.scalar(oidTCP.child(3), constant(integer(tcpRtoMax)))
	b.scalar(oidTCP.child(4), constant(integer(d.cfg.TCPMaxConn)))
	b.scalar(oidTCP.child(5), per(5400))               // tcpActiveOpens
	b.scalar(oidTCP.child(6), func(r *request) value { // tcpPassiveOpens
		return counter(r.up.Seconds()/600 + float64(d.cfg.TCPEstablished))
	})
	b.scalar(oidTCP.child(7), per(7200))  // tcpAttemptFails
	b.scalar(oidTCP.child(8), per(10800)) // tcpEstabResets
	b.scalar(oidTCP.child(9), constant(gauge(uint32(d.cfg.TCPEstablished))))
	b.scalar(oidTCP.child(10), func(r *request) value { return counter(ip(r).tcpIn) })
	b.scalar(oidTCP.child(11), func(r *request) value { return counter(ip(r).tcpOut) })
	b.scalar(oidTCP.child(12), func(r *request) value { return counter(ip(r).tcpOut / 800) })
	b.scalar(oidTCP.child(14), constant(counter(0))) // tcpInErrs
	b.scalar(oidTCP.child(15), per(1800))            // tcpOutRsts

	b.scalar(oidUDP.child(1), func(r *request) value { return counter(ip(r).udpIn) })
	b.scalar(oidUDP.child(2), func(r *request) value { return counter(ip(r).udpNoPorts) })
	b.scalar(oidUDP.child(3), constant(counter(0)))
	b.scalar(oidUDP.child(4), func(r *request) value { return counter(ip(r).udpOut) })
}

func addSNMP(b *mibBuilder, d *device) {
	s := &d.stats
	c := func(arc uint32, v *atomic.Uint32) {
		b.scalar(oidSNMP.child(arc), func(*request) value { return value{gosnmp.Counter32, v.Load()} })
	}
	zero := func(arcs ...uint32) {
		for _, a := range arcs {
			b.scalar(oidSNMP.child(a), constant(counter(0)))
		}
	}
	c(1, &s.inPkts)
	c(2, &s.outPkts)
	c(3, &s.inBadVersions)
	c(4, &s.inBadCommunityNames)
	c(5, &s.inBadCommunityUses)
	c(6, &s.inASNParseErrs)
	zero(8, 9, 10, 11, 12) // snmpInTooBigs … snmpInGenErrs: errors in responses received
	c(13, &s.inTotalReqVars)
	c(14, &s.inTotalSetVars)
	c(15, &s.inGetRequests)
	c(16, &s.inGetNexts)
	c(17, &s.inSetRequests)
	zero(18, 19) // snmpInGetResponses, snmpInTraps
	c(20, &s.outTooBigs)
	c(21, &s.outNoSuchNames)
	c(22, &s.outBadValues)
	c(24, &s.outGenErrs)
	zero(25, 26, 27) // the agent sends no requests
	c(28, &s.outGetResponses)
	zero(29)                                          // snmpOutTraps
	b.scalar(oidSNMP.child(30), constant(integer(2))) // snmpEnableAuthenTraps: disabled
	c(31, &s.silentDrops)
	zero(32) // snmpProxyDrops
}

// ENTITY-MIB values.
const (
	entClassChassis = 3
	truthTrue       = 1
)

func addEntity(b *mibBuilder, d *device) {
	id := d.id
	idx := oid{1}
	col := func(c uint32, v value) { b.column(oidEntPhys.child(c), idx, constant(v)) }
	descr := strings.TrimSpace(id.Product + " " + id.Model)
	col(2, displayString(cmp.Or(descr, d.descr)))            // entPhysicalDescr
	col(3, objectID(d.objectID))                             // entPhysicalVendorType
	col(4, integer(0))                                       // entPhysicalContainedIn
	col(5, integer(entClassChassis))                         // entPhysicalClass
	col(6, integer(-1))                                      // entPhysicalParentRelPos
	col(7, displayString(cmp.Or(id.Model, id.Product)))      // entPhysicalName
	col(8, displayString(id.Hardware))                       // entPhysicalHardwareRev
	col(9, displayString(id.Firmware))                       // entPhysicalFirmwareRev
	col(10, displayString(id.Firmware))                      // entPhysicalSoftwareRev
	col(11, displayString(truncate(id.Serial, 32)))          // entPhysicalSerialNum
	col(12, displayString(id.Vendor))                        // entPhysicalMfgName
	col(13, displayString(cmp.Or(id.OrderNumber, id.Model))) // entPhysicalModelName
	col(14, displayString(truncate(id.ModuleName, 32)))      // entPhysicalAlias
	col(15, displayString(""))                               // entPhysicalAssetID
	col(16, integer(truthTrue))                              // entPhysicalIsFRU
	b.scalar(oidEntity.child(4, 1), constant(timeTicks(0)))  // entLastChangeTime
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// LLDP-MIB values.
const (
	lldpChassisMAC  = 4 // LldpChassisIdSubtype macAddress(4)
	lldpPortLocal   = 7 // LldpPortIdSubtype local(7)
	lldpCapBridge   = 0x20
	lldpCapStation  = 0x01
	lldpTxInterval  = 5 // seconds, as PROFINET devices send LLDP
	lldpHoldMult    = 4
	lldpReinitDelay = 2
	lldpTxDelay     = 1
	lldpNotifyIntvl = 5
)

func addLLDP(b *mibBuilder, d *device) {
	b.scalar(oidLLDPConfig.child(1), constant(integer(lldpTxInterval)))
	b.scalar(oidLLDPConfig.child(2), constant(integer(lldpHoldMult)))
	b.scalar(oidLLDPConfig.child(3), constant(integer(lldpReinitDelay)))
	b.scalar(oidLLDPConfig.child(4), constant(integer(lldpTxDelay)))
	b.scalar(oidLLDPConfig.child(5), constant(integer(lldpNotifyIntvl)))

	caps := []byte{lldpCapStation}
	if d.bridge {
		caps = []byte{lldpCapBridge}
	}
	b.scalar(oidLLDPLocal.child(1), constant(integer(lldpChassisMAC)))
	b.scalar(oidLLDPLocal.child(2), constant(octets(slices.Clone(d.id.MAC))))
	b.scalar(oidLLDPLocal.child(3), func(*request) value {
		_, n, _ := d.strings()
		return displayString(n)
	})
	b.scalar(oidLLDPLocal.child(4), constant(displayString(d.descr)))
	b.scalar(oidLLDPLocal.child(5), constant(octets(caps)))
	b.scalar(oidLLDPLocal.child(6), constant(octets(caps)))
	for i, ifc := range d.cfg.Interfaces {
		idx := oid{uint32(i + 1)}
		portID := ifc.LLDPPortID
		if portID == "" {
			portID = fmt.Sprintf("port-%03d", i+1)
		}
		b.column(oidLLDPPorts.child(2), idx, constant(integer(lldpPortLocal)))
		b.column(oidLLDPPorts.child(3), idx, constant(displayString(portID)))
		b.column(oidLLDPPorts.child(4), idx, constant(displayString(d.ifDescr[i])))
	}
}
