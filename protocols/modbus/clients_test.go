package modbus

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// These tests drive the handler, served on loopback the way the sensor serves it,
// with real Modbus clients: mbpoll (libmodbus), pymodbus 3.0.0rc1 and nmap's
// modbus-discover script.

func serveReal(t *testing.T) (*protocoltest.Server, *Handler) {
	t.Helper()
	h, err := New(protocoltest.Env(t, testIdentity()), NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	return protocoltest.ServeTCP(t, "127.0.0.1:0", h), h
}

func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitEvents waits until the server has recorded n events: the handler emits after
// the client has its answer.
func waitEvents(t *testing.T, srv *protocoltest.Server, n int) []protocols.Event {
	t.Helper()
	evs, _ := srv.WaitEvents(3*time.Second, func(evs []protocols.Event) bool { return len(evs) >= n })
	return evs
}

var mbpollValue = regexp.MustCompile(`(?m)^\[(\d+)\]:\s+(-?[0-9.]+)`)

// mbpollValues parses mbpoll's "[ref]: value" lines.
func mbpollValues(t *testing.T, out string) map[int]string {
	t.Helper()
	vals := map[int]string{}
	for _, m := range mbpollValue.FindAllStringSubmatch(out, -1) {
		ref, _ := strconv.Atoi(m[1])
		vals[ref] = m[2]
	}
	return vals
}

func TestMbpoll(t *testing.T) {
	mbpoll := testenv.LookPath(t, "mbpoll")
	srv, _ := serveReal(t)
	port := strconv.Itoa(int(srv.Addr.Port()))
	base := []string{"-m", "tcp", "-p", port, "-a", "1", "-o", "2"}
	poll := func(args ...string) string {
		return run(t, 20*time.Second, mbpoll, append(append(append([]string{}, base...), args...), "127.0.0.1")...)
	}

	// Holding registers 1..10 (addresses 0..9): the default setpoints, PID gains
	// and the heartbeat counter.
	out := poll("-r", "1", "-c", "10", "-1")
	t.Logf("mbpoll output:\n%s", out)
	vals := mbpollValues(t, out)
	for ref, want := range map[int]string{1: "650", 2: "1250", 3: "450", 4: "300", 5: "900", 6: "120", 7: "120", 8: "35", 9: "5"} {
		if vals[ref] != want {
			t.Errorf("holding register %d = %q, want %s\n%s", ref, vals[ref], want, out)
		}
	}
	if hb, err := strconv.Atoi(vals[10]); err != nil || hb < 3500 || hb > 3700 {
		t.Errorf("heartbeat = %q, want seconds since boot (about 3600)", vals[10])
	}

	// Write two registers with FC 16, then read them back in a new connection.
	if out := run(t, 20*time.Second, mbpoll, append(append([]string{}, base...), "-r", "1", "127.0.0.1", "123", "456")...); !strings.Contains(out, "Written 2 references") {
		t.Errorf("write: %s", out)
	}
	vals = mbpollValues(t, poll("-r", "1", "-c", "2", "-1"))
	if vals[1] != "123" || vals[2] != "456" {
		t.Errorf("after write: %v", vals)
	}

	// Coils, and the float32 line voltages in input registers 11..16.
	vals = mbpollValues(t, poll("-t", "0", "-r", "3", "-c", "4", "-1"))
	if vals[3] != "1" || vals[4] != "0" || vals[5] != "1" || vals[6] != "1" {
		t.Errorf("coils 3..6: %v", vals)
	}
	out = poll("-t", "3:float", "-B", "-r", "11", "-c", "3", "-1")
	for ref := 11; ref <= 15; ref += 2 {
		v, err := strconv.ParseFloat(mbpollValues(t, out)[ref], 64)
		if err != nil || v < 225 || v > 235 {
			t.Errorf("line voltage at %d = %v (%v)\n%s", ref, v, err, out)
		}
	}
	// Input register past the map: mbpoll reports the exception.
	cmd := exec.Command(mbpoll, append(append([]string{}, base...), "-t", "3", "-r", "40", "-c", "1", "-1", "127.0.0.1")...)
	out2, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out2), "Illegal data address") {
		t.Errorf("read past the map: %s", out2)
	}

	evs := waitEvents(t, srv, 6)
	if len(evs) != 6 {
		t.Fatalf("%d events, want 6: %+v", len(evs), evs)
	}
	var ops []string
	for _, e := range evs {
		ops = append(ops, e.Op)
	}
	want := []string{"read_holding_registers", "write_multiple_registers", "read_holding_registers", "read_coils", "read_input_registers", "read_input_registers"}
	if strings.Join(ops, ",") != strings.Join(want, ",") {
		t.Fatalf("ops %v, want %v", ops, want)
	}
	w := evs[1]
	if !w.Write || w.Address != 0 || w.Quantity != 2 || fmt.Sprintf("% x", w.Data) != "00 7b 01 c8" || w.Unit != 1 {
		t.Errorf("write event %+v", w)
	}
	if e := evs[5]; e.Exception != int(IllegalDataAddress) || e.Address != 39 {
		t.Errorf("exception event %+v", e)
	}
}

