package bacnet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the persona of the tests; testInstance is its device instance
// (0x01d4e2), so the device's object identifier is 0x0201d4e2.
var testIdentity = protocols.Identity{
	Vendor:      "WAGO Kontakttechnik GmbH & Co. KG",
	Product:     "PFC200",
	Model:       "750-8212",
	Firmware:    "03.10.08(22)",
	Serial:      "1F3A7C92",
	ModuleName:  "AHU-3",
	Location:    "Plant room 2",
	Description: "AHU 3 controller",
}

const testInstance = 120034

var testNow = time.Date(2025, 3, 14, 9, 30, 15, 0, time.UTC)

func newHandler(t testing.TB, mod func(*Config)) *Handler {
	t.Helper()
	cfg := NewConfig()
	inst := uint32(testInstance)
	cfg.DeviceInstance = &inst
	if mod != nil {
		mod(cfg)
	}
	id := testIdentity
	env := protocoltest.Env(t, &id)
	env.Now = func() time.Time { return testNow }
	h, err := New(env, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// unhex decodes a hex string with spaces.
// str is the hex of an application-tagged UTF-8 CharacterString.
func str(s string) string {
	n := len(s) + 1
	if n <= 4 {
		return fmt.Sprintf("%02x00%x", 0x70|n, s)
	}
	return fmt.Sprintf("75%02x00%x", n, s)
}

// serve runs one datagram through h on a session from remote and returns the reply
// (nil for none) and the event.
func serve(t *testing.T, h *Handler, remote string, req []byte) ([]byte, protocols.Event) {
	t.Helper()
	s := protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:47808"), netip.MustParseAddrPort(remote))
	replies := serveOn(t, h, s, req)
	evs := s.Events()
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	if len(replies) > 1 {
		t.Fatalf("%d replies, want at most 1", len(replies))
	}
	if len(replies) == 0 {
		return nil, evs[0]
	}
	return replies[0], evs[0]
}

// serveOn runs one datagram through h on session s and returns the replies sent.
func serveOn(t *testing.T, h *Handler, s protocols.Session, req []byte) [][]byte {
	t.Helper()
	var replies [][]byte
	err := h.ServeDatagram(context.Background(), s, req, func(b []byte) error {
		replies = append(replies, append([]byte(nil), b...))
		return nil
	})
	if err != nil {
		t.Fatalf("ServeDatagram: %v", err)
	}
	return replies
}

const iAm = "1000 c40201d4e2 2205c4 9103 21de"

func TestServeDatagram(t *testing.T) {
	vendor := str(testIdentity.Vendor)
	tests := []struct {
		name    string
		req     string
		want    string // "" for no reply
		op      string
		area    string
		code    int
		exc     int
		noEvent bool
	}{
		// Who-Is / I-Am
		{name: "who-is without limits", req: "810b0008 0100 1008", want: "810a0014 0100 " + iAm, op: "who_is", code: 8},
		{name: "who-is in range", req: "810b0010 0100 1008 0b01d4c0 1b01fbd0", want: "810a0014 0100 " + iAm, op: "who_is", code: 8},
		{name: "who-is exact instance", req: "810b0010 0100 1008 0b01d4e2 1b01d4e2", want: "810a0014 0100 " + iAm, op: "who_is", code: 8},
		{name: "who-is out of range", req: "810b000c 0100 1008 0901 1964", op: "who_is", code: 8},
		{name: "who-is with one limit is ignored", req: "810b000a 0100 1008 0901", op: "who_is", code: 8},
		{name: "who-is unicast", req: "810a0008 0100 1008", want: "810a0014 0100 " + iAm, op: "who_is", code: 8},
		// Who-Has / I-Have
		{name: "who-has by name", req: "810b0013 0100 1007 3d0900 414855315f534154",
			want: "810a001d 0100 1001 c40201d4e2 c400000001 " + str("AHU1_SAT"), op: "who_has", code: 7, area: "AHU1_SAT"},
		{name: "who-has by object id", req: "810b000d 0100 1007 2c01400002",
			want: "810a0020 0100 1001 c40201d4e2 c401400002 " + str("AHU1_ENABLE"), op: "who_has", code: 7, area: "binary-value:2"},
		{name: "who-has the device by name", req: "810b0010 0100 1007 3d0600 4148552d33",
			want: "810a001a 0100 1001 c40201d4e2 c40201d4e2 " + str("AHU-3"), op: "who_has", code: 7},
		{name: "who-has unknown object", req: "810b000d 0100 1007 2c00000063", op: "who_has", code: 7, area: "analog-input:99"},
		{name: "who-has outside limits", req: "810b0011 0100 1007 0901 1964 2c00000001", op: "who_has", code: 7},
		// ReadProperty
		{name: "read object-name of the wildcard device (nmap bacnet-info)", req: "810a0011 0104 0005010c 0c023fffff 194d",
			want: "810a001a 0100 30010c 0c0201d4e2 194d 3e " + str("AHU-3") + " 3f", op: "read_property", code: 12, area: "device:4194303/object-name"},
		{name: "read vendor-identifier", req: "810a0011 0104 0005010c 0c0201d4e2 1978",
			want: "810a0014 0100 30010c 0c0201d4e2 1978 3e 21de 3f", op: "read_property", code: 12, area: "device:120034/vendor-identifier"},
		{name: "read vendor-name", req: "810a0011 0104 0005010c 0c0201d4e2 1979",
			want: "810a0036 0100 30010c 0c0201d4e2 1979 3e " + vendor + " 3f", op: "read_property", code: 12},
		{name: "read object-list length", req: "810a0013 0104 0005010c 0c0201d4e2 194c 2900",
			want: "810a0016 0100 30010c 0c0201d4e2 194c 2900 3e 210d 3f", op: "read_property", code: 12},
		{name: "read object-list element 3", req: "810a0013 0104 0005010c 0c0201d4e2 194c 2903",
			want: "810a0019 0100 30010c 0c0201d4e2 194c 2903 3e c400000002 3f", op: "read_property", code: 12},
		{name: "read object-list beyond the end", req: "810a0013 0104 0005010c 0c0201d4e2 194c 290e",
			want: "810a000d 0100 50010c 9102 912a", op: "read_property", code: 12, exc: 42},
		{name: "read whole object-list", req: "810a0011 0104 0005010c 0c0201d4e2 194c",
			want: "810a0053 0100 30010c 0c0201d4e2 194c 3e c40201d4e2 c400000001 c400000002 c400000003 c400000004 c400000005 c400800001 c400800002 c400c00001 c400c00002 c400c00003 c401400001 c401400002 3f",
			op:   "read_property", code: 12},
		{name: "read protocol-services-supported", req: "810a0011 0104 0005010c 0c0201d4e2 1961",
			want: "810a001b 0100 30010c 0c0201d4e2 1961 3e 8507 07 000b4830e800 3f", op: "read_property", code: 12},
		{name: "read protocol-object-types-supported", req: "810a0011 0104 0005010c 0c0201d4e2 1960",
			want: "810a001c 0100 30010c 0c0201d4e2 1960 3e 8508 01 b480 0000000000 3f", op: "read_property", code: 12},
		{name: "read segmentation-supported", req: "810a0011 0104 0005010c 0c0201d4e2 196b",
			want: "810a0014 0100 30010c 0c0201d4e2 196b 3e 9103 3f", op: "read_property", code: 12},
		{name: "read device-address-binding (empty list)", req: "810a0011 0104 0005010c 0c0201d4e2 191e",
			want: "810a0012 0100 30010c 0c0201d4e2 191e 3e 3f", op: "read_property", code: 12},
		{name: "read local-date", req: "810a0011 0104 0005010c 0c0201d4e2 1938",
			want: "810a0017 0100 30010c 0c0201d4e2 1938 3e a47d030e05 3f", op: "read_property", code: 12},
		{name: "read local-time", req: "810a0011 0104 0005010c 0c0201d4e2 1939",
			want: "810a0017 0100 30010c 0c0201d4e2 1939 3e b4091e0f00 3f", op: "read_property", code: 12},
		{name: "read property-list of the device (two-octet property)", req: "810a0014 0104 0005010c 0c0201d4e2 1a0173 2900",
			want: "810a0017 0100 30010c 0c0201d4e2 1a0173 2900 3e 2118 3f", op: "read_property", code: 12, area: "device:120034/property-list"},
		{name: "read analog-input units", req: "810a0011 0104 0005010c 0c00000001 1975",
			want: "810a0014 0100 30010c 0c00000001 1975 3e 913e 3f", op: "read_property", code: 12, area: "analog-input:1/units"},
		{name: "read analog-value present-value", req: "810a0011 0104 0005010c 0c00800001 1955",
			want: "810a0017 0100 30010c 0c00800001 1955 3e 4441800000 3f", op: "read_property", code: 12, area: "analog-value:1/present-value"},
		{name: "read binary-input present-value", req: "810a0011 0104 0005010c 0c00c00001 1955",
			want: "810a0014 0100 30010c 0c00c00001 1955 3e 9101 3f", op: "read_property", code: 12},
		{name: "read binary-value status-flags", req: "810a0011 0104 0005010c 0c01400001 196f",
			want: "810a0015 0100 30010c 0c01400001 196f 3e 820400 3f", op: "read_property", code: 12},
		{name: "read binary-input active-text", req: "810a0011 0104 0005010c 0c00c00001 1904",
			want: "810a0016 0100 30010c 0c00c00001 1904 3e 7300 4f6e 3f", op: "read_property", code: 12},
		{name: "read unknown object", req: "810a0011 0104 0005010c 0c00000063 1955",
			want: "810a000d 0100 50010c 9101 911f", op: "read_property", code: 12, exc: 31, area: "analog-input:99/present-value"},
		{name: "read unknown property", req: "810a0011 0104 0005010c 0c00000001 1957",
			want: "810a000d 0100 50010c 9102 9120", op: "read_property", code: 12, exc: 32},
		{name: "read with ALL is for ReadPropertyMultiple only", req: "810a0011 0104 0005010c 0c00000001 1908",
			want: "810a000d 0100 50010c 9102 9120", op: "read_property", code: 12, exc: 32},
		{name: "read array index of a non-array", req: "810a0013 0104 0005010c 0c00000001 1955 2901",
			want: "810a000d 0100 50010c 9102 9132", op: "read_property", code: 12, exc: 50},
		{name: "read without property", req: "810a000f 0104 0005010c 0c00000001",
			want: "810a0009 0100 600105", op: "read_property", code: 12, exc: 5},
		{name: "read with trailing data", req: "810a0013 0104 0005010c 0c00000001 1955 2101",
			want: "810a0009 0100 600107", op: "read_property", code: 12, exc: 7},
		{name: "read with truncated tag", req: "810a000e 0104 0005010c 0c000000",
			want: "810a0009 0100 600104", op: "read_property", code: 12, exc: 4},
		{name: "read with object identifier of wrong size", req: "810a0010 0104 0005010c 0b000001 1955",
			want: "810a0009 0100 600103", op: "read_property", code: 12, exc: 3},
		// ReadPropertyMultiple
		{name: "rpm vendor name and id", req: "810a0015 0104 0005010e 0c023fffff 1e 0979 0978 1f",
			want: "810a003e 0100 30010e 0c0201d4e2 1e 2979 4e " + vendor + " 4f 2978 4e 21de 4f 1f", op: "read_property_multiple", code: 14},
		{name: "rpm unknown object and unknown property", req: "810a001c 0104 0005010e 0c00000063 1e 0955 1f 0c00000001 1e 0957 1f",
			want: "810a0027 0100 30010e 0c00000063 1e 2955 5e 9101 911f 5f 1f 0c00000001 1e 2957 5e 9102 9120 5f 1f", op: "read_property_multiple", code: 14},
		{name: "rpm required of a binary-value", req: "810a0013 0104 0005010e 0c01400001 1e 0969 1f",
			want: "810a005e 0100 30010e 0c01400001 1e" +
				" 294b 4e c401400001 4f" +
				" 294d 4e " + str("AHU1_OCC_MODE") + " 4f" +
				" 294f 4e 9105 4f" +
				" 2955 4e 9101 4f" +
				" 296f 4e 820400 4f" +
				" 2924 4e 9100 4f" +
				" 2951 4e 10 4f" +
				" 2a0173 4e 9155 916f 9124 9151 911c 9104 912e 4f" +
				" 1f", op: "read_property_multiple", code: 14},
		{name: "rpm optional of an analog-input", req: "810a0013 0104 0005010e 0c00000002 1e 0950 1f",
			want: "810a002d 0100 30010e 0c00000002 1e 291c 4e " + str("Return air temperature") + " 4f 1f", op: "read_property_multiple", code: 14},
		{name: "rpm array element", req: "810a0015 0104 0005010e 0c0201d4e2 1e 094c 1901 1f",
			want: "810a001b 0100 30010e 0c0201d4e2 1e 294c 3901 4e c40201d4e2 4f 1f", op: "read_property_multiple", code: 14},
		{name: "rpm all of the device does not fit in 50 octets", req: "810a0013 0104 0000010e 0c0201d4e2 1e 0908 1f",
			want: "810a0009 0100 710104", op: "read_property_multiple", code: 14, exc: 4},
		{name: "rpm without property list", req: "810a000f 0104 0005010e 0c0201d4e2",
			want: "810a0009 0100 600105", op: "read_property_multiple", code: 14, exc: 5},
		{name: "rpm with empty property list", req: "810a0011 0104 0005010e 0c0201d4e2 1e1f",
			want: "810a0009 0100 600105", op: "read_property_multiple", code: 14, exc: 5},
		{name: "rpm with unterminated list", req: "810a0012 0104 0005010e 0c0201d4e2 1e 094d",
			want: "810a0009 0100 600105", op: "read_property_multiple", code: 14, exc: 5},
		// WriteProperty errors (successful writes are in TestWriteRemembered)
		{name: "write analog-input present-value in service", req: "810a0018 0104 0005010f 0c00000001 1955 3e 4441a00000 3f",
			want: "810a000d 0100 50010f 9102 9128", op: "write_property", code: 15, exc: 40, area: "analog-input:1/present-value"},
		{name: "write present-value with wrong type", req: "810a0015 0104 0005010f 0c00800001 1955 3e 2114 3f",
			want: "810a000d 0100 50010f 9102 9109", op: "write_property", code: 15, exc: 9},
		{name: "write binary-value out of range", req: "810a0015 0104 0005010f 0c01400001 1955 3e 9102 3f",
			want: "810a000d 0100 50010f 9102 9125", op: "write_property", code: 15, exc: 37},
		{name: "write device object-name", req: "810a0017 0104 0005010f 0c0201d4e2 194d 3e 730078 79 3f",
			want: "810a000d 0100 50010f 9102 9128", op: "write_property", code: 15, exc: 40},
		{name: "write unknown object", req: "810a0018 0104 0005010f 0c00800063 1955 3e 4441a00000 3f",
			want: "810a000d 0100 50010f 9101 911f", op: "write_property", code: 15, exc: 31},
		{name: "write without value", req: "810a0011 0104 0005010f 0c00800001 1955",
			want: "810a0009 0100 600105", op: "write_property", code: 15, exc: 5},
		{name: "write with priority 0", req: "810a001a 0104 0005010f 0c00800001 1955 3e 4441a00000 3f 4900",
			want: "810a0009 0100 600106", op: "write_property", code: 15, exc: 6},
		// Confirmed services the device does not execute, and segmentation
		{name: "subscribe-cov is not supported", req: "810a0011 0104 00050105 0901 1c00000001",
			want: "810a0009 0100 600109", op: "subscribe_cov", code: 5, exc: 9},
		{name: "atomic-read-file is not supported", req: "810a0015 0104 00050106 c402800000 0e 3100 2101 0f",
			want: "810a0009 0100 600109", op: "atomic_read_file", code: 6, exc: 9},
		{name: "unknown service choice", req: "810a000a 0104 000501fe",
			want: "810a0009 0100 600109", op: "confirmed_request", code: 0xfe, exc: 9},
		{name: "segmented request", req: "810a0013 0104 0805010004 0c 0c0201d4e2 194d",
			want: "810a0009 0100 710104", op: "read_property", code: 12, exc: 4},
		{name: "reinitialize backup is not supported", req: "810a000c 0104 00050114 0902",
			want: "810a000d 0100 500114 9105 912d", op: "reinitialize_device", code: 20, exc: 45},
		{name: "dcc with bad state", req: "810a000c 0104 00050111 1903",
			want: "810a0009 0100 600106", op: "device_communication_control", code: 17, exc: 6},
		// BVLC of a device without BBMD function
		{name: "read-bdt", req: "81020004", want: "810000060020", op: "read_bdt", code: 2, exc: 0x20},
		{name: "read-fdt", req: "81060004", want: "810000060040", op: "read_fdt", code: 6, exc: 0x40},
		{name: "register-foreign-device", req: "81050006 003c", want: "810000060030", op: "register_foreign_device", code: 5, exc: 0x30},
		{name: "write-bdt", req: "8101000e c0a80001bac0ffffff00", want: "810000060010", op: "write_bdt", code: 1, exc: 0x10},
		{name: "delete-fdt-entry", req: "8108000a c0a80001bac0", want: "810000060050", op: "delete_fdt_entry", code: 8, exc: 0x50},
		{name: "distribute-broadcast-to-network", req: "81090008 0100 1008", want: "810000060060", op: "distribute_broadcast_to_network", code: 9, exc: 0x60},
		{name: "bvlc-result is ignored", req: "81000006 0000", op: "bvlc_result", code: 0},
		{name: "forwarded-npdu is served", req: "8104000e c0a8010abac0 0100 1008", want: "810a0014 0100 " + iAm, op: "who_is", code: 8},
		// NPDU
		{name: "who-is-router-to-network is ignored", req: "810b0007 0180 00", op: "who_is_router_to_network", code: 0},
		{name: "what-is-network-number is ignored", req: "810b0007 0180 12", op: "what_is_network_number", code: 0x12},
		{name: "message for a remote network is ignored", req: "810b000c 0120 0005 00 ff 1008", op: "remote_network_npdu"},
		{name: "global broadcast is served", req: "810b000c 0120 ffff 00 ff 1008", want: "810a0014 0100 " + iAm, op: "who_is", code: 8},
		{name: "routed request is answered through the router", req: "810a000c 0108 0007 01 0c 1008",
			want: "810a0019 0120 0007 01 0c ff " + iAm, op: "who_is", code: 8},
		{name: "snet without sadr is malformed", req: "810a000b 0108 0007 00 1008", op: "malformed"},
		{name: "npdu version 2", req: "810a0008 0200 1008", op: "malformed"},
		// Malformed BVLC and unexpected APDUs
		{name: "bvlc length mismatch", req: "810a0009 0100 1008", op: "malformed"},
		{name: "not bacnet/ip", req: "820a0008 0100 1008", op: "malformed"},
		{name: "truncated bvlc", req: "81", op: "malformed"},
		{name: "empty apdu", req: "810a0006 0100", op: "malformed"},
		{name: "truncated confirmed request", req: "810a0008 0100 0005", op: "malformed"},
		{name: "simple-ack is ignored", req: "810a0009 0100 200112", op: "simple_ack", code: 2},
		{name: "error pdu is ignored", req: "810a000d 0100 50010c 9101 911f", op: "error", code: 5},
		{name: "abort is ignored", req: "810a0009 0100 710104", op: "abort", code: 7},
		{name: "i-am from another device is ignored", req: "810b0014 0100 1000 c402000001 2205c4 9103 2105", op: "i_am", code: 0},
		{name: "time-synchronization is recorded", req: "810b0012 0100 1006 a47d030e05 b4091e0f00", op: "time_synchronization", code: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, nil)
			got, ev := serve(t, h, "127.0.0.1:40000", protocoltest.Unhex(t, tc.req))
			want := protocoltest.Unhex(t, tc.want)
			if !bytes.Equal(got, want) {
				t.Errorf("reply\n got %x\nwant %x", got, want)
			}
			if ev.Op != tc.op {
				t.Errorf("op %q, want %q", ev.Op, tc.op)
			}
			if ev.Code != tc.code {
				t.Errorf("code %d, want %d", ev.Code, tc.code)
			}
			if ev.Exception != tc.exc {
				t.Errorf("exception %d, want %d", ev.Exception, tc.exc)
			}
			if tc.area != "" && ev.Area != tc.area {
				t.Errorf("area %q, want %q", ev.Area, tc.area)
			}
			if ev.Protocol != "bacnet" || ev.Time != testNow {
				t.Errorf("event protocol %q time %v", ev.Protocol, ev.Time)
			}
		})
	}
}

