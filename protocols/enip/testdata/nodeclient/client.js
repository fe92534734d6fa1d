// Talks to an EtherNet/IP device with the ethernet-ip package (a Logix client):
// node client.js PORT. Prints one JSON object.
const port = parseInt(process.argv[2], 10);
require("ethernet-ip/src/config").EIP_PORT = port;
const { Controller, Tag, EthernetIP } = require("ethernet-ip");
(async () => {
    const PLC = new Controller();
    await PLC.connect("127.0.0.1", 0);
    const out = { name: PLC.properties.name, serial: PLC.properties.serial_number, version: PLC.properties.version, status: PLC.properties.status };
    const speed = new Tag("Line1_Speed");
    await PLC.readTag(speed);
    out.speed = speed.value;
    speed.value = 61.5;
    await PLC.writeTag(speed);
    const again = new Tag("Line1_Speed");
    await PLC.readTag(again);
    out.speed_after = again.value;
    const count = new Tag("Batch_Count");
    await PLC.readTag(count);
    out.count = count.value;
    try {
        await PLC.readTag(new Tag("NoSuchTag"));
        out.missing = "read";
    } catch (e) {
        out.missing = String(e.generalStatusCode !== undefined ? e.generalStatusCode : e.message);
    }
    console.log(JSON.stringify(out));
    PLC.destroy();
    process.exit(0);
})().catch(e => { console.error("ERROR", e && e.message, e && e.generalStatusCode); process.exit(1); });
