"""model=lstm (issue 21): the recurrent arms, their BN per time step, and the CLI on them.

The cell tests check bnlab/lstm.py against Cooijmans et al. 2016's equations written
out directly here (a second, independent implementation on a tiny case). The CLI tests
at the end run the installed console script on the real CIFAR-10 subset.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import wandb_records
from conftest import read_jsonl, run_bnlab
from omegaconf import OmegaConf

from bnlab import clipping, data, init, lstm, plots
from bnlab.errors import BnlabError
from bnlab.metrics import recurrent_stats
from bnlab.plots import run_recurrent as lstm_plots
from bnlab.records.store import Run

EPS = 1e-5
NORM = OmegaConf.create({"bn": {"eps": EPS, "momentum": 0.1}})


def model_cfg(**kw):
    base = {"arch": "lstm", "hidden": 3, "layers": 1, "width": 1.0, "gamma_init": 0.1, "t_max": 32,
            "forget_bias": 1.0, "ordering": "rows"}
    return OmegaConf.create({**base, **kw})


def tiny_layer(kind: str, seed: int = 0, dtype=torch.float32, **kw) -> lstm.LSTMLayer:
    """A 4-feature, 3-unit layer with random weights AND random norm parameters (not the init values)."""
    torch.manual_seed(seed)
    layer = lstm.LSTMLayer(4, 3, kind, model_cfg(**kw), NORM).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.7 + (1.0 if p.dim() == 1 and p.shape[0] == 3 else 0.0))
    return layer


def bn_direct(a: torch.Tensor, gamma, beta=None) -> torch.Tensor:
    """BN of (N, C) with this batch's statistics: biased variance, eps inside the root."""
    y = gamma * (a - a.mean(0)) / torch.sqrt(a.var(0, correction=0) + EPS)
    return y if beta is None else y + beta


def cooijmans_direct(layer: lstm.LSTMLayer, seq: torch.Tensor, stats=None) -> torch.Tensor:
    """Cooijmans et al. 2016, eqs. 6-8, step by step from the layer's raw parameters.

    ``stats``: None (training: batch statistics of each step), or a function t -> the
    (mean, var) rows of the h, x and c normalizers to use (eval: running statistics).
    """
    wx, wh, b = layer.wx.weight, layer.wh.weight, layer.bias
    gx, gh, gc, bc = layer.norm_x.weight, layer.norm_h.weight, layer.norm_c.weight, layer.norm_c.bias
    n, steps, _ = seq.shape
    h = c = seq.new_zeros(n, 3)
    hs = []
    for t in range(steps):
        ah, ax = h @ wh.T, seq[:, t] @ wx.T
        if stats is None:
            gates = bn_direct(ah, gh) + bn_direct(ax, gx) + b
        else:
            (mh, vh), (mx, vx), _ = stats(t)
            gates = gh * (ah - mh) / torch.sqrt(vh + EPS) + gx * (ax - mx) / torch.sqrt(vx + EPS) + b
        f, i, o, g = gates[:, 0:3], gates[:, 3:6], gates[:, 6:9], gates[:, 9:12]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if stats is None:
            cn = bn_direct(c, gc, bc)
        else:
            mc, vc = stats(t)[2]
            cn = gc * (c - mc) / torch.sqrt(vc + EPS) + bc
        h = torch.sigmoid(o) * torch.tanh(cn)
        hs.append(h)
    return torch.stack(hs, 1)


def test_bn_lstm_forward_is_cooijmans_equations():
    layer = tiny_layer("bn")
    seq = torch.randn(6, 5, 4)
    assert torch.allclose(layer(seq), cooijmans_direct(layer, seq), atol=1e-6)


def test_plain_and_layer_norm_cells_are_their_papers_equations():
    seq = torch.randn(6, 5, 4)
    plain, ln = tiny_layer("none"), tiny_layer("layer_norm")

    def run(layer, norm):
        h = c = torch.zeros(6, 3)
        for t in range(5):
            gates = norm(h @ layer.wh.weight.T, layer.norm_h) + norm(seq[:, t] @ layer.wx.weight.T, layer.norm_x) \
                + layer.bias
            f, i, o, g = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(norm(c, layer.norm_c))
        return h

    def ln_direct(a, m):  # Ba et al.: per sample over the units, gain and bias per unit
        return m.weight * (a - a.mean(1, keepdim=True)) / torch.sqrt(a.var(1, correction=0, keepdim=True) + EPS) \
            + m.bias

    assert torch.allclose(plain(seq)[:, -1], run(plain, lambda a, m: a), atol=1e-6)
    assert torch.allclose(ln(seq)[:, -1], run(ln, ln_direct), atol=1e-6)