// TestWriteRemembered writes points from one flow and reads them back from another.
func TestWriteRemembered(t *testing.T) {
	h := newHandler(t, nil)
	steps := []struct {
		name, remote, req, want string
		write                   bool
	}{
		{"write analog-value 18.5 with priority 8", "127.0.0.1:40001", "810a001a 0104 0005010f 0c00800001 1955 3e 4441940000 3f 4908", "810a0009 0100 20010f", true},
		{"read it from another flow", "127.0.0.1:40002", "810a0011 0104 0005010c 0c00800001 1955", "810a0017 0100 30010c 0c00800001 1955 3e 4441940000 3f", false},
		{"write binary-value inactive", "127.0.0.1:40001", "810a0015 0104 0005010f 0c01400001 1955 3e 9100 3f", "810a0009 0100 20010f", true},
		{"read binary-value", "127.0.0.1:40003", "810a0011 0104 0005010c 0c01400001 1955", "810a0014 0100 30010c 0c01400001 1955 3e 9100 3f", false},
		{"put analog-input out of service", "127.0.0.1:40001", "810a0014 0104 0005010f 0c00000002 1951 3e 11 3f", "810a0009 0100 20010f", true},
		{"status-flags show out-of-service", "127.0.0.1:40002", "810a0011 0104 0005010c 0c00000002 196f", "810a0015 0100 30010c 0c00000002 196f 3e 820410 3f", false},
		{"write the input while out of service", "127.0.0.1:40001", "810a0018 0104 0005010f 0c00000002 1955 3e 4442c80000 3f", "810a0009 0100 20010f", true},
		{"read the overridden input", "127.0.0.1:40004", "810a0011 0104 0005010c 0c00000002 1955", "810a0017 0100 30010c 0c00000002 1955 3e 4442c80000 3f", false},
	}
	for _, st := range steps {
		got, ev := serve(t, h, st.remote, protocoltest.Unhex(t, st.req))
		if want := protocoltest.Unhex(t, st.want); !bytes.Equal(got, want) {
			t.Fatalf("%s: reply\n got %x\nwant %x", st.name, got, want)
		}
		if ev.Write != st.write {
			t.Errorf("%s: event write %v", st.name, ev.Write)
		}
		if st.write && len(ev.Data) == 0 {
			t.Errorf("%s: write event without data", st.name)
		}
	}
	// Back in service the input follows the process again.
	got, _ := serve(t, h, "127.0.0.1:40001", protocoltest.Unhex(t, "810a0014 0104 0005010f 0c00000002 1951 3e 10 3f"))
	if !bytes.Equal(got, protocoltest.Unhex(t, "810a0009 0100 20010f")) {
		t.Fatalf("out-of-service false: %x", got)
	}
	got, _ = serve(t, h, "127.0.0.1:40001", protocoltest.Unhex(t, "810a0011 0104 0005010c 0c00000002 1955"))
	if bytes.Contains(got, protocoltest.Unhex(t, "4442c80000")) {
		t.Errorf("input still reads the written value after going back in service: %x", got)
	}
}

