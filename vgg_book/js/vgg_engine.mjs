// The shipped VGG-11 (vgg_book.trained) on Float32Arrays, no library and no DOM; the trained
// explorer (trained_explorer.mjs) imports it, vgg_book.esm.bundle inlines it for the page.
//   buildNetwork  folds batch norm into the conv: W a, (b - mean) a + beta, a = gamma / sqrt(var + eps)
//   networkInput  (pixel / 255 - mean) / std, then 28 -> 32 bilinear, align_corners=False
//   forward       every layer's output (CHW), logits, softmax; `off` zeroes channels
//   saliency      d logits[c] / d (pixel / 255): linear and 3x3 conv transposed, ReLU masks,
//                 max-pool to the first maximum, the resize transposed, times 1 / std
//   unitField     the input a unit sees, from receptive.mjs's stackTable
// tests/test_trained_engine.py runs this file in Node (tests/js/trained_check.mjs) against
// PyTorch (vgg_book.seeing): every layer, saliency, switched-off channels, fields, float16.
import { stackTable } from "./receptive.mjs";

const refuse = (message) => { throw new Error(message); };
const HALF = new Float32Array(65536);  // every float16 bit pattern as a float32
for (let h = 0; h < 65536; h++) {
  const e = (h >> 10) & 31, m = h & 1023, s = h & 32768 ? -1 : 1;  // exponent, mantissa, sign
  HALF[h] = e === 31 ? (m ? NaN : s * Infinity) : s * (e ? 1024 + m : m) * 2 ** (Math.max(e, 1) - 25);
}

