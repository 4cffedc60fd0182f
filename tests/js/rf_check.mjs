// Harness for tests/test_rf_explorer.py: runs the explorer's own front-end module in Node.
// Usage: node rf_check.mjs /abs/path/rf_explorer.mjs < cases.json > results.json
// Input: {"cases": [...]}; each case is {"config": "D", "vgg": [64, 64, "M", ...], "side": 224}
// (a VGG configuration: its layer list from vgg_book.models.CONFIGS, 3 input channels, real
// widths) or {"layers": [...], "side": 57, "channels": 64} (a stack).
// Output: {"results": [{names, rows, weights, stackParams, comparisons, boxes, formatted}, ...]}.
import { pathToFileURL } from "node:url";

const mod = await import(pathToFileURL(process.argv[2]).href);
let text = "";
for await (const chunk of process.stdin) text += chunk;
const { cases } = JSON.parse(text);

const results = cases.map((c) => {
  const vgg = c.config !== undefined;
  const layers = vgg ? mod.vggLayers(c.vgg) : c.layers;
  const channels = vgg ? 64 : c.channels;
  const inChannels = vgg ? 3 : c.channels;
  const rows = mod.stackTable(layers, c.side);
  const comparisons = rows.map((_, i) => mod.comparison(layers.map(mod.normLayer), i, channels, inChannels));
  return {
    names: mod.layerNames(layers.map(mod.normLayer)),
    rows,
    weights: mod.convWeights(layers.map(mod.normLayer), channels, inChannels),
    stackParams: mod.stackParams(layers.map(mod.normLayer), channels, inChannels),
    comparisons,
    boxes: rows.map((r) => mod.fieldBox(r, c.side)),
    formatted: comparisons.map((cmp) => mod.formatInt(cmp.big)),
  };
});
process.stdout.write(JSON.stringify({ results }));