func TestCommunicationControl(t *testing.T) {
	h := newHandler(t, func(c *Config) { c.Password = "filter" })
	now := testNow
	h.env.Now = func() time.Time { return now }
	whoIs := protocoltest.Unhex(t, "810b0008 0100 1008")
	steps := []struct {
		name, req, want string
		advance         time.Duration
	}{
		{"dcc without password", "810a000c 0104 00050111 1901", "810a000d 0100 500111 9104 911a", 0},
		{"dcc with wrong password", "810a0014 0104 00050111 1901 2d0600 6775657373", "810a000d 0100 500111 9104 911a", 0},
		{"dcc disable for 5 minutes", "810a0017 0104 00050111 0905 1901 2d0700 66696c746572", "810a0009 0100 200111", 0},
		{"who-is is not answered", "", "", 0},
		{"read-property is not answered", "810a0011 0104 0005010c 0c0201d4e2 1978", "", time.Minute},
		{"who-is answered after the duration", "", "810a0014 0100 " + iAm, 5 * time.Minute},
		{"dcc disable indefinitely", "810a0015 0104 00050111 1901 2d0700 66696c746572", "810a0009 0100 200111", 0},
		{"silent until reinitialized", "", "", time.Minute},
		{"warmstart", "810a0015 0104 00050114 0901 1d0700 66696c746572", "810a0009 0100 200114", 0},
		{"answered after warmstart", "", "810a0014 0100 " + iAm, 0},
		{"dcc disable again", "810a0015 0104 00050111 1901 2d0700 66696c746572", "810a0009 0100 200111", 0},
		{"max_disable ends it", "", "810a0014 0100 " + iAm, 15 * time.Minute},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		req := whoIs
		if st.req != "" {
			req = protocoltest.Unhex(t, st.req)
		}
		got, ev := serve(t, h, "127.0.0.1:40010", req)
		if want := protocoltest.Unhex(t, st.want); !bytes.Equal(got, want) {
			t.Fatalf("%s: reply\n got %x\nwant %x", st.name, got, want)
		}
		if st.req == "" && st.want == "" && ev.Detail["result"] != "communication_disabled" {
			t.Errorf("%s: event result %q", st.name, ev.Detail["result"])
		}
	}
}