def test_running_statistics_are_kept_and_used_per_time_step():
    layer = tiny_layer("bn", t_max=3)  # 5 steps: steps 3 and 4 reuse row 2 in eval
    seq = torch.randn(8, 5, 4)
    for _ in range(3):
        layer(seq + torch.randn_like(seq))
    rm = layer.norm_h.running_mean
    assert rm.shape == (3, 12) and not torch.allclose(rm[1], rm[2])  # one row per time step, and they differ
    assert torch.equal(rm[0], torch.zeros(12))  # W_h h_{-1} = 0: step 0's statistics are exactly zero
    layer.eval()
    out = layer(seq)

    def stats(t):
        s = min(t, 2)
        return [(m.running_mean[s], m.running_var[s]) for m in (layer.norm_h, layer.norm_x, layer.norm_c)]

    assert torch.allclose(out, cooijmans_direct(layer, seq, stats), atol=1e-6)
    # and not the batch's own statistics, nor one shared row
    assert not torch.allclose(out, cooijmans_direct(layer, seq), atol=1e-3)
    assert not torch.allclose(out, cooijmans_direct(layer, seq, lambda t: stats(2)), atol=1e-3)


def test_one_training_forward_moves_row_t_toward_step_t_batch_statistics():
    layer = tiny_layer("bn", t_max=4)
    seq = torch.randn(8, 6, 4)
    ax = seq @ layer.wx.weight.T  # W_x x_t for every t
    layer(seq)
    m = layer.norm_x
    for t in range(4):
        assert torch.allclose(m.running_mean[t], 0.1 * ax[:, t].mean(0), atol=1e-6)
        assert torch.allclose(m.running_var[t], 0.9 + 0.1 * ax[:, t].var(0, correction=1), atol=1e-6)


