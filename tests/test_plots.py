"""Figures drawn from real run records."""

import matplotlib.image
import pytest

from bnlab import plots, train


def test_curves_figure_from_a_real_run(compose_cfg, tmp_path, capsys):
    cfg = compose_cfg("data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none",
                      "train.steps=10", "train.eval_every=5", "train.progress=off", "optim.lr=1.0")
    train.run(cfg, tmp_path)
    capsys.readouterr()
    assert plots.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    png, pdf = tmp_path / "figures/curves.png", tmp_path / "figures/curves.pdf"
    assert printed == [str(png), str(pdf)]
    img = matplotlib.image.imread(png)
    assert img.shape[0] > 500 and img.shape[1] > 800 and img.std() > 0.05  # not blank
    assert pdf.read_bytes().startswith(b"%PDF")


def test_no_records_is_one_line_exit_2(tmp_path, capsys):
    assert plots.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no run records" in err[0]


@pytest.mark.parametrize("arm, expected", [("bn", "#0072B2"), ("none", "#D55E00")])
def test_arm_colors_are_fixed(arm, expected):
    assert plots.arm_color(arm, 5) == expected
