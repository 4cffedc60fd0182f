// The trained-network explorer: the front end of vgg_book.trained_explorer.TrainedExplorer.
//
// The shipped VGG-11 (vgg_book.trained, float16 weights in the `weights` trait, decoded with a
// lookup table) runs in the reader's browser with vgg_engine.mjs, a forward and a backward pass
// on Float32Arrays: no library, no network, nothing fetched, so it works from file://. The view
// shows, for a picked test image or the reader's drawing on a 28x28 pad:
//   - the ten class probabilities (recomputed at most once per animation frame while drawing);
//   - every channel of one layer's output as a small map (shared colour scale per layer);
//   - the saliency map |d score[c] / d pixel| of the predicted or a chosen class;
//   - the receptive field, on the input, of the unit under the pointer (engine.unitField:
//     receptive.mjs's arithmetic, the one of chapter 2's explorer);
//   - channels switched off by a click (zeroed before the next layer): the prediction follows.
// What the browser test reads is in data attributes at full precision: data-probs (te-probs),
// data-pixels (the 28x28 input the network got), the field's data-top/left/bottom/right on
// the 32x32 input (te-field), data-off (te-off), data-ms (te-time: last forward pass, ms).
// With a kernel the traits follow (model.set + save_changes); in the static page there is no
// kernel and save_changes fails quietly. It never writes to the console (the browser test
// fails on a console error).

import { buildNetwork, forward, saliency, unitField } from "./vgg_engine.mjs";
// The bundle for the page holds both modules, exports included: so does this file in Node.
export * from "./vgg_engine.mjs";
export * from "./receptive.mjs";

const SVG = "http://www.w3.org/2000/svg";
const SIDE = 28;         // the input: a Fashion-MNIST image
const PAD_SCALE = 7;     // screen pixels per input pixel on the pad and the saliency view
const BRUSHES = [["fine brush", 0.9], ["medium brush", 1.4], ["thick brush", 2.0]];