func TestPresentValueMoves(t *testing.T) {
	h := newHandler(t, nil)
	o := h.lookup(ObjectAnalogInput, 1) // 16.4 ± 0.7 over 23 minutes
	seen := map[float64]bool{}
	for i := range 200 {
		v := o.presentValue(testNow.Add(time.Duration(i) * 37 * time.Second))
		if v < 16.4-0.7*1.1 || v > 16.4+0.7*1.1 {
			t.Fatalf("value %v outside 16.4 ± 0.77", v)
		}
		seen[v] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d distinct values in 200 reads", len(seen))
	}
	// Readings a second apart differ by little: the process is smooth.
	a, b := o.presentValue(testNow), o.presentValue(testNow.Add(time.Second))
	if math.Abs(a-b) > 0.05 {
		t.Errorf("jump of %v in one second", math.Abs(a-b))
	}
	bi := h.lookup(ObjectBinaryInput, 3) // toggles every 90 minutes
	states := map[float64]bool{}
	for i := range 12 {
		states[bi.presentValue(testNow.Add(time.Duration(i)*30*time.Minute))] = true
	}
	if len(states) != 2 {
		t.Errorf("binary input with a period never changes: %v", states)
	}
}

func TestDeviceInstanceDerived(t *testing.T) {
	mk := func(serial string) uint32 {
		id := testIdentity
		id.Serial = serial
		h, err := New(protocoltest.Env(t, &id), NewConfig())
		if err != nil {
			t.Fatal(err)
		}
		return h.instance
	}
	a, b := mk("1F3A7C92"), mk("1F3A7C93")
	if a == b || a >= MaxInstance || b >= MaxInstance {
		t.Errorf("instances %d and %d: want distinct, below %d", a, b, MaxInstance)
	}
	if a != mk("1F3A7C92") {
		t.Error("instance is not stable for one serial")
	}
	id := testIdentity
	id.Serial = ""
	if _, err := New(protocoltest.Env(t, &id), NewConfig()); !errors.Is(err, protocols.ErrConfig) {
		t.Errorf("no serial, no MAC, no device_instance: err %v, want ErrConfig", err)
	}
}

