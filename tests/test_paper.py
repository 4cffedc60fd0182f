"""The paper's transcribed numbers against each other and against the library."""

import pytest
import torch

from vgg_book import paper
from vgg_book.models import CONFIGS, vgg


@pytest.mark.parametrize("name", list(CONFIGS))
def test_table1_is_configs_in_the_papers_notation(name):
    assert paper.table1_column(CONFIGS[name]) == paper.TABLE1[name]


def test_depths_are_the_papers_names():
    assert {k: paper.weight_layers(k) for k in paper.TABLE1} == {
        "A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_table2_rounds_our_parameter_counts(name):
    with torch.device("meta"):
        params = sum(p.numel() for p in vgg(name).parameters())
    assert round(params / 1e6) == paper.TABLE2_PARAMS_M[name]


def test_tables_agree_with_each_other():
    by = {(r.config, r.train, r.test): r for r in paper.TABLE4}
    for r in paper.TABLE5:
        if r.evaluation == "dense":  # Table 5's dense rows are Table 4's jittered rows
            assert by[(r.config, r.train, r.test)][3:5] == r[3:5]
    best_single = min(paper.TABLE5, key=lambda r: (r.top1, r.top5))
    one_net = next(e for e in paper.TABLE7 if e.method.startswith("VGG (1 net"))
    assert (best_single.top1, best_single.top5) == (one_net.top1_val, one_net.top5_val)
    submission = next(e for e in paper.TABLE7 if "submission" in e.method)
    two_nets = paper.TABLE7[0]
    assert paper.ILSVRC_2014["submission_top5_test"] == submission.top5_test
    assert paper.ILSVRC_2014["post_submission_top5_test"] == two_nets.top5_test
    googlenet = next(e for e in paper.TABLE7 if e.method == "GoogLeNet (7 nets)")
    assert googlenet.top5_test < two_nets.top5_test < submission.top5_test  # GoogLeNet won


def test_the_papers_conclusions_hold_in_its_tables():
    t3 = {(r.config, r.train): r.top1 for r in paper.TABLE3}
    assert t3["A", 256] > t3["B", 256] > t3["C", 256] > t3["D", 256]  # deeper is better ...
    assert t3["E", 256] >= t3["D", 256]  # ... until it saturates at 19 layers (fixed S)
    assert t3["A-LRN", 256] >= t3["A", 256]  # LRN does not help
    for config in "CDE":  # scale jittering beats both fixed scales
        assert t3[config, (256, 512)] < min(t3[config, 256], t3[config, 384])
    assert paper.RECIPE["iterations"] * paper.RECIPE["batch_size"] / 1.28e6 == pytest.approx(
        paper.RECIPE["epochs"], abs=0.5)  # 370K iterations of 256 over ~1.28M images


def test_plot_paper_errors_draws_three_scales():
    from vgg_book.plotting import plot_paper_errors

    fig = plot_paper_errors()
    lines = [line for line in fig.axes[0].lines if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == [
        "S = 256", "S = 384", "S jittered in [256, 512]"]
    assert list(lines[0].get_xdata()) == [11, 13, 16, 19]  # A, B, D, E joined
    assert len(fig.axes[0].lines) == 3 + 2 + 1 + 1  # A-LRN and C at 256, C at 384 and jittered


def test_affiliation_is_oxford_with_deepmind_only_in_footnotes():
    work, footnotes = paper.AFFILIATION
    assert "Oxford" in work and "Visual Geometry Group" in work and "DeepMind" not in work
    assert set(footnotes) == {"Karen Simonyan", "Andrew Zisserman"}
    assert all(f.startswith("current affiliation:") and "DeepMind" in f
               for f in footnotes.values())


def test_best_network_citations_agree_with_table5():
    best = min(paper.TABLE5, key=lambda r: (r.top5, r.top1))
    config, _, words = paper.BEST["single_model"]
    assert config == best.config == "E" and f"{best.top5}%" in words
    assert paper.BEST["classification"][0] == "D"
    both = {r.config: r for r in paper.TABLE5 if r.evaluation == "multi-crop & dense"}
    assert both["D"].top1 == both["E"].top1 and both["D"].top5 > both["E"].top5  # a near tie


def test_stack_and_5x5_citations():
    assert "regularisation on the 7 x 7" in paper.STACK_REGULARISATION
    assert paper.B_VS_5X5["top1_higher_pct"] > 0 and "5x5" in paper.B_VS_5X5["shallow"]
    assert paper.weight_layers("B") == 13  # the net the shallow variant is derived from
