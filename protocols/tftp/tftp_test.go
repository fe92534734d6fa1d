package tftp

import (
	"net"

	"github.com/pcapot/pcapot/protocols"
)

// testIdentity is the persona of the tests: a Modicon M340.
func testIdentity() *protocols.Identity {
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
