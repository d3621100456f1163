"""Figures drawn from real run records (the shared `single_run` / `sweep_run` fixtures of run_fixtures.py)."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import yaml

from bnlab import plots, train
from bnlab.records.store import load_runs, read_metrics, read_summary

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def assert_png_pdf(png, pdf):
    """A decodable, non-blank PNG (150 dpi: > 400 x 600 px) and a PDF."""
    img = matplotlib.image.imread(png)
    assert img.shape[0] > 400 and img.shape[1] > 600, png
    assert img.std() > 0.05, f"{png} is blank"
    ink = (img[..., :3] < 0.9).any(axis=-1).mean()  # pixels that are not (near) white
    assert ink > 0.02, f"{png}: only {ink:.1%} of the pixels are drawn"
    assert pdf.read_bytes().startswith(b"%PDF")


@pytest.fixture
def captured(monkeypatch):
    """Figures handed to plots.save, kept in memory (not rendered) for inspection: {name: Figure}."""
    figs = {}

    def fake_save(fig, out_dir, name):
        figs[name] = fig
        return [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]

    monkeypatch.setattr(plots.style, "save", fake_save)  # every figure saves through style.save
    yield figs
    plt.close("all")


@pytest.fixture(scope="module")
def single_figs(single_run):
    return plots.make_figures(single_run)


@pytest.fixture(scope="module")
def sweep_cli(sweep_run):
    """`bnlab-plot SWEEP_DIR` once: (exit code, printed lines)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = plots.main([str(sweep_run)])
    return code, out.getvalue().splitlines()


# ----------------------------------------------------------------------------- CLI and basics


def test_curves_figure_from_a_real_run(compose_cfg, tmp_path, capsys):
    cfg = compose_cfg("data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none",
                      "train.steps=10", "train.eval_every=5", "train.progress=off", "optim.lr=1.0")
    train.run(cfg, tmp_path)
    capsys.readouterr()
    assert plots.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    png, pdf = tmp_path / "figures/curves.png", tmp_path / "figures/curves.pdf"
    paths = [ln for ln in lines if not ln.startswith("skipped ")]
    assert paths[:2] == [str(png), str(pdf)]
    assert all(Path(p).exists() for p in paths)
    assert_png_pdf(png, pdf)
    # default cadences give one landscape probe (step 0) in 10 steps: a note, not an empty figure
    notes = [ln for ln in lines if ln.startswith("skipped ")]
    assert any(n.startswith("skipped landscape: ") for n in notes)
    assert not (tmp_path / "figures/landscape.png").exists()


def test_no_records_is_one_line_exit_2(tmp_path, capsys):
    assert plots.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no run records" in err[0]
    assert plots.make_figures(tmp_path) == ([], [f"skipped all figures: {tmp_path} holds no run records "
                                                 f"(summary.json)"])


@pytest.mark.parametrize("arm, expected", [("bn", "#0072B2"), ("none", "#D55E00")])
def test_arm_colors_are_fixed(arm, expected):
    assert plots.arm_color(arm, 5) == expected


def test_sweep_scale_line_names_shared_and_varying_values():
    s = {"model": "vgg11", "width": 0.25, "data": {"name": "cifar10", "train_size": 5085, "test_size": 1017},
         "steps": 100, "batch_size": 32, "lr": 0.05, "seed": 0}
    line = plots.sweep_scale_line([s, {**s, "lr": 1.0}, {**s, "seed": 1}, {**s, "lr": 1.0, "seed": 1}])
    assert "vgg11 (width 0.25) on cifar10, 5085 train / 1017 test images, 100 steps of batch 32" in line
    assert "lr {0.05, 1.0}" in line and "2 seeds {0, 1}" in line and "4 runs" in line


# ----------------------------------------------------------------------------- one run, every probe


def test_every_run_figure_is_drawn_from_a_run_with_every_probe(single_run, single_figs):
    """Every per-run figure of a CNN; the LSTM's per-time-step figure needs model=lstm (tests/test_lstm.py)."""
    paths, notes = single_figs
    assert [n.split(":")[0] for n in notes] == ["skipped recurrent_stats"]
    cnn_figures = [n for n in plots.RUN_FIGURES if n != "recurrent_stats"]
    for name in cnn_figures:
        png, pdf = single_run / "figures" / f"{name}.png", single_run / "figures" / f"{name}.pdf"
        assert png in paths and pdf in paths
        assert_png_pdf(png, pdf)
    assert len(paths) == 2 * len(cnn_figures)