// pymodbusScript drives the server with the pymodbus 3.0.0rc1 synchronous client and
// prints what it read as JSON. In that version the mixin methods take slave= and the
// request classes take unit=; there is no read_device_information method.
const pymodbusScript = `
import json, sys
from pymodbus.client import ModbusTcpClient
from pymodbus.mei_message import ReadDeviceInformationRequest
from pymodbus.other_message import ReportSlaveIdRequest
from pymodbus.diag_message import ReturnQueryDataRequest, ReturnBusMessageCountRequest

c = ModbusTcpClient("127.0.0.1", port=int(sys.argv[1]), timeout=3, retries=0)
if not c.connect():
    sys.exit("connect failed")
out = {}
def check(r):
    if r.isError():
        sys.exit("error response: %r" % r)
    return r
out["coils_before"] = check(c.read_coils(2, 8, slave=1)).bits[:8]
check(c.write_coils(2, [False, True, True, False], slave=1))
out["coils_after"] = check(c.read_coils(2, 8, slave=1)).bits[:8]
check(c.write_register(20, 4242, slave=1))
check(c.write_registers(21, [1, 2, 3], slave=1))
out["holding"] = check(c.read_holding_registers(20, 4, slave=1)).registers
out["input"] = check(c.read_input_registers(5, 5, slave=1)).registers
out["discrete"] = check(c.read_discrete_inputs(0, 4, slave=1)).bits[:4]
rw = check(c.readwrite_registers(read_address=30, read_count=2, write_address=31, write_registers=[7], unit=1))
out["readwrite"] = rw.registers
check(c.mask_write_register(address=30, and_mask=0x00F2, or_mask=0x0025, unit=1))
out["masked"] = check(c.read_holding_registers(30, 1, slave=1)).registers
out["echo"] = list(check(c.execute(ReturnQueryDataRequest(message=[0xA537, 0x1234], unit=1))).message)
out["bus_count"] = check(c.execute(ReturnBusMessageCountRequest(unit=1))).message[0]
for code in (1, 2):
    r = check(c.execute(ReadDeviceInformationRequest(read_code=code, object_id=0, unit=1)))
    out["devid_%d" % code] = {str(k): v.decode() for k, v in r.information.items()}
    out["conformity_%d" % code] = r.conformity
r = check(c.execute(ReportSlaveIdRequest(unit=1)))
out["server_id"] = r.identifier.hex()
exc = c.read_holding_registers(5000, 1, slave=1)
out["exception"] = exc.exception_code if exc.isError() else None
c.close()
print(json.dumps(out))
`

