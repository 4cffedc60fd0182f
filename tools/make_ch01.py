"""Source of chapters/01_vgg_blocks.ipynb (run once to regenerate the notebook)."""
import sys; sys.path.insert(0, "tools")
from nbbuild import SETUP, write

cells = [
("md", r"""
# 1. VGG blocks

VGG (Simonyan & Zisserman, *Very Deep Convolutional Networks for Large-Scale Image
Recognition*, ICLR 2015, [arXiv:1409.1556](https://arxiv.org/abs/1409.1556)) is built from
one repeated unit, the **VGG block**: a few $3\times3$ convolutions with padding 1, each
followed by a ReLU, and then a $2\times2$ max-pool with stride 2. The whole network is five
such blocks and a classifier. This chapter builds a block, follows the shape of a tensor
through it, and counts its parameters, each time checking the formula against PyTorch.
"""),
("code", SETUP),
("code", r"""
import inspect

import matplotlib.pyplot as plt
import torch
from myst_nb import glue
from torch import nn

import vgg_book
from vgg_book.data import load_fashion_mnist
from vgg_book.models import CONFIGS, d2l_vgg11, vgg, vgg_block

torch.manual_seed(0)
print("vgg_book", vgg_book.__version__, "| torch", torch.__version__)
"""),
("md", r"""
## The block, as the library defines it

The book does not keep a second copy of the code: this is the source of
`vgg_book.models.vgg_block`, printed from the installed package.
"""),
("code", r"""
print(inspect.getsource(vgg_block))
"""),
("md", r"""
## Why padding 1 keeps the size and a pool halves it

A convolution with kernel $k$, padding $p$ and stride $s$ maps a side of $n$ pixels to

$$ n_{\text{out}} = \left\lfloor \frac{n + 2p - k}{s} \right\rfloor + 1 . $$

With $k=3$, $p=1$, $s=1$ this is $n + 2 - 3 + 1 = n$: the two pixels the kernel loses at the
borders are exactly the two that padding adds. A $2\times2$ max-pool with stride 2 ($p=0$)
gives $\lfloor (n-2)/2 \rfloor + 1 = \lfloor n/2 \rfloor$: it halves the side, dropping the
last row and column when $n$ is odd. The next cell checks both formulas against PyTorch for
every side from 1 to 64.
"""),
("code", r"""
def out_side(n, k, p, s):
    return (n + 2 * p - k) // s + 1

conv = nn.Conv2d(1, 1, kernel_size=3, padding=1)
pool = nn.MaxPool2d(kernel_size=2, stride=2)
sides = range(2, 65)
with torch.no_grad():
    conv_ok = all(conv(torch.zeros(1, 1, n, n)).shape[-1] == out_side(n, 3, 1, 1) == n for n in sides)
    pool_ok = all(pool(torch.zeros(1, 1, n, n)).shape[-1] == out_side(n, 2, 0, 2) == n // 2 for n in sides)
print(f"3x3 conv, padding 1 keeps the side for n = 2..64: {conv_ok}")
print(f"2x2 pool, stride 2 gives floor(n/2) for n = 2..64: {pool_ok}")
assert conv_ok and pool_ok
odd_in, odd_out = 7, out_side(7, 2, 0, 2)
glue("odd_in", odd_in, display=False)
glue("odd_out", odd_out, display=False)
"""),
("md", r"""
An odd side such as {glue:text}`odd_in` pools to {glue:text}`odd_out`: one row is lost.
This is why VGG is fed sides that are multiples of $2^5 = 32$.

## One block, traced

A block with two convolutions from 3 to 64 channels, applied to a batch of one
$3\times 224\times 224$ image. Every layer reports the shape it hands to the next.
"""),
("code", r"""
block = vgg_block(num_convs=2, in_channels=3, out_channels=64)
x = torch.randn(1, 3, 224, 224)
lines = [f"{'input':<12} {tuple(x.shape)}"]
with torch.no_grad():
    for layer in block:
        x = layer(x)
        lines.append(f"{type(layer).__name__:<12} {tuple(x.shape)}")
print("\n".join(lines))
""", ["nbval-check-output"]),
("md", r"""
The convolutions change only the number of channels; only the pool changes the height and
width.

## VGG-11, block by block

VGG-11 is the paper's configuration **A**: five blocks with one, one, two, two and two
convolutions. The configuration is data, one list as in the paper's Table 1 (an integer is a
$3\times3$ convolution with that many output channels, `"M"` a max-pool):
"""),
("code", r"""
print("A =", CONFIGS["A"])
"""),
("md", r"""
The next cell runs a $224\times224$ RGB image through the `features` of VGG-11 and records the
shape after each block (after each pool).
"""),
("code", r"""
def block_shapes(model, x):
    # Shape after every max-pool, i.e. after every VGG block.
    shapes = []
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                shapes.append(tuple(x.shape[1:]))
    return shapes

vgg11 = vgg("vgg11")
shapes_224 = block_shapes(vgg11, torch.zeros(1, 3, 224, 224))
for i, (c, h, w) in enumerate(shapes_224, 1):
    print(f"after block {i}: {c:>3} channels x {h:>3} x {w:<3} = {c * h * w:>9,} values")
c, h, w = shapes_224[-1]
glue("v11_final_shape", f"{c}x{h}x{w}", display=False)
glue("v11_flat", f"{c * h * w:,}", display=False)
glue("v11_first_values", f"{shapes_224[0][0] * shapes_224[0][1] * shapes_224[0][2]:,}", display=False)
""", ["nbval-check-output"]),
("md", r"""
Each block halves the side and (up to 512) doubles the channels. The first block's output
holds {glue:text}`v11_first_values` values per image; the last, {glue:text}`v11_final_shape`,
only {glue:text}`v11_flat`. That flattened vector is what the classifier's first
fully connected layer reads.

## Fashion-MNIST through VGG-11

Fashion-MNIST images are $28\times28$ grey-scale. Five pools need a side of at least
$2^5 = 32$: a $28\times28$ image would be pooled to nothing. The library says so rather than
failing deep inside PyTorch:
"""),
("code", r"""
images, labels, class_names = load_fashion_mnist(train=False)
narrow = d2l_vgg11(width_ratio=4)  # d2l's VGG-11: 1 input channel, widths divided by 4
batch = images[:4, None].float() / 255
narrow(batch)
""", ["raises-exception"]),
("md", r"""
d2l resizes every image to $224\times224$, the size VGG was designed for. A side of 32 is the
smallest that works, 64 a cheap compromise. Here are four test images and the shapes after each
block of d2l's narrow VGG-11 at three input sizes:
"""),
("code", r"""
fig, axes = plt.subplots(1, 4, figsize=(8, 2.2), dpi=100)
for ax, img, label in zip(axes, images[:4], labels[:4]):
    ax.imshow(img, cmap="gray")
    ax.set_title(class_names[label], fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()
"""),
("code", r"""
resized = {}
for side in (224, 64, 32):
    x = nn.functional.interpolate(batch, size=(side, side), mode="bilinear", align_corners=False)
    resized[side] = block_shapes(narrow, x)
    print(f"{side}x{side}: " + " -> ".join(f"{c}x{h}x{w}" for c, h, w in resized[side]))
glue("fm32_final", "x".join(map(str, resized[32][-1])), display=False)
glue("fm224_final", "x".join(map(str, resized[224][-1])), display=False)
with torch.no_grad():
    logits = narrow(nn.functional.interpolate(batch, size=(32, 32)))
print("logits:", tuple(logits.shape))
""", ["nbval-check-output"]),
("md", r"""
At $224\times224$ the last block yields {glue:text}`fm224_final`; at $32\times32$ it is down to
{glue:text}`fm32_final`, a single pixel per channel. The classifier still works at 32 because
the network's `avgpool` (an adaptive average pool to $7\times7$) copies that pixel into a
$7\times7$ grid, so the first fully connected layer always sees the same number of inputs.

One of the blog posts this book grew from writes a VGG-16 for Fashion-MNIST with only four
pools and a first classifier layer `nn.Linear(512, 4096)` (a post on VGG in PyTorch, in
Chinese; it appears in this book's sources). That layer fits only if the features end at
$512\times1\times1$. The cell below follows a $28\times28$ image through four pools:
"""),
("code", r"""
side = 28
for _ in range(4):
    side = out_side(side, 2, 0, 2)
glue("seed_side", side, display=False)
print("side after four pools of a 28x28 image:", side, "-> flattened:", 512 * side * side)
"""),
("md", r"""
Four pools take 28 to {glue:text}`seed_side`, so that network only works for the native
$28\times28$ images, losing rows at every odd side on the way; with a fifth pool, or any
other size, the `Linear(512, ...)` layer no longer matches. Adaptive pooling before the
classifier, as here and in torchvision, removes that coupling.

## Parameters of a block

A $k\times k$ convolution from $C_\text{in}$ to $C_\text{out}$ channels has one
$k\times k\times C_\text{in}$ kernel and one bias per output channel:

$$ \text{params} = (k \cdot k \cdot C_\text{in} + 1)\, C_\text{out} . $$

ReLU and max-pool have no parameters. The table counts every block of VGG-11 from the
formula and from PyTorch (`sum(p.numel() for p in block.parameters())`):
"""),
("code", r"""
def conv_params(k, c_in, c_out):
    return (k * k * c_in + 1) * c_out

arch = ((1, 3, 64), (1, 64, 128), (2, 128, 256), (2, 256, 512), (2, 512, 512))  # VGG-11
rows, c_total = [], 0
print(f"{'block':<6}{'convs':>6}{'C_in':>6}{'C_out':>6}{'formula':>12}{'PyTorch':>12}")
for i, (n, c_in, c_out) in enumerate(arch, 1):
    formula = conv_params(3, c_in, c_out) + (n - 1) * conv_params(3, c_out, c_out)
    measured = sum(p.numel() for p in vgg_block(n, c_in, c_out).parameters())
    assert formula == measured
    c_total += measured
    print(f"{i:<6}{n:>6}{c_in:>6}{c_out:>6}{formula:>12,}{measured:>12,}")
features_params = sum(p.numel() for p in vgg11.features.parameters())
total_params = sum(p.numel() for p in vgg11.parameters())
assert c_total == features_params
glue("v11_conv_params", f"{c_total:,}", display=False)
glue("v11_total_params", f"{total_params:,}", display=False)
glue("v11_conv_share", f"{100 * c_total / total_params:.1f}%", display=False)
glue("first_conv_params", f"{conv_params(3, 3, 64):,}", display=False)
""", ["nbval-check-output"]),
("md", r"""
The first convolution has only {glue:text}`first_conv_params` parameters; the five blocks
together {glue:text}`v11_conv_params`. Yet the whole VGG-11 has
{glue:text}`v11_total_params`: the convolutions are only {glue:text}`v11_conv_share` of it.
The rest sits in the three fully connected layers, which chapter 4 takes apart.

## Summary

- A VGG block is $n$ times (3x3 conv, padding 1, ReLU) and one 2x2 max-pool: convolutions set
  the channels, the pool halves the side.
- Five blocks need inputs of at least $32\times32$; $224\times224$ ends at $512\times7\times7$.
- A convolution has $(k^2 C_\text{in} + 1) C_\text{out}$ parameters, and VGG's convolutions
  hold only a small part of its parameters.
"""),
("raw", """
# ASSIGNMENT CONFIG
name: 01_vgg_blocks
export_cell: false
generate: false
check_all_cell: false
"""),
("md", r"""
## Exercises
"""),
("raw", """
# BEGIN QUESTION
name: q1
"""),
("md", r"""
**Exercise 1.** Write `side_after_blocks(side, blocks)` that returns the height of a square
input of side `side` after `blocks` VGG blocks (each: convolutions that keep the size, then a
2x2 max-pool with stride 2).
"""),
("code", r"""
def side_after_blocks(side, blocks):
    # BEGIN SOLUTION
    for _ in range(blocks):
        side = side // 2
    return side
    # END SOLUTION
"""),
("raw", "# BEGIN TESTS"),
("code", r"""
for side, blocks in [(224, 5), (32, 5), (28, 4), (100, 3)]:
    x = torch.zeros(1, 1, side, side)
    with torch.no_grad():
        for _ in range(blocks):
            x = vgg_block(1, 1, 1)(x)
    got = side_after_blocks(side, blocks)
    assert got == x.shape[-1], f"side_after_blocks({side}, {blocks}): expected {x.shape[-1]}, got {got}"
"""),
("raw", "# END TESTS"),
("raw", "# END QUESTION"),
("raw", """
# BEGIN QUESTION
name: q2
"""),
("md", r"""
**Exercise 2.** Write `block_params(num_convs, c_in, c_out)` returning the number of
parameters of `vgg_block(num_convs, c_in, c_out)` from the formula, without building it.
"""),
("code", r"""
def block_params(num_convs, c_in, c_out):
    # BEGIN SOLUTION
    return (9 * c_in + 1) * c_out + (num_convs - 1) * (9 * c_out + 1) * c_out
    # END SOLUTION
"""),
("raw", "# BEGIN TESTS"),
("code", r"""
for n, c_in, c_out in [(1, 3, 64), (2, 64, 128), (3, 256, 512), (4, 1, 16)]:
    expected = sum(p.numel() for p in vgg_block(n, c_in, c_out).parameters())
    got = block_params(n, c_in, c_out)
    assert got == expected, f"block_params({n}, {c_in}, {c_out}): expected {expected:,}, got {got}"
"""),
("raw", "# END TESTS"),
("raw", "# END QUESTION"),
]

write("chapters/01_vgg_blocks.ipynb", cells)
