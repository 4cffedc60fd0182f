// Accounting explorer: what a VGG network costs, layer by layer, computed in the browser.
//
// For a configuration of Table 1 (A, A-LRN, B, C, D, E), with or without batch norm, an
// input side, a batch size and a dtype, it computes every layer's parameters, multiply-adds
// (MACs; FLOPs = 2 x MACs) and output values, row for row as
// vgg_book.accounting.summary(vgg(config, batch_norm=...), (batch, 3, side, side),
// count_bias=...) does, and draws them as bars with the totals.
//
// The configurations themselves live in Python only (vgg_book.models.CONFIGS): the widget
// class, vgg_book.accounting_explorer.AccountingExplorer (an anywidget), sends them as its
// synced trait "configs", and render() reads them from the model; no kernel is needed (a
// static page carries the trait's value).
//
// The pure functions below (vggRows, totals, activationBytes, ...) use no DOM and take a
// configuration's layer list, not its name: Node imports this very file in
// tests/test_accounting_explorer.py (through tests/js/accounting_check.mjs), gives them the
// layer lists of vgg_book.models.CONFIGS, and compares their numbers with
// vgg_book.accounting.summary, exactly.
//
// Conventions (vgg_book/accounting.py): a k x k convolution costs
// C_out * H_out * W_out * (C_in * k * k + 1) MACs per image (without the +1 when bias adds are
// not counted), a linear layer out * (in + 1); pools, ReLU, batch norm, LRN and dropout 0 MACs.
// Batch norm has 2 x C parameters. "Activations" are the values in a layer's output for the
// whole batch; an in-place ReLU gets its own row, as in summary().

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

/** Bytes per value of each dtype the reader can pick. */
export const DTYPES = { "float32": 4, "bfloat16": 2, "float16": 2 };

export const MIN_SIDE = 32;   // five 2x2 pools: a smaller input pools to nothing
export const MAX_SIDE = 512;  // the widget's range (the functions take any side >= 32)
export const MAX_BATCH = 256;
export const POOLED_SIDE = 7; // AdaptiveAvgPool2d((7, 7)) before the classifier
export const HIDDEN = 4096;   // the classifier's two hidden layers

// ---------------------------------------------------------------------------------------
// Pure computation (no DOM)
// ---------------------------------------------------------------------------------------

function isPositiveInt(v) {
  return Number.isSafeInteger(v) && v >= 1;
}

function checkInt(name, v, min, max) {
  if (!Number.isSafeInteger(v) || v < min || (max !== undefined && v > max)) {
    const range = max === undefined ? `>= ${min}` : `${min}..${max}`;
    throw new Error(`${name} must be an integer ${range}, got ${v}`);
  }
}

/** A configuration's layer list (as in vgg_book.models.CONFIGS, JSON form): an int is a 3x3
 * convolution's output channels, "M" a 2x2 max-pool, "LRN" local response normalisation,
 * ["1x1", c] a 1x1 convolution. */
function layerList(layers) {
  if (!Array.isArray(layers) || layers.length === 0) {
    throw new Error("a VGG config must be a non-empty list of layers");
  }
  return layers;
}

/** One row, shaped like vgg_book.accounting.LayerRow. */
function row(name, type, outShape, params, macs) {
  const activations = outShape.reduce((a, b) => a * b, 1);
  return { name, type, outShape, params, macs, activations };
}

/** A k x k convolution with padding k // 2 (keeps the side): its parameters and MACs. */
function convCost(cin, cout, k, side, batch, countBias) {
  const params = cout * cin * k * k + cout;
  const perOutput = cin * k * k + (countBias ? 1 : 0);
  return { params, macs: batch * cout * side * side * perOutput };
}

/** A linear layer (fin -> fout) on a batch: its parameters and MACs. */
function linearCost(fin, fout, batch, countBias) {
  return { params: fout * fin + fout, macs: batch * fout * (fin + (countBias ? 1 : 0)) };
}