def test_scratch_bn_cell_equals_bn_cell_and_its_gradients():
    bn, scratch = tiny_layer("bn", seed=3), tiny_layer("scratch_bn", seed=3)
    seq = torch.randn(7, 6, 4, requires_grad=True)
    out_bn, out_scratch = bn(seq), scratch(seq)
    assert torch.allclose(out_bn, out_scratch, atol=1e-5)
    w = torch.randn_like(out_bn)
    g_bn = torch.autograd.grad((out_bn * w).sum(), [seq, *bn.parameters()])
    g_scratch = torch.autograd.grad((out_scratch * w).sum(), [seq, *scratch.parameters()])
    for a, b in zip(g_bn, g_scratch, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    for name, buf in bn.named_buffers():
        assert torch.allclose(buf, dict(scratch.named_buffers())[name], atol=1e-6), name


def test_scratch_bn_cell_passes_gradcheck_in_float64():
    layer = tiny_layer("scratch_bn", seed=5, dtype=torch.float64)
    names = [n for n, _ in layer.named_parameters()]
    seq = torch.randn(5, 4, 4, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (seq, *params), eps=1e-6, atol=1e-5)


def built(cfg, kind):
    """An arm's network as train.build_arm makes it: models.build (-> lstm.build), then init with the run seed."""
    return init.initialize(lstm.build(cfg.model, kind, cfg.norm, 10), cfg.init, seed=cfg.seed)


def test_arms_start_from_identical_weights(compose_cfg):
    cfg = compose_cfg("model=lstm", "init=orthogonal", "model.hidden=16", "seed=11")
    arms = {k: built(cfg, k) for k in lstm.KINDS}
    ref = dict(arms["none"].named_parameters())
    assert set(ref) == {"layers.0.wx.weight", "layers.0.wh.weight", "layers.0.bias",
                        "classifier.weight", "classifier.bias"}
    for kind, model in arms.items():
        params = dict(model.named_parameters())
        for n in ref:  # the plain LSTM's tensors exist in every arm, bitwise equal
            assert torch.equal(params[n], ref[n]), (kind, n)
        for n, p in params.items():
            if n not in ref:  # norm parameters: gamma = gamma_init (BN) or 1 (LN), beta = 0
                gain = 0.1 if kind in ("bn", "scratch_bn") else 1.0
                assert torch.all(p == (gain if n.endswith("weight") else 0.0)), (kind, n)
    assert torch.equal(ref["layers.0.bias"][:16], torch.ones(16))  # forget gate bias 1, others 0
    assert torch.equal(ref["layers.0.bias"][16:], torch.zeros(48))
    other = built(compose_cfg("model=lstm", "init=orthogonal", "model.hidden=16", "seed=12"), "none")
    assert not torch.equal(other.layers[0].wh.weight, ref["layers.0.wh.weight"])  # the seed does draw


def test_gamma_init_is_a_config_key(compose_cfg):
    cfg = compose_cfg("model=lstm", "model.hidden=8", "model.gamma_init=1.0")
    net = lstm.build(cfg.model, "bn", cfg.norm, 10)
    assert {m.weight[0].item() for m in net.modules() if isinstance(m, lstm.SequenceBatchNorm)} == {1.0}
    assert float(compose_cfg("model=lstm").model.gamma_init) == 0.1  # the paper's default


def test_forward_backward_on_real_cifar_rows(compose_cfg, cifar_dir):
    cfg = compose_cfg("model=lstm", "model.hidden=16", f"data.root={cifar_dir}")
    ds = data.load(cfg.data, torch.device("cpu"))
    x, y = next(data.Batches(ds, 16, seed=0))
    seq = lstm.as_sequence(x)
    assert seq.shape == (16, 32, 96)
    assert torch.equal(seq[3, 7], torch.cat([x[3, 0, 7], x[3, 1, 7], x[3, 2, 7]]))  # step 7 = image row 7
    for kind in lstm.KINDS:
        net = init.initialize(lstm.build(cfg.model, kind, cfg.norm, ds.num_classes), cfg.init, seed=0)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        assert torch.isfinite(loss) and loss.item() == pytest.approx(2.3, abs=0.5)
        for n, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (kind, n)
            assert p.grad.abs().sum() > 0, (kind, n)


@pytest.mark.parametrize("key, value, message", [
    ("hidden", 0, "model.hidden=0 must be an integer >= 1"),
    ("layers", 1.5, "model.layers=1.5 must be an integer >= 1"),
    ("t_max", 0, "model.t_max=0 must be an integer >= 1"),
    ("gamma_init", float("nan"), "model.gamma_init=nan must be a finite number"),
    ("ordering", "pixels", "model.ordering=pixels is not known; choose from rows"),
])
def test_impossible_model_settings_are_one_line_errors(key, value, message):
    with pytest.raises(BnlabError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        lstm.build(model_cfg(**{key: value}), "bn", NORM, 10)


def test_an_arm_the_lstm_lacks_is_named():
    with pytest.raises(BnlabError, match="model=lstm has no 'ghost_bn' arm; choose from bn, scratch_bn"):
        lstm.build(model_cfg(), "ghost_bn", NORM, 10)


def test_image_shape_is_checked():
    net = lstm.build(model_cfg(), "none", NORM, 10)
    with pytest.raises(BnlabError, match="model=lstm reads image batches"):
        net(torch.randn(4, 10))


# --------------------------------------------------------------------------- clipping


def test_clip_gradients_caps_the_global_norm_and_returns_the_norm_before():
    net = lstm.build(model_cfg(), "bn", NORM, 10)
    F.cross_entropy(net(torch.randn(8, 3, 32, 32)) * 50, torch.arange(8)).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    before = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    small = float(before) / 10
    returned = clipping.clip_gradients(net, small)
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()]))
    assert float(returned) == pytest.approx(float(before)) and float(after) == pytest.approx(small, rel=1e-4)
    for g, p in zip(grads, net.parameters()):  # the direction is kept
        assert torch.allclose(p.grad, g * small / float(before), atol=1e-7)
    assert clipping.clip_gradients(net, None) is None  # off: nothing touched
    with pytest.raises(BnlabError, match=r"^optim\.grad_clip=0 must be a number > 0 \(or null: off\)"):
        clipping.check(0)


# --------------------------------------------------------------------------- recurrent statistics


