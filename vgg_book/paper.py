"""The paper's own numbers, each cited to its table or section, and nothing computed.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015 (arXiv:1409.1556v6). Errors are ILSVRC-2012 percentages (validation set unless a
field says test). ``tests/test_paper.py`` checks these transcriptions against each other and
against the library (Table 1 against ``models.CONFIGS``, Table 2 against parameter counts).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

__all__ = ["CITATION", "ARXIV", "Affiliation", "AFFILIATION", "STACK_REGULARISATION",
           "B_VS_5X5", "BEST", "TABLE1", "TABLE2_PARAMS_M", "Result", "TABLE3", "TABLE4",
           "TABLE5", "Entry", "TABLE7", "ILSVRC_2014", "RECIPE", "INIT", "table1_column",
           "weight_layers"]

CITATION = ("K. Simonyan and A. Zisserman, Very Deep Convolutional Networks for Large-Scale "
            "Image Recognition, ICLR 2015")
ARXIV = "https://arxiv.org/abs/1409.1556"


class Affiliation(NamedTuple):
    """The first page: where the work was done, and each author's footnote."""
    work: str  # printed under the authors' names
    footnotes: dict[str, str]  # author -> footnote, as printed (arXiv v6)


AFFILIATION = Affiliation(
    work="Visual Geometry Group, Department of Engineering Science, University of Oxford",
    footnotes={"Karen Simonyan": "current affiliation: Google DeepMind",
               "Andrew Zisserman": "current affiliation: University of Oxford and Google "
                                   "DeepMind"})

# Section 2.3: what a stack of three 3x3 layers is, against one 7x7 layer.
STACK_REGULARISATION = (
    "This can be seen as imposing a regularisation on the 7 x 7 conv. filters, forcing them to "
    "have a decomposition through the 3 x 3 filters (with non-linearity injected in between).")

# Section 4.1: net B against a shallow net with each pair of its 3x3 layers replaced by one
# 5x5 layer (the same receptive field): "The top-1 error of the shallow net was measured to
# be 7% higher than that of B (on a center crop)".
B_VS_5X5 = {"shallow": "B with each pair of 3x3 conv. layers replaced by a single 5x5 layer",
            "top1_higher_pct": 7, "evaluation": "center crop"}

# Which net the paper calls the best: (configuration, section, its words).
BEST = {
    "classification": ("D", "Appendix A.1",
                       "was found to be the best-performing in the classification task"),
    "single_model": ("E", "Section 4.4",
                     "our best-performing single model achieves 7.1% error (model E, Table 5)"),
}

# Table 1, column by column, as printed: "conv<k>-<c>" is a k x k convolution with c output
# channels (stride 1, padding keeping the size), "maxpool" a 2x2 max-pool with stride 2.
_FC = ("FC-4096", "FC-4096", "FC-1000", "soft-max")
_B12 = ("conv3-64", "conv3-64", "maxpool", "conv3-128", "conv3-128", "maxpool")
TABLE1: dict[str, tuple[str, ...]] = {
    "A": ("conv3-64", "maxpool", "conv3-128", "maxpool", "conv3-256", "conv3-256", "maxpool",
          "conv3-512", "conv3-512", "maxpool", "conv3-512", "conv3-512", "maxpool", *_FC),
    "A-LRN": ("conv3-64", "LRN", "maxpool", "conv3-128", "maxpool", "conv3-256", "conv3-256",
              "maxpool", "conv3-512", "conv3-512", "maxpool", "conv3-512", "conv3-512",
              "maxpool", *_FC),
    "B": (*_B12, "conv3-256", "conv3-256", "maxpool", "conv3-512", "conv3-512", "maxpool",
          "conv3-512", "conv3-512", "maxpool", *_FC),
    "C": (*_B12, "conv3-256", "conv3-256", "conv1-256", "maxpool", "conv3-512", "conv3-512",
          "conv1-512", "maxpool", "conv3-512", "conv3-512", "conv1-512", "maxpool", *_FC),
    "D": (*_B12, "conv3-256", "conv3-256", "conv3-256", "maxpool", "conv3-512", "conv3-512",
          "conv3-512", "maxpool", "conv3-512", "conv3-512", "conv3-512", "maxpool", *_FC),
    "E": (*_B12, *("conv3-256",) * 4, "maxpool", *("conv3-512",) * 4, "maxpool",
          *("conv3-512",) * 4, "maxpool", *_FC),
}

# Table 2: number of parameters, in millions (A and A-LRN share one column).
TABLE2_PARAMS_M = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}

Scale = Union[int, tuple[int, int]]  # a fixed smallest side S, or a jittering range [min; max]


class Result(NamedTuple):
    """One row of Tables 3-5: configuration, training scale S, test scales Q, errors (%)."""
    config: str
    train: Scale
    test: tuple[int, ...]
    top1: float
    top5: float
    evaluation: str = "dense"


# Table 3: single test scale (Q = S for fixed S, Q = 384 for S in [256; 512]), dense eval.
TABLE3 = [
    Result("A", 256, (256,), 29.6, 10.4),
    Result("A-LRN", 256, (256,), 29.7, 10.5),
    Result("B", 256, (256,), 28.7, 9.9),
    Result("C", 256, (256,), 28.1, 9.4),
    Result("C", 384, (384,), 28.1, 9.3),
    Result("C", (256, 512), (384,), 27.3, 8.8),
    Result("D", 256, (256,), 27.0, 8.8),
    Result("D", 384, (384,), 26.8, 8.7),
    Result("D", (256, 512), (384,), 25.6, 8.1),
    Result("E", 256, (256,), 27.3, 9.0),
    Result("E", 384, (384,), 26.9, 8.7),
    Result("E", (256, 512), (384,), 25.5, 8.0),
]

