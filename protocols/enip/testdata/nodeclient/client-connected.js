// Talks to an EtherNet/IP device with the st-ethernet-ip package in connected mode
// (Forward_Open, then SendUnitData): node client-connected.js PORT [browse].
// Prints one JSON object.
const port = parseInt(process.argv[2], 10);
const browse = process.argv[3] === "browse";
require("st-ethernet-ip/dist/config").EIP_PORT = port;
const { Controller, Tag } = require("st-ethernet-ip");
(async () => {
    const PLC = new Controller(true);
    await PLC.connect("127.0.0.1", 0, browse);
    const out = { connected: PLC.established_conn === true || PLC.state.connectedMessaging === true };
    if (browse) {
        out.name = PLC.properties.name;
        out.tags = PLC.tagList.map(t => t.name + ":" + t.type.typeName + (t.type.arrayDims ? "[]" : ""));
    }
    const level = new Tag("Tank_Level");
    await PLC.readTag(level);
    out.level = level.value;
    level.value = 7000;
    await PLC.writeTag(level);
    const again = new Tag("Tank_Level");
    await PLC.readTag(again);
    out.level_after = again.value;
    await PLC.disconnect();
    console.log(JSON.stringify(out));
    process.exit(0);
})().catch(e => { console.error("ERROR", e && e.message, JSON.stringify(e)); process.exit(1); });