/** Little-endian float16 bytes (Uint8Array, DataView or ArrayBuffer) -> Float32Array. */
export function decodeFloat16(bytes) {
  const u8 = ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    : bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : null;
  if (!u8) refuse("decodeFloat16 expects a Uint8Array, DataView or ArrayBuffer");
  if (u8.length % 2) refuse(`float16 data has ${u8.length} bytes, an odd number`);
  const out = new Float32Array(u8.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = HALF[u8[2 * i] | (u8[2 * i + 1] << 8)];
  return out;
}

/** The network of a vgg_book.trained manifest and its weights (decoded floats or raw bytes). */
export function buildNetwork(manifest, weights) {
  if (!Array.isArray(manifest?.layers) || !Array.isArray(manifest?.tensors))
    refuse("buildNetwork expects the manifest of vgg_book.trained (layers, tensors)");
  const values = weights instanceof Float32Array ? weights : decodeFloat16(weights);
  const total = manifest.tensors.reduce((n, t) => n + t.count, 0);
  if (values.length !== total)
    refuse(`the weights hold ${values.length} values, the manifest expects ${total}`);
  const tensor = (name, count) => {
    const t = manifest.tensors.find((u) => u.name === name);
    if (t?.count !== count) refuse(`tensor ${name}: ${t?.count ?? "no"} values, not ${count}`);
    return values.subarray(t.offset, t.offset + count);
  };
  const pre = manifest.preprocess;
  let c = 1, side = pre.network_side, flat = null;
  const layers = manifest.layers.map((spec) => {
    const { name, kind } = spec;
    if (kind === "conv") {
      if (spec.kernel !== 3 || spec.padding !== 1 || spec.in !== c || flat !== null)
        refuse(`${name}: only 3x3 convolutions with padding 1 on ${c} channels`);
      const n = spec.out, w = tensor(spec.weight, n * c * 9).slice(), b = tensor(spec.bias, n).slice();
      if (spec.bn) {
        const g = tensor(spec.bn.weight, n), beta = tensor(spec.bn.bias, n);
        const mean = tensor(spec.bn.mean, n), v = tensor(spec.bn.var, n);
        for (let o = 0; o < n; o++) {
          const a = Math.fround(g[o] / Math.sqrt(v[o] + spec.bn.eps));
          for (let k = o * c * 9; k < (o + 1) * c * 9; k++) w[k] *= a;
          b[o] = (b[o] - mean[o]) * a + beta[o];
        }
      }
      c = n;
      return { name, kind, shape: [c, side, side], in: spec.in, out: n, w, b, relu: spec.relu };
    }
    if (kind === "pool") {
      if (spec.kernel !== 2 || spec.stride !== 2 || flat !== null)
        refuse(`${name}: only 2x2 max-pools of stride 2 before the linear layers`);
      side >>= 1;
      return { name, kind, shape: [c, side, side] };
    }
    if (kind === "linear") {
      if (flat === null) flat = c * side * side;
      if (spec.in !== flat) refuse(`${name}: ${spec.in} inputs, but ${flat} arrive`);
      flat = spec.out;
      return { name, kind, shape: [flat], in: spec.in, out: spec.out, relu: spec.relu,
               w: tensor(spec.weight, spec.out * spec.in), b: tensor(spec.bias, spec.out) };
    }
    refuse(`${name}: unknown kind ${kind}`);
  });
  // bilinear along one axis: source = (dst + 0.5) * n / N - 0.5, at least 0 (torch's rule)
  const n = pre.input_side, N = pre.network_side, i0 = new Int32Array(N);
  const i1 = new Int32Array(N), l1 = new Float32Array(N);
  for (let d = 0; d < N; d++) {
    const src = Math.max(0, Math.fround((d + 0.5) * Math.fround(n / N) - 0.5));
    i0[d] = Math.floor(src); i1[d] = Math.min(i0[d] + 1, n - 1); l1[d] = src - i0[d];
  }
  return { layers, classes: manifest.classes, n, N, mean: pre.mean, std: pre.std, i0, i1, l1 };
}

// The n x n -> N x N bilinear resize, or (T) its transpose.
function resizeInput(net, x, T) {
  const { n, N, i0, i1, l1 } = net, out = new Float32Array(T ? n * n : N * N);
  for (let y = 0; y < N; y++) {
    const r0 = i0[y] * n, r1 = i1[y] * n, b = l1[y], a = 1 - b;
    for (let z = 0; z < N; z++) {
      const c0 = i0[z], c1 = i1[z], q = l1[z], p = 1 - q, v = T ? x[y * N + z] : 0;
      if (!T) out[y * N + z] = a * (p * x[r0 + c0] + q * x[r0 + c1]) + b * (p * x[r1 + c0] + q * x[r1 + c1]);
      else {
        out[r0 + c0] += a * p * v; out[r0 + c1] += a * q * v;
        out[r1 + c0] += b * p * v; out[r1 + c1] += b * q * v;
      }
    }
  }
  return out;
}

/** 784 pixels 0..255 -> the network's 32x32 input: normalised, then resized bilinearly. */
export function networkInput(net, pixels) {
  const { n, mean, std } = net;
  if (pixels?.length !== n * n)
    refuse(`expected ${n * n} pixels (${n}x${n}), got ${pixels?.length}`);
  return resizeInput(net, Float32Array.from(pixels, (v) => (v / 255 - mean) / std), false);
}

// 3x3 conv, padding 1, C -> O channels of side s, on zero-padded planes (no bounds checks in
// the 9 taps). T: the transpose (backward: w is [C][O][3][3], the taps turn round).
function conv3x3(x, C, O, s, w, b, relu, T) {
  const S = s + 2, P = S * S, hw = s * s, d = T ? -1 : 1;
  const pad = new Float32Array(C * P), out = new Float32Array(O * hw);
  for (let c = 0; c < C; c++)
    for (let y = 0; y < s; y++) pad.set(x.subarray((c * s + y) * s, (c * s + y + 1) * s), c * P + (y + 1) * S + 1);
  for (let o = 0; o < O; o++) {
    const base = o * hw;
    if (b) out.fill(b[o], base, base + hw);
    for (let c = 0; c < C; c++) {
      const k = T ? (c * O + o) * 9 + 8 : (o * C + c) * 9, w0 = w[k], w1 = w[k + d];
      const w2 = w[k + 2 * d], w3 = w[k + 3 * d], w4 = w[k + 4 * d], w5 = w[k + 5 * d];
      const w6 = w[k + 6 * d], w7 = w[k + 7 * d], w8 = w[k + 8 * d];
      for (let y = 0; y < s; y++) {
        const r0 = c * P + y * S, r1 = r0 + S, r2 = r1 + S, q = base + y * s;
        for (let z = 0; z < s; z++) {
          out[q + z] += w0 * pad[r0 + z] + w1 * pad[r0 + z + 1] + w2 * pad[r0 + z + 2]
            + w3 * pad[r1 + z] + w4 * pad[r1 + z + 1] + w5 * pad[r1 + z + 2]
            + w6 * pad[r2 + z] + w7 * pad[r2 + z + 1] + w8 * pad[r2 + z + 2];
        }
      }
    }
    if (relu) for (let i = base; i < base + hw; i++) if (!(out[i] > 0)) out[i] = 0;
  }
  return out;
}

// 2x2 max-pool, stride 2; arg: where each maximum is, the first on ties (as torch).
function maxPool2x2(C, x, s, arg) {
  const h = s >> 1, out = new Float32Array(C * h * h);
  for (let c = 0, i = 0; c < C; c++)
    for (let y = 0; y < h; y++)
      for (let z = 0; z < h; z++, i++) {
        const j = c * s * s + 2 * y * s + 2 * z;
        let m = j;
        if (x[j + 1] > x[m]) m = j + 1;
        if (x[j + s] > x[m]) m = j + s;
        if (x[j + s + 1] > x[m]) m = j + s + 1;
        out[i] = x[m];
        arg[i] = m;
      }
  return out;
}

function dense(L, x) {
  const out = new Float32Array(L.out), I = L.in, w = L.w;
  for (let o = 0; o < L.out; o++) {
    let a = L.b[o];
    for (let i = 0, k = o * I; i < I; i++, k++) a += w[k] * x[i];
    out[o] = L.relu && !(a > 0) ? 0 : a;
  }
  return out;
}

function zeroChannels(L, x, chans) {
  const width = L.shape[0], per = x.length / width;
  for (const ch of chans) {
    if (!Number.isInteger(ch) || ch < 0 || ch >= width)
      refuse(`layer ${L.name} has channels 0..${width - 1}; got ${ch}`);
    x.fill(0, ch * per, (ch + 1) * per);
  }
}

function runNetwork(net, pixels, off) {
  const names = net.layers.map((L) => L.name);
  for (const [name, chans] of Object.entries(off))
    if (!names.includes(name) || !Array.isArray(chans))
      refuse(`off maps a layer (${names.join(", ")}) to a list of channels; got ${name}`);
  const input = networkInput(net, pixels), outputs = {}, args = {};
  let x = input, s = net.N;
  for (const L of net.layers) {
    if (L.kind === "conv") x = conv3x3(x, L.in, L.out, s, L.w, L.b, L.relu, false);
    else if (L.kind === "pool") {
      args[L.name] = new Int32Array(L.shape[0] * (s >> 1) ** 2);
      x = maxPool2x2(L.shape[0], x, s, args[L.name]);
      s >>= 1;
    } else x = dense(L, x);
    if (off[L.name]) zeroChannels(L, x, off[L.name]);
    outputs[L.name] = x;
  }
  const top = Math.max(...x), e = x.map((v) => Math.exp(v - top)), sum = e.reduce((a, b) => a + b);
  return { input, outputs, logits: x, probs: e.map((v) => v / sum), args };
}

/** {input, outputs: {name: Float32Array}, logits, probs} of one 28x28 image (0..255). */
export function forward(net, pixels, off = {}) {
  const { args, ...f } = runNetwork(net, pixels, off);
  return f;
}

/** d logits[cls] / d (pixel / 255): Float32Array(784), as vgg_book.seeing.saliency. */
export function saliency(net, pixels, cls, off = {}) {
  const L = net.layers, last = L.at(-1);
  if (!Number.isInteger(cls) || cls < 0 || cls >= last.out)
    refuse(`class must be an integer 0..${last.out - 1}, got ${cls}`);
  const f = runNetwork(net, pixels, off);
  let g = new Float32Array(last.out);
  g[cls] = 1;
  for (let li = L.length - 1; li >= 0; li--) {
    const layer = L[li], y = f.outputs[layer.name];
    if (off[layer.name]) zeroChannels(layer, g, off[layer.name]);
    if (layer.relu) for (let i = 0; i < g.length; i++) if (!(y[i] > 0)) g[i] = 0;
    const gin = layer.kind === "conv" ? null
      : new Float32Array((li ? f.outputs[L[li - 1].name] : f.input).length);
    if (layer.kind === "linear") {
      for (let o = 0, I = layer.in; o < layer.out; o++)
        if (g[o]) for (let i = 0, k = o * I; i < I; i++, k++) gin[i] += layer.w[k] * g[o];
    } else if (layer.kind === "pool") {
      const arg = f.args[layer.name];
      for (let i = 0; i < g.length; i++) gin[arg[i]] += g[i];
    }
    g = gin ?? conv3x3(g, layer.out, layer.in, layer.shape[1], layer.w, null, false, true);
  }
  // the resize transposed, then the normalisation: d x / d (pixel / 255) = 1 / std
  return resizeInput(net, g, true).map((v) => v / net.std);
}

/** The field of unit (row, col) of a conv or pool layer on the 32x32 network input:
 * {top, left, bottom, right, size, jump, start}, pixel p covering [p - 0.5, p + 0.5]. */
export function unitField(net, name, row, col) {
  const spatial = net.layers.filter((L) => L.kind !== "linear");  // 3x3 "same" convs, 2x2 pools
  const rows = stackTable(spatial.map((L) => ({ kind: L.kind, kernel: L.kind === "conv" ? 3 : 2 })), net.N);
  const i = spatial.findIndex((L) => L.name === name);
  if (i < 0) refuse(`no receptive field for ${name}: the conv and pool layers are `
    + spatial.map((L) => L.name).join(", "));
  const r = rows[i];
  if (![row, col].every((v) => Number.isInteger(v) && v >= 0 && v < r.out))
    refuse(`${name} has units 0..${r.out - 1} on each axis; got (${row}, ${col})`);
  const cy = r.start + row * r.jump, cx = r.start + col * r.jump, h = r.size / 2;
  return { top: cy - h, left: cx - h, bottom: cy + h, right: cx + h, size: r.size,
           jump: r.jump, start: r.start };
}
