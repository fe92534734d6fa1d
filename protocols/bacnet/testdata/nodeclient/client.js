// Talks to a BACnet/IP device with the node-bacnet package (a BACnet client stack):
// node client.js DEVICE_PORT CLIENT_PORT. Prints one JSON object.
const Bacnet = require("node-bacnet");
const target = "127.0.0.1:" + process.argv[2];
const client = new Bacnet({ port: parseInt(process.argv[3], 10), interface: "127.0.0.1", apduTimeout: 2000 });
const T = Bacnet.enum.ObjectType, P = Bacnet.enum.PropertyIdentifier, A = Bacnet.enum.ApplicationTag;
const call = (fn, ...args) => new Promise((resolve, reject) => fn.call(client, ...args, (err, value) => err ? reject(err) : resolve(value)));
const out = {};
client.on("error", e => { console.error("ERROR", e.message); process.exit(1); });
client.on("iAm", msg => { out.iam = msg.payload; });
client.on("listening", async () => {
    try {
        client.whoIs({ address: target });
        const device = { type: T.DEVICE, instance: 4194303 };
        const name = await call(client.readProperty, target, device, P.OBJECT_NAME, {});
        out.name = name.values[0].value;
        const all = await call(client.readPropertyMultiple, target, [{ objectId: { type: T.DEVICE, instance: 4194303 }, properties: [{ id: P.ALL }] }], {});
        out.device_properties = all.values[0].values.map(p => p.id);
        const vendor = all.values[0].values.find(p => p.id === P.VENDOR_NAME);
        out.vendor = vendor.value[0].value;
        const av = { type: T.ANALOG_VALUE, instance: 1 };
        await call(client.writeProperty, target, av, P.PRESENT_VALUE, [{ type: A.REAL, value: 19.5 }], {});
        const pv = await call(client.readProperty, target, av, P.PRESENT_VALUE, {});
        out.av1 = pv.values[0].value;
        try {
            await call(client.readProperty, target, { type: T.ANALOG_INPUT, instance: 99 }, P.PRESENT_VALUE, {});
            out.missing = "read";
        } catch (e) {
            out.missing = e.message;
        }
        setTimeout(() => { console.log(JSON.stringify(out)); client.close(); process.exit(0); }, 200);
    } catch (e) {
        console.error("ERROR", e.message);
        process.exit(1);
    }
});