def test_recurrent_stats_probe_measures_per_step_and_leaves_no_trace():
    torch.manual_seed(0)
    net = init.initialize(lstm.build(model_cfg(hidden=8), "bn", NORM, 10),
                          OmegaConf.create({"scheme": "orthogonal", "gain": 1.0}), seed=0)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    F.cross_entropy(net(x), y).backward()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad.clone() for p in net.parameters()]
    out = recurrent_stats.probe(net, F.cross_entropy, x, y, units=[0, 5])
    # bitwise unchanged: weights, per-step running statistics, gradients
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))
    assert net.trace is None
    assert len(out) == 32 * 7 and all(recurrent_stats.parse_key(k)[0] == 0 for k in out)
    assert out[recurrent_stats.key(0, "hh_var_avg", 0)] == 0.0  # a_0 = W_h h_{-1} = 0
    # one step against a direct computation of W_h h_{t-1} in the same forward
    trace: list = []
    net.trace = trace
    net(x)
    net.trace = None
    _, hw, _ = trace[0][6]
    assert out[recurrent_stats.key(0, "hh_mean_u5", 6)] == pytest.approx(hw[:, 5].mean().item(), abs=1e-6)
    assert out[recurrent_stats.key(0, "hh_var_avg", 6)] == pytest.approx(hw.var(0, correction=0).mean().item(),
                                                                          rel=1e-5)
    assert recurrent_stats.parse_key("recurrent/l1/grad_h@t31") == (1, "grad_h", 31)
    assert recurrent_stats.parse_key("landscape/beta_eff") is None
    assert recurrent_stats.probe(torch.nn.Linear(2, 2), F.cross_entropy, x, y) == {}  # a CNN: nothing


# --------------------------------------------------------------------------- the CLI (needs the merge hooks)

TINY = ["model=lstm", "model.hidden=16", "data.batch_size=16", "train.steps=8", "train.log_every=4",
        "train.eval_every=4", "init=orthogonal", "optim=adam", "optim.lr=0.003", "+optim.grad_clip=1.0",
        "train.channels_last=false", "train.progress=off", "arms=[bn,none,layer_norm,scratch_bn]"]
PROBES_ON = ["metrics.layer_norms.every=2", "metrics.landscape.every=4", "metrics.landscape.points=3",
             "metrics.ics.every=4", "metrics.divergence.every=4", "metrics.divergence.points=4",
             "+metrics.recurrent_stats.every=4", "+metrics.recurrent_stats.units=[0]"]
PROBES_OFF = ["metrics.layer_norms.every=null", "metrics.landscape.every=null", "metrics.ics.every=null",
              "metrics.divergence.every=null", "train.eval_batch_stats=false"]


def test_cli_lstm_run_writes_complete_records_and_wandb_runs(tmp_path, cifar_dir):
    out = tmp_path / "run"
    # every arm; the probes the in-process trajectory test checks stay off here but recurrent_stats
    res = run_bnlab([*TINY, "metrics.layer_norms.every=2", "+metrics.recurrent_stats.every=4",
                     "+metrics.recurrent_stats.units=[0]", "metrics.ics.every=null", "metrics.landscape.every=null",
                     "metrics.divergence.every=4", "metrics.divergence.points=2", "logger.mode=offline",
                     f"hydra.run.dir={out}"], tmp_path, cifar_dir)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    arms = ("bn", "none", "layer_norm", "scratch_bn")
    assert summary["status"] == "completed" and summary["model"] == "lstm" and set(summary["arms"]) == set(arms)
    rows = read_jsonl(out / "metrics.jsonl")
    runs = wandb_records.read_all(out / "wandb")
    assert set(runs) == set(arms)
    for arm in arms:
        assert [r["step"] for r in rows if r["arm"] == arm and r["split"] == "train"] == list(range(8))
        probes = [r for r in rows if r["arm"] == arm and r["split"] == "probe"]
        assert [r["step"] for r in probes] == [0, 4]
        for key in ("recurrent/l0/grad_h@t31", "divergence/first_divergent_eta", "init/act_std/layers.0.wh"):
            assert key in probes[0], (arm, key)
        test = [r for r in rows if r["arm"] == arm and r["split"] == "test"]
        assert [r["step"] for r in test] == [0, 4, 8]
        assert ("acc_batch_stats" in test[-1]) == (arm in ("bn", "scratch_bn"))  # BN per step, batch view
        hist = runs[arm]["history"]
        assert runs[arm]["config"]["model"]["arch"] == "lstm"
        assert hist[4]["probe/recurrent/l0/hh_var_avg@t5"] == pytest.approx(probes[1]["recurrent/l0/hh_var_avg@t5"])
        assert hist[8]["test/acc"] == pytest.approx(summary["arms"][arm]["final_test_acc"])
        assert "train/grad_norm/layers.0.wh.weight" in hist[2]


