package protocols

import "net"

// Identity is the device persona that every protocol answers from, so that S7 SZL
// reads, SNMP system MIB, Modbus device identification, the web page and the rest all
// tell the same story. The sensor fills it from the persona YAML; per-install values
// (serial number, MAC address) are generated on first start and persisted.
type Identity struct {
	// Vendor is the manufacturer's name as the device reports it ("Siemens").
	Vendor string `yaml:"vendor"`
	// VendorURL is the manufacturer's web address (Modbus object 0x03).
	VendorURL string `yaml:"vendor_url"`
	// Product is the product family / name ("SIMATIC S7-1200").
	Product string `yaml:"product"`
	// Model is the model name or CPU type ("CPU 1214C DC/DC/DC").
	Model string `yaml:"model"`
	// OrderNumber is the article / order number ("6ES7 214-1AG40-0XB0").
	OrderNumber string `yaml:"order_number"`
	// ProductCode is a short product code (Modbus object 0x01).
	ProductCode string `yaml:"product_code"`
	// Firmware is the firmware version, "V4.5.2" style.
	Firmware string `yaml:"firmware"`
	// Hardware is the hardware revision.
	Hardware string `yaml:"hardware"`
	// Serial is the per-install serial number.
	Serial string `yaml:"serial"`
	// MAC is the per-install MAC address (vendor OUI + random).
	MAC net.HardwareAddr `yaml:"-"`
	// Hostname / station name ("plc-line3").
	Hostname string `yaml:"hostname"`
	// ModuleName is the module / station name as configured by the plant.
	ModuleName string `yaml:"module_name"`
	// PlantID is the plant designation (S7 SZL 0x1C index 3).
	PlantID string `yaml:"plant_id"`
	// Location and Contact as in SNMP sysLocation / sysContact.
	Location string `yaml:"location"`
	Contact  string `yaml:"contact"`
	// Description is the SNMP sysDescr-style one-line description.
	Description string `yaml:"description"`
	// Copyright string some devices report (S7 SZL 0x1C index 4).
	Copyright string `yaml:"copyright"`
	// SysObjectID is the SNMP sysObjectID of the device ("1.3.6.1.4.1.4329.6.1.2").
	SysObjectID string `yaml:"sys_object_id"`
}
