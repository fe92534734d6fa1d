package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/sensor"
)

// freeUDPPort returns a UDP port free on 127.0.0.1.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		p := freePort(t)
		c, err := netListenUDP(p)
		if err == nil {
			c.Close()
			return p
		}
	}
	t.Fatal("no free UDP port")
	return 0
}

// TestOneIdentityEverywhere runs the sensor on the S7-1200 persona and asks each
// protocol, with the real client an attacker would use, who the device is: S7 SZL
// (nmap s7-info), SNMP system MIB (net-snmp), Modbus device identification (pymodbus)
// and the web server (HTTP). Every answer must carry the same per-install identity.
func TestOneIdentityEverywhere(t *testing.T) {
	testenv.RequireRoot(t)
	nmap := testenv.LookPath(t, "nmap")
	snmpget := testenv.LookPath(t, "snmpget")
	py := testenv.Python(t)

	bin := buildBinary(t)
	dir := t.TempDir()
	mb, s7, web, snmp := freePort(t), freePort(t), freePort(t), freeUDPPort(t)
	sp := startSensor(t, bin, "--data", dir, "--listen", "127.0.0.1",
		"--port", fmt.Sprintf("modbus=%d", mb), "--port", fmt.Sprintf("s7comm=%d", s7),
		"--port", fmt.Sprintf("http=%d", web), "--port", fmt.Sprintf("snmp=%d", snmp))
	defer sp.stop(t)

	// The install's generated identity, as the sensor serves it.
	p, err := sensor.LoadPersona("siemens-s7-1200")
	if err != nil {
		t.Fatal(err)
	}
	id, err := sensor.InstallIdentity(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	serial, order, fw := id.Serial, id.OrderNumber, id.Firmware
	if serial == "" {
		t.Fatal("no generated serial in state.json")
	}

	t.Run("s7comm", func(t *testing.T) {
		out, err := exec.Command(nmap, "-Pn", "-n", "-sT", "-p", fmt.Sprint(s7), "--script", "+s7-info", "127.0.0.1").CombinedOutput()
		if err != nil {
			t.Fatalf("nmap: %v\n%s", err, out)
		}
		for _, w := range []string{"Module: " + order, "Serial Number: " + serial, "Version: " + strings.TrimPrefix(fw, "V"), "Module Type: " + p.Identity.Model} {
			if !strings.Contains(string(out), w) {
				t.Errorf("s7-info lacks %q:\n%s", w, out)
			}
		}
	})
	t.Run("snmp", func(t *testing.T) {
		out, err := exec.Command(snmpget, "-v2c", "-c", "public", "-Oqv", fmt.Sprintf("127.0.0.1:%d", snmp),
			"1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0").CombinedOutput()
		if err != nil {
			t.Fatalf("snmpget: %v\n%s", err, out)
		}
		for _, w := range []string{serial, order, strings.TrimPrefix(fw, "V"), p.Identity.Hostname} {
			if !strings.Contains(string(out), w) {
				t.Errorf("SNMP system group lacks %q:\n%s", w, out)
			}
		}
	})
	t.Run("modbus", func(t *testing.T) {
		// The S7-1200's Modbus server (MB_SERVER) has no device identification: a
		// real CPU answers illegal function, and so must the persona.
		script := fmt.Sprintf(`
from pymodbus.client import ModbusTcpClient
from pymodbus.mei_message import ReadDeviceInformationRequest
c = ModbusTcpClient("127.0.0.1", port=%d, timeout=3, retries=0)
assert c.connect()
r = c.execute(ReadDeviceInformationRequest(read_code=2, object_id=0, unit=1))
print("exception", r.exception_code if r.isError() else None)
r = c.read_holding_registers(0, 4, slave=1)
print("registers", not r.isError())
c.close()
`, mb)
		out, err := exec.Command(py, "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("pymodbus: %v\n%s", err, out)
		}
		for _, w := range []string{"exception 1", "registers True"} {
			if !strings.Contains(string(out), w) {
				t.Errorf("Modbus answers unlike the S7-1200's MB_SERVER, want %q:\n%s", w, out)
			}
		}
	})
	t.Run("http", func(t *testing.T) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/Portal/Portal.mwsl?PriNav=Ident", web))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, w := range []string{serial, order} {
			if !strings.Contains(string(body), w) {
				t.Errorf("identification page lacks %q (status %d)", w, resp.StatusCode)
			}
		}
	})
}

func netListenUDP(port int) (io.Closer, error) {
	return net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
}
