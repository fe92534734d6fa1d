package ipmi

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// These tests drive the handler, served on loopback the way the sensor serves UDP,
// with ipmitool's lanplus interface and nmap's IPMI scripts.

func serveReal(t *testing.T) *protocoltest.Server {
	t.Helper()
	cfg := NewConfig()
	cfg.SetupTimeout = time.Second
	cfg.Users = append(cfg.Users, User{Name: "operator", Password: "0per@tor!", Privilege: "operator"})
	h, err := New(protocoltest.Env(t, testIdentity()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return protocoltest.ServeUDP(t, "127.0.0.1:0", h)
}

// ipmitool runs ipmitool against srv and returns its output and error.
func ipmitool(t *testing.T, srv *protocoltest.Server, user, pass string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.LookPath(t, "ipmitool")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []string{"-I", "lanplus", "-H", "127.0.0.1", "-p", strconv.Itoa(int(srv.Addr.Port())), "-U", user, "-P", pass, "-R", "1", "-N", "2"}
	out, err := exec.CommandContext(ctx, bin, append(base, args...)...).CombinedOutput()
	return string(out), err
}

func mustIpmitool(t *testing.T, srv *protocoltest.Server, args ...string) string {
	t.Helper()
	out, err := ipmitool(t, srv, "ADMIN", "ADMIN", args...)
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestIpmitoolMcInfo(t *testing.T) {
	srv := serveReal(t)
	for _, suite := range []string{"", "3", "17"} {
		t.Run("cipher suite "+suite, func(t *testing.T) {
			args := []string{"mc", "info"}
			if suite != "" {
				args = append([]string{"-C", suite}, args...)
			}
			out := mustIpmitool(t, srv, args...)
			for _, want := range []string{
				"Device ID                 : 32",
				"Device Revision           : 1",
				"Firmware Revision         : 3.40",
				"IPMI Version              : 2.0",
				"Manufacturer ID           : 3833",
				"Chassis Device",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("mc info lacks %q:\n%s", want, out)
				}
			}
		})
	}
	evs := srv.Events()
	suites := map[string]bool{}
	for _, e := range evs {
		if e.Op == "open_session" {
			suites[e.Detail["cipher_suite"]] = true
		}
	}
	if !suites["3"] || !suites["17"] {
		t.Errorf("cipher suites used: %v", suites)
	}
	var logins, closes int
	for _, e := range evs {
		if e.Op == "rakp_3" && e.Detail["result"] == "success" && e.Detail["username"] == "ADMIN" {
			logins++
		}
		if e.Op == "close_session" && e.Exception == 0 {
			closes++
		}
	}
	if logins != 3 || closes != 3 {
		t.Errorf("%d logins and %d closed sessions, want 3 and 3", logins, closes)
	}
}

func TestIpmitoolChassis(t *testing.T) {
	srv := serveReal(t)
	out := mustIpmitool(t, srv, "chassis", "status")
	for _, want := range []string{"System Power         : on", "Power Restore Policy : previous", "Chassis Intrusion    : inactive", "Front Panel Control  : none"} {
		if !strings.Contains(out, want) {
			t.Errorf("chassis status lacks %q:\n%s", want, out)
		}
	}
	steps := []struct{ args, want string }{
		{"chassis power status", "Chassis Power is on"},
		{"chassis power off", "Chassis Power Control: Down/Off"},
		{"chassis power status", "Chassis Power is off"},
		{"chassis power on", "Chassis Power Control: Up/On"},
		{"chassis power status", "Chassis Power is on"},
		{"chassis power cycle", "Chassis Power Control: Cycle"},
		{"chassis power reset", "Chassis Power Control: Reset"},
		{"session info active", "privilege level               : ADMINISTRATOR"},
	}
	for _, s := range steps {
		out, err := ipmitool(t, srv, "ADMIN", "ADMIN", strings.Fields(s.args)...)
		if !strings.Contains(out, s.want) {
			t.Errorf("%s: %v\n%s", s.args, err, out)
		}
	}
	// A power cycle while off fails as the specification recommends (D5h).
	if out, err := ipmitool(t, srv, "ADMIN", "ADMIN", "chassis", "power", "off"); err != nil {
		t.Fatalf("power off: %v\n%s", err, out)
	}
	out, err := ipmitool(t, srv, "ADMIN", "ADMIN", "chassis", "power", "cycle")
	if err == nil || !strings.Contains(out, "Command not supported in present state") {
		t.Errorf("power cycle while off: %v\n%s", err, out)
	}
	// An operator may not raise the session to administrator, and without -L is
	// refused; at operator level it controls the chassis.
	out, err = ipmitool(t, srv, "operator", "0per@tor!", "chassis", "status")
	if err == nil || !strings.Contains(out, "Set Session Privilege Level to ADMINISTRATOR failed") {
		t.Errorf("operator at administrator level: %v\n%s", err, out)
	}
	out, err = ipmitool(t, srv, "operator", "0per@tor!", "-L", "OPERATOR", "chassis", "power", "on")
	if err != nil || !strings.Contains(out, "Up/On") {
		t.Errorf("operator power on: %v\n%s", err, out)
	}
	out, err = ipmitool(t, srv, "operator", "0per@tor!", "-L", "USER", "chassis", "power", "off")
	if err == nil || !strings.Contains(out, "Insufficient privilege level") {
		t.Errorf("user-level power off: %v\n%s", err, out)
	}
	var control []protocols.Event
	for _, e := range srv.Events() {
		if e.Op == "chassis_control" {
			control = append(control, e)
		}
	}
	if len(control) < 5 || control[0].Detail["action"] != "power_down" || !control[0].Write || control[0].Detail["power_after"] != "off" {
		t.Errorf("chassis control events %+v", control)
	}
}

func TestIpmitoolWrongCredentials(t *testing.T) {
	srv := serveReal(t)
	cases := []struct {
		name, user, pass string
	}{
		{"wrong password", "ADMIN", "admin"},
		{"unknown user", "root", "calvin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ipmitool(t, srv, tc.user, tc.pass, "mc", "info")
			if err == nil || !strings.Contains(out, "Unable to establish IPMI v2 / RMCP+ session") {
				t.Errorf("ipmitool with %s/%s: %v\n%s", tc.user, tc.pass, err, out)
			}
		})
	}
	// ipmitool stops after RAKP 2 when its HMAC does not match its password: the
	// session is reported as abandoned after the setup timeout.
	evs, abandoned := srv.WaitEvents(5*time.Second, func(evs []protocols.Event) bool {
		for _, e := range evs {
			if e.Op == "rakp_abandoned" && e.Detail["username"] == "ADMIN" {
				return true
			}
		}
		return false
	})
	var unknown bool
	for _, e := range evs {
		if e.Op == "rakp_1" && e.Detail["username"] == "root" && e.Exception == StatusUnauthorizedName {
			unknown = true
		}
		if e.Op == "get_device_id" {
			t.Errorf("a command ran without a session: %+v", e)
		}
	}
	if !abandoned || !unknown {
		t.Errorf("events %+v", evs)
	}
}

func TestNmapIPMI(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	srv := serveReal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The scripts' port rule wants port 623 or a detected asf-rmcp service; "+"
	// runs them on the test's port.
	out, err := exec.CommandContext(ctx, nmap, "-n", "-Pn", "-sU", "-p", strconv.Itoa(int(srv.Addr.Port())),
		"--script", "+ipmi-version,+ipmi-cipher-zero", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	t.Logf("nmap:\n%s", out)
	for _, want := range []string{"Version: ", "IPMI-2.0", "PassAuth: auth_msg, auth_user, non_null_user", "Level: 2.0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nmap output lacks %q", want)
		}
	}
	if strings.Contains(string(out), "VULNERABLE") || strings.Contains(string(out), "ERROR") {
		t.Errorf("nmap finds cipher zero accepted, or fails")
	}
}
