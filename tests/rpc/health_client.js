// A Node @grpc/grpc-js client: health check + shoal.v1 calls from a FileDescriptorSet
// (what a client in another language does after fetching descriptors). Prints one JSON line.
// usage: node health_client.js TARGET DESCRIPTORS.bin
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const fs = require('fs');

const [target, descriptorPath] = process.argv.slice(2);
const def = protoLoader.loadFileDescriptorSetFromBuffer(fs.readFileSync(descriptorPath),
  { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const pkg = grpc.loadPackageDefinition(def);
const creds = grpc.credentials.createInsecure();
const health = new pkg.grpc.health.v1.Health(target, creds);
const collections = new pkg.shoal.v1.Collections(target, creds);
const search = new pkg.shoal.v1.Search(target, creds);
// Map fields loaded from a descriptor set may arrive as a list of {key, value} entries.
const fields = (m) => (Array.isArray(m.fields) ? Object.fromEntries(m.fields.map((e) => [e.key, e.value])) : m.fields);
const deadline = () => new Date(Date.now() + 20000);

health.Check({ service: 'shoal.v1.Search' }, { deadline: deadline() }, (err, health_resp) => {
  if (err) { console.error(err); process.exit(1); }
  collections.List({}, { deadline: deadline() }, (err2, list) => {
    if (err2) { console.error(err2); process.exit(1); }
    const packed = Buffer.alloc(4 * 2);
    packed.writeFloatLE(1.0, 0); packed.writeFloatLE(0.0, 4);
    const req = { collection: 'node', batches: [{ vectors: { dim: 2, packed }, k: 2 }], include_metadata: true };
    search.Search(req, { deadline: deadline() }, (err3, res) => {
      if (err3) { console.error(err3); process.exit(1); }
      search.Search({ collection: 'node', batches: [{ vectors: { dim: 3, packed: Buffer.alloc(12) }, k: 2 }] },
        { deadline: deadline() }, (err4) => {
          const hits = res.results[0];
          console.log(JSON.stringify({
            health: health_resp.status, names: list.names,
            ids: hits.ids.map((i) => (i.kind === 'num' ? i.num : i.str)),
            meta: hits.metadata.map((m) => fields(m).n.int_value),
            badCode: err4 ? err4.code : null, badDetails: err4 ? err4.details : null,
          }));
          process.exit(0);
        });
    });
  });
});
