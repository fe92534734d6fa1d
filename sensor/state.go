package sensor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pcapot/pcapot/protocols"
)

// State is what one install generates once and keeps in <data>/state.json: the sensor
// id and STIX identity, and each persona's per-install values.
type State struct {
	SensorID   string                   `json:"sensor_id"`
	IdentityID string                   `json:"identity_id"`
	Created    time.Time                `json:"created"`
	Personas   map[string]PersonaValues `json:"personas"`
}

// PersonaValues are the generated values of one persona on this install.
type PersonaValues struct {
	Serial string `json:"serial"`
	MAC    string `json:"mac"`
}

const stateFile = "state.json"

// LoadState reads the install's state from dir, creating it on first start. sensorID,
// when not empty, is the configured id and wins over the stored one.
func LoadState(dir, sensorID string) (*State, error) {
	path := filepath.Join(dir, stateFile)
	var st State
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("%s is corrupt (%v): fix or remove it (a new sensor identity is then generated)", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		st.Created = time.Now().UTC()
	default:
		return nil, fmt.Errorf("state: %w", err)
	}
	changed := errors.Is(err, fs.ErrNotExist)
	if sensorID != "" && st.SensorID != sensorID {
		st.SensorID, changed = sensorID, true
	}
	if st.SensorID == "" {
		host, _ := os.Hostname()
		st.SensorID = sanitizeID(host) + "-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
		changed = true
	}
	if st.IdentityID == "" {
		st.IdentityID = "identity--" + uuid.NewString()
		changed = true
	}
	if st.Personas == nil {
		st.Personas = map[string]PersonaValues{}
	}
	if changed {
		return &st, st.save(dir)
	}
	return &st, nil
}

// Identity returns the persona's identity with this install's generated values,
// generating and saving them on first use.
func (st *State) Identity(dir string, p *Persona) (*protocols.Identity, error) {
	_, known := st.Personas[p.Name]
	id, err := st.identity(p)
	if err != nil {
		return nil, err
	}
	if !known {
		if err := st.save(dir); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// InstallIdentity returns the identity a sensor with data folder dir serves for p: the
// persona's, with the values this install generated and the placeholders expanded. It
// reads the install's state and changes nothing; a persona the install never served is
// an error.
func InstallIdentity(dir string, p *Persona) (*protocols.Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if _, ok := st.Personas[p.Name]; !ok {
		return nil, fmt.Errorf("state: this install has not served persona %s", p.Name)
	}
	return st.identity(p)
}

// identity applies (generating them when missing) the install's values to p's identity.
func (st *State) identity(p *Persona) (*protocols.Identity, error) {
	v, ok := st.Personas[p.Name]
	if !ok {
		var err error
		if p.Generate.Serial != "" {
			if v.Serial, err = generate(p.Generate.Serial); err != nil {
				return nil, err
			}
		}
		if p.Generate.MACOUI != "" {
			mac, err := generateMAC(p.Generate.MACOUI)
			if err != nil {
				return nil, err
			}
			v.MAC = mac.String()
		}
		st.Personas[p.Name] = v
	}
	id := p.Identity
	if v.Serial != "" {
		id.Serial = v.Serial
	}
	if v.MAC != "" {
		mac, err := net.ParseMAC(v.MAC)
		if err != nil {
			return nil, fmt.Errorf("state: persona %s mac %q: %w", p.Name, v.MAC, err)
		}
		id.MAC = mac
	}
	expand(&id)
	return &id, nil
}

func (st *State) save(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), b, 0o640)
}

// writeFileAtomic writes b to path through a synced temporary file and a rename.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// sanitizeID turns a host name into [a-z0-9-], at most 24 characters.
func sanitizeID(s string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			sb.WriteRune(r)
		case r == '-' || r == '.' || r == '_':
			sb.WriteByte('-')
		}
		if sb.Len() >= 24 {
			break
		}
	}
	out := strings.Trim(sb.String(), "-")
	if out == "" {
		return "sensor"
	}
	return out
}
