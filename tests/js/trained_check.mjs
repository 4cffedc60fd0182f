// Harness for tests/test_trained_engine.py: runs the trained explorer's engine in Node.
// Usage: node trained_check.mjs /abs/path/vgg_engine.mjs < spec.json > summary.json
// spec: {manifest, weights: paths of the shipped files; images: path of N*784 uint8 pixels;
//        out: path for the results (little-endian float32); cases: [{image: i, off: {layer:
//        [channels]}, saliency: [class or null (the predicted class), ...]}];
//        units: [[layer, row, col], ...]; badUnits: [[layer, row, col], ...]; f16: path or null}
// out holds, case after case: input (1024), every layer's output in running order, probs (10),
// then one 784-value saliency map per requested class. With f16, that file gets the 65,536
// float32 values of decodeFloat16 on every bit pattern 0..65535.
// summary: {layers: [{name, kind, shape}], classes, preds: [...], saliencyClasses: [[...]],
//           units: [unitField...], badUnits: [error message...], errors: {what: message},
//           msPerForward}
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const E = await import(pathToFileURL(process.argv[2]).href);
let text = "";
for await (const chunk of process.stdin) text += chunk;
const spec = JSON.parse(text);
const manifest = JSON.parse(readFileSync(spec.manifest, "utf8"));
const raw = new Uint8Array(readFileSync(spec.weights));
const net = E.buildNetwork(manifest, raw);
const images = new Uint8Array(readFileSync(spec.images));
const pixels = (i) => images.subarray(i * 784, (i + 1) * 784);

const message = (fn) => {
  try { fn(); return null; } catch (err) { return String(err.message); }
};

// timing: forward passes alone, after a warm-up
const warm = Math.min(20, images.length / 784);
for (let i = 0; i < warm; i++) E.forward(net, pixels(i));
const t0 = performance.now();
const results = spec.cases.map((c) => E.forward(net, pixels(c.image), c.off ?? {}));
const msPerForward = (performance.now() - t0) / Math.max(1, spec.cases.length);

const chunks = [], preds = [], saliencyClasses = [];
spec.cases.forEach((c, k) => {
  const f = results[k];
  const pred = f.logits.indexOf(Math.max(...f.logits));
  preds.push(pred);
  chunks.push(f.input, ...net.layers.map((L) => f.outputs[L.name]), f.probs);
  const classes = (c.saliency ?? []).map((cls) => (cls === null ? pred : cls));
  saliencyClasses.push(classes);
  for (const cls of classes) chunks.push(E.saliency(net, pixels(c.image), cls, c.off ?? {}));
});
const total = chunks.reduce((n, a) => n + a.length, 0), all = new Float32Array(total);
let at = 0;
for (const a of chunks) { all.set(a, at); at += a.length; }
writeFileSync(spec.out, new Uint8Array(all.buffer));

if (spec.f16) {
  const bits = new Uint8Array(2 * 65536);
  for (let h = 0; h < 65536; h++) { bits[2 * h] = h & 255; bits[2 * h + 1] = h >> 8; }
  const a = E.decodeFloat16(bits), b = E.decodeFloat16(new DataView(bits.buffer));
  const c = E.decodeFloat16(bits.buffer);
  const same = (x, y) => x.every((v, i) => Object.is(v, y[i]));
  if (!same(a, b) || !same(a, c)) throw new Error("decodeFloat16 differs between input types");
  writeFileSync(spec.f16, new Uint8Array(a.buffer));
}

const x = pixels(0);
const errors = {
  shortImage: message(() => E.forward(net, x.subarray(0, 783))),
  badClass: message(() => E.saliency(net, x, 10)),
  offLayer: message(() => E.forward(net, x, { conv9_1: [0] })),
  offChannel: message(() => E.forward(net, x, { conv1_1: [8] })),
  offNotList: message(() => E.forward(net, x, { conv1_1: 3 })),
  truncated: message(() => E.buildNetwork(manifest, raw.subarray(0, raw.length - 2))),
  oddBytes: message(() => E.decodeFloat16(raw.subarray(0, 3))),
  notBytes: message(() => E.decodeFloat16([1, 2])),
  noManifest: message(() => E.buildNetwork({}, raw)),
};
process.stdout.write(JSON.stringify({
  layers: net.layers.map((L) => ({ name: L.name, kind: L.kind, shape: L.shape })),
  classes: net.classes, preds, saliencyClasses, msPerForward, errors,
  units: (spec.units ?? []).map(([name, r, c]) => E.unitField(net, name, r, c)),
  badUnits: (spec.badUnits ?? []).map(([name, r, c]) => message(() => E.unitField(net, name, r, c))),
}));