func TestConfigValidate(t *testing.T) {
	big := uint32(MaxInstance)
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"instance too large", func(c *Config) { c.DeviceInstance = &big }, "device_instance"},
		{"bad max_apdu", func(c *Config) { c.MaxAPDU = 1000 }, "max_apdu"},
		{"zero apdu timeout", func(c *Config) { c.APDUTimeout = 0 }, "apdu_timeout_ms"},
		{"long password", func(c *Config) { c.Password = strings.Repeat("x", 21) }, "password"},
		{"unknown type", func(c *Config) { c.Objects[0].Type = "analog-output" }, "analog-output"},
		{"duplicate object", func(c *Config) { c.Objects[1].Instance = 1 }, "twice"},
		{"unknown units", func(c *Config) { c.Objects[0].Units = "furlongs" }, "furlongs"},
		{"numeric units", func(c *Config) { c.Objects[0].Units = "64" }, ""},
		{"binary value 2", func(c *Config) { c.Objects[7].Value = 2 }, "want 0 or 1"},
		{"NaN value", func(c *Config) { c.Objects[0].Value = math.NaN() }, "out of range"},
		{"empty name", func(c *Config) { c.Objects[0].Name = "" }, "name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			tc.mod(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want error containing %q", err, tc.want)
			}
			if _, err := New(protocoltest.Env(t, &testIdentity), c); !errors.Is(err, protocols.ErrConfig) {
				t.Errorf("New: %v, want ErrConfig", err)
			}
		})
	}
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "bacnet", Transport: protocols.UDP, Port: 47808, Service: "bacnet"},
		protocoltest.Env(t, &testIdentity))
}