/** The "features" stack: rows named features.0, features.1, ... as in torchvision. */
function featureRows(layers, opts, rows) {
  const { batchNorm, batch, countBias } = opts;
  let channels = 3;
  let side = opts.side;
  for (const item of layers) {
    const name = () => `features.${rows.length}`;
    if (item === "M") {
      side = Math.floor(side / 2);  // MaxPool2d(2, 2) floors an odd side
      rows.push(row(name(), "MaxPool2d", [batch, channels, side, side], 0, 0));
    } else if (item === "LRN") {
      rows.push(row(name(), "LocalResponseNorm", [batch, channels, side, side], 0, 0));
    } else {
      const [k, cout] = Array.isArray(item) ? [1, item[1]] : [3, item];
      if (!isPositiveInt(cout) || (Array.isArray(item) && item[0] !== "1x1")) {
        throw new Error(`malformed config item ${JSON.stringify(item)}`);
      }
      const c = convCost(channels, cout, k, side, batch, countBias);
      rows.push(row(name(), "Conv2d", [batch, cout, side, side], c.params, c.macs));
      if (batchNorm) rows.push(row(name(), "BatchNorm2d", [batch, cout, side, side], 2 * cout, 0));
      rows.push(row(name(), "ReLU", [batch, cout, side, side], 0, 0));
      channels = cout;
    }
  }
  return channels;
}

/** avgpool and the classifier: Linear ReLU Dropout Linear ReLU Dropout Linear. */
function classifierRows(channels, opts, rows) {
  const { batch, countBias, numClasses } = opts;
  const p = POOLED_SIDE;
  rows.push(row("avgpool", "AdaptiveAvgPool2d", [batch, channels, p, p], 0, 0));
  const sizes = [[channels * p * p, HIDDEN], [HIDDEN, HIDDEN], [HIDDEN, numClasses]];
  sizes.forEach(([fin, fout], i) => {
    const c = linearCost(fin, fout, batch, countBias);
    rows.push(row(`classifier.${3 * i}`, "Linear", [batch, fout], c.params, c.macs));
    if (i < 2) {
      rows.push(row(`classifier.${3 * i + 1}`, "ReLU", [batch, fout], 0, 0));
      rows.push(row(`classifier.${3 * i + 2}`, "Dropout", [batch, fout], 0, 0));
    }
  });
}

/**
 * Every leaf layer's row for the VGG whose layer list is `layers` (e.g. the JSON form of
 * vgg_book.models.CONFIGS["D"]) on a batch of `batch` RGB images of side `side`:
 * {name, type, outShape, params, macs, activations}, mirroring
 * summary(vgg(config, batch_norm=batchNorm, num_classes=numClasses), (batch, 3, side, side),
 * count_bias=countBias).rows. MACs and activations are for the whole batch.
 */
export function vggRows(layers, { batchNorm = false, side = 224, batch = 1, countBias = true,
                                  numClasses = 1000 } = {}) {
  layerList(layers);
  checkInt("side", side, MIN_SIDE);
  checkInt("batch", batch, 1);
  checkInt("numClasses", numClasses, 1);
  const opts = { batchNorm: !!batchNorm, side, batch, countBias: !!countBias, numClasses };
  const rows = [];
  const channels = featureRows(layers, opts, rows);
  classifierRows(channels, opts, rows);
  for (const r of rows) {
    if (![r.params, r.macs, r.activations].every(Number.isSafeInteger)) {
      throw new Error(`${r.name}: a count exceeds 2^53, too large to stay exact`);
    }
  }
  return rows;
}

/** Bytes of each row's output: activations x bytes per value. */
export function activationBytes(rows, bytesPerElement) {
  return rows.map((r) => r.activations * bytesPerElement);
}

/**
 * Totals of `rows`: params, macs, flops (2 x macs), gmacs, gflops, activations (values, whole
 * batch, in-place rows counted again as in summary()), activationBytes and weightBytes
 * (params x bytes per value).
 */
