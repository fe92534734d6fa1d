// Package all is the explicit list of the protocols pcapot emulates (no init-time
// registration): the sensor looks specs up by name from Specs.
package all

import (
	"slices"
	"strings"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/bacnet"
	"github.com/pcapot/pcapot/protocols/dnp3"
	"github.com/pcapot/pcapot/protocols/enip"
	"github.com/pcapot/pcapot/protocols/ftp"
	"github.com/pcapot/pcapot/protocols/guardian"
	"github.com/pcapot/pcapot/protocols/http"
	"github.com/pcapot/pcapot/protocols/iec104"
	"github.com/pcapot/pcapot/protocols/ipmi"
	"github.com/pcapot/pcapot/protocols/modbus"
	"github.com/pcapot/pcapot/protocols/s7comm"
	"github.com/pcapot/pcapot/protocols/snmp"
	"github.com/pcapot/pcapot/protocols/tftp"
)

// Specs returns every protocol's spec, sorted by name.
func Specs() []protocols.Spec {
	specs := []protocols.Spec{
		bacnet.Spec(),
		dnp3.Spec(),
		ftp.Spec(),
		guardian.Spec(),
		http.Spec(),
		iec104.Spec(),
		ipmi.Spec(),
		modbus.Spec(),
		s7comm.Spec(),
		snmp.Spec(),
		tftp.Spec(),
	}
	specs = append(specs, enip.Specs()...)
	slices.SortFunc(specs, func(a, b protocols.Spec) int { return strings.Compare(a.Name, b.Name) })
	return specs
}
