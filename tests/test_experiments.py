"""vgg_book.experiments: the paired statistics, the recipes (one change per comparison), the
plumbing on a tiny size, and stored results that match the recipe the code now runs."""

import json
import math

import pytest
import torch

from vgg_book import experiments as X
from vgg_book import train as T
from vgg_book.results import stored


def test_t_quantile_and_paired_interval_by_hand():
    assert X.t_quantile(4) == pytest.approx(2.776, abs=1e-3)  # the textbook table
    assert X.t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    a, b = [0.80, 0.82, 0.85, 0.81, 0.83], [0.78, 0.81, 0.80, 0.80, 0.79]
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    r = X.paired(a, b)
    assert r["mean"] == pytest.approx(mean)
    assert r["ci95"] == pytest.approx([mean - 2.7764 * sd / math.sqrt(5),
                                       mean + 2.7764 * sd / math.sqrt(5)], abs=1e-4)
    assert r["verdict"] == "resolves: higher" and r["n"] == 5
    assert X.paired(b, a)["verdict"] == "resolves: lower"
    assert X.paired([0.8, 0.7, 0.9], [0.75, 0.8, 0.85])["verdict"] == \
        "cannot resolve at this size"


def test_paired_refuses_unpaired_or_single_values():
    with pytest.raises(ValueError, match="two equally long lists of at least 2"):
        X.paired([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least 2"):
        X.paired([0.1], [0.2])


def _differences(name, a, b):
    spec = X.recipe(name)
    changed = set()
    for part in ("model", "settings"):
        pa, pb = spec["arms"][a][part], spec["arms"][b][part]
        changed |= {f"{part}.{k}" for k in pa.keys() | pb.keys() if pa.get(k) != pb.get(k)}
    return changed


@pytest.mark.parametrize("name, a, b, allowed", [
    ("batch-norm", "bn", "plain-torchvision", {"model.batch_norm"}),
    ("batch-norm", "plain-xavier", "plain-torchvision", {"model.init"}),
    ("heads", "fc-pool-xavier", "fc-d2l-xavier", {"model.input_size"}),
    ("heads", "gap-xavier", "fc-d2l-xavier", {"model.head", "model.input_size"}),
    ("heads", "fc-pool-xavier", "fc-pool-torchvision", {"model.init"}),
    ("input-side", "pooled-64", "pooled-32", {"settings.image_size"}),
    ("input-side", "built-64", "built-32", {"settings.image_size", "model.input_size"}),
    ("vgg19-bn", "E-bn", "E-plain", {"model.batch_norm"}),
    ("scale-jitter", "jitter", "fixed", {"settings.scale_jitter"}),
])
def test_each_control_changes_one_thing(name, a, b, allowed):
    assert _differences(name, a, b) == allowed


def test_every_comparison_names_arms_and_a_metric_the_runs_record():
    for name, exp in X.EXPERIMENTS.items():
        spec = X.recipe(name)
        assert len(spec["seeds"]) >= 5, "a finding needs at least 5 seeds"
        assert spec["arms"]["fc-d2l-xavier" if name == "heads" else next(iter(spec["arms"]))]
        for a, b, metric in spec["comparisons"]:
            assert a in spec["arms"] and b in spec["arms"] and a != b
            assert metric in ("test_acc", "first_epoch_loss", "size_spread", "acc_at_64")
        for arm in spec["arms"].values():
            s = arm["settings"]
            assert (s["threads"], s["device"]) == (1, "cpu")
            assert {k: s[k] for k in ("batch_size", "lr", "momentum", "schedule")} == {
                k: T.CPU_RECIPE[k] for k in ("batch_size", "lr", "momentum", "schedule")}


def test_heads_average_more_than_one_position():
    """GAP is compared where the last map is 2x2, not a single position."""
    spec = X.recipe("heads")
    gap = X.build(spec["arms"]["gap-xavier"]["model"], 0)
    side = spec["arms"]["gap-xavier"]["settings"]["image_size"]
    with torch.no_grad():
        assert gap.features(torch.zeros(1, 1, side, side)).shape[-1] == 2
    d2l = X.build(spec["arms"]["fc-d2l-xavier"]["model"], 0)
    assert d2l.classifier[0].in_features == 4 * gap.classifier.in_features


def test_bad_names_and_sizes_are_refused(capsys):
    with pytest.raises(ValueError, match="unknown experiment 'head'; expected one of: "):
        X.recipe("head")
    with pytest.raises(ValueError, match="unknown size 'big'"):
        X.recipe("heads", "big")
    with pytest.raises(ValueError, match="seeds must be an integer of at least 2"):
        X.recipe("heads", seeds=1)
    assert X.main(["heads", "nope", "--size", "tiny"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_tiny_run_writes_paired_results(tmp_path):
    torch.set_num_threads(1)
    out = X.run_experiment("batch-norm", "tiny", seeds=2, out_dir=tmp_path, log=lambda *a: 0)
    saved = json.loads((tmp_path / "experiment-batch-norm-tiny.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert saved["smoke_test"] and saved["recipe"] == X.recipe("batch-norm", "tiny", 2)
    assert {a: [r["seed"] for r in rs] for a, rs in saved["runs"].items()} == {
        a: [0, 1] for a in ("bn", "plain-torchvision", "plain-xavier")}
    first = saved["comparisons"][0]
    runs = saved["runs"]
    assert first["differences"] == pytest.approx(
        [x["test_acc"] - y["test_acc"] for x, y in zip(runs["bn"], runs["plain-torchvision"])])
    assert first["ci95"][0] <= first["mean"] <= first["ci95"][1]
    assert not list(tmp_path.glob("*.tmp"))


STORED = stored("experiment-*.json")


def test_every_experiment_has_a_stored_cpu_result():
    assert {f"experiment-{n}.json" for n in X.EXPERIMENTS} <= set(STORED)


@pytest.mark.parametrize("file", sorted(STORED))
def test_stored_result_matches_the_recipe_the_code_runs(file):
    r = STORED[file]
    spec = r["recipe"]
    now = X.recipe(r["experiment"], spec["size"], len(spec["seeds"]))
    assert spec == json.loads(json.dumps(now)), (
        f"{file} was made by another recipe than vgg_book.experiments builds now; rerun "
        f"python -m vgg_book.experiments {r['experiment']} --size {spec['size']}")
    assert not r["smoke_test"] and len(spec["seeds"]) >= 5
    for c in r["comparisons"]:
        if c["ci95"] is not None:  # the verdict is the interval's
            again = X.paired([x[c["metric"]] for x in r["runs"][c["a"]]],
                             [x[c["metric"]] for x in r["runs"][c["b"]]])
            assert again["ci95"] == pytest.approx(c["ci95"]) and again["verdict"] == c["verdict"]
    assert r["machine"]["device_name"] and r["machine"]["cores"]
