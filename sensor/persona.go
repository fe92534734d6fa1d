package sensor

import (
	"crypto/rand"
	"embed"
	"fmt"
	"math/big"
	"net"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pcapot/pcapot/protocols"
)

// Persona is one device: its identity, the services it exposes and each protocol's
// own configuration. Every protocol answers from the same identity.
type Persona struct {
	Name        string             `yaml:"name"`
	Description string             `yaml:"description"`
	Identity    protocols.Identity `yaml:"identity"`
	// Generate holds the rules for per-install values, generated on first start and
	// kept in the data folder so that two installs never look alike.
	Generate GenerateRules `yaml:"generate"`
	// Services maps protocol names to the ports the device listens on.
	Services map[string]uint16 `yaml:"services"`
	// Protocols holds each protocol's configuration, decoded by the protocol's Spec.
	Protocols map[string]yaml.Node `yaml:"protocols"`

	file string
}

// GenerateRules are patterns for per-install values: '#' is a random digit, '@' a
// random upper-case letter, '%' a random upper-case hex digit; other characters stay.
type GenerateRules struct {
	Serial string `yaml:"serial"`
	// MACOUI is the vendor's OUI ("00:1b:1b"); the other three octets are random.
	MACOUI string `yaml:"mac_oui"`
}

//go:embed personas/*.yaml
var personaFS embed.FS

// Personas lists the embedded persona names.
func Personas() []string {
	ents, _ := personaFS.ReadDir("personas")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// LoadPersona loads an embedded persona by name, or a persona file by path.
func LoadPersona(nameOrPath string) (*Persona, error) {
	var (
		b    []byte
		err  error
		file = nameOrPath
	)
	if strings.ContainsAny(nameOrPath, "/.") {
		b, err = os.ReadFile(nameOrPath)
	} else {
		file = "personas/" + nameOrPath + ".yaml"
		b, err = personaFS.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("persona %q is not embedded (embedded: %s) and is not a file path", nameOrPath, strings.Join(Personas(), ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("persona: %w", err)
	}
	p := &Persona{file: file}
	ps := decodeYAML(file, b, p)
	if p.Name == "" {
		ps = append(ps, Problem{File: file, Msg: "name: required"})
	}
	if len(ps) > 0 {
		return p, ps // what could be decoded, for `pcapot validate` to check further
	}
	return p, nil
}

// ProtocolConfig decodes the persona's section for spec into a fresh config of the
// protocol's own type (strictly), or returns the protocol's defaults if there is none.
func (p *Persona) ProtocolConfig(spec protocols.Spec) (any, Problems) {
	if spec.NewConfig == nil {
		if n, ok := p.Protocols[spec.Name]; ok {
			return nil, Problems{{File: p.file, Line: n.Line, Msg: fmt.Sprintf("protocols.%s: this protocol takes no configuration", spec.Name)}}
		}
		return nil, nil
	}
	cfg := spec.NewConfig()
	n, ok := p.Protocols[spec.Name]
	if !ok {
		return cfg, nil
	}
	return cfg, decodeStrict(p.file, &n, cfg)
}

// generate fills a pattern with random characters.
func generate(pattern string) (string, error) {
	var sb strings.Builder
	for _, r := range pattern {
		var set string
		switch r {
		case '#':
			set = "0123456789"
		case '@':
			set = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		case '%':
			set = "0123456789ABCDEF"
		default:
			sb.WriteRune(r)
			continue
		}
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(set))))
		if err != nil {
			return "", fmt.Errorf("generate: %w", err)
		}
		sb.WriteByte(set[n.Int64()])
	}
	return sb.String(), nil
}

func generateMAC(oui string) (net.HardwareAddr, error) {
	prefix, err := net.ParseMAC(oui + ":00:00:00")
	if err != nil || len(prefix) != 6 {
		return nil, fmt.Errorf("generate.mac_oui %q: want three octets such as 00:1b:1b", oui)
	}
	if _, err := rand.Read(prefix[3:]); err != nil {
		return nil, fmt.Errorf("generate mac: %w", err)
	}
	return prefix, nil
}

// expand replaces {serial}, {mac}, {firmware}, {firmware_number} (the firmware without
// a leading V), {hardware}, {order_number}, {model}, {product}, {vendor} and {hostname}
// in every identity string, so that strings such as sysDescr carry the per-install values.
func expand(id *protocols.Identity) {
	r := strings.NewReplacer(
		"{serial}", id.Serial, "{mac}", id.MAC.String(), "{firmware}", id.Firmware,
		"{firmware_number}", strings.TrimLeft(id.Firmware, "Vv"),
		"{hardware}", id.Hardware, "{order_number}", id.OrderNumber, "{model}", id.Model,
		"{product}", id.Product, "{vendor}", id.Vendor, "{hostname}", id.Hostname,
	)
	for _, f := range []*string{&id.Description, &id.ModuleName, &id.Hostname, &id.PlantID, &id.Copyright, &id.Location, &id.Contact, &id.ProductCode} {
		*f = r.Replace(*f)
	}
}