def test_landscape_data_equals_the_probe_rows(single_run):
    rows = [json.loads(line) for line in (single_run / "metrics.jsonl").read_text().splitlines()]
    for arm in read_summary(single_run)["arms"]:
        probe = [r for r in rows if r["arm"] == arm and r["split"] == "probe" and "landscape/loss_min" in r]
        assert len(probe) >= 2
        d = plots.landscape_data(single_run, arm)
        assert d["step"].tolist() == [r["step"] for r in probe]
        for key in plots.LANDSCAPE_KEYS:
            expect = [np.nan if r[f"landscape/{key}"] is None else r[f"landscape/{key}"] for r in probe]
            np.testing.assert_array_equal(d[key], expect)


def test_landscape_figure_draws_the_bands_of_every_arm(single_run, captured):
    plots.plot_landscape(single_run)
    fig = captured["landscape"]
    (a, b, c) = fig.axes[:3]
    arms = read_summary(single_run)["arms"]
    assert len(a.collections) == len(arms) and len(b.collections) == len(arms)  # one band per arm
    assert b.get_yscale() == "log" and c.get_yscale() == "log"
    for arm, band in zip(arms, a.collections):
        d = plots.landscape_data(single_run, arm)
        ys = band.get_paths()[0].vertices[:, 1]
        np.testing.assert_allclose([ys.min(), ys.max()], [np.nanmin(d["loss_min"]), np.nanmax(d["loss_max"])])
        assert matplotlib.colors.to_hex(band.get_facecolor()[0]) == plots.arm_color(arm, list(arms).index(arm)).lower()
    n = len(plots.landscape_data(single_run, "bn")["step"])
    betas = [line.get_ydata() for line in c.get_lines() if len(line.get_ydata()) == n]
    for arm, y in zip(arms, betas):
        np.testing.assert_allclose(y, plots.landscape_data(single_run, arm)["beta_eff"])
    assert [t.get_text() for t in a.get_legend().get_texts()] == list(arms)
    title = fig.get_suptitle()
    assert "Santurkar" in title and "simple_cnn (width 0.25)" in title and "1017 test images" in title


def test_layer_norms_keep_conv_and_linear_weights_in_depth_order(single_run):
    for arm in ("bn", "none"):
        steps, traces = plots.layer_traces(single_run, arm, "grad_norm")
        assert list(traces) == ["features.conv1.weight", "features.conv2.weight", "features.conv3.weight",
                                "classifier.weight"]  # no norm gamma/beta, no conv or linear bias
        rows = [r for r in read_metrics(single_run) if r["arm"] == arm and r["split"] == "train"
                and "grad_norm/classifier.weight" in r]
        assert steps.tolist() == [r["step"] for r in rows]
        np.testing.assert_array_equal(traces["classifier.weight"], [r["grad_norm/classifier.weight"] for r in rows])


def test_activation_panels_share_y_limits_across_arms(single_run, captured):
    plots.plot_activations(single_run)
    fig = captured["activations"]
    panels = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert len(panels) == 2  # one tracked channel (features.conv3 c0) x 2 arms
    assert panels[0].get_ylim() == panels[1].get_ylim()
    traces = plots.activation_traces(single_run, "none")
    (steps, qs), = traces.values()
    assert sorted(qs) == [15.0, 50.0, 85.0] and len(steps) >= 2
    assert (qs[15.0] <= qs[50.0]).all() and (qs[50.0] <= qs[85.0]).all()


def test_curvature_and_ics_figures_plot_the_probe_values(single_run, captured):
    plots.plot_curvature(single_run)
    ax = captured["curvature"].axes[0]
    for arm in ("bn", "none"):
        s, v = plots.curvature_data(single_run, arm)["batch"]
        line = next(ln for ln in ax.get_lines() if ln.get_label() == f"{arm}, batch statistics")
        np.testing.assert_array_equal(line.get_ydata(), v)
        assert len(s) >= 2
    plots.plot_ics(single_run)
    ics = plots.ics_data(single_run, "bn")
    assert len(ics) == 3 and all(set(v) == {"l2", "cos"} for v in ics.values())
    assert len(captured["ics"].axes) == 2 * len(ics)


def test_surface_2d_uses_the_same_levels_for_every_arm(single_run, captured):
    plots.plot_surface_2d(single_run)
    fig = captured["surface_2d"]
    sets = [c for ax in fig.axes for c in ax.collections if hasattr(c, "levels") and c.filled]
    assert len(sets) == 2
    np.testing.assert_array_equal(sets[0].levels, sets[1].levels)
    analysis = plots.read_analysis(single_run)
    lo = min(min(map(min, a["surface_2d"]["loss"])) for a in analysis["arms"].values())
    assert sets[0].levels[0] == pytest.approx(lo)