def test_probes_leave_the_lstm_trajectory_bitwise_unchanged(compose_cfg, tmp_path, cifar_dir):
    from bnlab import train

    for name, probes in (("on", PROBES_ON), ("off", PROBES_OFF)):
        train.run(compose_cfg(*TINY, *probes, "logger=none", f"data.root={cifar_dir}"), tmp_path / name)

    def trajectory(d):
        keep = ("step", "arm", "split", "loss", "acc", "grad_norm")
        return [{k: r[k] for k in keep if k in r} for r in read_jsonl(d / "metrics.jsonl")
                if r["split"] in ("train", "test")]

    assert trajectory(tmp_path / "on") == trajectory(tmp_path / "off")  # bitwise equal floats
    probes = [r for r in read_jsonl(tmp_path / "on/metrics.jsonl") if r["split"] == "probe"]
    for key in ("landscape/beta_eff", "ics/layers.0.wh.weight/rel", "recurrent/l0/hh_var_u0@t3"):
        assert all(key in r for r in probes), key  # every probe ran on every arm
    for arm in ("bn", "none", "layer_norm", "scratch_bn"):
        on = torch.load(tmp_path / f"on/checkpoints/{arm}.pt", weights_only=True)["model"]
        off = torch.load(tmp_path / f"off/checkpoints/{arm}.pt", weights_only=True)["model"]
        assert on.keys() == off.keys() and all(torch.equal(on[k], off[k]) for k in on), arm
    assert {r["step"] for r in probes} == {0, 4}  # the probes did run (every 4 steps)
    # the per-time-step figure from these records; a run without the probe has none, and says why
    png, pdf = lstm_plots.plot_time_step_stats(tmp_path / "on")
    assert png.stat().st_size > 10_000 and pdf.exists() and png.parent == tmp_path / "on/figures"
    with pytest.raises(plots.Skip, match="no recurrent/ probe rows of arm bn"):
        lstm_plots.plot_time_step_stats(tmp_path / "off")


def test_gradient_clipping_changes_the_update_not_the_recorded_norm(compose_cfg, tmp_path, cifar_dir):
    from bnlab import train

    base = [a for a in TINY if not a.startswith("+optim.grad_clip")] + [
        "logger=none", "arms=[bn]", "train.steps=2", f"data.root={cifar_dir}"]
    train.run(compose_cfg(*base), tmp_path / "off")
    train.run(compose_cfg(*base, "+optim.grad_clip=0.01"), tmp_path / "on")
    train_on, train_off = ([r for r in read_jsonl(tmp_path / d / "metrics.jsonl") if r["split"] == "train"]
                           for d in ("on", "off"))
    assert train_on[0]["grad_norm"] == train_off[0]["grad_norm"] > 0.01  # the norm before clipping, step 0 alike
    assert train_on[1]["loss"] != train_off[1]["loss"]  # the clipped update moved the weights less


@pytest.mark.parametrize("args, message", [
    (["arms=[bn,ghost_bn]"], "bnlab: error: arms: model=lstm has no 'ghost_bn' arm"),
    (["+optim.grad_clip=-1"], "bnlab: error: optim.grad_clip=-1 must be a number > 0"),
    (["model.t_max=0"], "bnlab: error: model.t_max=0 must be an integer >= 1"),
    (["data=gaussian"], "bnlab: error: model=lstm reads images row by row, and data=gaussian gives vectors"),
    (["+metrics.recurrent_stats.every=0"], "bnlab: error: metrics.recurrent_stats.every=0 must be an integer > 0"),
])
def test_cli_bad_lstm_input_is_one_line_exit_2_nothing_written(tmp_path, cifar_dir, args, message):
    out = tmp_path / "run"
    base = [a for a in TINY if not a.startswith("+optim.grad_clip")]
    res = run_bnlab([*base, "logger=none", *args, f"hydra.run.dir={out}"], tmp_path, cifar_dir)
    assert res.returncode == 2 and res.stderr.strip().startswith(message), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not out.exists()


# --------------------------------------------------------------------------- claims (need the merge hooks)


