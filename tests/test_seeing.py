"""vgg_book.seeing: the filters, occlusion, saliency and class models of chapter 6, checked
another way (a direct convolution, a direct forward of the occluded image, finite differences
in float64, the class score before and after the ascent), and the errors for bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vgg_book import seeing, trained
from vgg_book.models import vgg


@pytest.fixture(scope="module")
def model():
    return trained.trained_vgg()


@pytest.fixture(scope="module")
def picker():
    return trained.explorer_images()


def test_folded_filters_reproduce_conv1_1_and_unfolded_ones_do_not(model, picker):
    images = picker[0][:6]
    x = trained.network_input(images)
    want = seeing.activations(model, images, ["conv1_1"])["conv1_1"]
    filters, biases = seeing.first_filters(model)
    got = F.relu(F.conv2d(x, filters.unsqueeze(1), biases, padding=1))
    assert filters.shape == (8, 3, 3) and biases.shape == (8,)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    raw, raw_bias = seeing.first_filters(model, fold_batch_norm=False)
    assert torch.equal(raw, model.features[0].weight.detach()[:, 0])
    assert torch.equal(raw_bias, model.features[0].bias.detach())
    broken = F.relu(F.conv2d(x, raw.unsqueeze(1), raw_bias, padding=1))
    assert not torch.allclose(broken, want, atol=1e-2)  # the check sees a missing fold


def test_first_filters_refuses_what_it_cannot_fold():
    rgb = vgg("A", width_ratio=64, hidden=8, num_classes=10)  # 3 input channels
    with pytest.raises(ValueError, match="one \\(grey\\) channel, it has 3"):
        seeing.first_filters(rgb)
    grey = vgg("A", width_ratio=64, hidden=8, num_classes=10, in_channels=1)  # no batch norm
    with pytest.raises(ValueError, match="not a BatchNorm2d; pass fold_batch_norm=False"):
        seeing.first_filters(grey)
    assert seeing.first_filters(grey, fold_batch_norm=False)[0].shape == (1, 3, 3)  # 64 / 64


def occluded_by_hand(image, row, col, patch, fill):
    out = image.float().clone()
    out[row:row + patch, col:col + patch] = fill
    return out


@pytest.mark.parametrize("patch, stride", [(6, 2), (8, 4), (5, 3)])
def test_occlusion_is_the_drop_a_direct_forward_of_the_occluded_image_gives(
        model, picker, patch, stride):
    images = picker[0][::40][:3]
    occ = seeing.occlusion(model, images, patch=patch, stride=stride)
    offsets = list(range(0, 28 - patch + 1, stride))
    assert occ.offsets == tuple(offsets) and occ.drop.shape == (3, len(offsets), len(offsets))
    assert occ.fill == pytest.approx(trained.manifest()["preprocess"]["mean"] * 255)
    probs = seeing.probabilities(model, images)
    assert torch.equal(occ.target, probs.argmax(1))
    assert torch.allclose(occ.base, probs.max(1).values, atol=1e-5)
    g = torch.Generator().manual_seed(patch)
    for n in range(3):
        for i, j in torch.randint(0, len(offsets), (4, 2), generator=g).tolist():
            hidden = occluded_by_hand(images[n], offsets[i], offsets[j], patch, occ.fill)
            p = seeing.probabilities(model, hidden)[0, occ.target[n]]
            assert float(occ.drop[n, i, j]) == pytest.approx(float(probs[n, occ.target[n]] - p),
                                                            abs=1e-5)
    assert occ.centres()[0] == (patch - 1) / 2
    part = occ.subset([2, 0])
    assert torch.equal(part.drop, occ.drop[[2, 0]]) and part.offsets == occ.offsets
    assert torch.equal(part.target, occ.target[[2, 0]]) and part.patch == patch


def test_occlusion_of_a_chosen_class_and_of_nothing(model, picker):
    images = picker[0][:4]
    occ = seeing.occlusion(model, images, patch=6, stride=4, target=3)
    assert occ.target.tolist() == [3] * 4
    p = seeing.probabilities(model, occluded_by_hand(images[1], 4, 8, 6, occ.fill))[0, 3]
    base = seeing.probabilities(model, images[1])[0, 3]
    assert float(occ.drop[1, 1, 2]) == pytest.approx(float(base - p), abs=1e-5)
    # A black square on black background changes no pixel, so the drop is zero there.
    black = seeing.occlusion(model, images, patch=6, stride=2, fill=0)
    empty = F.avg_pool2d((images > 0).float().unsqueeze(1), 6, 2)[:, 0] == 0
    assert empty.any() and black.drop[empty].abs().max() < 1e-6
    assert black.drop[~empty].abs().max() > 0.01


def test_occlusion_refuses_bad_settings(model, picker):
    image = picker[0][0]
    for kwargs, message in [({"patch": 0}, "patch must be a positive whole number"),
                            ({"patch": 29}, "patch must fit in the 28x28 image"),
                            ({"stride": 1.5}, "stride must be a positive whole number"),
                            ({"fill": 300}, "fill is a pixel value 0..255"),
                            ({"target": 10}, "target must be a class 0..9"),
                            ({"target": [1, 2]}, "target must be a class 0..9 or one per"),
                            ({"batch": 0}, "batch must be a positive number")]:
        with pytest.raises(ValueError, match=message):
            seeing.occlusion(model, image, **kwargs)
    with pytest.raises(ValueError, match=r"expected 28x28 images shaped \[N, 28, 28\]"):
        seeing.occlusion(model, torch.zeros(2, 32, 32))


def test_saliency_is_the_slope_finite_differences_measure(model, picker):
    """In float64, central differences of 1e-7 (pixel / 255) agree with the gradient to 1e-6
    on an image whose flat background is broken by faint noise (a flat background makes
    max-pool windows tie, where the network has no single slope)."""
    model64 = seeing.float64(model)
    g = torch.Generator().manual_seed(0)
    image = picker[0][17].double() + 0.5 * torch.rand(28, 28, generator=g, dtype=torch.float64)
    cls = int(seeing.scores(model64, image).argmax())
    grad = seeing.saliency(model64, image)[0]
    assert grad.dtype == torch.float64
    pixels = torch.randperm(784, generator=g)[:40]
    steps = torch.zeros(40, 28, 28, dtype=torch.float64)
    steps.view(40, -1)[torch.arange(40), pixels] = 1e-7 * 255
    up = seeing.scores(model64, image + steps)[:, cls]
    down = seeing.scores(model64, image - steps)[:, cls]
    fd = (up - down) / 2e-7
    assert torch.allclose(fd, grad.flatten()[pixels], atol=1e-6), (fd - grad.flatten()[pixels])
    other = seeing.saliency(model64, image, target=(cls + 1) % 10)[0].flatten()
    assert not torch.allclose(fd, other[pixels], atol=1e-3)  # the check sees another class
    # The float32 network's saliency is the same map, to float32 rounding.
    grad32 = seeing.saliency(model, image.float(), target=cls)[0]
    assert torch.allclose(grad32.double(), grad, atol=1e-3 * grad.abs().max())


def test_functions_leave_a_float_input_as_it_was(model):
    x = torch.rand(3, 28, 28) * 255
    kept = x.clone()
    seeing.scores(model, x)
    seeing.saliency(model, x)
    seeing.occlusion(model, x, patch=14, stride=14)
    assert torch.equal(x, kept)


def test_class_model_raises_the_class_score(model):
    classes = [1, 7]
    start = seeing.class_model(model, classes, steps=0)
    made = seeing.class_model(model, classes, steps=60)
    assert made.shape == (2, 28, 28) and 0 <= made.min() and made.max() <= 255
    before = seeing.scores(model, start)[[0, 1], classes]
    after = seeing.scores(model, made)[[0, 1], classes]
    assert (after > before + 5).all(), (before, after)
    # Seeded: the same image again; a stronger penalty keeps the image darker.
    assert torch.equal(made, seeing.class_model(model, classes, steps=60))
    dark = seeing.class_model(model, classes, steps=60, l2=5.0)
    assert dark.pow(2).sum() < made.pow(2).sum()
    # One penalty per class: the same images as two runs with one penalty each.
    mixed = seeing.class_model(model, classes, steps=60, l2=[0.5, 5.0])
    assert torch.allclose(mixed[0], made[0], atol=1e-3)
    assert torch.allclose(mixed[1], dark[1], atol=1e-3)
    assert all(p.requires_grad for p in model.parameters())  # left as they were


def test_class_model_refuses_bad_settings(model):
    for args, kwargs, message in [((10,), {}, "cls must be a class 0..9"),
                                  ((1.5,), {}, "cls must be a class 0..9"),
                                  (([],), {}, "cls must be a class 0..9"),
                                  ((1,), {"steps": -1}, "steps must be a whole number"),
                                  ((1,), {"lr": 0}, "lr must be positive"),
                                  ((1,), {"l2": -1}, "l2 must be zero or positive"),
                                  (([1, 2],), {"l2": [1.0]}, "one per class \\(2\\)")]:
        with pytest.raises(ValueError, match=message):
            seeing.class_model(model, *args, **kwargs)


def test_regions_split_every_image_in_three(picker):
    images = picker[0][:10]
    parts = seeing.regions(images, band=2)
    total = sum(m.int() for m in parts.values())
    assert torch.equal(total, torch.ones_like(total))  # disjoint and covering
    assert torch.equal(parts["garment"], images > 0)
    # An outline pixel is black and within 2 pixels (a 5x5 square) of the garment.
    near = F.conv2d((images > 0).float().unsqueeze(1), torch.ones(1, 1, 5, 5), padding=2)
    assert torch.equal(parts["outline"], (near[:, 0] > 0) & (images == 0))
    with pytest.raises(ValueError, match="band must be a positive number"):
        seeing.regions(images, band=0)


def test_nearest_mean_accuracy():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    centres = 10 * torch.eye(4, 5)
    separable = centres[labels] + torch.randn(200, 5, generator=g)
    assert seeing.nearest_mean_accuracy(separable, labels, 100) == 1.0
    noise = torch.randn(200, 5, generator=g)
    assert seeing.nearest_mean_accuracy(noise, labels, 100) < 0.5
    # The means come from the first `fit` rows only: swapping the later labels is seen.
    swapped = torch.cat([labels[:100], (labels[100:] + 1) % 4])
    assert seeing.nearest_mean_accuracy(separable, swapped, 100) == 0.0
    with pytest.raises(ValueError, match="0 < fit < 200"):
        seeing.nearest_mean_accuracy(separable, labels, 200)


def test_float64_copy_leaves_the_model_and_agrees(model, picker):
    copy64 = seeing.float64(model)
    assert next(model.parameters()).dtype == torch.float32
    assert next(copy64.parameters()).dtype == torch.float64 and not copy64.training
    images = picker[0][:5]
    assert torch.allclose(seeing.scores(copy64, images).float(), seeing.scores(model, images),
                          atol=1e-4)


def test_switch_off_and_saliency_keep_their_behaviour(model, picker):
    """The existing functions, after the additions: the predicted class by default, a class
    per image, and channels switched off (a plain copy of the model with the channel's batch
    norm output zeroed gives the same scores)."""
    images = picker[0][:4]
    s = seeing.saliency(model, images)
    chosen = seeing.scores(model, images).argmax(1)
    assert torch.equal(s, seeing.saliency(model, images, target=chosen.tolist()))
    off = copy.deepcopy(model)
    bn = off.features[1]
    with torch.no_grad():
        bn.weight[3] = 0
        bn.bias[3] = -1  # relu(-1) = 0: channel 3 of conv1_1 is off
    want = off(trained.network_input(images))
    assert torch.allclose(seeing.scores(model, images, off={"conv1_1": [3]}), want, atol=1e-5)
    with pytest.raises(ValueError, match="target must be a class 0..9"):
        seeing.saliency(model, images, target=[0, 1])
    assert isinstance(model.features[2], nn.ReLU)