const CSS = `
.vggb-te { font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: #1f2328; background: #fff; max-width: 760px; box-sizing: border-box;
  border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; }
.vggb-te * { box-sizing: border-box; }
.vggb-te .hint { color: #57606a; margin: 0 0 6px; }
.vggb-te .top { display: flex; flex-wrap: wrap; gap: 10px 12px; align-items: flex-start; }
.vggb-te figure { margin: 0; padding: 0; width: ${SIDE * PAD_SCALE + 2}px; flex: none; }
.vggb-te figcaption { font-size: 12.5px; color: #57606a; text-align: left; padding: 0; margin: 2px 0 0; }
.vggb-te .view { position: relative; width: ${SIDE * PAD_SCALE + 2}px; height: ${SIDE * PAD_SCALE + 2}px;
  border: 1px solid #8c959f; background: #fff; }
.vggb-te .view canvas { width: 100%; height: 100%; display: block; image-rendering: pixelated; }
.vggb-te .view svg { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
.vggb-te .pad { touch-action: none; cursor: crosshair; }
.vggb-te .view:focus-visible, .vggb-te .tile:focus-visible, .vggb-te .thumb:focus-visible {
  outline: 2px solid #0969da; outline-offset: 1px; }
.vggb-te .stale canvas { opacity: 0.55; }
.vggb-te .ctrls { display: flex; flex-wrap: wrap; gap: 4px 8px; align-items: center; margin: 4px 0; }
.vggb-te label { display: inline-flex; gap: 4px; align-items: center; }
.vggb-te button, .vggb-te select { font: inherit; font-size: 13px; color: #1f2328;
  background: #f6f8fa; border: 1px solid #8c959f; border-radius: 4px; padding: 1px 7px; }
.vggb-te button:hover:not(:disabled) { background: #eaeef2; }
.vggb-te button[aria-pressed=true] { background: #ddf4ff; border-color: #0969da; }
.vggb-te button:focus-visible, .vggb-te select:focus-visible { outline: 2px solid #0969da; outline-offset: 1px; }
.vggb-te .probs { flex: 1; min-width: 220px; }
.vggb-te .probs h4, .vggb-te .picker h4, .vggb-te .maps h4 { font-size: 13px; margin: 0 0 3px; font-weight: 600; }
.vggb-te .prob { display: grid; grid-template-columns: 86px 1fr 46px; gap: 5px; align-items: center;
  cursor: pointer; border-radius: 3px; padding: 0 2px 0 6px; }
.vggb-te .prob:hover { background: #f6f8fa; }
.vggb-te .prob .name { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.vggb-te .prob .track { height: 12px; background: #eaeef2; border-radius: 2px; overflow: hidden; }
.vggb-te .prob .bar { height: 100%; background: #8c959f; }
.vggb-te .prob.top .bar { background: #0969da; }
.vggb-te .prob.top .name, .vggb-te .prob.top .val { font-weight: 600; }
.vggb-te .prob.target { box-shadow: inset 3px 0 #cf222e; }
.vggb-te .prob .val { text-align: right; font-variant-numeric: tabular-nums; }
.vggb-te .picker { margin-top: 10px; }
.vggb-te .classes { display: flex; flex-wrap: wrap; gap: 4px 7px; }
.vggb-te .cls { width: 57px; }
.vggb-te .cls .name { font-size: 10.5px; color: #57606a; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.vggb-te .cls .grid { display: grid; grid-template-columns: 28px 28px; gap: 1px; }
.vggb-te .thumb { width: 28px; height: 28px; padding: 0; border: 0; border-radius: 0; background: #fff;
  display: block; cursor: pointer; }
.vggb-te .thumb canvas { width: 28px; height: 28px; display: block; }
.vggb-te .thumb[aria-selected=true] { outline: 2px solid #cf222e; outline-offset: -1px; }
.vggb-te .maps { margin-top: 10px; }
.vggb-te .tiles { display: grid; gap: 4px; margin-top: 4px; }
.vggb-te .tile { position: relative; cursor: pointer; }
.vggb-te .tile .map { position: relative; border: 1px solid #d0d7de; aspect-ratio: 1; }
.vggb-te .tile canvas { width: 100%; height: 100%; display: block; image-rendering: pixelated; }
.vggb-te .tile .unit { position: absolute; border: 2px solid #cf222e; pointer-events: none; }
.vggb-te .tile .ch { font-size: 10.5px; color: #57606a; text-align: center; line-height: 1.2;
  font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; }
.vggb-te .tile.off canvas { opacity: 0.15; }
.vggb-te .tile.off .map { background: repeating-linear-gradient(45deg, #fff 0 4px, #ffebe9 4px 8px);
  border-color: #cf222e; }
.vggb-te .tile.off .ch { color: #cf222e; font-weight: 600; }
.vggb-te .status { margin-top: 8px; background: #f6f8fa; border-radius: 4px; padding: 4px 8px; }
.vggb-te .status b { font-variant-numeric: tabular-nums; }
.vggb-te .msg { color: #9a6700; min-height: 1.2em; }
.vggb-te [hidden] { display: none !important; }
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

function toBytes(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  return Uint8Array.from(value);
}

/** Paint a 28x28 image (0..255, garment light on dark in the data) dark on white. */
function paintImage(ctx, pixels) {
  const img = ctx.createImageData(SIDE, SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) {
    const g = 255 - pixels[i];
    img.data[4 * i] = g; img.data[4 * i + 1] = g; img.data[4 * i + 2] = g; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/** White -> blue -> navy: the maps' colour scale, t in [0, 1]. */
function ramp(t) {
  const stops = [[255, 255, 255], [9, 105, 218], [10, 37, 64]];
  const x = Math.min(1, Math.max(0, t)) * 2, i = Math.min(1, Math.floor(x)), f = x - i;
  const a = stops[i], b = stops[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/** 32x32-input coordinates (pixel p covers [p - 0.5, p + 0.5]) -> the 28x28 image's. */
function to28(x, N) {
  return (x + 0.5) * (SIDE / N) - 0.5;
}

function fmt(v, digits = 1) {
  return Number.isFinite(v) ? v.toFixed(digits) : "-";
}

function render({ model, el }) {
  const get = (k, fallback) => { try { const v = model.get(k); return v ?? fallback; } catch (e) { return fallback; } };
  const sync = (values) => {
    try {
      for (const [k, v] of Object.entries(values)) model.set(k, v);
      const p = model.save_changes();
      if (p && p.catch) p.catch(() => {});
    } catch (e) { /* static page: no kernel to tell */ }
  };

  const msg = h("div", { class: "msg", role: "status", "data-testid": "te-message" });
  let net = null, classes = [], labels = [], images = new Uint8Array(0), count = 0;
  try {
    const manifest = get("manifest", {});
    net = buildNetwork(manifest, toBytes(get("weights", null)));
    classes = manifest.classes || [];
    labels = (manifest.images && manifest.images.labels) || [];
    images = toBytes(get("images", null));
    count = Math.min(labels.length, Math.floor(images.length / (SIDE * SIDE)));
  } catch (e) {
    msg.textContent = `explorer error: ${e.message}`;
    el.replaceChildren(h("div", { class: "vggb-te" }, [h("style", { text: CSS }), msg]));
    return () => {};
  }
  const N = net.N;
  const mapLayers = net.layers.filter((L) => L.kind !== "linear");
  const layerByName = Object.fromEntries(net.layers.map((L) => [L.name, L]));
  const picked = (k) => images.subarray(k * SIDE * SIDE, (k + 1) * SIDE * SIDE);

  // Local state, from the model's traits.
  const cleanOff = (off) => {
    const out = {};
    for (const [name, chans] of Object.entries(off || {})) {
      const L = layerByName[name];
      if (!L || !Array.isArray(chans)) continue;
      const ok = [...new Set(chans.filter((c) => Number.isInteger(c) && c >= 0 && c < L.shape[0]))].sort((a, b) => a - b);
      if (ok.length) out[name] = ok;
    }
    return out;
  };
  const st = {
    index: Number.isInteger(get("index", 0)) ? get("index", 0) : -1,
    pixels: new Uint8ClampedArray(SIDE * SIDE),
    layer: get("layer", "conv2_1"),
    target: get("target", -1),
    off: cleanOff(get("off", {})),
    point: null,           // {layer, channel, row, col}: the unit pointed at
    cursor: [14, 14],      // the pad's keyboard cursor
    brush: 1.4, erase: false, drawing: false,
    result: null, sal: null, salClass: -1, times: [],
  };
  const fromTrait = (v) => {
    if (v && v.length === SIDE * SIDE) st.pixels.set(Array.from(v, (x) => Number(x) || 0));
    else if (st.index >= 0 && st.index < count) st.pixels.set(picked(st.index));
  };
  fromTrait(get("pixels", null));
  if (!mapLayers.some((L) => L.name === st.layer)) st.layer = mapLayers[0].name;
  if (!Number.isInteger(st.target) || st.target < -1 || st.target >= classes.length) st.target = -1;

  // ---- the pad, the saliency view, the probabilities
  const padCanvas = h("canvas", { width: SIDE, height: SIDE });
  const padCtx = padCanvas.getContext("2d");
  const padSvg = s("svg", { viewBox: `-0.5 -0.5 ${SIDE} ${SIDE}` });
  const pad = h("div", { class: "view pad", tabindex: 0, role: "img", "data-testid": "te-pad",
    "aria-label": "Drawing pad, 28 by 28 pixels. Draw with the pointer; with the keyboard, the " +
      "arrow keys move the cursor, space paints, Delete erases, Shift with an arrow paints as it moves." },
  [padCanvas, padSvg]);
  const clear = h("button", { type: "button", "data-testid": "te-clear", text: "Clear",
                              "aria-label": "Clear the pad" });
  const invert = h("button", { type: "button", "data-testid": "te-invert", text: "Invert",
                               "aria-label": "Invert the image" });
  const erase = h("button", { type: "button", "data-testid": "te-erase", text: "Erase",
                              "aria-pressed": "false", "aria-label": "Erase instead of painting" });
  const brush = h("select", { "data-testid": "te-brush", "aria-label": "Brush size" });
  brush.replaceChildren(...BRUSHES.map(([name, r]) => h("option", { value: String(r), text: name })));
  brush.value = String(st.brush);
  const padCap = h("figcaption", { "data-testid": "te-pad-caption" });

  const salCanvas = h("canvas", { width: SIDE, height: SIDE });
  const salCtx = salCanvas.getContext("2d");
  const salSvg = s("svg", { viewBox: `-0.5 -0.5 ${SIDE} ${SIDE}` });
  const salView = h("div", { class: "view", role: "img", "data-testid": "te-saliency",
                             "aria-label": "Saliency map over the input" }, [salCanvas, salSvg]);
  const target = h("select", { "data-testid": "te-target", "aria-label": "Class of the saliency map" });
  target.replaceChildren(h("option", { value: "-1", text: "saliency: predicted class" }),
                         ...classes.map((c, i) => h("option", { value: String(i), text: `saliency: ${c}` })));
  const salCap = h("figcaption", { "data-testid": "te-saliency-caption" });

  const probRows = classes.map((name, i) => {
    const bar = h("div", { class: "bar" });
    const val = h("span", { class: "val" });
    const row = h("div", { class: "prob", "data-class": String(i), title: `saliency of ${name}` }, [
      h("span", { class: "name", text: name }), h("div", { class: "track" }, [bar]), val]);
    row.addEventListener("click", () => setTarget(st.target === i ? -1 : i));
    return { row, bar, val };
  });
  const probs = h("div", { class: "probs", "data-testid": "te-probs" }, [
    h("h4", { text: "Class probabilities" }), ...probRows.map((r) => r.row)]);

  // ---- the picker: 12 test images per class, a column of two per class
  const thumbs = [];
  const testIndex = ((get("manifest", {}).images || {}).indices) || [];
  const byClass = classes.map(() => []);
  for (let k = 0; k < count; k++) if (byClass[labels[k]]) byClass[labels[k]].push(k);
  const where = new Map();  // picker image -> [column, row] on the keyboard's grid
  const picker = h("div", { class: "picker", "data-testid": "te-picker" }, [
    h("h4", { text: `Pick a test image (${count})` })]);
  const classCols = byClass.map((ks, c) => {
    const grid = h("div", { class: "grid", role: "group", "aria-label": classes[c] });
    ks.forEach((k, n) => {
      const cv = h("canvas", { width: SIDE, height: SIDE });
      paintImage(cv.getContext("2d"), picked(k));
      const b = h("button", { type: "button", class: "thumb", "data-testid": "te-thumb", "data-index": String(k),
                              tabindex: -1, "aria-selected": "false",
                              "aria-label": `test image ${n + 1} of ${classes[c]}` }, [cv]);
      b.title = `${classes[c]} (test image ${testIndex[k] ?? k})`;
      b.addEventListener("click", () => pick(k));
      b.addEventListener("keydown", (e) => pickerKey(e, k));
      thumbs[k] = b;
      where.set(k, [2 * c + (n % 2), Math.floor(n / 2)]);
      grid.append(b);
    });
    return h("div", { class: "cls" }, [h("div", { class: "name", text: classes[c] }), grid]);
  });
  picker.append(h("div", { class: "classes" }, classCols));
  const at = new Map([...where].map(([k, [x, y]]) => [`${x},${y}`, k]));

  // ---- the maps
  const layerSel = h("select", { "data-testid": "te-layer", "aria-label": "Layer whose feature maps show" });
  layerSel.replaceChildren(...mapLayers.map((L) => h("option", {
    value: L.name, text: `${L.name}: ${L.shape[0]} maps of ${L.shape[1]}x${L.shape[2]}` })));
  const allOn = h("button", { type: "button", "data-testid": "te-all-on", text: "Switch all on",
                              "aria-label": "Switch every channel back on" });
  const mapsCap = h("span", { class: "hint", "data-testid": "te-maps-caption" });
  const tiles = h("div", { class: "tiles", "data-testid": "te-maps" });
  const maps = h("div", { class: "maps" }, [
    h("h4", { text: "Feature maps" }),
    h("div", { class: "ctrls" }, [h("label", {}, ["layer", layerSel]), allOn]), mapsCap, tiles]);
  let tileList = [];

  // ---- read-outs
  const time = h("b", { "data-testid": "te-time" });
  const predicted = h("b", { "data-testid": "te-predicted" });
  const offOut = h("span", { "data-testid": "te-off" });
  const status = h("div", { class: "status" }, [
    "prediction: ", predicted, " · forward pass ", time, " ms · switched off: ", offOut]);

  const root = h("div", { class: "vggb-te" }, [
    h("style", { text: CSS }),
    h("p", { class: "hint", text: "Pick a test image or draw a garment on the pad. Point at a " +
      "feature map to see a unit's receptive field on the input; click a map to switch its " +
      "channel off." }),
    h("div", { class: "top" }, [
      h("figure", {}, [pad, h("div", { class: "ctrls" }, [clear, invert, erase, brush]), padCap]),
      h("figure", {}, [salView, h("div", { class: "ctrls" }, [target]), salCap]),
      probs]),
    picker, maps, status, msg]);
  el.replaceChildren(root);

  // ---- drawing
  function fieldShapes(svg) {
    svg.replaceChildren();
    const p = st.point;
    if (!p) return;
    const f = unitField(net, p.layer, p.row, p.col);
    const t = to28(f.top, N), l = to28(f.left, N), b = to28(f.bottom, N), r = to28(f.right, N);
    const lo = -0.5, hi = SIDE - 0.5;
    const x0 = Math.max(l, lo), x1 = Math.min(r, hi), y0 = Math.max(t, lo), y1 = Math.min(b, hi);
    svg.append(s("rect", { x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0),
                           fill: "#cf222e", "fill-opacity": 0.1, stroke: "#cf222e", "stroke-width": 2,
                           "vector-effect": "non-scaling-stroke" }));
    svg.append(s("circle", { cx: (l + r) / 2, cy: (t + b) / 2, r: 0.45, fill: "#cf222e" }));
    return f;
  }

  function drawPad() {
    paintImage(padCtx, st.pixels);
    const f = fieldShapes(padSvg);
    fieldShapes(salSvg);
    if (document.activeElement === pad) {
      const [r, c] = st.cursor;
      padSvg.append(s("rect", { x: c - 0.5, y: r - 0.5, width: 1, height: 1, fill: "none",
                                stroke: "#0969da", "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
    }
    const g = s("g", { "data-testid": "te-field" });
    padSvg.append(g);
    if (f) {
      const p = st.point;
      for (const [k, v] of Object.entries({ layer: p.layer, channel: p.channel, row: p.row, col: p.col,
                                            top: f.top, left: f.left, bottom: f.bottom, right: f.right,
                                            size: f.size })) g.setAttribute(`data-${k}`, String(v));
      const inside = f.top >= -0.5 && f.left >= -0.5 && f.bottom <= N - 0.5 && f.right <= N - 0.5;
      padCap.textContent = `${p.layer}, channel ${p.channel}, unit (${p.row}, ${p.col}) sees ` +
        `${f.size}x${f.size} pixels of the ${N}x${N} input` +
        (inside ? "" : ", part of it in the zero padding beyond the image") + ".";
    } else {
      g.setAttribute("data-layer", "");
      padCap.textContent = "Draw here. The network sees this 28x28 image resized to 32x32.";
    }
  }

  function drawSaliency() {
    const img = salCtx.createImageData(SIDE, SIDE);
    const sal = st.sal;
    let most = 0;
    if (sal) for (let i = 0; i < sal.length; i++) most = Math.max(most, Math.abs(sal[i]));
    for (let i = 0; i < SIDE * SIDE; i++) {
      const base = 255 - 0.45 * st.pixels[i];
      const a = sal && most > 0 ? Math.abs(sal[i]) / most : 0;
      img.data[4 * i] = base * (1 - a) + 207 * a;
      img.data[4 * i + 1] = base * (1 - a) + 34 * a;
      img.data[4 * i + 2] = base * (1 - a) + 46 * a;
      img.data[4 * i + 3] = 255;
    }
    salCtx.putImageData(img, 0, 0);
    salView.dataset.target = String(st.salClass);
    salView.dataset.max = String(most);
    salView.dataset.saliency = sal ? JSON.stringify(Array.from(sal)) : "";
    target.value = String(st.target);
    salCap.textContent = st.salClass < 0 ? "" :
      `|d score / d pixel| of ${classes[st.salClass]}${st.target < 0 ? " (predicted)" : ""}: ` +
      "red where a small change of the pixel moves that class's score most.";
  }

  function drawProbs() {
    const r = st.result;
    if (!r) return;
    const p = Array.from(r.probs);
    const top = p.indexOf(Math.max(...p));
    probRows.forEach(({ row, bar, val }, i) => {
      bar.style.width = `${(100 * p[i]).toFixed(2)}%`;
      val.textContent = `${fmt(100 * p[i], 1)}%`;
      row.classList.toggle("top", i === top);
      row.classList.toggle("target", i === st.salClass);
    });
    probs.dataset.probs = JSON.stringify(p);
    probs.dataset.logits = JSON.stringify(Array.from(r.logits));
    probs.dataset.predicted = String(top);
    probs.dataset.pixels = Array.prototype.join.call(st.lastInput, ",");
    predicted.textContent = `${classes[top]} (${fmt(100 * p[top], 1)}%)`;
    predicted.dataset.class = String(top);
  }

  function buildTiles() {
    const L = layerByName[st.layer];
    const [C, H, W] = L.shape;
    const cols = C <= 8 ? C : C <= 16 ? 8 : 16;
    tiles.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    tileList = [];
    tiles.replaceChildren(...Array.from({ length: C }, (_, c) => {
      const cv = h("canvas", { width: W, height: H });
      const unit = h("div", { class: "unit", hidden: "" });
      const label = h("div", { class: "ch" });
      const tile = h("div", { class: "tile", tabindex: 0, role: "button", "data-testid": "te-map",
                              "data-channel": String(c), "aria-pressed": "false" },
      [h("div", { class: "map" }, [cv, unit]), label]);
      tile.addEventListener("pointermove", (e) => pointAt(c, e, cv));
      tile.addEventListener("pointerdown", (e) => pointAt(c, e, cv));
      tile.addEventListener("click", () => toggle(c));
      tile.addEventListener("keydown", (e) => tileKey(e, c));
      tile.addEventListener("focus", () => {
        if (!st.point || st.point.layer !== st.layer || st.point.channel !== c) {
          const p = st.point && st.point.layer === st.layer ? st.point : { row: H >> 1, col: W >> 1 };
          setPoint({ layer: st.layer, channel: c, row: p.row, col: p.col });
        }
      });
      tileList.push({ tile, cv, ctx: cv.getContext("2d"), unit, label });
      return tile;
    }));
    layerSel.value = st.layer;
    mapsCap.textContent = `${st.layer}: ${C} channels, each a ${H}x${W} map; a unit's field is ` +
      `${unitField(net, st.layer, 0, 0).size} pixels of the ${N}x${N} input. White is 0, navy the ` +
      "layer's largest value.";
  }

  function drawMaps() {
    const L = layerByName[st.layer];
    const [C, H, W] = L.shape;
    if (tileList.length !== C) buildTiles();
    const y = st.result ? st.result.outputs[st.layer] : new Float32Array(C * H * W);
    let most = 0;
    for (let i = 0; i < y.length; i++) most = Math.max(most, y[i]);
    const off = new Set(st.off[st.layer] || []);
    tileList.forEach(({ tile, ctx, unit, label }, c) => {
      const img = ctx.createImageData(W, H);
      for (let i = 0; i < H * W; i++) {
        const [r, g, b] = ramp(most > 0 ? y[c * H * W + i] / most : 0);
        img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      const isOff = off.has(c);
      tile.classList.toggle("off", isOff);
      tile.setAttribute("aria-pressed", String(isOff));
      tile.setAttribute("aria-label", `${st.layer} channel ${c}${isOff ? ", switched off" : ""}; ` +
        "Enter switches it off or on, the arrow keys move the unit");
      label.textContent = isOff ? `${c} off` : String(c);
      const p = st.point;
      if (p && p.layer === st.layer && p.channel === c) {
        unit.hidden = false;
        unit.style.left = `${(100 * p.col) / W}%`; unit.style.top = `${(100 * p.row) / H}%`;
        unit.style.width = `${100 / W}%`; unit.style.height = `${100 / H}%`;
      } else unit.hidden = true;
    });
    tiles.dataset.layer = st.layer;
    tiles.dataset.max = String(most);
  }

  function drawStatus() {
    const t = st.times;
    const sorted = [...t].sort((a, b) => a - b);
    time.textContent = t.length ? fmt(t[t.length - 1], 1) : "-";
    time.dataset.ms = t.length ? String(t[t.length - 1]) : "";
    time.dataset.median = sorted.length ? String(sorted[sorted.length >> 1]) : "";
    time.dataset.passes = String(t.length);
    const names = Object.keys(st.off);
    offOut.textContent = names.length
      ? names.map((n) => `${n} [${st.off[n].join(", ")}]`).join("; ") : "nothing";
    offOut.dataset.off = JSON.stringify(st.off);
    picker.dataset.index = String(st.index);
    thumbs.forEach((b, k) => {
      b.setAttribute("aria-selected", String(k === st.index));
    });
    const focusable = st.index >= 0 ? st.index : (byClass[0] || [0])[0];
    thumbs.forEach((b, k) => { b.tabIndex = k === focusable ? 0 : -1; });
    allOn.disabled = names.length === 0;
  }

  // ---- computing: one forward pass per animation frame at most
  let frame = null, wantSaliency = false;
  function compute(withSaliency) {
    const pixels = Uint8ClampedArray.from(st.pixels);
    const t0 = performance.now();
    st.result = forward(net, pixels, st.off);
    st.times.push(performance.now() - t0);
    if (st.times.length > 50) st.times.shift();
    st.lastInput = pixels;
    const p = Array.from(st.result.probs);
    const top = p.indexOf(Math.max(...p));
    if (withSaliency) {
      st.salClass = st.target >= 0 ? st.target : top;
      st.sal = saliency(net, pixels, st.salClass, st.off);
      salView.classList.remove("stale");
    } else {
      salView.classList.add("stale");  // redrawn when the stroke ends
    }
    salView.dataset.stale = String(!withSaliency);
  }
  function update(withSaliency = true) {
    try {
      compute(withSaliency);
      drawProbs(); drawMaps(); drawPad(); drawSaliency(); drawStatus();
      msg.textContent = "";
    } catch (e) {
      msg.textContent = `explorer error: ${e.message}`;
    }
  }
  function schedule(withSaliency) {
    wantSaliency = wantSaliency || withSaliency;
    if (frame !== null) return;
    frame = requestAnimationFrame(() => {
      frame = null;
      const w = wantSaliency;
      wantSaliency = false;
      update(w);
    });
  }
  function redrawOnly() {
    try { drawMaps(); drawPad(); drawStatus(); } catch (e) { msg.textContent = `explorer error: ${e.message}`; }
  }

  // ---- actions
  function pick(k) {
    if (!(k >= 0 && k < count)) return;
    st.index = k;
    st.pixels.set(picked(k));
    sync({ index: k, pixels: Array.from(st.pixels) });
    update(true);
  }
  function drawn() {
    st.index = -1;
    sync({ index: -1, pixels: Array.from(st.pixels) });
  }
  function setTarget(c) {
    st.target = c;
    sync({ target: c });
    update(true);
  }
  function toggle(c) {
    const chans = new Set(st.off[st.layer] || []);
    if (chans.has(c)) chans.delete(c); else chans.add(c);
    const off = { ...st.off };
    if (chans.size) off[st.layer] = [...chans].sort((a, b) => a - b); else delete off[st.layer];
    st.off = off;
    sync({ off: JSON.parse(JSON.stringify(off)) });
    update(true);
  }
  function setPoint(p) {
    st.point = p;
    redrawOnly();
  }
  function pointAt(c, e, cv) {
    const rect = cv.getBoundingClientRect();
    const L = layerByName[st.layer], [, H, W] = L.shape;
    const col = Math.floor(((e.clientX - rect.left) / rect.width) * W);
    const row = Math.floor(((e.clientY - rect.top) / rect.height) * H);
    if (row < 0 || col < 0 || row >= H || col >= W) return;
    const p = st.point;
    if (p && p.layer === st.layer && p.channel === c && p.row === row && p.col === col) return;
    setPoint({ layer: st.layer, channel: c, row, col });
  }
  function tileKey(e, c) {
    const [, H, W] = layerByName[st.layer].shape;
    const p = st.point && st.point.layer === st.layer && st.point.channel === c
      ? st.point : { row: H >> 1, col: W >> 1 };
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    if (moves[e.key]) {
      e.preventDefault();
      const [dr, dc] = moves[e.key];
      setPoint({ layer: st.layer, channel: c, row: Math.min(H - 1, Math.max(0, p.row + dr)),
                 col: Math.min(W - 1, Math.max(0, p.col + dc)) });
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      toggle(c);
    }
  }
  function pickerKey(e, k) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (!moves[e.key]) return;
    e.preventDefault();
    const [x, y] = where.get(k), [dx, dy] = moves[e.key];
    const next = at.get(`${x + dx},${y + dy}`);
    if (next === undefined) return;
    thumbs[next].focus();
    pick(next);
  }

  // The pad: pointer (mouse, pen, touch) and keyboard.
  function stamp(cy, cx, paint) {
    const r = st.brush, lo = (v) => Math.max(0, Math.floor(v - r - 1)), hi = (v) => Math.min(SIDE - 1, Math.ceil(v + r + 1));
    for (let i = lo(cy); i <= hi(cy); i++) {
      for (let j = lo(cx); j <= hi(cx); j++) {
        const a = Math.min(1, Math.max(0, r + 0.5 - Math.hypot(i - cy, j - cx)));
        if (!a) continue;
        const k = i * SIDE + j, v = Math.round(255 * a);
        st.pixels[k] = paint ? Math.max(st.pixels[k], v) : Math.min(st.pixels[k], 255 - v);
      }
    }
  }
  let last = null;
  const padPoint = (e) => {
    const rect = padCanvas.getBoundingClientRect();
    return [((e.clientY - rect.top) / rect.height) * SIDE - 0.5, ((e.clientX - rect.left) / rect.width) * SIDE - 0.5];
  };
  function strokeTo(p) {
    const [y0, x0] = last || p, [y1, x1] = p;
    const steps = Math.max(1, Math.ceil(Math.hypot(y1 - y0, x1 - x0) / 0.35));
    for (let t = 1; t <= steps; t++) stamp(y0 + ((y1 - y0) * t) / steps, x0 + ((x1 - x0) * t) / steps, !st.erase);
    last = p;
  }
  pad.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    try { pad.setPointerCapture(e.pointerId); } catch (err) { /* not capturable: fine */ }
    st.drawing = true; st.index = -1; last = null;
    strokeTo(padPoint(e));
    drawPad();
    schedule(false);
  });
  pad.addEventListener("pointermove", (e) => {
    if (!st.drawing) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) strokeTo(padPoint(ev));
    drawPad();
    schedule(false);
  });
  const endStroke = () => {
    if (!st.drawing) return;
    st.drawing = false; last = null;
    drawn();
    schedule(true);
  };
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("lostpointercapture", endStroke);
  pad.addEventListener("keydown", (e) => {
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    let changed = false;
    if (moves[e.key]) {
      e.preventDefault();
      const [dr, dc] = moves[e.key];
      st.cursor = [Math.min(SIDE - 1, Math.max(0, st.cursor[0] + dr)), Math.min(SIDE - 1, Math.max(0, st.cursor[1] + dc))];
      if (e.shiftKey) { stamp(st.cursor[0], st.cursor[1], !st.erase); changed = true; }
    } else if (e.key === " " || e.key === "Enter") {
      e.preventDefault();
      stamp(st.cursor[0], st.cursor[1], !st.erase); changed = true;
    } else if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      stamp(st.cursor[0], st.cursor[1], false); changed = true;
    } else return;
    if (changed) { drawn(); update(true); } else drawPad();
  });
  pad.addEventListener("focus", () => drawPad());
  pad.addEventListener("blur", () => drawPad());
  clear.addEventListener("click", () => { st.pixels.fill(0); drawn(); update(true); });
  invert.addEventListener("click", () => {
    for (let i = 0; i < st.pixels.length; i++) st.pixels[i] = 255 - st.pixels[i];
    drawn(); update(true);
  });
  erase.addEventListener("click", () => {
    st.erase = !st.erase;
    erase.setAttribute("aria-pressed", String(st.erase));
  });
  brush.addEventListener("change", () => { st.brush = Number(brush.value) || 1.4; });
  target.addEventListener("change", () => setTarget(Number(target.value)));
  layerSel.addEventListener("change", () => {
    st.layer = layerSel.value; st.point = null;
    sync({ layer: st.layer });
    buildTiles(); redrawOnly();
  });
  allOn.addEventListener("click", () => { st.off = {}; sync({ off: {} }); update(true); });

  // Changes made from Python (with a kernel).
  const listeners = [
    ["index", (v) => { st.index = Number.isInteger(v) && v < count ? v : -1; }],
    ["pixels", (v) => { fromTrait(v); }],
    ["layer", (v) => {
      if (!layerByName[v] || layerByName[v].kind === "linear" || v === st.layer) return;
      st.layer = v; st.point = null; buildTiles();
    }],
    ["target", (v) => { st.target = Number.isInteger(v) && v >= -1 && v < classes.length ? v : -1; }],
    ["off", (v) => { st.off = cleanOff(v); }],
  ].map(([name, apply]) => {
    const cb = () => { try { apply(model.get(name)); schedule(true); } catch (e) { /* keep the page quiet */ } };
    try { model.on(`change:${name}`, cb); } catch (e) { /* no events without a kernel */ }
    return [name, cb];
  });

  buildTiles();
  update(true);
  return () => {
    if (frame !== null) cancelAnimationFrame(frame);
    for (const [name, cb] of listeners) { try { model.off(`change:${name}`, cb); } catch (e) { /* gone */ } }
  };
}

export default { render };
