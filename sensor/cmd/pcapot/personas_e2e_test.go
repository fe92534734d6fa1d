package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/all"
	"github.com/pcapot/pcapot/protocols/bacnet"
	"github.com/pcapot/pcapot/protocols/dnp3"
	"github.com/pcapot/pcapot/protocols/enip"
	"github.com/pcapot/pcapot/protocols/guardian"
	phttp "github.com/pcapot/pcapot/protocols/http"
	"github.com/pcapot/pcapot/protocols/iec104"
	"github.com/pcapot/pcapot/protocols/modbus"
	"github.com/pcapot/pcapot/protocols/snmp"
	"github.com/pcapot/pcapot/sensor"
)

// TestPersonasEndToEnd runs the real sensor binary on every embedded persona, with
// every service of the persona on a free port, and asks each service who the device is
// with the client an attacker would use (nmap NSE scripts, net-snmp, pymodbus, an HTTP
// client, a hand-built DNP3 master). The answers must carry the persona's identity and
// the install's generated serial number. After SIGTERM, every stored session must
// match exactly one client connection seen by a tcpdump reference capture, name its
// protocol in the STIX bundle, and dissect in tshark with the protocol's dissector and
// without a malformed or error-level packet.
func TestPersonasEndToEnd(t *testing.T) {
	testenv.RequireRoot(t)
	tools := personaTools{
		nmap:    testenv.LookPath(t, "nmap"),
		tshark:  testenv.LookPath(t, "tshark"),
		tcpdump: testenv.LookPath(t, "tcpdump"),
		snmpget: testenv.LookPath(t, "snmpget"),
		python:  testenv.Python(t),
	}
	bin := buildBinary(t)

	names := sensor.Personas()
	for _, want := range []string{"siemens-s7-1200", "schneider-m340", "rockwell-compactlogix-5380", "sel-3530-rtac", "tridium-jace-8000"} {
		if !slices.Contains(names, want) {
			t.Errorf("persona %s is not embedded (embedded: %v)", want, names)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) { runPersona(t, bin, tools, name) })
	}
}

type personaTools struct{ nmap, tshark, tcpdump, snmpget, python string }

// peDissectors says how tshark is told to decode a service's port (decode), the layer
// every session the sensor answered must show (layer) and the application layer at
// least one session of the service must show (deep): an S7 connection refused at
// COTP level has no S7 PDU, nmap's enip-info asks ListIdentity only.
var peDissectors = map[string]struct{ decode, layer, deep string }{
	"modbus":   {"mbtcp", "mbtcp", "modbus"},
	"s7comm":   {"tpkt", "cotp", "s7comm"},
	"http":     {"http", "http", "http"},
	"snmp":     {"snmp", "snmp", "snmp"},
	"bacnet":   {"bvlc", "bvlc", "bacapp"},
	"enip":     {"enip", "enip", "enip"},
	"enip-udp": {"enip", "enip", "enip"},
	"iec104":   {"iec60870_104", "iec60870_104", "iec60870_asdu"},
	"dnp3":     {"dnp3", "dnp3", "dnp3"},
	// Wireshark has no dissector for the Veeder-Root serial protocol: the answers
	// must still be well-formed TCP carrying data.
	"guardian_ast": {"", "tcp", "data"},
}

// personaRun is one persona served by a running sensor.
type personaRun struct {
	tools   personaTools
	name    string
	p       *sensor.Persona
	id      protocols.Identity // with the install's serial, MAC and expanded strings
	specs   map[string]protocols.Spec
	ports   map[string]int
	configs map[string]any
}

