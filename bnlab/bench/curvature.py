"""Benchmark: Lanczos vs power iteration for the top Hessian eigenvalue.

On one model and one batch, for each arm (BN and no-BN twin from the same
kaiming_normal init), find the top eigenvalue of the Hessian of L(w; B) to a
relative tolerance with ``curvature.top_eigenvalues`` (Lanczos) and with
``curvature.power_iteration`` (PyHessian's default), and report the
Hessian-vector products (HVPs) and seconds each took, their ratios
(power / Lanczos) and both eigenvalues. Power iteration converges to the
eigenvalue of largest magnitude, which can be the negative end of the
spectrum; Lanczos also finds lambda_min (as the top eigenvalue of -L), and
power iteration is compared with whichever end it converged to. Every run
builds the gradient graph once and includes that in its time; one untimed HVP
per arm warms up first. The report ends with the load average before and
after, since other processes on a small machine skew the seconds.

    .venv/bin/python -m bnlab.bench.curvature --out results/bench/curvature.txt

Data: the CIFAR-10 folder from --data, else $BNLAB_DATA_DIR, else
../shared/data/cifar10-mini next to the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bnlab import data, init, models
from bnlab.bench.machine import load_average, machine_lines
from bnlab.metrics import curvature

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = os.environ.get("BNLAB_DATA_DIR") or str(REPO.parent / "shared/data/cifar10-mini")
NORM_CFG = OmegaConf.create({"bn": {"eps": 1e-5, "momentum": 0.1}})
INIT_CFG = OmegaConf.create({"scheme": "kaiming_normal", "mode": "fan_in", "nonlinearity": "relu"})
CE = torch.nn.functional.cross_entropy


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bnlab.bench.curvature", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="vgg11", choices=models.ARCHS)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder holding cifar-10-batches-py")
    ap.add_argument("--tol", type=float, default=1e-3, help="relative tolerance on the top eigenvalue")
    ap.add_argument("--bn-mode", default="batch", choices=curvature.BN_MODES)
    ap.add_argument("--lanczos-max-hvps", type=int, default=100)
    ap.add_argument("--power-max-hvps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="time each run this many times, keep the fastest")
    ap.add_argument("--ref-tol", type=float, default=1e-7, help="tolerance of the Lanczos reference values")
    ap.add_argument("--ref-max-hvps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0, help="init, batch and start-vector seed")
    ap.add_argument("--out", type=Path, help="also write the report to this file")
    return ap.parse_args(argv)


def negated(outputs, targets):
    """-L: its top eigenvalue is -lambda_min(H), so Lanczos finds the bottom of the spectrum too."""
    return -CE(outputs, targets)


def measure(target: str, method, loss_fn, sign: float, model, batch, repeats: int, **kwargs) -> dict:
    """One eigenvalue by ``method``, best-of-``repeats`` seconds (runs are deterministic: same HVPs, same value)."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        values, info = method(model, loss_fn, *batch, k=1, return_info=True, **kwargs)
        seconds.append(time.perf_counter() - start)
    return {"target": target, "method": method.__name__, "value": sign * values[0], "seconds": min(seconds), **info}


