package ipmi

import (
	"net"

	"github.com/pcapot/pcapot/protocols"
)

// testIdentity is the persona of the tests: a Modicon M340 (Schneider's enterprise
// number 3833 in its sysObjectID).
func testIdentity() *protocols.Identity {
	return &protocols.Identity{
		Vendor:      "Schneider Electric",
		Product:     "Modicon M340",
		Model:       "BMX P34 2020",
		Firmware:    "v3.40",
		Hardware:    "PV 07",
		Serial:      "21M3417082",
		MAC:         net.HardwareAddr{0x00, 0x80, 0xf4, 0x12, 0x34, 0x56},
		SysObjectID: "1.3.6.1.4.1.3833.1.7.255.44",
	}
}