// TestLoopback serves the handler on a real UDP socket and talks to it as a client.
func TestLoopback(t *testing.T) {
	srv := protocoltest.ServeUDP(t, "", newHandler(t, nil))
	c, err := net.Dial("udp", srv.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(protocoltest.Unhex(t, "810b0008 0100 1008")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := protocoltest.Unhex(t, "810a0014 0100 "+iAm); !bytes.Equal(buf[:n], want) {
		t.Errorf("I-Am %x, want %x", buf[:n], want)
	}
	sess := srv.Sessions()
	if len(sess) != 1 || len(sess[0].Events()) != 1 || sess[0].Events()[0].Op != "who_is" {
		t.Errorf("sessions %v", sess)
	}
}

// TestNmapBacnetInfo runs nmap's bacnet-info script against the handler.
func TestNmapBacnetInfo(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	srv := protocoltest.ServeUDP(t, "127.0.0.1:0", newHandler(t, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nmap, "-Pn", "-n", "-sU", "-p", fmt.Sprint(srv.Addr.Port()), "--script", "+bacnet-info", "127.0.0.1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	for _, want := range []string{
		"Vendor ID: WAGO Kontakttechnik GmbH & Co. KG (222)",
		"Vendor Name: WAGO Kontakttechnik GmbH & Co. KG",
		"Object-identifier: 120034",
		"Firmware: 03.10.08(22)",
		"Application Software: AHU-2.4.1",
		"Object Name: AHU-3",
		"Model Name: 750-8212",
		"Description: AHU 3 controller",
		"Location: Plant room 2",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nmap output lacks %q:\n%s", want, out)
		}
	}
}

// TestTsharkDissects writes the requests and replies of the byte-level cases into a
// pcap and has Wireshark's BACnet dissectors (BVLC, NPDU, APDU) decode it: no reply
// may be malformed, and the decoded values must be the persona's.
func TestTsharkDissects(t *testing.T) {
	testenv.LookPath(t, "tshark")
	h := newHandler(t, nil)
	reqs := []string{
		"810b0008 0100 1008",
		"810b0013 0100 1007 3d0900 414855315f534154",
		"810a0011 0104 0005010c 0c023fffff 1979",
		"810a0011 0104 0005010c 0c023fffff 194c",
		"810a0011 0104 0005010c 0c023fffff 1961",
		"810a0011 0104 0005010c 0c023fffff 1960",
		"810a0011 0104 0005010c 0c023fffff 191e",
		"810a0011 0104 0005010c 0c00000063 1955",
		"810a0013 0104 0005010e 0c0201d4e2 1e 0908 1f",
		"810a0013 0104 0005010e 0c00000001 1e 0908 1f",
		"810a0013 0104 0005010e 0c00c00003 1e 0908 1f",
		"810a0013 0104 0005010e 0c01400001 1e 0908 1f",
		"810a001c 0104 0005010e 0c00000063 1e 0955 1f 0c00000001 1e 0957 1f",
		"810a001a 0104 0005010f 0c00800001 1955 3e 4441940000 3f 4908",
		"810a0011 0104 00050105 0901 1c00000001",
		"810a0013 0104 0805010004 0c 0c0201d4e2 194d",
		"81020004",
		"810a000c 0108 0007 01 0c 1008",
		"810a000f 0104 0005010c 0c00000001",
	}
	var pcap protocoltest.Pcap
	for _, r := range reqs {
		req := protocoltest.Unhex(t, r)
		pcap.UDP(40000, 47808, req)
		got, _ := serve(t, h, "127.0.0.1:40000", req)
		if got == nil {
			t.Fatalf("no reply to %s", r)
		}
		pcap.UDP(47808, 40000, got)
	}
	file := pcap.Write(t, "bacnet.pcap")
	text := string(protocoltest.Tshark(t, file, "-V", "-o", "gui.column.format:\"Info\",\"%i\""))
	for _, bad := range []string{"Malformed", "Expert Info (Error", "Expert Info (Warning"} {
		if strings.Contains(text, bad) {
			t.Errorf("tshark reports %q:\n%s", bad, text)
		}
	}
	for _, want := range []string{
		testIdentity.Vendor, "AHU1_SAT", "AHU1_OCC_MODE", "Heating coil pump status",
		"device, 120034", "unknown-object", "unrecognized-service", "segmentation-not-supported",
		"Read-Broadcast-Distribution-Table NAK",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("tshark output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("%s", text)
	}
}

// TestNodeBacnetClient drives the device with a real BACnet client stack, the
// node-bacnet package (testdata/nodeclient; `npm ci` there installs it): Who-Is,
// ReadProperty on the wildcard device, ReadPropertyMultiple ALL, WriteProperty and a
// read of an object the device does not have.
func TestNodeBacnetClient(t *testing.T) {
	node := testenv.LookPath(t, "node")
	dir, err := filepath.Abs("testdata/nodeclient")
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat(filepath.Join(dir, "node_modules", "node-bacnet"))
	testenv.Require(t, err == nil, "the node-bacnet client is not installed: run npm ci in %s", dir)
	srv := protocoltest.ServeUDP(t, "127.0.0.1:0", newHandler(t, nil))
	// A free port for the client's socket.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clientPort := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.js", fmt.Sprint(srv.Addr.Port()), fmt.Sprint(clientPort))
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	var got struct {
		IAm struct {
			DeviceID int `json:"deviceId"`
			VendorID int `json:"vendorId"`
		} `json:"iam"`
		Name             string  `json:"name"`
		Vendor           string  `json:"vendor"`
		DeviceProperties []int   `json:"device_properties"`
		AV1              float64 `json:"av1"`
		Missing          string  `json:"missing"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if got.IAm.DeviceID != testInstance || got.IAm.VendorID != 222 {
		t.Errorf("I-Am %+v", got.IAm)
	}
	if got.Name != testIdentity.ModuleName || got.Vendor != testIdentity.Vendor || got.AV1 != 19.5 {
		t.Errorf("values %+v", got)
	}
	if len(got.DeviceProperties) != len(deviceRequired)+len(deviceOptional) {
		t.Errorf("ReadPropertyMultiple ALL returned %d properties: %v", len(got.DeviceProperties), got.DeviceProperties)
	}
	if !strings.Contains(got.Missing, "OBJECT (1)") || !strings.Contains(got.Missing, "UNKNOWN_OBJECT (31)") {
		t.Errorf("reading a missing object: %q", got.Missing)
	}
	t.Logf("%s", out)
}