func runPersona(t *testing.T, bin string, tools personaTools, name string) {
	p, err := sensor.LoadPersona(name)
	if err != nil {
		t.Fatalf("load persona: %v", err)
	}
	r := &personaRun{tools: tools, name: name, p: p, specs: map[string]protocols.Spec{}, ports: map[string]int{}, configs: map[string]any{}}
	for _, sp := range all.Specs() {
		if _, ok := p.Services[sp.Name]; !ok {
			continue
		}
		r.specs[sp.Name] = sp
		cfg, ps := p.ProtocolConfig(sp)
		if len(ps) > 0 {
			t.Fatalf("protocols.%s: %v", sp.Name, ps)
		}
		r.configs[sp.Name] = cfg
	}
	if len(r.specs) != len(p.Services) {
		t.Fatalf("persona services %v, sensor protocols %v", p.Services, r.specs)
	}

	// Every service on a free port of its transport.
	dir := t.TempDir()
	args := []string{"--persona", name, "--data", dir, "--listen", "127.0.0.1"}
	var tcpPorts, udpPorts []string
	for _, svc := range r.services() {
		sp := r.specs[svc]
		if _, ok := peDissectors[svc]; !ok {
			t.Fatalf("service %s: this test has no tshark dissector for it", svc)
		}
		if sp.Transport == protocols.UDP {
			r.ports[svc] = freeUDPPort(t)
			udpPorts = append(udpPorts, "port "+strconv.Itoa(r.ports[svc]))
		} else {
			r.ports[svc] = freePort(t)
			tcpPorts = append(tcpPorts, "port "+strconv.Itoa(r.ports[svc]))
		}
		args = append(args, "--port", fmt.Sprintf("%s=%d", svc, r.ports[svc]))
	}

	// The reference capture that counts client connections independently of the sensor.
	var filter []string
	if len(tcpPorts) > 0 {
		filter = append(filter, "(tcp and ("+strings.Join(tcpPorts, " or ")+"))")
	}
	if len(udpPorts) > 0 {
		filter = append(filter, "(udp and ("+strings.Join(udpPorts, " or ")+"))")
	}
	ref := filepath.Join(t.TempDir(), "ref.pcap")
	td := exec.Command(tools.tcpdump, "-i", "lo", "-U", "-n", "-s", "0", "-w", ref, strings.Join(filter, " or "))
	tdErr := &lockedBuffer{}
	td.Stderr = tdErr
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	tdDone := false
	defer func() {
		if !tdDone {
			td.Process.Kill()
			td.Wait()
		}
	}()
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(tdErr.String(), "listening on") })

	sp := startSensor(t, bin, args...)
	r.id = peInstallIdentity(t, dir, p)

	t.Run("clients", func(t *testing.T) {
		for _, svc := range r.services() {
			if svc == "enip-udp" {
				continue // driven together with enip
			}
			drive := r.driver(svc)
			if drive == nil {
				t.Errorf("service %s: this test has no client for it", svc)
				continue
			}
			t.Run(svc, func(t *testing.T) {
				t.Parallel()
				drive(t)
			})
		}
	})

	sp.stop(t)
	if strings.Contains(sp.stderr.String(), "does not match the identity's vendor") {
		t.Errorf("a protocol's vendor id contradicts the identity's vendor:\n%s", sp.stderr)
	}
	td.Process.Signal(syscall.SIGTERM)
	td.Wait()
	tdDone = true

	r.checkSessions(t, bin, dir, ref)
}

// services returns the persona's service names, sorted.
func (r *personaRun) services() []string {
	var s []string
	for name := range r.specs {
		s = append(s, name)
	}
	sort.Strings(s)
	return s
}