def bench_arm(norm: str, batch, args) -> dict:
    """lambda_max and lambda_min by Lanczos and the largest-magnitude eigenvalue by power iteration.

    Each is scored against a tight-tolerance Lanczos reference for its target.
    """
    model = models.build(OmegaConf.create({"arch": args.arch, "width": args.width}), norm, NORM_CFG, 10)
    init.initialize(model, INIT_CFG, seed=args.seed)
    curvature.hvp(model, CE, *batch, [torch.zeros_like(p) for p in model.parameters()], args.bn_mode)  # warm-up
    common = {"bn_mode": args.bn_mode, "seed": args.seed, "repeats": args.repeats}
    lanczos = {**common, "tol": args.tol, "max_hvps": args.lanczos_max_hvps}
    power = {**common, "tol": args.tol, "max_hvps": args.power_max_hvps}
    reference = {**common, "tol": args.ref_tol, "max_hvps": args.ref_max_hvps, "repeats": 1}
    rows = [
        measure("lambda_max", curvature.top_eigenvalues, CE, 1.0, model, batch, **lanczos),
        measure("lambda_min", curvature.top_eigenvalues, negated, -1.0, model, batch, **lanczos),
        measure("max |lambda|", curvature.power_iteration, CE, 1.0, model, batch, **power),
    ]
    refs = {
        "lambda_max": measure("lambda_max", curvature.top_eigenvalues, CE, 1.0, model, batch, **reference),
        "lambda_min": measure("lambda_min", curvature.top_eigenvalues, negated, -1.0, model, batch, **reference),
    }
    refs["max |lambda|"] = max(refs.values(), key=lambda r: abs(r["value"]))
    for r in rows:
        exact = refs[r["target"]]["value"]
        r["error"] = abs(r["value"] - exact) / abs(exact)
    return {"norm": norm, "params": sum(p.numel() for p in model.parameters()), "rows": rows, "refs": refs}


def comparison(arm: dict) -> str:
    """Power iteration against the Lanczos run for the same eigenvalue (the end of largest magnitude)."""
    *ends, power = arm["rows"]
    same = max(ends, key=lambda r: abs(r["value"]))
    return (
        f"{arm['norm']:<5} power/lanczos for {same['target']}: HVPs {power['hvps'] / same['hvps']:.2f}x, "
        f"seconds {power['seconds'] / same['seconds']:.2f}x; "
        f"eigenvalues differ by {abs(power['value'] - same['value']) / abs(same['value']):.1e} relative"
    )


def report(results: list[dict], args, start_load: str) -> list[str]:
    lines = [
        "Hessian eigenvalues: Lanczos (top_eigenvalues) vs power iteration (power_iteration, PyHessian's method)",
        f"model {args.arch} width {args.width}, kaiming_normal init seed {args.seed}; one CIFAR-10 batch of "
        f"{args.batch_size} ({args.data}); bn_mode={args.bn_mode}; tol={args.tol} relative change between "
        f"iterations; max HVPs lanczos={args.lanczos_max_hvps}, power={args.power_max_hvps}",
        "power iteration converges to the eigenvalue of largest magnitude, so it is compared with the Lanczos "
        "run for that end of the spectrum (lambda_min from the top eigenvalue of -L)",
        f"seconds: best of {args.repeats} identical runs; rel.error: against Lanczos with tol={args.ref_tol} "
        f"(at most {args.ref_max_hvps} HVPs)",
        *machine_lines(torch.device("cpu")),
        "",
        f"{'arm':<5} {'params':>8} {'target':<12} {'method':<16} {'eigenvalue':>11} {'rel.error':>9} {'HVPs':>5} "
        f"{'seconds':>8} {'s/HVP':>6} converged",
    ]
    for arm in results:
        for r in arm["rows"]:
            lines.append(
                f"{arm['norm']:<5} {arm['params']:>8} {r['target']:<12} {r['method']:<16} {r['value']:>11.4f} "
                f"{r['error']:>9.1e} {r['hvps']:>5} {r['seconds']:>8.2f} {r['seconds'] / r['hvps']:>6.3f} "
                f"{r['converged']}"
            )
    lines.append("")
    for arm in results:
        lines += [
            f"{arm['norm']:<5} reference {t}: {r['value']:.4f} ({r['hvps']} HVPs, converged {r['converged']})"
            for t, r in arm["refs"].items()
            if t.startswith("lambda")
        ]
    return [*lines, "", *(comparison(arm) for arm in results), "", f"{start_load} before, {load_average()} after"]


def main(argv=None) -> int:
    args = parse_args(argv)
    ds = data.load(OmegaConf.create({"name": "cifar10", "root": args.data, "download": False}), torch.device("cpu"))
    batch = next(data.Batches(ds, args.batch_size, seed=args.seed))
    start_load = load_average()
    results = [bench_arm(norm, batch, args) for norm in ("bn", "none")]
    lines = report(results, args, start_load)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
