"""The shipped network (vgg_book/trained/): its accuracy, its manifest, and the loader's refusals.

The manifest says what the float16 weights are; here they are loaded into the CPU recipe's
PyTorch model and measured on the full test set, and every way a file can be wrong (changed,
truncated, another network's shapes, not a manifest) gets a clear ``WeightsError``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vgg_book import trained
from vgg_book.data import CLASS_NAMES, load_fashion_mnist
from vgg_book.train import CPU_RECIPE, CPU_RECIPE_MODEL, recipe_model

FOLDER = Path(trained.__file__).parent / "trained"
#: Images whose prediction may differ on another CPU (summation order in the convolutions).
FLIP_TOLERANCE = 3


@pytest.fixture(scope="module")
def meta():
    return trained.manifest()


@pytest.fixture
def copy(tmp_path):
    """A copy of the shipped files to break."""
    for name in (trained.WEIGHTS, trained.MANIFEST, trained.IMAGES):
        shutil.copy2(FOLDER / name, tmp_path / name)
    return tmp_path


def test_shipped_accuracy_is_the_manifests_on_the_full_test_set(meta):
    model = trained.trained_vgg()
    images, labels, _ = load_fashion_mnist(train=False)
    assert len(labels) == meta["test"]["images"] == 10_000
    with torch.no_grad():
        preds = torch.cat([model(trained.network_input(images[i:i + 1000], meta)).argmax(1)
                           for i in range(0, len(images), 1000)])
    correct = int((preds == labels).sum())
    assert abs(correct - meta["test"]["correct"]) <= FLIP_TOLERANCE, correct
    assert meta["test"]["accuracy"] == meta["test"]["correct"] / 10_000
    assert meta["test"]["accuracy"] >= 0.90  # the findings issue: at least 90%


def test_manifest_describes_the_current_recipe(meta):
    """A stale network fails: the recipe or the architecture changed since it was trained."""
    assert meta["architecture"] == CPU_RECIPE_MODEL, "CPU_RECIPE_MODEL changed: retrain with " \
        + trained.COMMAND
    assert meta["recipe"] == CPU_RECIPE, "CPU_RECIPE changed: retrain with " + trained.COMMAND
    assert meta["classes"] == CLASS_NAMES and meta["seed"] == trained.SEED
    assert meta["weights"]["dtype"] == "float16" and meta["weights"]["byteorder"] == "little"
    assert meta["preprocess"]["network_side"] == CPU_RECIPE["image_size"] == 32


def test_weights_fit_the_budget_and_their_hash(meta):
    data = (FOLDER / trained.WEIGHTS).read_bytes()
    assert len(data) == meta["weights"]["bytes"] <= trained.MAX_BYTES
    assert hashlib.sha256(data).hexdigest() == meta["weights"]["sha256"]
    model = recipe_model("cpu")
    floats = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    assert [t["name"] for t in meta["tensors"]] == list(floats)  # the state dict's order
    assert [t["shape"] for t in meta["tensors"]] == [list(v.shape) for v in floats.values()]
    offsets = np.cumsum([0] + [t["count"] for t in meta["tensors"]])
    assert [t["offset"] for t in meta["tensors"]] == offsets[:-1].tolist()
    assert 2 * offsets[-1] == len(data)


def test_loaded_values_are_the_float16_file_exactly(meta):
    state = trained.load_state()
    raw = np.frombuffer((FOLDER / trained.WEIGHTS).read_bytes(), dtype="<f2")
    first = meta["tensors"][0]
    assert torch.equal(state[first["name"]].flatten(),
                       torch.from_numpy(raw[:first["count"]].astype(np.float32)))
    model = trained.trained_vgg()
    assert not model.training
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(value, value.half().float()), name  # float16-representable


def test_layer_specs_follow_the_model(meta):
    names = [layer["name"] for layer in meta["layers"]]
    assert names == ["conv1_1", "pool1", "conv2_1", "pool2", "conv3_1", "conv3_2", "pool3",
                     "conv4_1", "conv4_2", "pool4", "conv5_1", "conv5_2", "pool5",
                     "fc6", "fc7", "fc8"]
    assert meta["layers"] == trained.layer_specs(recipe_model("cpu"))
    tensors = {t["name"] for t in meta["tensors"]}
    for layer in meta["layers"]:
        for key in ("weight", "bias"):
            if key in layer:
                assert layer[key] in tensors
        for key in layer.get("bn", {}).values():
            assert isinstance(key, float) or key in tensors


def test_explorer_images_are_test_images(meta):
    images, labels = trained.explorer_images()
    assert images.shape == (120, 28, 28) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [trained.IMAGES_PER_CLASS] * 10
    test_x, test_y, _ = load_fashion_mnist(train=False)
    index = torch.tensor(meta["images"]["indices"])
    assert torch.equal(images, test_x[index]) and torch.equal(labels, test_y[index])


def test_network_input_is_the_training_preprocessing(meta):
    images, _ = trained.explorer_images()
    x = trained.network_input(images[:4], meta)
    assert x.shape == (4, 1, 32, 32)
    ref = torch.nn.functional.interpolate(
        (images[:4, None].float() / 255 - meta["preprocess"]["mean"])
        / meta["preprocess"]["std"], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(x, ref)
    with pytest.raises(ValueError, match=r"expected 28x28 images shaped \[N, 28, 28\]"):
        trained.network_input(torch.zeros(2, 32, 32, dtype=torch.uint8), meta)


# --- the loader's refusals --------------------------------------------------------------------

def test_changed_weights_are_refused(copy):
    data = bytearray((copy / trained.WEIGHTS).read_bytes())
    data[100] ^= 0x01
    (copy / trained.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(trained.WeightsError, match=r"SHA-256 .* but its manifest expects"):
        trained.trained_vgg(copy)


def test_truncated_weights_are_refused(copy):
    data = (copy / trained.WEIGHTS).read_bytes()
    (copy / trained.WEIGHTS).write_bytes(data[:-2])
    with pytest.raises(trained.WeightsError, match=r"461,586 bytes but its manifest expects "
                                                   r"461,588: the file is truncated"):
        trained.trained_vgg(copy)


def _rewrite(copy: Path, change) -> None:
    meta = json.loads((copy / trained.MANIFEST).read_text())
    change(meta)
    (copy / trained.MANIFEST).write_text(json.dumps(meta))


def test_wrong_shapes_are_refused(copy):
    """A manifest (and file) of another network: its shapes are named in the error."""
    def widen(meta):
        t = meta["tensors"][0]
        t["shape"] = [4, 2, 3, 3]  # same count (72), wrong shape
    _rewrite(copy, widen)
    with pytest.raises(trained.WeightsError, match=r"features\.0\.weight: \[4, 2, 3, 3\] where "
                                                   r"the model has \[8, 1, 3, 3\]"):
        trained.trained_vgg(copy)

    def miscount(meta):
        meta["tensors"][0]["shape"] = [8, 1, 3, 4]
    _rewrite(copy, miscount)
    with pytest.raises(trained.WeightsError, match=r"holds 96 values, not 72"):
        trained.trained_vgg(copy)


def test_missing_tensor_is_refused(copy):
    def drop(meta):
        meta["tensors"] = [t for t in meta["tensors"] if t["name"] != "classifier.6.bias"]
        meta["weights"]["bytes"] -= 20
    _rewrite(copy, drop)
    data = (copy / trained.WEIGHTS).read_bytes()[:-20]
    (copy / trained.WEIGHTS).write_bytes(data)
    _rewrite(copy, lambda m: m["weights"].__setitem__("sha256", hashlib.sha256(data).hexdigest()))
    with pytest.raises(trained.WeightsError, match=r"missing classifier\.6\.bias"):
        trained.trained_vgg(copy)


def test_not_a_manifest_is_refused(copy, tmp_path):
    (copy / trained.MANIFEST).write_text("{not json")
    with pytest.raises(trained.WeightsError, match="is not valid JSON"):
        trained.manifest(copy)
    (copy / trained.MANIFEST).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(trained.WeightsError, match='expected "format": "vgg-book-weights/1"'):
        trained.manifest(copy)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(trained.WeightsError, match=r"cpu_vgg11\.json is missing; make it with "
                                                   r"`python -m vgg_book.trained --train`"):
        trained.trained_vgg(empty)


def test_export_round_trips_a_run(tmp_path):
    """export() of a (tiny, untrained) CPU-recipe run writes files trained_vgg() reads back,
    atomically (no temp file left), readable by all."""
    run = tmp_path / "run"
    run.mkdir()
    model = recipe_model("cpu", seed=3)
    config = {"model_spec": CPU_RECIPE_MODEL, "seed": 3, "mean": 0.286, "std": 0.353,
              "device_name": "cpu", "torch": str(torch.__version__), "threads": 2}
    history = [{"test_acc": 0.1, "seconds": 1.0}]
    torch.save({"model": model.state_dict(), "config": config, "history": history},
               run / "checkpoint.pt")
    out = tmp_path / "out"
    meta = trained.export(run, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [trained.WEIGHTS, trained.MANIFEST, trained.IMAGES])
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in out.iterdir())
    loaded = trained.trained_vgg(out)
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(loaded.state_dict()[name], value.half().float())
    assert meta["seed"] == 3 and 0 <= meta["test"]["correct"] <= 10_000
    config["model_spec"] = {**CPU_RECIPE_MODEL, "hidden": 512}
    torch.save({"model": model.state_dict(), "config": config, "history": history},
               run / "checkpoint.pt")
    with pytest.raises(trained.WeightsError, match="is not a run of the CPU recipe's network"):
        trained.export(run, tmp_path / "other")


def test_network_input_leaves_a_float_input_alone(meta):
    """A float image (a drawing, a saliency input) is not scaled in place."""
    images, _ = trained.explorer_images()
    x = images[:2].float()
    before = x.clone()
    trained.network_input(x, meta)
    assert torch.equal(x, before)
    torch.testing.assert_close(trained.network_input(x, meta),
                               trained.network_input(images[:2], meta))