# ----------------------------------------------------------------------------- sweep


def test_heatmap_marks_the_diverged_cells(sweep_run, captured):
    runs = load_runs(sweep_run)
    h = plots.heatmap_data(runs, "none")
    assert h.lrs == [0.05, 1.0] and h.batch_sizes == [32]
    assert (1.0, 32) in h.diverged and (0.05, 32) not in h.diverged
    assert h.runs.tolist() == [[2, 2]]
    for arm in ("bn", "none"):
        h = plots.heatmap_data(runs, arm)
        for j, lr in enumerate(h.lrs):
            cell = [r.summary["arms"][arm] for r in runs if r.summary["lr"] == lr]
            assert h.values[0, j] == pytest.approx(np.mean([c["final_test_acc"] for c in cell]))
            assert ((lr, 32) in h.diverged) == any(c["diverged"] for c in cell)
    plots.plot_heatmap_final_acc(runs, sweep_run / "figures")
    fig = captured["heatmap_final_acc"]
    ax_none = next(ax for ax in fig.axes if ax.get_title(loc="left") == "arm none")
    texts = [t.get_text() for t in ax_none.texts]
    assert any("diverged (2/2)" in t for t in texts)  # the lr 1.0 cell
    assert sum("diverged" in t for t in texts) == 1
    assert any(p.get_hatch() for p in ax_none.patches)  # hatched


def test_acc_vs_lr_is_the_mean_over_seeds(sweep_run, captured):
    runs = load_runs(sweep_run)
    for arm in ("bn", "none"):
        pts = plots.lr_sweep_data(runs, arm)
        assert [p["lr"] for p in pts] == [0.05, 1.0]
        for p in pts:
            accs = [read_summary(r.dir)["arms"][arm]["final_test_acc"] for r in runs if r.summary["lr"] == p["lr"]]
            assert p["n"] == 2 and p["mean"] == pytest.approx(sum(accs) / 2)
            assert (p["min"], p["max"]) == (min(accs), max(accs))
    assert plots.lr_sweep_data(runs, "none")[1]["diverged"] == 2
    plots.plot_acc_vs_lr(runs, sweep_run / "figures")
    ax = captured["acc_vs_lr"].axes[0]
    assert ax.get_xscale() == "log"
    mean_none = next(ln for ln in ax.get_lines() if ln.get_label() == "none (mean)")
    np.testing.assert_allclose(mean_none.get_ydata(), [p["mean"] for p in plots.lr_sweep_data(runs, "none")])
    big_x = [c for c in ax.collections if c.get_sizes().size and c.get_sizes()[0] > 50]  # diverged markers
    assert len(big_x) == 1 and big_x[0].get_offsets().tolist() == [[1.0, pytest.approx(mean_none.get_ydata()[1])]]


def test_seed_groups_drop_the_seed_and_band_over_it(sweep_run):
    runs = load_runs(sweep_run)
    groups = plots.seed_groups(runs)
    assert sorted(len(g) for g in groups) == [2, 2]
    for g in groups:
        assert len({r.summary["lr"] for r in g}) == 1 and {r.summary["seed"] for r in g} == {0, 1}
        assert len({r.summary["pair_id"] for r in g}) == 2  # the pair id cannot group seeds
    g = next(g for g in groups if g[0].summary["lr"] == 0.05)
    steps, mean, lo, hi = plots.seed_band(g, "bn", "test", "acc")
    a0, a1 = ({s: v for s, v in zip(*r.series("bn", "test", "acc"))} for r in g)
    for i, s in enumerate(steps):
        assert mean[i] == pytest.approx((a0[s] + a1[s]) / 2) and lo[i] == min(a0[s], a1[s])


def test_curves_configs_draws_every_config_and_arm_as_its_mean_over_seeds(sweep_run, captured):
    runs = load_runs(sweep_run)
    plots.plot_curves_configs(runs, sweep_run / "figures")
    ax = captured["curves_configs"].axes[2]  # (c) test accuracy
    means = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(means) >= {f"optim.lr={lr}, {arm}" for lr in (0.05, 1.0) for arm in ("bn", "none")}
    for g in plots.seed_groups(runs):
        lr = g[0].summary["lr"]
        steps, mean, _, _ = plots.seed_band(g, "bn", "test", "acc")
        np.testing.assert_allclose(means[f"optim.lr={lr}, bn"].get_ydata(), mean)
    with pytest.raises(plots.Skip, match="needs >= 2 configs"):
        plots.plot_curves_configs([r for r in runs if r.summary["lr"] == 0.05], sweep_run / "figures")