# Table 4: several test scales, class posteriors averaged over them (dense evaluation).
TABLE4 = [
    Result("B", 256, (224, 256, 288), 28.2, 9.6),
    Result("C", 256, (224, 256, 288), 27.7, 9.2),
    Result("C", 384, (352, 384, 416), 27.8, 9.2),
    Result("C", (256, 512), (256, 384, 512), 26.3, 8.2),
    Result("D", 256, (224, 256, 288), 26.6, 8.6),
    Result("D", 384, (352, 384, 416), 26.5, 8.6),
    Result("D", (256, 512), (256, 384, 512), 24.8, 7.5),
    Result("E", 256, (224, 256, 288), 26.9, 8.7),
    Result("E", 384, (352, 384, 416), 26.7, 8.6),
    Result("E", (256, 512), (256, 384, 512), 24.8, 7.5),
]

# Table 5: dense evaluation against multi-crop (150 crops: 5x5 grid, 2 flips, 3 scales).
TABLE5 = [
    Result("D", (256, 512), (256, 384, 512), 24.8, 7.5, "dense"),
    Result("D", (256, 512), (256, 384, 512), 24.6, 7.5, "multi-crop"),
    Result("D", (256, 512), (256, 384, 512), 24.4, 7.2, "multi-crop & dense"),
    Result("E", (256, 512), (256, 384, 512), 24.8, 7.5, "dense"),
    Result("E", (256, 512), (256, 384, 512), 24.6, 7.4, "multi-crop"),
    Result("E", (256, 512), (256, 384, 512), 24.4, 7.1, "multi-crop & dense"),
]


class Entry(NamedTuple):
    """One row of Table 7: method, errors in % (None where the paper gives none)."""
    method: str
    top1_val: Optional[float]
    top5_val: Optional[float]
    top5_test: Optional[float]
    note: str = ""


_SPAN = "one figure printed across the top-5 val. and test columns"


# Table 7: ILSVRC classification, against the state of the art.
TABLE7 = [
    Entry("VGG (2 nets, multi-crop & dense eval.)", 23.7, 6.8, 6.8),
    Entry("VGG (1 net, multi-crop & dense eval.)", 24.4, 7.1, 7.0),
    Entry("VGG (ILSVRC submission, 7 nets, dense eval.)", 24.7, 7.5, 7.3),
    Entry("GoogLeNet (1 net)", None, 7.9, 7.9, _SPAN),
    Entry("GoogLeNet (7 nets)", None, 6.7, 6.7, _SPAN),
    Entry("MSRA (11 nets)", None, None, 8.1),
    Entry("MSRA (1 net)", 27.9, 9.1, 9.1),
    Entry("Clarifai (multiple nets)", None, None, 11.7),
    Entry("Clarifai (1 net)", None, None, 12.5),
    Entry("Zeiler & Fergus (6 nets)", 36.0, 14.7, 14.8),
    Entry("Zeiler & Fergus (1 net)", 37.5, 16.0, 16.1),
    Entry("OverFeat (7 nets)", 34.0, 13.2, 13.6),
    Entry("OverFeat (1 net)", 35.7, 14.2, None),
    Entry("Krizhevsky et al. (5 nets)", 38.1, 16.4, 16.4),
    Entry("Krizhevsky et al. (1 net)", 40.7, 18.2, None),
]

# Abstract and section 4.5: the ILSVRC-2014 places of the VGG team.
ILSVRC_2014 = {"classification": 2, "localisation": 1, "classification_winner": "GoogLeNet",
               "submission_top5_test": 7.3, "post_submission_top5_test": 6.8}

# Section 3.1 (training) and 3.3 (implementation): the recipe on ILSVRC-2012.
RECIPE = {
    "optimiser": "mini-batch gradient descent with momentum",
    "batch_size": 256,
    "momentum": 0.9,
    "weight_decay": 5e-4,  # L2 penalty multiplier
    "dropout": 0.5,  # on the first two fully connected layers
    "lr": 1e-2,
    "lr_schedule": "divided by 10 when the validation accuracy stopped improving",
    "lr_decreases": 3,
    "iterations": 370_000,
    "epochs": 74,
    "crop": 224,  # random 224x224 crops of the rescaled training image, one per image per SGD
    "augmentation": "random crops, horizontal flips, random RGB colour shift",
    "train_scales": "fixed S = 256 or 384, or S jittered in [256, 512] per image",
    "hardware": "4 NVIDIA Titan Black GPUs, 2-3 weeks per network",
}
INIT = {
    "A": "random: weights from a normal distribution with zero mean and 10^-2 variance, "
         "biases 0",
    "deeper": "first four convolutional and last three fully connected layers from net A, "
              "the intermediate layers random",
    "later": "after submission: Glorot & Bengio (2010) initialisation works without "
             "pre-training",
}


def table1_column(config) -> tuple[str, ...]:
    """Table 1's column for a ``models.CONFIGS`` list: the paper's notation, FC head included."""
    out = []
    for item in config:
        if item == "M":
            out.append("maxpool")
        elif item == "LRN":
            out.append("LRN")
        elif isinstance(item, (tuple, list)):
            out.append(f"conv1-{item[1]}")
        else:
            out.append(f"conv3-{item}")
    return (*out, *_FC)


def weight_layers(config: str) -> int:
    """The paper's depth: convolutional plus fully connected layers (11 for A ... 19 for E)."""
    return sum(name.startswith(("conv", "FC")) for name in TABLE1[config])
