// Harness for tests/test_accounting_explorer.py: runs the accounting explorer's pure functions
// (vgg_book/js/accounting_explorer.mjs, imported by the absolute path given as argv[2]) on
// the cases read as JSON from stdin, and prints the results as JSON on stdout.
//
// stdin:  [{config, layers, batchNorm, side, batch, countBias, numClasses}, ...], where layers
//         is the configuration's layer list (vgg_book.models.CONFIGS[config], JSON form): the
//         module holds no configurations, the test passes them in
// stdout: {dtypes, minSide, results: [{rows, totals: {dtype: totals}, bytes: {dtype: [...]}}
//          or {error: message}, ...]}
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const mod = await import(pathToFileURL(process.argv[2]).href);
const cases = JSON.parse(readFileSync(0, "utf8"));

function one(c) {
  try {
    const rows = mod.vggRows(c.layers, c);
    const totals = {};
    const bytes = {};
    for (const [dtype, size] of Object.entries(mod.DTYPES)) {
      totals[dtype] = mod.totals(rows, size);
      bytes[dtype] = mod.activationBytes(rows, size);
    }
    return { rows, totals, bytes };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
}

const samples = [0, 999, 1234567, 138357544, 15470264320].map((n) => [n, mod.formatInt(n)]);
const short = [0, 1792, 590080, 1000000, 138357544, 15470264320].map((n) => [n, mod.formatShort(n)]);
const bytes = [512, 2 ** 20 * 100, 553430176, 2 ** 31].map((n) => [n, mod.formatBytes(n)]);
process.stdout.write(JSON.stringify({
  dtypes: mod.DTYPES, minSide: mod.MIN_SIDE, maxSide: mod.MAX_SIDE, maxBatch: mod.MAX_BATCH, formatted: samples, short, bytes,
  fixed: mod.formatFixed(6530.894135296, 2),
  results: cases.map(one),
}));