def test_bnlab_plot_on_a_sweep(sweep_run, sweep_cli):
    code, lines = sweep_cli
    assert code == 0
    paths = [ln for ln in lines if not ln.startswith("skipped ")]
    notes = [ln for ln in lines if ln.startswith("skipped ")]
    figs = sweep_run / "figures"
    for name in ("heatmap_final_acc", "acc_vs_lr", "curves_seeds_optim.lr_0.05", "curves_seeds_optim.lr_1.0",
                 "curves_configs"):
        assert str(figs / f"{name}.png") in paths and str(figs / f"{name}.pdf") in paths
        assert_png_pdf(figs / f"{name}.png", figs / f"{name}.pdf")
    for job in ("0", "1", "2", "3"):
        assert str(sweep_run / job / "figures/curves.png") in paths
        # 12 steps with the default cadences: one landscape/ICS probe, no curvature, no analysis
        for name in ("landscape", "ics", "curvature", "activations", "spectral_density"):
            assert any(n.startswith(f"skipped {name}: ") and n.endswith(f"({sweep_run / job})") for n in notes), name
            assert not (sweep_run / job / f"figures/{name}.png").exists()
    assert any(n.startswith("skipped init_sensitivity: the sweep does not vary init.scheme") for n in notes)
    assert not (figs / "init_sensitivity.png").exists()
    assert all(Path(p).exists() for p in paths)


def test_init_sensitivity_when_the_sweep_varies_the_init(sweep_run, tmp_path, captured):
    # the sweep's records, relabelled as two init schemes (jobs 0, 1 kaiming_normal; 2, 3 xavier_normal)
    for job in ("0", "1", "2", "3"):
        dst = tmp_path / job
        dst.mkdir()
        for f in ("summary.json", "metrics.jsonl"):
            shutil.copy(sweep_run / job / f, dst / f)
        cfg = yaml.safe_load((sweep_run / job / "config.yaml").read_text())
        if job in ("2", "3"):
            cfg["init"] = {"scheme": "xavier_normal", "gain": 1.0}
        (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    runs = load_runs(tmp_path)
    plots.plot_init_sensitivity(runs, tmp_path / "figures")
    fig = captured["init_sensitivity"]
    assert len([ax for ax in fig.axes if ax.get_title(loc="left")]) == 2  # one panel per lr (the other varying key)
    lr1 = [r for r in runs if r.summary["lr"] == 1.0]
    d = plots.init_data(lr1, "none")
    assert set(d) == {"kaiming_normal", "xavier_normal"} and all(v["diverged"] == 1 for v in d.values())
    assert plots.init_data(lr1, "bn")["kaiming_normal"]["mean"] == pytest.approx(
        [r for r in lr1 if r.summary["seed"] == 0][0].summary["arms"]["bn"]["final_test_acc"])
    # heatmap and acc_vs_lr facet by the init scheme, the seed groups by (init, lr)
    assert len(plots.seed_groups(runs)) == 4
    plots.plot_heatmap_final_acc(runs, tmp_path / "figures")
    titles = [ax.get_title(loc="left") for ax in captured["heatmap_final_acc"].axes]
    assert "arm none | init.scheme=xavier_normal" in titles



def test_sweep_figures_need_two_runs(single_run):
    paths, notes = plots.sweep_figures(single_run.parent)  # a folder holding one run
    assert paths == [] and len(notes) == len(plots.SWEEP_FIGURES)
    assert all(n.startswith("skipped ") and "needs >= 2 runs" in n for n in notes)


def test_a_folder_of_experiments_gets_sweep_figures_per_sweep(sweep_run, tmp_path):
    """results/ holds several experiments: each multirun is compared within itself, never all runs pooled."""
    root = tmp_path / "results"
    shutil.copytree(sweep_run / "0", root / "one_run" / "run", ignore=shutil.ignore_patterns("figures"))
    shutil.copytree(sweep_run, root / "a_sweep" / "sweep", ignore=shutil.ignore_patterns("figures"))
    groups = plots.sweep_groups(root, load_runs(root))
    assert list(groups) == [root / "a_sweep" / "sweep"]
    assert len(groups[root / "a_sweep" / "sweep"]) == len(load_runs(sweep_run))
    paths, notes = plots.make_figures(root)
    sweep_pngs = {p.name for p in paths if p.parent == root / "a_sweep" / "sweep" / "figures"}
    assert "heatmap_final_acc.png" in sweep_pngs
    assert not (root / "figures").exists(), "runs of different experiments were pooled into one sweep"
    assert any(p.parent == root / "one_run" / "run" / "figures" for p in paths)
