// Receptive-field arithmetic, shared by the explorers (no DOM): the receptive-field explorer
// of chapter 2 (rf_explorer.mjs) and the trained-network explorer (trained_explorer.mjs)
// import it; vgg_book.esm.bundle inlines it into each widget's one module for the browser.
//   size  = side of the receptive field (RF) in input pixels,   size'  = size + (k - 1) * jump
//   jump  = input pixels between adjacent output units,          jump'  = jump * s
//   start = centre of the first unit's RF (pixel i centred at i), start' = start + ((k-1)/2 - p) * jump
//   out   = output side,  out' = floor((n + 2p - k) / s) + 1  (0 when the window does not fit)
// with the effective kernel k = dilation * (kernel - 1) + 1.

// ---------------------------------------------------------------------------------------
// Pure functions (no DOM): the arithmetic.

/** Padding that keeps the side at stride 1: dilation * (kernel - 1) / 2 (odd kernels). */
export function samePadding(kernel, dilation = 1) {
  return Math.floor((dilation * (kernel - 1)) / 2);
}

/** A layer with every field filled: {kind, kernel, stride, dilation, padding[, channels]}. */
export function normLayer(layer) {
  if (layer.kind === "lrn") return { kind: "lrn", kernel: 1, stride: 1, dilation: 1, padding: 0 };
  const kernel = layer.kernel;
  const stride = layer.stride ?? (layer.kind === "pool" ? kernel : 1);
  const dilation = layer.kind === "conv" ? (layer.dilation ?? 1) : 1;
  const padding = layer.padding === undefined || layer.padding === "same"
    ? (layer.kind === "conv" ? samePadding(kernel, dilation) : 0) : layer.padding;
  const out = { kind: layer.kind, kernel, stride, dilation, padding };
  if (layer.channels !== undefined) out.channels = layer.channels;
  return out;
}

/** VGG-paper names, as vgg_book.receptive: conv{block}_{i}, pool{block}, lrn{block}_{i}. */
export function layerNames(layers) {
  const names = [];
  let block = 1, conv = 0;
  for (const layer of layers) {
    if (layer.kind === "pool") { names.push(`pool${block}`); block += 1; conv = 0; }
    else if (layer.kind === "conv") { conv += 1; names.push(`conv${block}_${conv}`); }
    else names.push(conv ? `${layer.kind}${block}_${conv}` : `${layer.kind}${block}`);
  }
  return names;
}

/** Output side of a window of effective size k at stride s over n pixels padded p each side. */
export function outSide(n, k, s, p) {
  const span = n + 2 * p - k;
  return span < 0 ? 0 : Math.floor(span / s) + 1;
}

/**
 * One row per layer: {name, kind, kernel, stride, dilation, padding, size, jump, start, out}.
 * inputSide: the input's side in pixels, or null (then out is null).
 */
export function stackTable(layers, inputSide = null) {
  const full = layers.map(normLayer);
  const names = layerNames(full);
  let size = 1, jump = 1, start = 0, n = inputSide;
  return full.map((layer, i) => {
    const k = layer.dilation * (layer.kernel - 1) + 1;  // effective kernel
    if (layer.kind !== "lrn") {
      size += (k - 1) * jump;
      start += ((k - 1) / 2 - layer.padding) * jump;
      jump *= layer.stride;
      if (n !== null) n = outSide(n, k, layer.stride, layer.padding);
    }
    return { name: names[i], kind: layer.kind, kernel: layer.kernel, stride: layer.stride,
             dilation: layer.dilation, padding: layer.padding, size, jump, start, out: n };
  });
}

/**
 * The layers of a VGG configuration, given its layer list (a value of the `configs` trait,
 * e.g. [64, "M", 128, "M", ...]): convs carry their output channels.
 */
export function vggLayers(items) {
  if (!Array.isArray(items)) throw new Error("a VGG configuration is a list of layers");
  return items.map((item) => {
    if (item === "M") return { kind: "pool", kernel: 2, stride: 2, dilation: 1, padding: 0 };
    if (item === "LRN") return { kind: "lrn", kernel: 1, stride: 1, dilation: 1, padding: 0 };
    const [kernel, channels] = Array.isArray(item) ? [1, item[1]] : [3, item];
    return { kind: "conv", kernel, stride: 1, dilation: 1, padding: (kernel - 1) / 2, channels };
  });
}

/**
 * Weights (no bias) of every layer: in * out * kernel * kernel for a convolution, 0 otherwise.
 * A conv's output channels are its `channels` field, else `channels`; its input channels the
 * previous conv's output, the first one's `inChannels` (default: `channels`).
 */
export function convWeights(layers, channels, inChannels = channels) {
  let c = inChannels;
  return layers.map((layer) => {
    if (layer.kind !== "conv") return 0;
    const out = layer.channels ?? channels;
    const w = c * out * layer.kernel * layer.kernel;
    c = out;
    return w;
  });
}

/** Output channels after each layer (a pool or LRN keeps its input's). */
export function layerWidths(layers, channels, inChannels = channels) {
  let c = inChannels;
  return layers.map((layer) => (layer.kind === "conv" ? (c = layer.channels ?? channels) : c));
}

/** Total weights of the stack's convolutions (no bias). */
export function stackParams(layers, channels, inChannels = channels) {
  return convWeights(layers, channels, inChannels).reduce((a, b) => a + b, 0);
}

/** Weights of one size x size convolution from inChannels to outChannels (no bias). */
export function bigKernelParams(size, outChannels, inChannels = outChannels) {
  return inChannels * outChannels * size * size;
}

/**
 * The stack up to layer `index` against one convolution with the same field (kernel = size,
 * stride = jump) from the stack's input channels to that layer's output channels.
 */
export function comparison(layers, index, channels, inChannels = channels) {
  const upto = layers.slice(0, index + 1);
  const row = stackTable(upto)[index];
  const width = layerWidths(upto, channels, inChannels)[index];
  const stack = stackParams(upto, channels, inChannels);
  const big = bigKernelParams(row.size, width, inChannels);
  return { size: row.size, jump: row.jump, width, inChannels, stack, big };
}

/**
 * Field of the central output unit of a row (unit (out - 1) // 2 on both axes) on an n x n
 * input whose pixel i covers [i - 0.5, i + 0.5]: {unit, centre, left, right, size, inside}.
 * Null when the output is empty.
 */
export function fieldBox(row, n) {
  if (!row || !row.out) return null;
  const unit = Math.floor((row.out - 1) / 2);
  const centre = row.start + unit * row.jump;
  const left = centre - row.size / 2, right = centre + row.size / 2;
  return { unit, centre, left, right, size: row.size, inside: left >= -0.5 && right <= n - 0.5 };
}

/** 1234567 -> "1,234,567". */
export function formatInt(value) {
  const [whole, frac] = String(value).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}
