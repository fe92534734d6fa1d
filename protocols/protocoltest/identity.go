package protocoltest

import (
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/pcapot/pcapot/protocols"
)

// Identity returns a new, realistic device identity for tests: a Siemens S7-1200 in a
// water works' pump station (no Description, so that protocols compose their own). A
// package whose tests spell out other values sets those fields on the copy it gets.
func Identity() *protocols.Identity {
	return &protocols.Identity{
		Vendor:      "Siemens",
		Product:     "SIMATIC S7-1200",
		Model:       "CPU 1214C DC/DC/DC",
		OrderNumber: "6ES7 214-1AG40-0XB0",
		Firmware:    "V4.5.2",
		Hardware:    "3",
		Serial:      "S C-J7UD43012026",
		MAC:         net.HardwareAddr{0x00, 0x1b, 0x1b, 0x4a, 0x10, 0xfe},
		Hostname:    "plc-pumpstation-2",
		ModuleName:  "PS2_PLC1",
		PlantID:     "Waterworks North/Pump Station 2",
		Location:    "Pumpstation 2, cabinet A3",
		Contact:     "Leitwarte +49 911 5555 310",
		Copyright:   "Original Siemens Equipment",
		SysObjectID: "1.3.6.1.4.1.4329.6.1.2",
	}
}

// M340 returns a new identity of a Schneider Electric Modicon M340 in a pump station,
// the persona of the FTP, TFTP and IPMI tests (whose cases spell out its values).
func M340() *protocols.Identity {
	return &protocols.Identity{
		Vendor:      "Schneider Electric",
		Product:     "Modicon M340",
		Model:       "BMX P34 2020",
		OrderNumber: "BMXP342020",
		Firmware:    "v3.40",
		Hardware:    "PV 07",
		Serial:      "21M3417082",
		MAC:         net.HardwareAddr{0x00, 0x80, 0xf4, 0x12, 0x34, 0x56},
		Hostname:    "m340-pump-station",
	}
}

// Unhex decodes hex digits, which may be grouped with spaces ("0564 05C0"); the test
// fails on anything else.
func Unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}