export function totals(rows, bytesPerElement) {
  const sum = (key) => rows.reduce((a, r) => a + r[key], 0);
  const params = sum("params");
  const macs = sum("macs");
  const activations = sum("activations");
  return {
    params, macs, flops: 2 * macs, gmacs: macs / 1e9, gflops: (2 * macs) / 1e9,
    activations,
    activationBytes: activations * bytesPerElement,
    weightBytes: params * bytesPerElement,
  };
}

/** "1234567" -> "1,234,567" (integers; the display's format). */
export function formatInt(n) {
  const s = String(Math.trunc(Math.abs(n)));
  return (n < 0 ? "-" : "") + s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** x with `digits` decimals and thousands separators: 6530.894 -> "6,530.89". */
export function formatFixed(x, digits) {
  const [whole, frac] = x.toFixed(digits).split(".");
  return formatInt(Number(whole)) + (frac ? `.${frac}` : "");
}

/** Three significant digits, trailing decimal zeros dropped: 2.00 -> "2", 590 -> "590". */
function threeDigits(x) {
  const s = x.toPrecision(3);
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

/** A short count: 1,792 -> "1.79k", 590,080 -> "590k", 138,357,544 -> "138M". */
export function formatShort(n) {
  const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [v, u] of units) {
    if (n >= v) return `${threeDigits(n / v)}${u}`;
  }
  return String(n);
}

/** Bytes in binary units: 553,430,176 -> "528 MiB", 100 x 2^20 -> "100 MiB". */
export function formatBytes(n) {
  const units = [[2 ** 40, "TiB"], [2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]];
  for (const [v, u] of units) {
    if (n >= v) return `${threeDigits(n / v)} ${u}`;
  }
  return `${n} B`;
}

// ---------------------------------------------------------------------------------------
// The widget (DOM only below this line)
// ---------------------------------------------------------------------------------------

const STYLE = `
.vggb-acct { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1a1a1a; background: #fff; max-width: 760px; box-sizing: border-box; }
.vggb-acct .ctl { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center;
  margin-bottom: 6px; }
.vggb-acct label { display: inline-flex; align-items: center; gap: 4px; }
.vggb-acct select, .vggb-acct input { font: inherit; }
.vggb-acct input[type=number] { width: 4.5em; }
.vggb-acct input[type=range] { width: 110px; }
.vggb-acct .err { color: #b00020; min-height: 1.2em; }
.vggb-acct table.tot { border-collapse: collapse; margin: 4px 0 8px; }
.vggb-acct table.tot td { padding: 1px 10px 1px 0; vertical-align: baseline; }
.vggb-acct table.tot td.n { text-align: right; font-variant-numeric: tabular-nums; }
.vggb-acct table.tot td.u { color: #555; }
.vggb-acct .chart { max-height: 560px; overflow-y: auto; border-top: 1px solid #ddd; }
.vggb-acct .chart:focus { outline: 2px solid #4c72b0; }
.vggb-acct svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  fill: #1a1a1a; }
.vggb-acct svg text.h { font-weight: 600; }
.vggb-acct svg text.v { fill: #444; }
.vggb-acct svg text.z { fill: #aaa; }
.vggb-acct .note { color: #555; margin: 6px 0 0; }
`;

const COLUMNS = [
  { key: "params", title: "parameters", color: "#4c72b0", fmt: formatShort },
  { key: "macs", title: "MACs", color: "#dd8452", fmt: formatShort },
  { key: "bytes", title: "activations", color: "#55a868", fmt: formatBytes },
];

const DEFAULTS = { config: "D", batch_norm: false, side: 224, batch: 1, dtype: "float32",
                   count_bias: true, num_classes: 1000 };

function validSide(v) { return Number.isInteger(v) && v >= MIN_SIDE && v <= MAX_SIDE; }
function validBatch(v) { return Number.isInteger(v) && v >= 1 && v <= MAX_BATCH; }

/** Is `v` an acceptable value of trait `k`? (`configs`: the model's configurations) */
function validTrait(k, v, configs) {
  switch (k) {
    case "config": return typeof v === "string" && Object.prototype.hasOwnProperty.call(configs, v);
    case "dtype": return typeof v === "string" && Object.prototype.hasOwnProperty.call(DTYPES, v);
    case "batch_norm": case "count_bias": return typeof v === "boolean";
    case "side": return validSide(v);
    case "batch": return validBatch(v);
    case "num_classes": return Number.isInteger(v) && v >= 1;
    default: return false;
  }
}

function readTrait(model, k, configs) {
  try {
    const v = model.get(k);
    return validTrait(k, v, configs) ? v : DEFAULTS[k];
  } catch (e) {
    return DEFAULTS[k];
  }
}

function escapeXml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function make(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function labelled(text, ...controls) {
  const lab = make("label");
  if (text) lab.append(text);
  lab.append(...controls);
  return lab;
}

function selectOf(testid, aria, options) {
  const s = make("select", { "data-testid": testid, "aria-label": aria });
  for (const [value, text] of options) s.append(make("option", { value }, text));
  return s;
}

function numberPair(testid, aria, min, max) {
  const range = make("input", { type: "range", min, max, step: 1,
                                "data-testid": `${testid}-range`, "aria-label": `${aria} (slider)` });
  const num = make("input", { type: "number", min, max, step: 1,
                              "data-testid": testid, "aria-label": aria });
  return [range, num];
}

/** The "configs" trait: {name: layer list}, sent by the Python class ({} if missing). */
function readConfigs(model) {
  try {
    const v = model.get("configs");
    if (v && typeof v === "object" && !Array.isArray(v)) return v;
  } catch (e) { /* no such trait */ }
  return {};
}

function buildControls(configs) {
  const c = {};
  c.config = selectOf("acct-config", "VGG configuration",
                      Object.keys(configs).map((k) => [k, `VGG ${k}`]));
  c.batch_norm = make("input", { type: "checkbox", "data-testid": "acct-bn",
                                 "aria-label": "Batch normalisation after every convolution" });
  [c.sideRange, c.side] = numberPair("acct-side", "Input side in pixels", MIN_SIDE, MAX_SIDE);
  [c.batchRange, c.batch] = numberPair("acct-batch", "Batch size", 1, MAX_BATCH);
  c.dtype = selectOf("acct-dtype", "Data type of weights and activations",
                     Object.entries(DTYPES).map(([k, b]) => [k, `${k} (${b} bytes)`]));
  c.count_bias = make("input", { type: "checkbox", "data-testid": "acct-bias",
                                 "aria-label": "Count bias adds as multiply-adds" });
  c.show = selectOf("acct-show", "Layers to draw",
                    [["all", "all layers"], ["weighted", "conv and linear only"]]);
  return c;
}

function totalsTable() {
  const t = make("table", { class: "tot", "data-testid": "acct-totals" });
  const lines = [
    ["parameters", "acct-params", null, null],
    ["weight memory (bytes)", "acct-weight-bytes", "acct-weight-human", null],
    ["multiply-adds (MACs)", "acct-macs", "acct-gmacs", "GMACs"],
    ["FLOPs = 2 x MACs", "acct-flops", "acct-gflops", "GFLOPs"],
    ["activation values", "acct-act-values", "acct-rows", "layer rows"],
    ["activation memory (bytes)", "acct-act-bytes", "acct-act-human", null],
  ];
  for (const [label, id, id2, unit] of lines) {
    const tr = make("tr");
    tr.append(make("td", {}, label), make("td", { class: "n", "data-testid": id }));
    const u = make("td", { class: "u" });
    if (id2) {
      u.append(make("span", { "data-testid": id2 }));
      if (unit) u.append(` ${unit}`);
    }
    tr.append(u);
    t.append(tr);
  }
  return t;
}

function setText(root, testid, text) {
  const node = root.querySelector(`[data-testid="${testid}"]`);
  if (node) node.textContent = text;
}

/** The bar chart as an SVG string: one row per layer, three columns of bars. */
function chartSvg(rows, bytes, dtype) {
  const labelW = 212, colW = 174, barW = 104, rowH = 16, top = 22, width = labelW + 3 * colW;
  const data = rows.map((r, i) => ({ ...r, bytes: bytes[i] }));
  const max = Object.fromEntries(COLUMNS.map((c) => [c.key, Math.max(1, ...data.map((d) => d[c.key]))]));
  const parts = [];
  COLUMNS.forEach((c, j) => {
    const title = c.key === "bytes" ? `${c.title}, ${dtype}` : c.title;
    parts.push(`<text class="h" x="${labelW + j * colW}" y="14">${escapeXml(title)}</text>`);
  });
  data.forEach((d, i) => {
    const y = top + i * rowH;
    const tip = `${d.name} ${d.type}, output ${d.outShape.join("\u00d7")}: ${formatInt(d.params)} parameters, `
      + `${formatInt(d.macs)} MACs, ${formatInt(d.activations)} values = ${formatInt(d.bytes)} bytes`;
    parts.push(`<g data-testid="acct-row" data-name="${escapeXml(d.name)}"><title>${escapeXml(tip)}</title>`);
    if (i % 2 === 1) parts.push(`<rect x="0" y="${y}" width="${width}" height="${rowH}" fill="#f6f6f6"/>`);
    parts.push(`<text x="2" y="${y + 12}">${escapeXml(d.name)}</text>`);
    parts.push(`<text class="v" x="88" y="${y + 12}">${escapeXml(d.type)}</text>`);
    COLUMNS.forEach((c, j) => {
      const x = labelW + j * colW;
      const v = d[c.key];
      const w = v > 0 ? Math.max(1, (barW * v) / max[c.key]) : 0;
      if (w > 0) parts.push(`<rect x="${x}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${c.color}"/>`);
      parts.push(`<text class="${v > 0 ? "v" : "z"}" x="${x + w + 4}" y="${y + 12}">${escapeXml(c.fmt(v))}</text>`);
    });
    parts.push("</g>");
  });
  const height = top + data.length * rowH + 4;
  // width 100%: the chart scales down to the page's column (the viewBox keeps its shape)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="100%" style="max-width: ${width}px" `
    + `viewBox="0 0 ${width} ${height}" role="img" aria-label="Per-layer parameters, MACs and activation memory">`
    + parts.join("") + "</svg>";
}

function render({ model, el }) {
  const configs = readConfigs(model);  // read once: data, not a control
  const state = {};
  for (const k of Object.keys(DEFAULTS)) state[k] = readTrait(model, k, configs);
  let show = "all";

  function sync(k, v) {
    try {
      model.set(k, v);
      const p = model.save_changes();
      if (p && p.catch) p.catch(() => {});
    } catch (e) { /* no kernel (static HTML): the page still works */ }
  }

  const root = make("div", { class: "vggb-acct" });
  root.append(make("style", {}, STYLE));
  const c = buildControls(configs);
  const ctl = make("div", { class: "ctl" });
  ctl.append(labelled("Configuration ", c.config), labelled("", c.batch_norm, " batch norm"),
             labelled("Input side ", c.sideRange, c.side), labelled("Batch ", c.batchRange, c.batch),
             labelled("dtype ", c.dtype), labelled("", c.count_bias, " count bias adds"),
             labelled("Show ", c.show));
  const err = make("div", { class: "err", "data-testid": "acct-error", role: "status" });
  const chart = make("div", { class: "chart", tabindex: "0", "data-testid": "acct-chart",
                              "aria-label": "Per-layer bar chart (scrolls)" });
  const note = make("p", { class: "note" },
    "Bars are scaled to the largest layer of each column. MACs and activations are for the "
    + "whole batch; activation memory sums every layer's output (an in-place ReLU counted "
    + "again), as vgg_book.accounting.summary does. Pools, ReLU, batch norm, LRN and dropout "
    + "count 0 MACs. FLOPs = 2 x MACs.");
  root.append(ctl, err, totalsTable(), chart, note);
  el.append(root);

  function showControls() {
    c.config.value = state.config;
    c.batch_norm.checked = state.batch_norm;
    c.side.value = c.sideRange.value = String(state.side);
    c.batch.value = c.batchRange.value = String(state.batch);
    c.dtype.value = state.dtype;
    c.count_bias.checked = state.count_bias;
  }

  function redraw() {
    try {
      if (!Object.prototype.hasOwnProperty.call(configs, state.config)) {
        throw new Error(`no layer list for VGG config ${state.config} (the "configs" trait is missing)`);
      }
      const rows = vggRows(configs[state.config], { batchNorm: state.batch_norm, side: state.side,
        batch: state.batch, countBias: state.count_bias, numClasses: state.num_classes });
      const bpe = DTYPES[state.dtype];
      const t = totals(rows, bpe);
      setText(root, "acct-params", formatInt(t.params));
      setText(root, "acct-weight-human", formatBytes(t.weightBytes));
      setText(root, "acct-weight-bytes", formatInt(t.weightBytes));
      setText(root, "acct-macs", formatInt(t.macs));
      setText(root, "acct-gmacs", formatFixed(t.gmacs, 2));
      setText(root, "acct-flops", formatInt(t.flops));
      setText(root, "acct-gflops", formatFixed(t.gflops, 2));
      setText(root, "acct-act-values", formatInt(t.activations));
      setText(root, "acct-rows", String(rows.length));
      setText(root, "acct-act-bytes", formatInt(t.activationBytes));
      setText(root, "acct-act-human", formatBytes(t.activationBytes));
      const shown = show === "all" ? rows : rows.filter((r) => r.type === "Conv2d" || r.type === "Linear");
      chart.innerHTML = chartSvg(shown, activationBytes(shown, bpe), state.dtype);
    } catch (e) {
      err.textContent = String(e && e.message ? e.message : e);
    }
  }

  function update(k, v) {
    state[k] = v;
    showControls();
    redraw();
    sync(k, v);
  }

  function onInt(k, node, valid, lo, hi) {
    const v = Number(node.value);
    if (node.value.trim() === "" || !valid(v)) {
      err.textContent = `${k === "side" ? "Input side" : "Batch size"} must be an integer from ${lo} to ${hi}`
        + (k === "side" ? " (five 2x2 pools need at least 32 pixels)." : ".");
      return;
    }
    err.textContent = "";
    if (v !== state[k]) update(k, v);
  }

  c.config.addEventListener("change", () => update("config", c.config.value));
  c.batch_norm.addEventListener("change", () => update("batch_norm", c.batch_norm.checked));
  c.dtype.addEventListener("change", () => update("dtype", c.dtype.value));
  c.count_bias.addEventListener("change", () => update("count_bias", c.count_bias.checked));
  c.show.addEventListener("change", () => { show = c.show.value; redraw(); });
  for (const [k, nodes, valid, hi] of [["side", [c.side, c.sideRange], validSide, MAX_SIDE],
                                       ["batch", [c.batch, c.batchRange], validBatch, MAX_BATCH]]) {
    const lo = k === "side" ? MIN_SIDE : 1;
    for (const node of nodes) node.addEventListener("input", () => onInt(k, node, valid, lo, hi));
    // Leaving the number box with a bad value puts the last good one back.
    nodes[0].addEventListener("change", () => { if (!valid(Number(nodes[0].value))) { showControls(); err.textContent = ""; } });
  }

  // A kernel (Jupyter, Colab) may set the traits from Python: follow it.
  const handlers = Object.keys(DEFAULTS).map((k) => {
    const cb = () => {
      const v = readTrait(model, k, configs);
      if (v !== state[k]) { state[k] = v; showControls(); redraw(); }
    };
    try { model.on(`change:${k}`, cb); } catch (e) { /* no model events: static page */ }
    return [k, cb];
  });

  showControls();
  redraw();
  return () => {
    for (const [k, cb] of handlers) {
      try { model.off(`change:${k}`, cb); } catch (e) { /* nothing to remove */ }
    }
  };
}

export default { render };