// installIdentity is the identity the sensor serves: the persona's, with the serial
// number and MAC address generated for this install (state.json) and the placeholders
// expanded as the sensor expands them.
func peInstallIdentity(t *testing.T, dir string, p *sensor.Persona) protocols.Identity {
	t.Helper()
	idp, err := sensor.InstallIdentity(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	id := *idp
	oui := strings.ToLower(p.Generate.MACOUI)
	if !strings.HasPrefix(id.MAC.String(), oui) {
		t.Errorf("generated MAC %s is not under the persona's OUI %s", id.MAC, oui)
	}
	if !pePatternMatches(p.Generate.Serial, id.Serial) {
		t.Errorf("generated serial %q does not follow the pattern %q", id.Serial, p.Generate.Serial)
	}
	for _, f := range []string{id.Description, id.ModuleName, id.Hostname, id.PlantID, id.Copyright, id.Location, id.Contact, id.ProductCode} {
		if strings.ContainsAny(f, "{}") {
			t.Errorf("identity string %q has an unknown placeholder", f)
		}
	}
	return id
}

// patternMatches reports whether s is an instance of a generate pattern ('#' digit,
// '@' upper-case letter, '%' upper-case hex digit).
func pePatternMatches(pattern, s string) bool {
	if len(pattern) != len(s) {
		return false
	}
	for i := range pattern {
		c := s[i]
		switch pattern[i] {
		case '#':
			if c < '0' || c > '9' {
				return false
			}
		case '@':
			if c < 'A' || c > 'Z' {
				return false
			}
		case '%':
			if !strings.ContainsRune("0123456789ABCDEF", rune(c)) {
				return false
			}
		default:
			if c != pattern[i] {
				return false
			}
		}
	}
	return true
}

func (r *personaRun) driver(svc string) func(*testing.T) {
	switch svc {
	case "s7comm":
		return r.driveS7
	case "modbus":
		return r.driveModbus
	case "snmp":
		return r.driveSNMP
	case "http":
		return r.driveHTTP
	case "enip":
		return r.driveENIP
	case "bacnet":
		return r.driveBACnet
	case "iec104":
		return r.driveIEC104
	case "dnp3":
		return r.driveDNP3
	case "guardian_ast":
		return r.driveGuardian
	}
	return nil
}

// run runs a client program and returns its combined output.
func peRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func peWant(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// vendorWord is the first word of the identity's vendor ("Rockwell", "Tridium"), which
// the vendor-id tables of nmap's scripts print for a matching vendor id.
func (r *personaRun) vendorWord() string {
	return strings.FieldsFunc(r.id.Vendor, func(c rune) bool { return c == ' ' || c == ',' || c == '/' })[0]
}

func (r *personaRun) driveS7(t *testing.T) {
	out := peRun(t, r.tools.nmap, "-Pn", "-n", "-sT", "-p", strconv.Itoa(r.ports["s7comm"]), "--script", "+s7-info", "127.0.0.1")
	peWant(t, "nmap s7-info", out,
		"Module: "+r.id.OrderNumber,
		"Basic Hardware: "+r.id.OrderNumber,
		"Version: "+strings.TrimPrefix(r.id.Firmware, "V"),
		"System Name: "+r.id.ModuleName,
		"Module Type: "+r.id.Model,
		"Serial Number: "+r.id.Serial,
		"Copyright: "+r.id.Copyright)
}

func (r *personaRun) driveModbus(t *testing.T) {
	port := strconv.Itoa(r.ports["modbus"])
	cfg := r.configs["modbus"].(*modbus.Config)

	// modbus-discover runs on 502 or a port nmap-services calls "modbus".
	datadir := t.TempDir()
	if err := os.WriteFile(filepath.Join(datadir, "nmap-services"), []byte("modbus\t"+port+"/tcp\t0.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := peRun(t, r.tools.nmap, "-n", "-Pn", "-sT", "--datadir", datadir, "-p", port, "--script", "modbus-discover", "127.0.0.1")
	productCode := r.id.ProductCode
	if productCode == "" {
		productCode = r.id.OrderNumber
	}
	// A device without Read Device Identification (the S7-1200's MB_SERVER) names
	// nobody: modbus-discover reports the refusal of its first request (FC 17).
	devID := slices.Contains(cfg.FunctionCodes, modbus.FuncEncapsulatedInterface)
	if devID {
		peWant(t, "nmap modbus-discover", out,
			"Device identification: "+r.id.Vendor+" "+productCode+" "+r.id.Firmware)
	} else if strings.Contains(out, "Device identification") || strings.Contains(out, r.id.Vendor) {
		t.Errorf("nmap modbus-discover identifies a device without FC 43:\n%s", out)
	}

	// pymodbus reads the persona's first static holding-register block with FC 3, and
	// the same addresses with FC 4: equal when the persona mirrors them (Modicon %MW).
	var blk *modbus.Block
	for i, b := range cfg.HoldingRegisters {
		if b.Behavior == nil && (b.Type == "" || b.Type == "uint16") && len(b.Values) > 0 {
			blk = &cfg.HoldingRegisters[i]
			break
		}
	}
	if blk == nil {
		t.Fatal("persona has no static uint16 holding register block to read")
	}
	unit := 1
	if len(cfg.UnitIDs) > 0 {
		unit = int(cfg.UnitIDs[0])
	}
	script := fmt.Sprintf(`
from pymodbus.client import ModbusTcpClient
from pymodbus.mei_message import ReadDeviceInformationRequest
c = ModbusTcpClient("127.0.0.1", port=%s, timeout=3, retries=0)
assert c.connect()
r = c.read_holding_registers(%d, %d, slave=%d)
assert not r.isError(), r
print("hr", *r.registers)
r = c.read_input_registers(%d, %d, slave=%d)
print("ir", *(["error"] if r.isError() else r.registers))
r = c.execute(ReadDeviceInformationRequest(read_code=2, object_id=0, unit=%d))
if r.isError():
    print("devid exception", r.exception_code)
else:
    for k, v in sorted(r.information.items()):
        print("obj", k, v.decode())
c.close()
`, port, blk.Address, len(blk.Values), unit, blk.Address, len(blk.Values), unit, unit)
	pyOut := peRun(t, r.tools.python, "-c", script)
	var want []string
	for _, v := range blk.Values {
		want = append(want, strconv.Itoa(int(v)))
	}
	peWant(t, "pymodbus", pyOut, "hr "+strings.Join(want, " "))
	if devID {
		peWant(t, "pymodbus", pyOut, "obj 0 "+r.id.Vendor, "obj 4 "+r.id.Product, "obj 5 "+r.id.Model)
	} else {
		peWant(t, "pymodbus", pyOut, "devid exception 1\n") // illegal function
	}
	mirrored := len(cfg.InputRegisters) == len(cfg.HoldingRegisters)
	for i := 0; mirrored && i < len(cfg.InputRegisters); i++ {
		mirrored = cfg.InputRegisters[i].Address == cfg.HoldingRegisters[i].Address && cfg.InputRegisters[i].Name == cfg.HoldingRegisters[i].Name
	}
	if mirrored {
		peWant(t, "pymodbus FC 4 of a mirrored map", pyOut, "ir "+strings.Join(want, " "))
	}
}

func (r *personaRun) driveSNMP(t *testing.T) {
	cfg := r.configs["snmp"].(*snmp.Config)
	out := peRun(t, r.tools.snmpget, "-v2c", "-c", cfg.Community, "-Oqvn", "-r", "1", "-t", "3",
		fmt.Sprintf("127.0.0.1:%d", r.ports["snmp"]),
		"1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.7.0", "1.3.6.1.2.1.2.1.0")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{r.id.Description, "." + r.id.SysObjectID, r.id.Hostname, r.id.Location,
		strconv.Itoa(cfg.SysServices), strconv.Itoa(len(cfg.Interfaces))}
	if len(lines) != len(want) {
		t.Fatalf("snmpget: %d values, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if got := strings.Trim(lines[i], `"`); got != w {
			t.Errorf("snmpget value %d = %q, want %q", i+1, got, w)
		}
	}
	if r.id.Serial != "" && strings.Contains(r.p.Identity.Description, "{serial}") && !strings.Contains(lines[0], r.id.Serial) {
		t.Errorf("sysDescr %q lacks the install's serial %q", lines[0], r.id.Serial)
	}
}

// webPage is a page of a persona's site that must show the install's identity.
var peWebPages = map[string]struct {
	path  string
	login string // a login form target to post a failing attempt to
	// nmapSV is what nmap's service detection must call the web server: the real
	// device's entry of nmap-service-probes.
	nmapSV string
}{
	"siemens-s7-1200":            {path: "/Portal/Portal.mwsl?PriNav=Ident", login: "/FormLogin", nmapSV: "Siemens Simatic S7-1200 PLC httpd"},
	"schneider-m340":             {path: "/index.htm", nmapSV: "http    Schneider-WEB 2.1.4"},
	"rockwell-compactlogix-5380": {path: "/index.html"},
	"tridium-jace-8000":          {path: "/prelogin", login: "/j_security_check", nmapSV: "http    Tridium Niagara 4"},
}

func (r *personaRun) driveHTTP(t *testing.T) {
	cfg := r.configs["http"].(*phttp.Config)
	page, ok := peWebPages[r.name]
	if !ok {
		t.Fatalf("no identity page listed for persona %s", r.name)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", r.ports["http"])
	tr := &http.Transport{MaxConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(method, path string, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		if got := resp.Header.Get("Server"); got != cfg.Server {
			t.Errorf("%s %s: Server %q, want %q", method, path, got, cfg.Server)
		}
		if got := resp.Header.Get("Date") != ""; got != cfg.Date {
			t.Errorf("%s %s: Date header present %v, persona says %v", method, path, got, cfg.Date)
		}
		return resp, string(b)
	}

	// "/" as the persona's site defines it (a redirect on every persona here).
	var root *phttp.Page
	for i := range cfg.Pages {
		if cfg.Pages[i].Path == "/" {
			root = &cfg.Pages[i]
			break
		}
	}
	if root == nil {
		t.Fatal("the persona's site has no /")
	}
	resp, _ := get("GET", "/", nil)
	if want := peOr(root.Status, 200); resp.StatusCode != want {
		t.Errorf("GET /: %s, want %d", resp.Status, want)
	}
	for _, h := range root.Headers {
		k, v, _ := strings.Cut(h, ":")
		if got := resp.Header.Get(k); got != strings.TrimSpace(v) {
			t.Errorf("GET /: %s %q, want %q", k, got, strings.TrimSpace(v))
		}
	}

	resp, body := get("GET", page.path, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", page.path, resp.Status)
	}
	peWant(t, "GET "+page.path, body, r.id.Model)
	if page.login == "" {
		peWant(t, "GET "+page.path, body, r.id.Serial)
	} else {
		peWant(t, "GET "+page.path, body, r.id.ModuleName)
		var lg *phttp.Login
		for i := range cfg.Pages {
			if cfg.Pages[i].Path == page.login && cfg.Pages[i].Login != nil {
				lg = cfg.Pages[i].Login
			}
		}
		if lg == nil {
			t.Fatalf("no login page %s", page.login)
		}
		resp, body = get("POST", page.login, url.Values{lg.UsernameField: {"admin"}, lg.PasswordField: {"admin"}})
		if resp.StatusCode != 200 || !strings.Contains(body, `value="admin"`) {
			t.Errorf("POST %s: %s, want the failed-login page with the user name filled in:\n%s", page.login, resp.Status, body)
		}
	}

	if page.nmapSV != "" {
		out := peRun(t, r.tools.nmap, "-Pn", "-n", "-sT", "-sV", "-p", strconv.Itoa(r.ports["http"]), "127.0.0.1")
		peWant(t, "nmap -sV", out, page.nmapSV)
	}

	resp, _ = get("GET", "/robots.txt", nil)
	if resp.StatusCode != 404 {
		t.Errorf("GET /robots.txt: %s, want 404", resp.Status)
	}
	if ep, ok := cfg.ErrorPages[404]; ok && ep.Reason != "" && !strings.HasSuffix(resp.Status, ep.Reason) {
		t.Errorf("GET /robots.txt: status line %q, want reason %q", resp.Status, ep.Reason)
	}
}

func peOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func (r *personaRun) driveENIP(t *testing.T) {
	cfg := r.configs["enip"].(*enip.Config)
	revision := cfg.Revision
	if revision == "" {
		t.Fatal("persona enip section sets no revision")
	}
	major, minor, _ := strings.Cut(revision, ".")
	mi, _ := strconv.Atoi(minor)
	serial, err := strconv.ParseUint(r.id.Serial, 16, 32)
	if err != nil {
		t.Fatalf("serial %q is not the hex CIP serial: %v", r.id.Serial, err)
	}
	scans := [][2]string{{"-sT", "enip"}}
	if _, ok := r.specs["enip-udp"]; ok {
		scans = append(scans, [2]string{"-sU", "enip-udp"})
	}
	for _, s := range scans {
		out := peRun(t, r.tools.nmap, "-Pn", "-n", s[0], "-p", strconv.Itoa(r.ports[s[1]]), "--script", "+enip-info", "127.0.0.1")
		peWant(t, "nmap enip-info "+s[0], out,
			fmt.Sprintf("(%d)\n", cfg.DeviceType),
			fmt.Sprintf("productName: %s\n", r.id.Model),
			fmt.Sprintf("serialNumber: 0x%08x\n", serial),
			fmt.Sprintf("productCode: %d\n", cfg.ProductCode),
			fmt.Sprintf("revision: %s.%d\n", major, mi),
			"deviceIp: 127.0.0.1")
		if !regexp.MustCompile(`vendor: [^\n]*` + regexp.QuoteMeta(r.vendorWord()) + `[^\n]*\(` + strconv.Itoa(int(cfg.VendorID)) + `\)`).MatchString(out) {
			t.Errorf("nmap enip-info %s: vendor line does not name %s (%d):\n%s", s[0], r.vendorWord(), cfg.VendorID, out)
		}
		if !strings.Contains(out, "type: Programmable Logic Controller (14)") && cfg.DeviceType == 14 {
			t.Errorf("nmap enip-info %s: not a PLC:\n%s", s[0], out)
		}
	}
}

func (r *personaRun) driveBACnet(t *testing.T) {
	cfg := r.configs["bacnet"].(*bacnet.Config)
	out := peRun(t, r.tools.nmap, "-Pn", "-n", "-sU", "-p", strconv.Itoa(r.ports["bacnet"]), "--script", "+bacnet-info", "127.0.0.1")
	peWant(t, "nmap bacnet-info", out,
		"Vendor Name: "+r.id.Vendor,
		"Firmware: "+r.id.Firmware,
		"Application Software: "+cfg.ApplicationSoftwareVersion,
		"Object Name: "+r.id.ModuleName,
		"Model Name: "+r.id.Model,
		"Description: "+r.id.Description,
		"Location: "+r.id.Location)
	if !regexp.MustCompile(`Vendor ID: [^\n]*` + regexp.QuoteMeta(r.vendorWord()) + `[^\n]*\(` + strconv.Itoa(int(cfg.VendorID)) + `\)`).MatchString(out) {
		t.Errorf("nmap bacnet-info: the vendor id's name is not %s (%d):\n%s", r.vendorWord(), cfg.VendorID, out)
	}
}

// driveGuardian asks the tank gauge for its inventory report as a fuel-station
// attacker would (SOH I20100): the SOH ... ETX framed answer carries the station header
// from the persona and every tank's product label.
func (r *personaRun) driveGuardian(t *testing.T) {
	cfg := r.configs["guardian_ast"].(*guardian.Config)
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.ports["guardian_ast"]), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("\x01I20100\n")); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadBytes(0x03)
	if err != nil {
		t.Fatalf("no ETX-terminated answer: %v (%q)", err, reply)
	}
	if reply[0] != 0x01 {
		t.Errorf("answer does not start with SOH: %q", reply)
	}
	wants := []string{"I20100", "IN-TANK INVENTORY", r.id.ModuleName}
	for _, tank := range cfg.Tanks {
		wants = append(wants, tank.Product)
	}
	peWant(t, "inventory report", string(reply), wants...)
}

func (r *personaRun) driveIEC104(t *testing.T) {
	cfg := r.configs["iec104"].(*iec104.Config)
	objects := 0 // a station interrogation returns every point but the integrated totals
	for _, p := range cfg.Points {
		if !strings.HasPrefix(p.Type, "M_IT_") {
			objects++
		}
	}
	out := peRun(t, r.tools.nmap, "-Pn", "-n", "-sT", "-p", strconv.Itoa(r.ports["iec104"]), "--script", "+iec-identify", "127.0.0.1")
	peWant(t, "nmap iec-identify", out,
		fmt.Sprintf("ASDU address: %d\n", cfg.CommonAddress),
		fmt.Sprintf("Information objects: %d\n", objects))
}

// driveDNP3 is a DNP3 master written here from IEEE 1815: link status, the device
// attributes (g0v254) and a class 0 read, each checked against the persona.
func (r *personaRun) driveDNP3(t *testing.T) {
	cfg := r.configs["dnp3"].(*dnp3.Config)
	// The CRC must reproduce a frame of opendnp3's unit tests before we trust it.
	if got := peDNP3Frame(0xC0, 0x0001, 0x0400, nil); !bytes.Equal(got, []byte{0x05, 0x64, 0x05, 0xC0, 0x01, 0x00, 0x00, 0x04, 0xE9, 0x21}) {
		t.Fatalf("DNP3 CRC: frame % X", got)
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.ports["dnp3"]), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	m := &peDNP3Master{c: conn, r: bufio.NewReader(conn), dst: cfg.Address, src: 1}

	// REQUEST_LINK_STATUS → LINK_STATUS from the outstation's address.
	if _, err := conn.Write(peDNP3Frame(0xC9, m.dst, m.src, nil)); err != nil {
		t.Fatal(err)
	}
	ctrl, dst, src, _, err := m.readFrame()
	if err != nil {
		t.Fatalf("link status: %v", err)
	}
	if ctrl != 0x0B || dst != m.src || src != m.dst {
		t.Fatalf("link status answer: control %#02x from %d to %d, want 0x0B from %d to %d", ctrl, src, dst, m.dst, m.src)
	}

	// READ g0v254: every device attribute.
	attrs, err := m.request([]byte{0x01, 0x00, 0xFE, 0x06})
	if err != nil {
		t.Fatalf("read device attributes: %v", err)
	}
	for _, w := range []string{r.id.Vendor, r.id.Serial, r.id.Firmware, r.id.Hostname, r.id.Location, r.id.Product} {
		if !bytes.Contains(attrs, []byte(w)) {
			t.Errorf("device attributes lack %q: % X", w, attrs)
		}
	}

	// READ g60v1: class 0, the static values of every point.
	resp, err := m.request([]byte{0x01, 0x3C, 0x01, 0x06})
	if err != nil {
		t.Fatalf("class 0 read: %v", err)
	}
	if resp[2]&0x06 != 0 || resp[3]&0x07 != 0 {
		t.Errorf("class 0 response IIN % X: object unknown / parameter error / not supported", resp[2:4])
	}
	objs, err := peParseStatic(resp[4:])
	if err != nil {
		t.Fatalf("class 0 response: %v (% X)", err, resp)
	}
	for _, c := range []struct {
		group byte
		n     int
	}{{1, len(cfg.BinaryInputs)}, {10, len(cfg.BinaryOutputs)}, {20, len(cfg.Counters)}, {30, len(cfg.AnalogInputs)}, {40, len(cfg.AnalogOutputs)}} {
		if got := len(objs[c.group]); got != c.n {
			t.Errorf("class 0: %d objects of group %d, persona has %d", got, c.group, c.n)
		}
	}
	for i, ai := range cfg.AnalogInputs {
		if i < len(objs[30]) && math.Abs(objs[30][i]-ai.Value) > ai.Amplitude+1 {
			t.Errorf("analog input %d %q = %v, persona says %v ± %v", i, ai.Name, objs[30][i], ai.Value, ai.Amplitude)
		}
	}
	for i, bi := range cfg.BinaryInputs {
		if i < len(objs[1]) && (objs[1][i] != 0) != bi.Value {
			t.Errorf("binary input %d %q = %v, persona says %v", i, bi.Name, objs[1][i], bi.Value)
		}
	}
	for i, c := range cfg.Counters {
		if i < len(objs[20]) && objs[20][i] < c.Value {
			t.Errorf("counter %d %q = %v, below the persona's %v", i, c.Name, objs[20][i], c.Value)
		}
	}
}

func peDNP3CRC(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA6BC
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

func peAppendCRC(b, over []byte) []byte {
	c := peDNP3CRC(over)
	return append(b, byte(c), byte(c>>8))
}

// dnp3Frame is one link-layer frame with its header and block CRCs.
func peDNP3Frame(ctrl byte, dst, src uint16, user []byte) []byte {
	h := []byte{0x05, 0x64, byte(5 + len(user)), ctrl, byte(dst), byte(dst >> 8), byte(src), byte(src >> 8)}
	f := peAppendCRC(h, h)
	for len(user) > 0 {
		n := min(16, len(user))
		f = append(f, user[:n]...)
		f = peAppendCRC(f, user[:n])
		user = user[n:]
	}
	return f
}

type peDNP3Master struct {
	c        net.Conn
	r        *bufio.Reader
	dst, src uint16
	seq      byte
}

func (m *peDNP3Master) readFrame() (ctrl byte, dst, src uint16, data []byte, err error) {
	h := make([]byte, 10)
	if _, err = io.ReadFull(m.r, h); err != nil {
		return
	}
	if h[0] != 0x05 || h[1] != 0x64 || h[2] < 5 || binary.LittleEndian.Uint16(h[8:]) != peDNP3CRC(h[:8]) {
		err = fmt.Errorf("bad link header % X", h)
		return
	}
	ctrl, dst, src = h[3], binary.LittleEndian.Uint16(h[4:]), binary.LittleEndian.Uint16(h[6:])
	for n := int(h[2]) - 5; n > 0; {
		k := min(16, n)
		blk := make([]byte, k+2)
		if _, err = io.ReadFull(m.r, blk); err != nil {
			return
		}
		if binary.LittleEndian.Uint16(blk[k:]) != peDNP3CRC(blk[:k]) {
			err = fmt.Errorf("bad block CRC % X", blk)
			return
		}
		data = append(data, blk[:k]...)
		n -= k
	}
	return
}

// request sends one application request (function code and objects) in an unconfirmed
// user data frame and returns the reassembled response fragment.
func (m *peDNP3Master) request(fcObjects []byte) ([]byte, error) {
	seq := m.seq & 0x0F
	m.seq++
	app := append([]byte{0xC0 | seq}, fcObjects...)
	user := append([]byte{0xC0 | (seq & 0x3F)}, app...) // transport FIR|FIN
	if _, err := m.c.Write(peDNP3Frame(0xC4, m.dst, m.src, user)); err != nil {
		return nil, err
	}
	var frag []byte
	for {
		ctrl, _, src, data, err := m.readFrame()
		if err != nil {
			return nil, err
		}
		if ctrl&0x40 == 0 || ctrl&0x0F != 4 || src != m.dst || len(data) == 0 {
			continue // link-layer frames (keep-alive) are not part of the answer
		}
		th := data[0]
		if th&0x40 != 0 {
			frag = frag[:0]
		}
		frag = append(frag, data[1:]...)
		if th&0x80 != 0 {
			break
		}
	}
	if len(frag) < 4 || frag[1] != 0x81 || frag[0]&0x0F != seq {
		return nil, fmt.Errorf("not the response to sequence %d: % X", seq, frag)
	}
	return frag, nil
}

// parseStatic reads the static objects of a response: binary values as 0/1, counters
// and analog values as numbers, by group.
func peParseStatic(b []byte) (map[byte][]float64, error) {
	out := map[byte][]float64{}
	for len(b) > 0 {
		if len(b) < 3 {
			return nil, errors.New("short object header")
		}
		g, v, q := b[0], b[1], b[2]
		var start, stop, hl int
		switch q {
		case 0x00:
			if len(b) < 5 {
				return nil, errors.New("short range")
			}
			start, stop, hl = int(b[3]), int(b[4]), 5
		case 0x01:
			if len(b) < 7 {
				return nil, errors.New("short range")
			}
			start, stop, hl = int(binary.LittleEndian.Uint16(b[3:])), int(binary.LittleEndian.Uint16(b[5:])), 7
		default:
			return nil, fmt.Errorf("g%dv%d: qualifier %#02x", g, v, q)
		}
		n := stop - start + 1
		b = b[hl:]
		var size int
		switch {
		case (g == 1 || g == 10) && v == 2:
			size = 1
		case (g == 1 || g == 10) && v == 1:
			size = 0 // packed bits
		case (g == 20 || g == 30 || g == 40) && v == 1:
			size = 5
		case (g == 20 || g == 30 || g == 40) && v == 2:
			size = 3
		default:
			return nil, fmt.Errorf("g%dv%d: variation not parsed here", g, v)
		}
		if size == 0 {
			nb := (n + 7) / 8
			if len(b) < nb {
				return nil, errors.New("short packed bits")
			}
			for i := range n {
				out[g] = append(out[g], float64(b[i/8]>>(i%8)&1))
			}
			b = b[nb:]
			continue
		}
		if len(b) < n*size {
			return nil, fmt.Errorf("g%dv%d: %d objects need %d octets, have %d", g, v, n, n*size, len(b))
		}
		for i := range n {
			o := b[i*size : (i+1)*size]
			switch {
			case size == 1:
				out[g] = append(out[g], float64(o[0]>>7&1)) // g1v2/g10v2: state is bit 7
			case size == 3:
				out[g] = append(out[g], float64(int16(binary.LittleEndian.Uint16(o[1:]))))
			case g == 20:
				out[g] = append(out[g], float64(binary.LittleEndian.Uint32(o[1:])))
			default:
				out[g] = append(out[g], float64(int32(binary.LittleEndian.Uint32(o[1:]))))
			}
		}
		b = b[n*size:]
	}
	return out, nil
}

// checkSessions compares the stored sessions with the client connections of the
// reference capture and checks each session's bundle and pcap.
func (r *personaRun) checkSessions(t *testing.T, bin, dir, ref string) {
	want := peRefConnections(t, ref)
	list := sessionsList(t, bin, []string{"--data", dir})
	byPort := map[string]string{} // "tcp/PORT" -> service
	for svc, port := range r.ports {
		byPort[string(r.specs[svc].Transport)+"/"+strconv.Itoa(port)] = svc
	}

	got := map[string][]string{}
	for _, s := range list {
		_, port, _ := strings.Cut(s.Server, ":")
		key := s.Transport + "/" + port
		svc, ok := byPort[key]
		if !ok {
			t.Errorf("session %s on %s/%s: no service of the persona there", s.SessionID, s.Transport, s.Server)
			continue
		}
		got[key] = append(got[key], s.Client)
		if s.Protocol != svc {
			t.Errorf("session %s on the %s port: bundle says protocol %q", s.SessionID, svc, s.Protocol)
		}
	}
	for key, svc := range byPort {
		w, g := want[key], got[key]
		sort.Strings(w)
		sort.Strings(g)
		if len(w) == 0 {
			t.Errorf("%s (%s): the clients made no connection", svc, key)
		}
		if !slices.Equal(w, g) {
			t.Errorf("%s (%s): sessions from %v, client connections from %v (want one session per connection)", svc, key, g, w)
		}
		t.Logf("%s: %d client connections, %d sessions", svc, len(w), len(g))
	}

	var mu sync.Mutex
	layers := map[string]map[string]bool{} // service -> layers seen in its sessions
	t.Run("sessions", func(t *testing.T) {
		for _, s := range list {
			_, port, _ := strings.Cut(s.Server, ":")
			svc := byPort[s.Transport+"/"+port]
			if svc == "" {
				continue
			}
			t.Run(svc+"_"+s.SessionID[:8], func(t *testing.T) {
				t.Parallel()
				seen := r.checkSession(t, dir, svc, s)
				mu.Lock()
				defer mu.Unlock()
				if layers[svc] == nil {
					layers[svc] = map[string]bool{}
				}
				for l := range seen {
					layers[svc][l] = true
				}
			})
		}
	})
	for svc := range r.ports {
		if deep := peDissectors[svc].deep; !layers[svc][deep] {
			t.Errorf("%s: no session shows the %s layer in tshark", svc, deep)
		}
	}
}

// checkSession checks one session's bundle and pcap and returns the protocol layers
// tshark found in it.
func (r *personaRun) checkSession(t *testing.T, dir, svc string, s sensor.SessionInfo) map[string]bool {
	spec := r.specs[svc]
	// The bundle names the protocol in the ICS extension and the service in the
	// network-traffic object.
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(s.BundleKey)))
	if err != nil {
		t.Fatal(err)
	}
	var bundle struct {
		Objects []map[string]any `json:"objects"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatalf("bundle: %v", err)
	}
	named := false
	for _, o := range bundle.Objects {
		if o["type"] == "network-traffic" {
			ps, _ := o["protocols"].([]any)
			named = slices.Contains(ps, any(spec.Service))
		}
	}
	if !named || !bytes.Contains(b, []byte(`"protocol":"`+svc+`"`)) {
		t.Errorf("bundle %s does not name protocol %s / service %s", s.BundleKey, svc, spec.Service)
	}

	if len(s.PCAPs) != 1 {
		t.Fatalf("%d pcaps, want 1", len(s.PCAPs))
	}
	pcap := filepath.Join(dir, filepath.FromSlash(s.PCAPs[0].Key))
	if frames := readFrames(t, pcap); int64(len(frames)) != s.Packets {
		t.Errorf("pcap has %d packets, incident says %d", len(frames), s.Packets)
	}
	d := peDissectors[svc]
	var decode []string
	if d.decode != "" {
		decode = []string{"-d", fmt.Sprintf("%s.port==%d,%s", spec.Transport, r.ports[svc], d.decode)}
	}
	proto := "tcp"
	if spec.Transport == protocols.UDP {
		proto = "udp"
	}
	out, err := exec.Command(r.tools.tshark, append(append([]string{"-r", pcap}, decode...), "-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "frame.protocols", "-e", "_ws.expert.severity",
		"-e", proto+".srcport", "-e", "tcp.len", "-e", "udp.length")...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	type frame struct {
		num                      string
		layers                   []string
		bad, fromServer, payload bool
	}
	var frames []frame
	answered := false // the sensor sent payload: the exchange is the protocol's
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 6 {
			t.Fatalf("tshark line %q", line)
		}
		fr := frame{num: f[0], layers: strings.Split(f[1], ":"), fromServer: f[3] == strconv.Itoa(r.ports[svc])}
		fr.bad = slices.Contains(fr.layers, "_ws.malformed")
		for _, sev := range strings.Split(f[2], ",") {
			if n, err := strconv.Atoi(sev); err == nil && n >= 0x800000 { // PI_ERROR and above
				fr.bad = true
			}
		}
		tcpLen, _ := strconv.Atoi(f[4])
		udpLen, _ := strconv.Atoi(f[5])
		fr.payload = tcpLen > 0 || udpLen > 8
		if fr.payload && fr.fromServer {
			answered = true
		}
		for _, l := range fr.layers {
			seen[l] = true
		}
		frames = append(frames, fr)
	}
	// What the sensor sends must always dissect cleanly; what a client sends must too
	// once the sensor has taken it for the protocol. A probe the sensor left unanswered
	// (nmap's RPC payload to a high UDP port, a port-scan connection) may be anything.
	for _, fr := range frames {
		if fr.bad && (fr.fromServer || answered) {
			from := "client"
			if fr.fromServer {
				from = "sensor"
			}
			t.Errorf("frame %s (from the %s) is malformed or has an expert error: %s", fr.num, from, strings.Join(fr.layers, ":"))
		}
	}
	if answered && !seen[d.layer] {
		t.Errorf("the sensor answered but tshark finds no %s layer (decode-as %s)", d.layer, decode)
	}
	if answered && s.Events == 0 {
		t.Errorf("the sensor answered but the session has no event")
	}
	if t.Failed() {
		detail, _ := exec.Command(r.tools.tshark, append(append([]string{"-r", pcap}, decode...), "-V")...).CombinedOutput()
		t.Logf("tshark -V of %s (client %s):\n%s", pcap, s.Client, detail)
	}
	return seen
}

// peRefConnections returns, by "tcp/PORT" or "udp/PORT" of the destination, the source
// endpoints of the reference capture: TCP connections whose handshake the client
// completed (an ACK without SYN or RST), UDP flows that sent a datagram to the port.
// Only the keys of the services are client connections; the others are the answers.
func peRefConnections(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if rd.LinkType() != 1 {
		t.Fatalf("reference capture link type %d, want Ethernet", rd.LinkType())
	}
	seen := map[string]map[string]bool{}
	add := func(key, client string) {
		if seen[key] == nil {
			seen[key] = map[string]bool{}
		}
		seen[key][client] = true
	}
	for {
		data, _, err := rd.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(data) < 14+20 || binary.BigEndian.Uint16(data[12:]) != 0x0800 {
			continue
		}
		ip := data[14:]
		ihl := int(ip[0]&0x0F) * 4
		if len(ip) < ihl+14 {
			continue
		}
		src := net.IP(ip[12:16]).String()
		l4 := ip[ihl:]
		sport, dport := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		switch ip[9] {
		case 6:
			if fl := l4[13]; fl&0x10 != 0 && fl&0x06 == 0 { // ACK, no SYN, no RST
				add("tcp/"+strconv.Itoa(int(dport)), net.JoinHostPort(src, strconv.Itoa(int(sport))))
			}
		case 17:
			add("udp/"+strconv.Itoa(int(dport)), net.JoinHostPort(src, strconv.Itoa(int(sport))))
		}
	}
	out := map[string][]string{}
	for key, m := range seen {
		for c := range m {
			out[key] = append(out[key], c)
		}
	}
	return out
}
