// Receptive-field explorer: the front end of vgg_book.rf_explorer.RFExplorer (an anywidget).
//
// It computes, in the reader's browser, for a stack of convolutions and pools (one the reader
// builds, or a VGG configuration of the paper) and for every layer:
//   size  = side of the receptive field (RF) in input pixels,   size'  = size + (k - 1) * jump
//   jump  = input pixels between adjacent output units,          jump'  = jump * s
//   start = centre of the first unit's RF (pixel i centred at i), start' = start + ((k-1)/2 - p) * jump
//   out   = output side,  out' = floor((n + 2p - k) / s) + 1  (0 when the window does not fit)
// with the effective kernel k = dilation * (kernel - 1) + 1; and the weights (no bias) of the
// stack against ONE convolution with kernel = RF and stride = jump.
// The pure functions are in receptive.mjs (re-exported here); tests/test_rf_explorer.py imports
// this very file in Node (tests/js/rf_check.mjs) and checks them, exactly, against vgg_book.receptive
// .receptive_field and real torch.nn.Conv2d weight counts.
// The configurations of the paper's Table 1 are not copied here: render reads them from the
// widget's `configs` trait (vgg_book.models.CONFIGS, name -> layer list, tuples as lists).
// In a layer list an integer c is a 3x3 convolution (padding 1) to c channels, "M" a 2x2
// max-pool (stride 2), "LRN" local response normalisation, ["1x1", c] a 1x1 convolution.
// No network: the page draws with SVG and plain DOM; vgg_book.esm.bundle inlines receptive.mjs.

import {
  samePadding, normLayer, layerNames, outSide, stackTable, vggLayers, convWeights,
  layerWidths, stackParams, bigKernelParams, comparison, fieldBox, formatInt,
} from "./receptive.mjs";
export * from "./receptive.mjs";

// ---------------------------------------------------------------------------------------
// The view: DOM and SVG only.

const SVG = "http://www.w3.org/2000/svg";
const IMAGE_SIDE = 28;
const VGG_SIDE = 224;
const MAX_LAYERS = 32;

const CSS = `
.vggb-rf { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: #1f2328; background: #fff; max-width: 760px; box-sizing: border-box;
  border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; }
.vggb-rf * { box-sizing: border-box; }
.vggb-rf .vggb-ctrls { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; margin: 4px 0; }
.vggb-rf label { display: inline-flex; gap: 4px; align-items: center; }
.vggb-rf button, .vggb-rf select, .vggb-rf input { font: inherit; font-size: 13px; color: #1f2328;
  background: #f6f8fa; border: 1px solid #8c959f; border-radius: 4px; padding: 2px 7px; }
.vggb-rf button:hover:not(:disabled) { background: #eaeef2; }
.vggb-rf button:disabled { color: #8c959f; }
.vggb-rf button:focus-visible, .vggb-rf select:focus-visible, .vggb-rf input:focus-visible {
  outline: 2px solid #0969da; outline-offset: 1px; }
.vggb-rf input[type=number] { width: 70px; }
.vggb-rf input[type=range] { width: 200px; padding: 0; }
.vggb-rf .summary { background: #f6f8fa; border-radius: 4px; padding: 4px 8px; margin: 6px 0; }
.vggb-rf .summary b { font-variant-numeric: tabular-nums; }
.vggb-rf .msg { color: #9a6700; min-height: 1.2em; }
.vggb-rf .tablewrap { max-height: 230px; overflow-y: auto; border: 1px solid #d0d7de; border-radius: 4px; }
.vggb-rf table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
.vggb-rf th, .vggb-rf td { padding: 1px 6px; text-align: right; border-bottom: 1px solid #eaeef2; }
.vggb-rf th:first-child, .vggb-rf td:first-child { text-align: left; }
.vggb-rf thead th { position: sticky; top: 0; background: #f6f8fa; }
.vggb-rf tr.sel td { background: #fff1e5; font-weight: 600; }
.vggb-rf .figs { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 8px; }
.vggb-rf figure { margin: 0; width: 236px; }
.vggb-rf figcaption { font-size: 12.5px; color: #57606a; }
.vggb-rf svg.draw { width: 236px; height: 236px; display: block; background: #fff;
  border: 1px solid #d0d7de; }
.vggb-rf .bars { flex: 1; min-width: 220px; }
.vggb-rf .bar { height: 16px; border-radius: 2px; margin: 2px 0 6px; min-width: 1px; }
.vggb-rf .bar.stack { background: #0969da; }
.vggb-rf .bar.big { background: #8c959f; }
.vggb-rf [hidden] { display: none !important; }
`;