def loss_rows(steps: int, rates: dict, seed: int) -> list[dict]:
    """Per-step training losses per arm: 2.3 * exp(-rate * step), with batch noise."""
    import math

    from verdict_records import noise

    return [{"step": s, "arm": a, "split": "train", "loss": 2.3 * math.exp(-r * s) + noise(seed, 0.05, s * 7 + i)}
            for s in range(steps) for i, (a, r) in enumerate(rates.items())]


def test_lstm_claims_judge_speed_accuracy_and_gamma_init(tmp_path):
    from verdict_records import arm, claims_cli, noise, write_run

    from bnlab import claims
    from bnlab.claims import lstm as claims_lstm

    lstm_model = {"model.arch": "lstm", "model.gamma_init": 0.1}
    for s in range(5):  # bn falls twice as fast and ends 5 points higher
        write_run(tmp_path / f"seq-{s}", seed=s, experiment="cooijmans_seq_cifar", steps=600, extra=lstm_model,
                  arms={"bn": arm(0.45 + noise(s, 0.01, 1)), "none": arm(0.40 + noise(s, 0.01, 2))},
                  rows=loss_rows(600, {"bn": 0.002, "none": 0.001}, s))
        for gamma, rate in ((0.1, 0.002), (1.0, 0.0008)):  # gamma 1.0 trains slower
            write_run(tmp_path / f"gamma-{s}-{gamma}", seed=s, experiment="cooijmans_gamma_init", steps=600,
                      extra={**lstm_model, "model.gamma_init": gamma}, arms={"bn": arm(0.4)},
                      rows=loss_rows(600, {"bn": rate}, s))
    res, out = claims_cli(tmp_path)
    assert res.returncode == 0, res.stderr
    for cid in ("lstm_bn_faster_to_target_loss", "lstm_bn_higher_accuracy", "lstm_gamma_small_trains_better"):
        assert out[cid]["verdict"] == claims.SUPPORTED and out[cid]["n"] == 5, (cid, out[cid]["reason"])
        assert out[cid]["margin_reason"]  # the one-line reason from configs/claims/default.yaml
    # speed-up: none's steps / bn's steps to the smoothed target, ~2x by construction
    run = Run(tmp_path / "seq-0")
    target = claims.load_config()["lstm_target_loss"]
    bn, none = (claims_lstm.steps_to_loss(run, a, target) for a in ("bn", "none"))
    assert out["lstm_bn_faster_to_target_loss"]["per_seed"][0]["value"] == pytest.approx(
        math.log10(none / bn), rel=1e-3)
    assert 1.5 < none / bn < 2.5
    # the gamma grid pairs the two gamma inits of each seed; the speed claims ignore those runs
    assert len(out["lstm_gamma_small_trains_better"]["runs_used"]) == 10
    assert all("gamma" not in r for r in out["lstm_bn_faster_to_target_loss"]["runs_used"])


def test_a_crashed_lstm_run_resumes_bitwise(compose_cfg, tmp_path, monkeypatch, cifar_dir):
    """The per-time-step running statistics, Adam's state and the clipping survive a checkpoint."""
    from bnlab import checkpoint, train

    cfg = compose_cfg(*TINY, "logger=none", "arms=[bn,none]", "train.checkpoint_every=4",
                      "+metrics.recurrent_stats.every=3",
                      f"data.root={cifar_dir}")
    train.run(cfg, tmp_path / "straight")
    real = train.train_step

    def crash(arm, x, y, due, cfg, step=0):
        if step == 6:
            raise RuntimeError("crash")
        return real(arm, x, y, due, cfg, step)

    monkeypatch.setattr(train, "train_step", crash)
    with pytest.raises(RuntimeError, match="crash"):
        train.run(cfg, tmp_path / "resumed")
    assert torch.load(checkpoint.path(tmp_path / "resumed"), weights_only=True)["step"] == 4
    monkeypatch.undo()
    assert train.run(cfg, tmp_path / "resumed")["resumed_at_steps"] == [4]
    assert (tmp_path / "resumed/metrics.jsonl").read_bytes() == (tmp_path / "straight/metrics.jsonl").read_bytes()
    for arm in ("none", "bn"):
        a, b = (torch.load(tmp_path / d / f"checkpoints/{arm}.pt", weights_only=True)["model"]
                for d in ("straight", "resumed"))
        assert all(torch.equal(a[k], b[k]) for k in a), arm
    assert a["layers.0.norm_h.running_mean"].shape == (32, 64)  # one row of statistics per time step