func TestPymodbus(t *testing.T) {
	py := testenv.Python(t)
	if err := exec.Command(py, "-c", "import pymodbus.client").Run(); err != nil {
		testenv.LookPath(t, "python3-pymodbus (import pymodbus.client failed)")
	}
	srv, _ := serveReal(t)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pymodbusScript), 0o600); err != nil {
		t.Fatal(err)
	}
	out := run(t, 30*time.Second, py, script, strconv.Itoa(int(srv.Addr.Port())))
	t.Logf("pymodbus output:\n%s", out)
	var got struct {
		CoilsBefore []bool            `json:"coils_before"`
		CoilsAfter  []bool            `json:"coils_after"`
		Holding     []int             `json:"holding"`
		Input       []int             `json:"input"`
		Discrete    []bool            `json:"discrete"`
		ReadWrite   []int             `json:"readwrite"`
		Masked      []int             `json:"masked"`
		Echo        []int             `json:"echo"`
		BusCount    int               `json:"bus_count"`
		DevID1      map[string]string `json:"devid_1"`
		DevID2      map[string]string `json:"devid_2"`
		Conformity1 int               `json:"conformity_1"`
		ServerID    string            `json:"server_id"`
		Exception   int               `json:"exception"`
	}
	if err := json.Unmarshal([]byte(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &got); err != nil {
		t.Fatalf("script output: %v\n%s", err, out)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Default coils 2..9 are 1 0 1 1 0 0 0 1; the write changes 2..5 to 0 1 1 0.
	check("coils before", got.CoilsBefore, []bool{true, false, true, true, false, false, false, true})
	check("coils after", got.CoilsAfter, []bool{false, true, true, false, false, false, false, true})
	check("holding", got.Holding, []int{4242, 1, 2, 3})
	check("input", got.Input, []int{0, 4012, 3996, 0, 27})
	check("discrete", got.Discrete, []bool{true, true, false, false})
	check("readwrite", got.ReadWrite, []int{0, 7}) // FC 23 writes before it reads
	check("masked", got.Masked, []int{0x25 &^ 0xF2})
	check("echo", got.Echo, []int{0xA537, 0x1234})
	check("basic objects", got.DevID1, map[string]string{"0": "Schneider Electric", "1": "BMX P34 2020", "2": "v3.20"})
	check("regular objects", got.DevID2, map[string]string{
		"0": "Schneider Electric", "1": "BMX P34 2020", "2": "v3.20",
		"3": "www.se.com", "4": "Modicon M340", "5": "BMX P34 2020", "6": "PS3_LIFT",
	})
	check("conformity", got.Conformity1, 0x82)
	check("exception", got.Exception, int(IllegalDataAddress))
	if !strings.HasPrefix(got.ServerID, "01ff") || !strings.Contains(got.ServerID, fmt.Sprintf("%x", "Modicon M340 BMX P34 2020")) {
		t.Errorf("server id data %s", got.ServerID)
	}
	// The bus counter includes the plant's own polling since boot (an hour at 2/s).
	if got.BusCount < 7200 || got.BusCount > 7400 {
		t.Errorf("bus message count %d, want about 7200 + this session", got.BusCount)
	}

	evs := waitEvents(t, srv, 17)
	if len(evs) != 17 {
		t.Errorf("%d events, want 17", len(evs))
	}
	ops := map[string]int{}
	for _, e := range evs {
		ops[e.Op]++
		if e.Unit != 1 || e.Protocol != "modbus" {
			t.Errorf("event %+v", e)
		}
	}
	for op, n := range map[string]int{
		"read_coils": 2, "write_multiple_coils": 1, "write_single_register": 1, "write_multiple_registers": 1,
		"read_holding_registers": 3, "read_input_registers": 1, "read_discrete_inputs": 1,
		"read_write_multiple_registers": 1, "mask_write_register": 1, "diagnostics": 2,
		"read_device_identification": 2, "report_server_id": 1,
	} {
		if ops[op] != n {
			t.Errorf("%d %s events, want %d (all: %v)", ops[op], op, n, ops)
		}
	}
}

// modbusDiscover runs nmap's modbus-discover against srv and returns its output.
func modbusDiscover(t *testing.T, nmap string, srv *protocoltest.Server) string {
	t.Helper()
	port := strconv.Itoa(int(srv.Addr.Port()))
	// modbus-discover runs on port 502 or on a port whose service is "modbus": a
	// data directory whose nmap-services names the test port so comes first in
	// nmap's search path (everything else falls back to the installed files).
	datadir := t.TempDir()
	if err := os.WriteFile(filepath.Join(datadir, "nmap-services"), []byte("modbus\t"+port+"/tcp\t0.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := run(t, 60*time.Second, nmap, "-n", "-Pn", "-sT", "--datadir", datadir,
		"-p", port, "--script", "modbus-discover", "127.0.0.1")
	t.Logf("nmap output:\n%s", out)
	return out
}

func TestNmapModbusDiscover(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	srv, _ := serveReal(t)
	out := modbusDiscover(t, nmap, srv)
	for _, want := range []string{
		"modbus-discover:",
		"sid 0x1:",
		"Slave ID data: \\x01\\xFFModicon M340 BMX P34 2020 v3.20",
		"Device identification: Schneider Electric BMX P34 2020 v3.20",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("nmap output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"error", "ERROR", "EXCEPTION"} {
		if strings.Contains(out, bad) {
			t.Errorf("nmap output has %q:\n%s", bad, out)
		}
	}
	evs := waitEvents(t, srv, 2)
	if len(evs) < 2 || evs[0].Op != "report_server_id" || evs[1].Op != "read_device_identification" {
		t.Errorf("events %+v", evs)
	}
}

// TestClientsWithoutIdentification drives a device with the function codes of the
// Siemens S7-1200 MB_SERVER instruction (no FC 17, 43, 22, 23; FC 8 echo and clear
// only) with nmap's modbus-discover and pymodbus: the scanner finds a Modbus device
// that names nobody, and every refused function is exception 01.
func TestClientsWithoutIdentification(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	py := testenv.Python(t)
	if err := exec.Command(py, "-c", "import pymodbus.client").Run(); err != nil {
		testenv.LookPath(t, "python3-pymodbus (import pymodbus.client failed)")
	}
	cfg := NewConfig()
	cfg.FunctionCodes = []uint8{1, 2, 3, 4, 5, 6, 8, 15, 16}
	cfg.DiagnosticSubFunctions = []uint16{0x00, 0x0A}
	h, err := New(protocoltest.Env(t, testIdentity()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := protocoltest.ServeTCP(t, "127.0.0.1:0", h)
	out := modbusDiscover(t, nmap, srv)
	// modbus-discover asks FC 17 first: the refusal is all it reports.
	for _, want := range []string{"sid 0x1:", "error: ILLEGAL FUNCTION"} {
		if !strings.Contains(out, want) {
			t.Errorf("nmap output lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"Device identification", "Slave ID data", "Schneider", "M340"} {
		if strings.Contains(out, bad) {
			t.Errorf("nmap output has %q:\n%s", bad, out)
		}
	}

	script := `
import sys
from pymodbus.client import ModbusTcpClient
from pymodbus.mei_message import ReadDeviceInformationRequest
from pymodbus.other_message import ReportSlaveIdRequest
from pymodbus.diag_message import ReturnQueryDataRequest, ReturnBusMessageCountRequest
c = ModbusTcpClient("127.0.0.1", port=int(sys.argv[1]), timeout=3, retries=0)
assert c.connect()
r = c.read_holding_registers(0, 2, slave=1)
print("fc3", *r.registers)
for name, req in [("fc43", ReadDeviceInformationRequest(read_code=1, object_id=0, unit=1)),
                  ("fc17", ReportSlaveIdRequest(unit=1)),
                  ("fc8-11", ReturnBusMessageCountRequest(unit=1))]:
    r = c.execute(req)
    print(name, "exception" if r.isError() else "answer", getattr(r, "function_code", "?"), getattr(r, "exception_code", "-"))
r = c.readwrite_registers(read_address=0, read_count=1, write_address=0, write_registers=[7], slave=1)
print("fc23", "exception" if r.isError() else "answer", r.function_code, getattr(r, "exception_code", "-"))
r = c.execute(ReturnQueryDataRequest(0xA537, unit=1))
print("fc8-0", "exception" if r.isError() else "answer", hex(r.message[0]) if not r.isError() else "-")
c.close()
`
	out = run(t, 30*time.Second, py, "-c", script, strconv.Itoa(int(srv.Addr.Port())))
	t.Logf("pymodbus output:\n%s", out)
	for _, want := range []string{
		"fc3 650 1250\n",
		"fc43 exception 171 1\n", // 0x80 | 43
		"fc17 exception 145 1\n",
		"fc8-11 exception 136 1\n",
		"fc23 exception 151 1\n",
		"fc8-0 answer 0xa537\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("pymodbus output lacks %q:\n%s", want, out)
		}
	}
}