function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function s(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function options(select, values, labels = values) {
  select.replaceChildren(...values.map((v, i) => h("option", { value: String(v), text: labels[i] })));
}

/** Pixels of the 28x28 image as SVG squares, each `scale` input pixels wide. */
function imageLayer(pixels, scale, opacity) {
  const g = s("g", { "shape-rendering": "crispEdges", opacity });
  for (let i = 0; i < IMAGE_SIDE; i++) {
    for (let j = 0; j < IMAGE_SIDE; j++) {
      const v = pixels[i * IMAGE_SIDE + j] || 0;
      if (!v) continue;
      const grey = 255 - v;  // dark garment on white, as imshow(cmap="gray_r")
      g.append(s("rect", { x: j * scale - 0.5, y: i * scale - 0.5, width: scale, height: scale,
                           fill: `rgb(${grey},${grey},${grey})` }));
    }
  }
  return g;
}

/** Draw the field of the central unit of `row` on an n x n input into `svg`. */
function drawField(svg, row, n, pixels, scale, opacity) {
  const box = fieldBox(row, n);
  const over = box ? Math.max(0, -0.5 - box.left, box.right - (n - 0.5)) : 0;
  const m = over + n * 0.03;
  svg.setAttribute("viewBox", `${-0.5 - m} ${-0.5 - m} ${n + 2 * m} ${n + 2 * m}`);
  svg.replaceChildren();
  svg.append(s("rect", { x: -0.5 - m, y: -0.5 - m, width: n + 2 * m, height: n + 2 * m,
                         fill: "#f6f8fa" }));
  svg.append(s("rect", { x: -0.5, y: -0.5, width: n, height: n, fill: "#fff" }));
  svg.append(imageLayer(pixels, scale, opacity));
  if (n === VGG_SIDE) {  // the 7x7 grid of the last pool's cells (32 pixels)
    const grid = s("g", { stroke: "#d0d7de", "stroke-width": 1, "vector-effect": "non-scaling-stroke" });
    for (let x = 32; x < n; x += 32) {
      grid.append(s("line", { x1: x - 0.5, y1: -0.5, x2: x - 0.5, y2: n - 0.5, "vector-effect": "non-scaling-stroke" }));
      grid.append(s("line", { x1: -0.5, y1: x - 0.5, x2: n - 0.5, y2: x - 0.5, "vector-effect": "non-scaling-stroke" }));
    }
    svg.append(grid);
  }
  svg.append(s("rect", { x: -0.5, y: -0.5, width: n, height: n, fill: "none", stroke: "#57606a",
                         "stroke-width": 1.2, "vector-effect": "non-scaling-stroke" }));
  svg.dataset.box = box ? `${box.left},${box.right}` : "none";
  if (!box) return null;
  if (row.jump > 1 && row.out <= 16) {  // centres of the output units: spaced by the jump
    const dots = s("g", { fill: "#0969da" });
    for (let a = 0; a < row.out; a++) {
      for (let b = 0; b < row.out; b++) {
        dots.append(s("circle", { cx: row.start + b * row.jump, cy: row.start + a * row.jump,
                                  r: Math.max(0.25, n / 150) }));
      }
    }
    svg.append(dots);
  }
  const lo = Math.max(box.left, -0.5), hi = Math.min(box.right, n - 0.5);
  svg.append(s("rect", { x: lo, y: lo, width: hi - lo, height: hi - lo, fill: "#cf222e",
                         "fill-opacity": 0.12, stroke: "#cf222e", "stroke-width": 2,
                         "vector-effect": "non-scaling-stroke" }));
  if (!box.inside) {
    svg.append(s("rect", { x: box.left, y: box.left, width: box.size, height: box.size,
                           fill: "none", stroke: "#cf222e", "stroke-width": 1.5,
                           "stroke-dasharray": "5 4", "vector-effect": "non-scaling-stroke" }));
  }
  svg.append(s("circle", { cx: box.centre, cy: box.centre, r: Math.max(0.35, n / 90), fill: "#cf222e" }));
  return box;
}

function clampInt(value, lo, hi, fallback) {
  const v = Math.round(Number(value));
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
}

function render({ model, el }) {
  const get = (k, fallback) => { try { const v = model.get(k); return v ?? fallback; } catch (e) { return fallback; } };
  const sync = (k, v) => {
    try { model.set(k, v); const p = model.save_changes(); if (p && p.catch) p.catch(() => {}); }
    catch (e) { /* static page: no kernel to tell */ }
  };
  const copy = (x) => JSON.parse(JSON.stringify(x));

  // The configurations (name -> layer list), from Python; read once, they do not change.
  const configs = get("configs", {});
  const known = (name) => Array.isArray(configs[name]);

  // Local state, from the model's traits.
  const st = {
    mode: get("mode", "build") === "vgg" ? "vgg" : "build",
    stack: copy(get("stack", [])),
    config: known(get("config", "D")) ? get("config", "D") : "D",
    layer: get("layer", "pool5"),
    side: clampInt(get("input_side", 224), 1, 4096, 224),
    channels: clampInt(get("channels", 64), 1, 4096, 64),
    nextStride: get("next_stride", 1) === 2 ? 2 : 1,
    nextDilation: [1, 2, 3].includes(get("next_dilation", 1)) ? get("next_dilation", 1) : 1,
    pixels: get("image", []),
  };
  const initialStack = copy(st.stack);

  // Controls.
  const mode = h("select", { "data-testid": "rf-mode", "aria-label": "Explorer mode" });
  options(mode, ["build", "vgg"], ["Build a stack", "VGG configuration"]);
  const side = h("input", { type: "number", min: 1, max: 4096, step: 1, "data-testid": "rf-input-side",
                            "aria-label": "Input side in pixels (for the output sides in the table)" });
  const stride = h("select", { "data-testid": "rf-stride", "aria-label": "Stride of the next convolution" });
  options(stride, [1, 2]);
  const dilation = h("select", { "data-testid": "rf-dilation", "aria-label": "Dilation of the next convolution" });
  options(dilation, [1, 2, 3]);
  const addConv = [3, 5, 7].map((k) => h("button", {
    type: "button", "data-testid": `rf-add-conv${k}`, "aria-label": `Add a ${k}x${k} convolution`,
    text: `+ ${k}x${k} conv` }));
  const addPool = h("button", { type: "button", "data-testid": "rf-add-pool",
                                "aria-label": "Add a 2x2 max-pool, stride 2", text: "+ 2x2 pool" });
  const remove = h("button", { type: "button", "data-testid": "rf-remove",
                               "aria-label": "Remove the last layer", text: "Remove last" });
  const reset = h("button", { type: "button", "data-testid": "rf-reset",
                              "aria-label": "Reset the stack to its first state", text: "Reset" });
  const channels = h("input", { type: "number", min: 1, max: 4096, step: 1, "data-testid": "rf-channels",
                                "aria-label": "Channels in and out of every convolution" });
  const config = h("select", { "data-testid": "rf-config", "aria-label": "VGG configuration" });
  options(config, Object.keys(configs));
  const layerSel = h("select", { "data-testid": "rf-layer", "aria-label": "Layer of the VGG configuration" });
  const layerRange = h("input", { type: "range", min: 0, step: 1, "data-testid": "rf-layer-slider",
                                  "aria-label": "Layer of the VGG configuration (slider)" });

  // Read-outs.
  const out = {};
  for (const key of ["layer-name", "size", "jump", "start", "out", "stack-params", "big-params",
                     "ratio", "big-label", "stack-label"]) {
    out[key] = h(key.endsWith("label") ? "span" : "b", { "data-testid": `rf-${key}` });
  }
  const msg = h("div", { class: "msg", role: "status", "data-testid": "rf-message" });
  const tbody = h("tbody");
  const headers = ["layer", "kernel", "stride", "dilation", "padding", "RF size", "jump", "start", "out side"];
  const table = h("table", { "data-testid": "rf-table" },
                  [h("thead", {}, [h("tr", {}, headers.map((t) => h("th", { text: t })))]), tbody]);
  const svg28 = s("svg", { class: "draw", "data-testid": "rf-draw-28", role: "img",
                           "aria-label": "Receptive field on the 28x28 Fashion-MNIST image" });
  const svg224 = s("svg", { class: "draw", "data-testid": "rf-draw-224", role: "img",
                            "aria-label": "Receptive field on a 224x224 VGG input" });
  const cap28 = h("figcaption"), cap224 = h("figcaption");
  const barStack = h("div", { class: "bar stack", "data-testid": "rf-bar-stack" });
  const barBig = h("div", { class: "bar big", "data-testid": "rf-bar-big" });

  const buildRow = h("div", { class: "vggb-ctrls" }, [
    h("label", {}, ["stride", stride]), h("label", {}, ["dilation", dilation]), ...addConv, addPool,
    remove, reset, h("label", {}, ["channels C", channels])]);
  const vggRow = h("div", { class: "vggb-ctrls" }, [
    h("label", {}, ["configuration", config]), h("label", {}, ["layer", layerSel]), layerRange]);
  const root = h("div", { class: "vggb-rf" }, [
    h("style", { text: CSS }),
    h("div", { class: "vggb-ctrls" }, [h("label", {}, ["Mode", mode]), h("label", {}, ["input side", side]), "px"]),
    buildRow, vggRow,
    h("div", { class: "summary" }, [
      out["layer-name"], ": receptive field ", out.size, " px, jump ", out.jump, " px, start ",
      out.start, ", output side ", out.out]),
    msg,
    h("div", { class: "tablewrap" }, [table]),
    h("div", { class: "figs" }, [
      h("figure", {}, [svg28, cap28]), h("figure", {}, [svg224, cap224]),
      h("div", { class: "bars" }, [
        h("div", {}, ["stack: ", out["stack-params"], " weights ", out["stack-label"]]), barStack,
        h("div", {}, ["one ", out["big-label"], ": ", out["big-params"], " weights"]), barBig,
        h("div", {}, ["one big kernel / stack: ", out.ratio]),
        h("div", { class: "note", text: "Weights without biases. The single convolution has " +
          "kernel = RF and stride = jump: the same field and output grid, one ReLU." })])]),
  ]);
  el.replaceChildren(root);

  // The layers on show and the selected one.
  function current() {
    if (st.mode === "vgg") {
      const layers = vggLayers(configs[st.config]);
      const names = layerNames(layers);
      let index = names.indexOf(st.layer);
      if (index < 0) { index = layers.length - 1; st.layer = names[index]; }
      return { layers, names, index, channels: 64, inChannels: 3 };
    }
    const layers = st.stack.map(normLayer);
    return { layers, names: layerNames(layers), index: layers.length - 1,
             channels: st.channels, inChannels: st.channels };
  }

  function describe(row) {
    if (row.kind === "pool") return `${row.kernel}x${row.kernel} max-pool, stride ${row.stride}`;
    if (row.kind === "lrn") return "local response normalisation";
    return `${row.kernel}x${row.kernel} conv, stride ${row.stride}, dilation ${row.dilation}, padding ${row.padding}`;
  }

  function fillTable(rows, index) {
    tbody.replaceChildren(...rows.map((r, i) => {
      const cells = [r.name, r.kind === "lrn" ? "-" : `${r.kernel}x${r.kernel}`, r.stride, r.dilation,
                     r.padding, formatInt(r.size), formatInt(r.jump), formatInt(r.start),
                     r.out === null ? "" : (r.out > 0 ? formatInt(r.out) : "empty")];
      const tr = h("tr", { "data-testid": "rf-row", "data-name": r.name, title: describe(r) },
                   cells.map((c) => h("td", { text: String(c) })));
      if (i === index) tr.className = "sel";
      return tr;
    }));
    const sel = tbody.children[index], wrap = table.parentNode;
    if (sel && wrap && wrap.scrollHeight > wrap.clientHeight) {  // keep the selected row in view
      wrap.scrollTop = Math.max(0, sel.offsetTop - wrap.clientHeight / 2);
    }
  }

  function redraw() {
    const cur = current();
    const rows = stackTable(cur.layers, st.side);
    const row = rows[cur.index];
    const upto = cur.layers.slice(0, cur.index + 1);
    fillTable(rows, cur.index);
    buildRow.hidden = st.mode !== "build";
    vggRow.hidden = st.mode !== "vgg";
    mode.value = st.mode; side.value = String(st.side); channels.value = String(st.channels);
    stride.value = String(st.nextStride); dilation.value = String(st.nextDilation);
    config.value = st.config;
    options(layerSel, cur.names);
    layerSel.value = st.layer;
    layerRange.max = String(Math.max(0, cur.names.length - 1));
    layerRange.value = String(Math.max(0, cur.index));
    for (const b of [...addConv, addPool]) b.disabled = st.stack.length >= MAX_LAYERS;
    remove.disabled = st.stack.length === 0;

    const notes = [];
    const r28 = stackTable(upto, IMAGE_SIDE)[cur.index];
    const r224 = stackTable(upto, VGG_SIDE)[cur.index];
    if (!row) {
      out["layer-name"].textContent = "input";
      out.size.textContent = "1"; out.jump.textContent = "1"; out.start.textContent = "0";
      out.out.textContent = formatInt(st.side);
      notes.push("The stack is empty: add a convolution or a pool.");
    } else {
      out["layer-name"].textContent = row.name;
      out.size.textContent = formatInt(row.size);
      out.jump.textContent = formatInt(row.jump);
      out.start.textContent = formatInt(row.start);
      out.out.textContent = row.out > 0 ? formatInt(row.out) : "empty";
      const empty = rows.find((r) => r.out === 0);
      if (empty) notes.push(`A ${st.side}x${st.side} input is too small: the output of ${empty.name} is empty.`);
    }
    const box28 = drawField(svg28, r28, IMAGE_SIDE, st.pixels, 1, 1);
    const box224 = drawField(svg224, r224, VGG_SIDE, st.pixels, 8, 0.35);
    cap28.textContent = !row ? "28x28 Fashion-MNIST image" : box28
      ? `28x28 image: field ${row.size}x${row.size} of unit (${box28.unit}, ${box28.unit})` +
        (box28.inside ? "" : "; dashed: beyond the image, in the zero padding")
      : `28x28 image: ${r28.name}'s output is empty at this side (d2l resizes Fashion-MNIST to 224)`;
    cap224.textContent = !row ? "224x224 VGG input" : box224
      ? `224x224 VGG input: field of unit (${box224.unit}, ${box224.unit})` +
        (box224.inside ? "" : "; dashed: in the padding") + (r224.jump > 1 && r224.out <= 16 ? "; dots: unit centres" : "")
      : `224x224 VGG input: ${r224.name}'s output is empty`;

    const cmp = row ? comparison(cur.layers, cur.index, cur.channels, cur.inChannels)
      : { size: 1, jump: 1, width: cur.channels, inChannels: cur.inChannels, stack: 0, big: 0 };
    out["stack-params"].textContent = formatInt(cmp.stack);
    out["big-params"].textContent = formatInt(cmp.big);
    out["big-label"].textContent = `${cmp.size}x${cmp.size} conv, stride ${cmp.jump}`;
    out["stack-label"].textContent = st.mode === "vgg"
      ? `(real widths, 3 channels in, ${cmp.width} out)` : `(C = ${cmp.width} in and out)`;
    out.ratio.textContent = cmp.stack ? `${(cmp.big / cmp.stack).toFixed(2)}x` : "-";
    const most = Math.max(cmp.stack, cmp.big, 1);
    barStack.style.width = `${(100 * cmp.stack) / most}%`;
    barBig.style.width = `${(100 * cmp.big) / most}%`;
    msg.textContent = notes.join(" ");
  }

  // Control changes: update local state, redraw, tell the model (when there is a kernel).
  const setStack = (stack) => { st.stack = stack; sync("stack", copy(stack)); redraw(); };
  addConv.forEach((b, i) => b.addEventListener("click", () => {
    const kernel = [3, 5, 7][i];
    if (st.stack.length >= MAX_LAYERS) return;
    setStack([...st.stack, { kind: "conv", kernel, stride: st.nextStride, dilation: st.nextDilation,
                             padding: samePadding(kernel, st.nextDilation) }]);
  }));
  addPool.addEventListener("click", () => {
    if (st.stack.length >= MAX_LAYERS) return;
    setStack([...st.stack, { kind: "pool", kernel: 2, stride: 2, dilation: 1, padding: 0 }]);
  });
  remove.addEventListener("click", () => setStack(st.stack.slice(0, -1)));
  reset.addEventListener("click", () => setStack(copy(initialStack)));
  stride.addEventListener("change", () => { st.nextStride = Number(stride.value); sync("next_stride", st.nextStride); redraw(); });
  dilation.addEventListener("change", () => { st.nextDilation = Number(dilation.value); sync("next_dilation", st.nextDilation); redraw(); });
  mode.addEventListener("change", () => { st.mode = mode.value; sync("mode", st.mode); redraw(); });
  config.addEventListener("change", () => {
    st.config = config.value; sync("config", st.config);
    if (!layerNames(vggLayers(configs[st.config])).includes(st.layer)) { st.layer = "pool5"; }
    sync("layer", st.layer); redraw();
  });
  layerSel.addEventListener("change", () => { st.layer = layerSel.value; sync("layer", st.layer); redraw(); });
  layerRange.addEventListener("input", () => {
    const names = layerNames(vggLayers(configs[st.config]));
    st.layer = names[clampInt(layerRange.value, 0, names.length - 1, names.length - 1)];
    sync("layer", st.layer); redraw();
  });
  const onNumber = (input, key, trait) => () => {
    if (input.value === "" || !Number.isFinite(Number(input.value))) return;  // mid-typing
    st[key] = clampInt(input.value, 1, 4096, st[key]); sync(trait, st[key]); redraw();
  };
  side.addEventListener("input", onNumber(side, "side", "input_side"));
  channels.addEventListener("input", onNumber(channels, "channels", "channels"));

  // Changes made from Python (with a kernel).
  const listeners = [
    ["mode", (v) => { st.mode = v === "vgg" ? "vgg" : "build"; }],
    ["stack", (v) => { st.stack = copy(v || []); }],
    ["config", (v) => { if (known(v)) st.config = v; }],
    ["layer", (v) => { st.layer = v; }],
    ["input_side", (v) => { st.side = clampInt(v, 1, 4096, st.side); }],
    ["channels", (v) => { st.channels = clampInt(v, 1, 4096, st.channels); }],
    ["next_stride", (v) => { st.nextStride = v === 2 ? 2 : 1; }],
    ["next_dilation", (v) => { st.nextDilation = [1, 2, 3].includes(v) ? v : 1; }],
    ["image", (v) => { st.pixels = v || []; }],
  ].map(([name, apply]) => {
    const cb = () => { try { apply(model.get(name)); redraw(); } catch (e) { /* keep the page quiet */ } };
    try { model.on(`change:${name}`, cb); } catch (e) { /* no events without a kernel */ }
    return [name, cb];
  });

  try { redraw(); } catch (e) { msg.textContent = `explorer error: ${e.message}`; }
  return () => {
    for (const [name, cb] of listeners) { try { model.off(`change:${name}`, cb); } catch (e) { /* gone */ } }
  };
}

export default { render };
