"""vgg_book.bench_cpu: the CPU recipe's benchmark. Its command lines mean what they say, its
pieces run, and the stored measurement was made with the recipe the code now has and keeps
the recipe's promise (90% on the whole test set within 120 s)."""

import pytest

from vgg_book import bench_cpu as B
from vgg_book import train as T
from vgg_book.models import resolve_config
from vgg_book.results import stored


@pytest.mark.parametrize("model, settings", [
    (T.CPU_RECIPE_MODEL, T.CPU_RECIPE), (B.PREVIOUS_CPU_MODEL, B.PREVIOUS_CPU_RECIPE)])
def test_command_line_builds_the_recipe_it_names(model, settings):
    args = T.parse_args([*B.cli_args(model, settings), "--out", "x"])
    for key, value in settings.items():
        assert getattr(args, key) == value, key
    for key in ("width_ratio", "hidden", "dropout", "batch_norm", "init", "input_size"):
        assert getattr(args, key) == model.get(key), key
    assert resolve_config(args.model) == resolve_config(model["config"])


def test_recipe_run_and_step_rate_on_a_tiny_size():
    run = B.run_recipe([*B.cli_args(T.CPU_RECIPE_MODEL, {**T.CPU_RECIPE, "epochs": 1}),
                        "--limit-train", "256", "--limit-test", "128"])
    assert run["train_images"] == 256 and run["test_images"] == 128
    assert run["wall_seconds"] > run["epochs"][-1]["elapsed"] > 0
    assert (run["seconds_to_target"] is None) == (run["final_test_acc"] < B.TARGET)
    rate = B.step_rate(T.CPU_RECIPE_MODEL, 16, 32, steps=2, warmup=1, threads=1,
                       channels_last=True, precision="bf16")
    assert rate["images_per_s"] > 0 and rate["compile_seconds"] is None


def test_a_failing_run_says_why():
    with pytest.raises(RuntimeError, match="image_size=8 is too small"):
        B.run_recipe(["--image-size", "8", "--limit-train", "64"])


STORED = {k: v for k, v in stored("cpu-recipe-bench-*.json").items() if not v["smoke_test"]}


def test_a_measurement_is_stored():
    assert STORED, "no CPU-recipe benchmark in vgg_book/results/: run python -m vgg_book.bench_cpu"


@pytest.mark.parametrize("name", sorted(STORED))
def test_stored_measurement_is_of_the_current_recipe_and_keeps_its_promise(name):
    r = STORED[name]
    assert r["recipe"] == {"model": T.CPU_RECIPE_MODEL, "settings": T.CPU_RECIPE}, (
        f"{name} measured another CPU recipe than train.CPU_RECIPE: rerun "
        "python -m vgg_book.bench_cpu and store its JSON")
    assert r["previous"] == {"model": B.PREVIOUS_CPU_MODEL, "settings": B.PREVIOUS_CPU_RECIPE}
    run = r["recipe_run"]
    assert run["test_images"] == 10_000 and run["train_images"] >= 59_000
    assert run["final_test_acc"] >= 0.90 and run["wall_seconds"] <= 120
    assert run["seconds_to_target"] <= run["wall_seconds"]
    rows = {a["name"]: a for a in r["ablation"]}
    recipe_row = rows["+ bf16 autocast (the recipe)"]
    assert r["ratios"]["recipe_loop_vs_d2l_pipeline"] == pytest.approx(
        recipe_row["images_per_s"] / r["d2l_pipeline_images_per_s"])
    assert r["ratios"]["throughput_vs_previous"] == pytest.approx(
        run["images_per_s"] / r["previous_run"]["images_per_s"])
    assert r["machine"]["cores"] and r["device_name"].startswith("CPU")
