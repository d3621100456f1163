"""Training only the norm parameters (Frankle et al. 2021) and its random-parameter control."""

import pytest
import torch
from omegaconf import OmegaConf

from bnlab import config, freeze, init, models, train
from bnlab.errors import BnlabError
from bnlab.records.store import read_metrics

NORM = OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1}})
FAST = ["data=synthetic", "model=simple_cnn", "model.width=0.25", "logger=none", "train.steps=10",
        "train.eval_every=5", "train.progress=off", "metrics.layer_norms.every=5"]


def bn_model():
    m = models.build(OmegaConf.create({"arch": "simple_cnn", "width": 0.25}), "bn", NORM, 10)
    return init.initialize(m, OmegaConf.create({"scheme": "kaiming_normal", "mode": "fan_in",
                                                "nonlinearity": "relu"}), seed=0)


def sgd_steps(model, n=3):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_only_norm_parameters_move():
    model = bn_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    n = freeze.train_only_norm(model)
    assert n == sum(p.numel() for p in freeze.norm_parameters(model)) == 2 * (8 + 16 + 32)
    sgd_steps(model)
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (".norm" in name), name


def test_random_control_moves_exactly_the_chosen_entries():
    model = bn_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    freeze.train_random_subset(model, 112, seed=3)
    sgd_steps(model)
    changed = sum(int((p != before[n]).sum()) for n, p in model.named_parameters())
    assert 0 < changed <= 112  # a chosen entry may get a zero gradient (dead ReLU), no other may move
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if ".norm" in n)
    with pytest.raises(ValueError):
        freeze.train_random_subset(bn_model(), 10**9, seed=0)


def test_run_with_only_norm_params_and_control(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST, "arms=[bn]", "train.only_norm_params=true", "train.random_param_control=true")
    summary = train.run(cfg, tmp_path)
    arms = summary["arms"]
    assert list(arms) == ["bn", "bn-random"] and arms["bn-random"]["norm"] == "bn"
    assert arms["bn"]["trainable_params"] == arms["bn-random"]["trainable_params"] == 2 * (8 + 16 + 32)
    # the frozen conv weights of the bn arm are still their initial values
    final = torch.load(tmp_path / "checkpoints/bn.pt", weights_only=True)["model"]
    assert torch.equal(final["features.conv2.weight"], bn_model().features.conv2.weight)
    rows = [r for r in read_metrics(tmp_path) if r["split"] == "train" and "gamma_frac_below_0.01" in r]
    assert {r["arm"] for r in rows} == {"bn", "bn-random"}
    assert all(0 <= r["gamma_frac_below_0.01"] <= 1 for r in rows)
    assert arms["bn-random"]["final_gamma_frac_below_0.01"] == 0.0  # its gammas are frozen at 1


@pytest.mark.parametrize("overrides, message", [
    (["arms=[bn,none]", "train.only_norm_params=true"], "arm 'none' has none"),
    (["train.random_param_control=true"], "is the control of train.only_norm_params"),
    (["arms=[bn]", "train.only_norm_params=true", "train.random_param_control=true", "optim.weight_decay=1e-4"],
     "needs optim.weight_decay=0"),
])
def test_bad_combinations(compose_cfg, overrides, message):
    with pytest.raises(BnlabError, match=message):
        config.validate(compose_cfg(*overrides))


def test_linear_lr_scaling_in_the_batch_size_experiment(compose_cfg):
    for batch, lr in [(128, 0.05), (32, 0.0125), (2, 0.05 * 2 / 128)]:
        cfg = compose_cfg("experiment=batch_size_dependence", f"data.batch_size={batch}")
        assert cfg.optim.lr == pytest.approx(lr)
