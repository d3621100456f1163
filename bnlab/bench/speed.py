"""``bnlab-bench``: training speed of bnlab's paired trainer against the standard CIFAR loop.

What is compared, in one process, on the same models, data, batch size and
number of steps:

* **standard loop** (the baseline): the loop most PyTorch CIFAR code runs, the
  torchvision tutorial pipeline. A ``torch.utils.data.Dataset`` holds the CIFAR
  training images as ``torchvision.datasets.CIFAR10`` does (an HWC uint8 array)
  and turns each item into a PIL image, then per-image transforms
  (``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize`` with bnlab's mean/std); a ``DataLoader`` (shuffle, ``--workers``
  worker processes, ``drop_last``) collates batches; ONE model trains at a time
  (the BN model for S steps, then the no-BN model for S steps), plain SGD from
  ``bnlab.optim``, and ``loss.item()`` every step (the host sync of a loop that
  prints or accumulates its loss). It reads the very images bnlab reads
  (``bnlab.data.load``), so both sides train on identical pixels. It is the
  baseline because it is what "training two CIFAR models" costs when written
  the usual way; the per-image PIL path and the worker processes are what
  bnlab's design removes.
* **paired trainer**: ``bnlab.train.run`` on a config composed with Hydra's
  compose API, both arms (``bn``, ``none``) stepping on one shared batch
  stream held on the device as uint8 and augmented batched on tensors
  (airbench's design; airbench, Keller Jordan's CIFAR-10 speedrun code, is the
  fast reference this follows), host sync only at ``train.log_every``. Probes
  off, no checkpoints, no test-set evaluation (``train.eval_every`` = run
  length, and evaluation is skipped). Variants: fp32 NCHW
  (``train.channels_last=false``), fp32 + channels_last with the arms one
  after the other (``train.concurrent_arms=false``) and at once, one thread
  each (``true``); on a GPU fp32 + channels_last as configured by default
  (on a CPU the default is one of the two: a "bnlab default" line names
  which, by bnlab's own rule for the model), tf32
  (on a GPU: the standard loop's conv math under torch's defaults), bf16
  autocast + channels_last, and with ``--compile`` fp32 and bf16 + channels_last
  with ``train.compile``.

Timing: ``time.perf_counter`` around the timed steps only, after ``--warmup``
untimed steps on both sides; dataset loading and model building are excluded.
On a GPU the clock reads after ``torch.cuda.synchronize()``. For
the paired trainer the window opens when batch number ``warmup`` is drawn and
closes when the final evaluation is due, read through the trainer's hooks
(``bnlab.train.Hooks``; bnlab/bench/paired.py); it holds ``steps`` steps of
every arm, batch drawing and augmentation, and the trainer's periodic host syncs. images/s = steps x batch
x 2 arms / seconds, on both sides; ratio = paired / standard (above 1: bnlab
is faster). ``--rounds`` (3) repeats the standard loop and every variant in
turn and reports medians: on a shared VM the speed drifts by 15% within
minutes, and alternating puts a slow spell into one round of every side
instead of into one side.

Also printed: the paired trainer's wall-time ratio with the default probe
cadence (``configs/metrics/default.yaml`` as is) over no probes, over one full
period of the cadence (``--probe-steps``, default the least common multiple of
the cadences: 200 steps; alternated over ``--rounds`` like the speed runs);
model FLOP utilization (training-step FLOPs counted
with ``torch.utils.flop_counter.FlopCounterMode``, conv and matmul only,
against a large ``torch.matmul`` timed in the same run); and, with
``--sweep-jobs``, how many small runs per minute one machine completes as a
sequential Hydra sweep vs a concurrent one (joblib launcher).

    bnlab-bench --out results/bench/speed.txt
    bnlab-bench --models vgg11 --steps 100 --workers 4 --compile
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bnlab.bench.machine import machine_lines, native_bf16
from bnlab.bench.mfu import matmul_peaks, mfu_text, peak_for, step_flops
from bnlab.bench.paired import (
    cadence_period,
    compose,
    math_mode,
    paired_run,
    preserved_globals,
    probe_cadence,
    probes_off,
)
from bnlab.bench.standard import build_model, standard_loop

# Per-model width when --width is not given: the demo's narrow VGG-11
# (configs/experiment/demo.yaml: model.width=0.25) and the standard ResNet-20.
DEFAULT_WIDTH = {"vgg11": 0.25, "vgg16": 0.25, "resnet20": 1.0, "resnet56": 1.0, "simple_cnn": 1.0}

# name: (label, Hydra overrides of the paired trainer, needs --compile)
VARIANTS = {
    "nchw": ("fp32, NCHW (train.channels_last=false)", ["train.channels_last=false"], False),
    "sequential": ("fp32 + channels_last, arms one after the other (train.concurrent_arms=false)",
                   ["train.channels_last=true", "train.concurrent_arms=false"], False),
    "concurrent": ("fp32 + channels_last, arms at once (train.concurrent_arms=true)",
                   ["train.channels_last=true", "train.concurrent_arms=true"], False),
    "fp32": ("fp32 + channels_last (bnlab default)", ["train.channels_last=true"], False),
    "tf32": ("tf32 + channels_last", ["train.precision=tf32", "train.channels_last=true"], False),
    "bf16_cl": ("bf16 autocast + channels_last", ["train.precision=bf16", "train.channels_last=true"], False),
    "compile": ("fp32 + channels_last + torch.compile", ["train.channels_last=true", "train.compile=true"], True),
    "bf16_cl_compile": ("bf16 + channels_last + compile",
                        ["train.precision=bf16", "train.channels_last=true", "train.compile=true"], True),
}


def bnlab_default(cfg, ds, device: torch.device, ran) -> tuple[str, str] | None:
    """(variant, description) of the variant that equals bnlab's default for this model, if it ran
    (is in ``ran``, the names of the variants measured).

    The default is fp32 + channels_last with ``train.concurrent_arms=auto``; on a CPU ``auto``
    steps the arms at once for a small model only, decided by ``bnlab.arm_threads.workers``,
    which is called here on the same model.
    """
    from bnlab import arm_threads

    if "fp32" in ran:
        return "fp32", "fp32 + channels_last, train.concurrent_arms=auto, measured as such"
    flops = arm_threads.forward_flops(build_model(cfg, cfg.arms[0], ds.num_classes, device), ds.train_x.shape[1:])
    n = arm_threads.workers("auto", device, len(cfg.arms), bool(cfg.train.compile), lambda: flops)
    name = "concurrent" if n else "sequential"
    layout = "at once" if n else "one after the other"
    text = (f"fp32 + channels_last, train.concurrent_arms=auto steps the arms {layout}"
            f" ({flops / 1e6:.3g} MFLOP forward per image per arm, auto's limit "
            f"{arm_threads.SMALL_MODEL_FLOPS / 1e6:g}; {torch.get_num_threads()} intra-op threads)")
    return (name, text) if name in ran else None


def sweep_speed(jobs: int, n_jobs: int, overrides: list[str], workdir: Path, timeout: int = 3600) -> list[str]:
    """An ``jobs``-job sweep (``seed=0..jobs-1``) of the installed ``bnlab`` script, run once with
    Hydra's basic launcher (jobs one after another in one process) and once with the joblib
    launcher (``n_jobs`` processes at once); wall time includes process start-up."""
    exe = Path(sys.executable).with_name("bnlab")
    exe = str(exe) if exe.exists() else (shutil.which("bnlab") or "bnlab")
    seeds = "seed=" + ",".join(str(i) for i in range(jobs))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    results = {}
    for tag, launcher in (("sequential", []),
                          ("concurrent", ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"])):
        cmd = [exe, "-m", seeds, *overrides, *launcher, f"hydra.sweep.dir={workdir / tag}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return [f"sweep ({tag}) failed with exit code {proc.returncode}: {' | '.join(tail)}"]
        results[tag] = seconds
    seq, conc = results["sequential"], results["concurrent"]
    return [
        f"sweep sequential (basic launcher, 1 process): {jobs / seq * 60:.2f} jobs/min ({seq:.1f} s for {jobs} jobs)",
        f"sweep concurrent (joblib, n_jobs={n_jobs}): {jobs / conc * 60:.2f} jobs/min ({conc:.1f} s for {jobs} jobs)",
        f"sweep ratio concurrent/sequential (jobs/min): {seq / conc:.2f}",
    ]


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bnlab-bench",
        description="Training speed: bnlab's paired trainer vs the standard torchvision CIFAR loop "
                    "(same models, data, batch and steps).")
    ap.add_argument("--models", default=None,
                    help="comma-separated model configs, each optionally MODEL:WIDTH (default: vgg11,resnet20:0.5, "
                         "the narrow VGG-11 and ResNet-20 of the speed targets; vgg11 with --quick; e.g. resnet20 "
                         "for full width)")
    ap.add_argument("--width", type=float, default=None,
                    help="channel multiplier for every model (default: vgg11 0.25 as in the demo, resnet20 1.0)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per arm (default 100 on CPU, steadier than short runs; 200 on GPU)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before the timed ones, both sides")
    ap.add_argument("--rounds", type=int, default=3,
                    help="the standard loop and every variant are timed in turn this many times; medians are "
                         "reported (a shared machine's slow spells then hit one round, not one side)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 128 (32 with --quick)")
    ap.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (the demo's; no arm diverges)")
    ap.add_argument("--init", default="default",
                    help="init scheme (config group init); default: PyTorch's, under which the plain ResNet-20 "
                         "does not diverge (with kaiming_normal its loss is NaN by step 3 at lr 0.05, and a "
                         "diverged arm stops, which would shorten the paired side)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the standard loop")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--variants", default=None,
                    help=f"paired-trainer variants, from {', '.join(VARIANTS)} (default nchw,fp32,"
                         f"bf16_cl, tf32 on a GPU, bf16_cl only with native bf16)")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile variants (slow to compile on CPU)")
    ap.add_argument("--probe-steps", type=int, default=None,
                    help="timed steps of the probe-cadence comparison (default: one full period of the default "
                         "cadence, 200); 0: skip it")
    ap.add_argument("--no-mfu", action="store_true", help="skip FLOP counting and the matmul peak")
    ap.add_argument("--matmul-size", type=int, default=None, help="peak matmul size (8192 on GPU, 2048 on CPU)")
    ap.add_argument("--paired-override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override for the paired trainer (repeatable), e.g. train.deterministic=false")
    ap.add_argument("--sweep-jobs", type=int, default=0, help="jobs of the many-small-runs sweep (0: skip)")
    ap.add_argument("--sweep-n-jobs", type=int, default=4, help="concurrent jobs of the joblib sweep")
    ap.add_argument("--sweep-steps", type=int, default=100, help="steps of each sweep job")
    ap.add_argument("--data", default=None, help="data root (default: $BNLAB_DATA_DIR, else ./data)")
    ap.add_argument("--out", type=Path, default=None, help="also write the printed text to this file")
    ap.add_argument("--quick", action="store_true", help="tiny settings for tests (numbers mean nothing)")
    args = ap.parse_args(argv)
    if args.models is None:
        args.models = "vgg11" if args.quick else "vgg11,resnet20:0.5"
    if args.batch_size is None:
        args.batch_size = 32 if args.quick else 128
    if args.quick:
        args.workers = 1
        args.width = 0.125 if args.width is None else args.width
        args.steps = 2 if args.steps is None else args.steps
        args.warmup, args.rounds = 1, 1
        args.probe_steps = 2 if args.probe_steps is None else args.probe_steps
        args.matmul_size = args.matmul_size or 256
        args.sweep_steps = min(args.sweep_steps, 4)
    return args


def fail(exc: Exception) -> int:
    """Bad input: one line on stderr (Hydra's multi-line messages folded as the bnlab CLI folds them), exit 2."""
    from bnlab.cli import one_line
    from bnlab.errors import BnlabError

    print(f"bnlab-bench: error: {exc if isinstance(exc, BnlabError) else one_line(exc)}", file=sys.stderr)
    return BnlabError.exit_code


class Emitter:
    """Prints report lines as they come and keeps them for ``--out``."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, *new: str) -> None:
        for line in new:
            self.lines.append(line)
            print(line, flush=True)


@dataclass
class Plan:
    """What one bench run measures, checked before any output."""

    args: argparse.Namespace
    device: torch.device
    steps: int
    models: list  # (model, width)
    names: list  # paired variants
    common: list  # Hydra overrides of every paired run
    bf16_note: str | None = None
    probe_cfg: object = None
    ds: object = None
    probe_steps: int = 0

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


def plan(args) -> Plan | str:
    """The bench's settings from its arguments, or what is wrong with them (one line)."""
    from bnlab import train

    device = train.pick_device(args.device)
    on_gpu = device.type == "cuda"
    steps = args.steps if args.steps is not None else (200 if on_gpu else 100)
    specs = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        models_ = [(m.split(":")[0], float(m.split(":")[1]) if ":" in m else
                    (args.width if args.width is not None else DEFAULT_WIDTH.get(m, 1.0))) for m in specs]
    except ValueError:
        return f"--models {args.models}: each entry is MODEL or MODEL:WIDTH, e.g. resnet20:0.5"
    # on a CPU the default (train.concurrent_arms=auto) is one of sequential/concurrent: both run,
    # and the "bnlab default" line names the one auto picks for each model
    default = ["nchw", "fp32", "tf32", "bf16_cl"] if on_gpu else ["nchw", "sequential", "concurrent", "bf16_cl"]
    bf16_note = None
    if not args.variants and not args.quick and not native_bf16(device):  # emulated bf16: ~10x slower
        default.remove("bf16_cl")
        bf16_note = ("paired bf16 autocast + channels_last: not run by default, this CPU has no native bf16 "
                     "(oneDNN bf16 unsupported; --variants nchw,fp32,bf16_cl runs it)")
    names = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else default
    if args.compile:
        names += [n for n, v in VARIANTS.items() if v[2] and n not in names]
    unknown = [n for n in names if n not in VARIANTS]
    bad = [f"--variants: {', '.join(unknown)} unknown, choose from {', '.join(VARIANTS)}"] if unknown else []
    bad += [f"--{flag}={value} must be {rule}" for flag, value, ok, rule in (
        ("steps", steps, steps > 0, "> 0"), ("batch-size", args.batch_size, args.batch_size > 0, "> 0"),
        ("rounds", args.rounds, args.rounds >= 1, ">= 1"), ("warmup", args.warmup, args.warmup >= 0, ">= 0"),
        ("workers", args.workers, args.workers >= 0, ">= 0")) if not ok]
    if bad:
        return "; ".join(bad)
    # resumable checkpoints and resume would write or read mid-run: off
    common = ["logger=none", "train.progress=off", f"data.batch_size={args.batch_size}", f"optim.lr={args.lr}",
              f"init={args.init}", "data.augment.enabled=true", "data.augment.crop_padding=4",
              "data.augment.flip=true", "train.save_checkpoint=false", "train.eval_batch_stats=false",
              f"device={device}", "train.checkpoint_every=null", "train.resume=never", *args.paired_override]
    return Plan(args, device, steps, models_, names, common, bf16_note)


def load_data(p: Plan) -> None:
    """The probe config and one dataset for every model (only model keys differ between them)."""
    from bnlab import data

    p.probe_cfg = compose(["model=" + p.models[0][0], *p.common])
    p.probe_steps = cadence_period(p.probe_cfg) if p.args.probe_steps is None else p.args.probe_steps
    p.ds = data.load(p.probe_cfg.data, torch.device("cpu"))
    # the trainer's own check: a batch larger than the training set would loop forever in _endless
    data.Batches(p.ds, p.args.batch_size, seed=0)


def header(p: Plan) -> list[str]:
    args, cfg = p.args, p.probe_cfg
    model_list = ", ".join(f"{m} x{w:g}" for m, w in p.models)
    return [
        "bnlab-bench: the standard torchvision CIFAR loop vs bnlab's paired trainer"
        + (" (--quick: tiny settings, the numbers mean nothing)" if args.quick else ""),
        *machine_lines(p.device),
        f"settings: models {model_list}; batch {args.batch_size}; {p.steps} timed steps per arm after "
        f"{args.warmup} warm-up steps, both sides; SGD lr {args.lr} (momentum {cfg.optim.momentum}), "
        f"init {cfg.init.scheme}, seed {cfg.seed}; arms {list(cfg.arms)}; "
        f"augmentation random crop (padding 4) + horizontal flip on both sides",
        f"standard loop: torchvision Dataset of PIL images, RandomCrop/RandomHorizontalFlip/ToTensor/Normalize "
        f"per image, DataLoader(shuffle=True, num_workers={args.workers}, drop_last=True, "
        f"pin_memory={p.on_gpu}, persistent_workers={args.workers > 0}), one model at a time, fp32, loss.item() "
        f"every step; torch defaults ({math_mode()})",
        f"paired trainer: bnlab.train.run, overrides {' '.join(p.common)}, probes off "
        f"({len(probes_off(cfg))} metrics.*.every=null), train.eval_every = run length (test-set evaluation "
        f"skipped), checkpoints off; bnlab defaults otherwise (train.deterministic={cfg.train.deterministic}, "
        f"train.log_every={cfg.train.log_every})",
        "timing: time.perf_counter around the timed steps only (paired: from the draw of batch number "
        "<warm-up> to the start of the final evaluation); dataset loading, model building and evaluation "
        "excluded" + ("; torch.cuda.synchronize() before each clock read" if p.on_gpu else ""),
        "images/s = timed steps x batch x 2 arms / seconds (both sides); ratio = paired / standard "
        "(> 1: the paired trainer is faster)",
        f"rounds: {args.rounds}; each round times the standard loop, then every paired variant, in this order; "
        f"every side's number is its median over the rounds (seconds: median too; the range follows), and "
        f"each ratio is of medians",
    ]


def peak_lines(p: Plan) -> tuple[dict, list[str]]:
    if p.args.no_mfu:
        return {}, []
    n = p.args.matmul_size or (8192 if p.on_gpu else 2048)
    peaks = matmul_peaks(p.device, n)
    return peaks, [f"matmul peak (best of 3 timed {n}x{n}x{n} torch.matmul, this run): "
                   + ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in peaks.items())
                   + ("; MFU of each run against the peak of its math (the standard loop: torch defaults, convs "
                      "in TF32; paired train.precision=fp32: TF32 off, full fp32)" if p.on_gpu
                      else "; on CPU, MFU of a bf16 run is against the bf16 rate where one was measured (native "
                           "bf16), of every other run against the fp32 rate")]


def time_rounds(p: Plan, cfg, base: list[str], workdir: Path) -> tuple[dict, dict]:
    """The standard loop and every variant in turn, ``--rounds`` times: (runs per side, failures); medians are
    reported, so a slow spell of a shared machine hits one round, not one side."""
    runs: dict[str, list[dict]] = {"standard": [], **{n: [] for n in p.names}}
    failed: dict[str, str] = {}
    for _ in range(p.args.rounds):
        with preserved_globals():
            torch.use_deterministic_algorithms(False)
            runs["standard"].append(standard_loop(cfg, p.ds, p.device, p.steps, p.args.warmup, p.args.workers))
        for name in p.names:
            if name in failed:
                continue
            try:
                runs[name].append(paired_run(base + VARIANTS[name][1], p.steps, p.args.warmup, p.device, workdir))
            except Exception as exc:  # e.g. torch.compile without a compiler: report, go on
                failed[name] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
    return runs, failed


def medians(rs: list[dict]) -> tuple[float, float, str]:
    """(median images/s, median seconds, spread over the rounds as text)."""
    rates = sorted(r["images"] / r["seconds"] for r in rs)
    spread = f", rounds {min(rates):.1f}-{max(rates):.1f}" if len(rs) > 1 else ""
    return statistics.median(rates), statistics.median(r["seconds"] for r in rs), spread


def variant_lines(p: Plan, runs: dict, failed: dict, std_rate: float, mfu, peaks: dict) -> tuple[dict, list[str]]:
    """(paired/standard ratio of every variant that ran, its report lines)."""
    ratios, lines = {}, []
    for name in p.names:
        label = VARIANTS[name][0]
        if name in failed:
            lines.append(f"paired {label}: failed ({failed[name]})")
            continue
        rs = runs[name]
        rate, secs, spread = medians(rs)
        diverged = sorted({a for r in rs for a in r["diverged"]})
        note = f"; diverged: {', '.join(diverged)}, not comparable" if diverged else ""
        clocks = {r["clock"] for r in rs} - {"perf_counter window"}
        note += f"; clock: {', '.join(sorted(clocks))}" if clocks else ""
        lines.append(f"paired {label}: {rate:.1f} images/s ({secs:.2f} s{spread})"
                     f"{mfu(secs, peak_for(rs[0]['precision'], p.device, peaks))}{note}")
        ratios[name] = rate / std_rate
        lines.append(f"ratio paired/standard, {label}: {ratios[name]:.2f}")
    return ratios, lines


def bench_model(p: Plan, model: str, width: float, peaks: dict, workdir: Path, emit) -> tuple:
    """Every side on one model; returns (bnlab default's (ratio, label) or None, the fastest's or None)."""
    base = [f"model={model}", f"model.width={width}", *p.common]
    cfg = compose(base)
    emit("", f"== {model} (width {width}), {p.ds.name} {p.ds.train_size} training images from {p.ds.source} ==")
    flops = None
    if peaks:
        flops = sum(step_flops(cfg, kind, p.ds.num_classes, p.device) for kind in cfg.arms)
        emit(f"FLOPs of one step of both arms (FlopCounterMode, forward + backward, conv/matmul): "
             f"{flops / 1e9:.3g} GFLOP ({flops / (2 * p.args.batch_size) / 1e6:.3g} MFLOP per image per arm)")
    mfu = functools.partial(mfu_text, flops, p.steps, peaks)
    runs, failed = time_rounds(p, cfg, base, workdir)
    std_rate, std_s, spread = medians(runs["standard"])
    std_peak = peak_for("tf32" if torch.backends.cudnn.allow_tf32 else "fp32", p.device, peaks)
    emit(f"standard loop: {std_rate:.1f} images/s ({std_s:.2f} s for {len(cfg.arms)} x {p.steps} "
         f"steps of {p.args.batch_size}{spread}){mfu(std_s, std_peak)}")
    ratios, lines = variant_lines(p, runs, failed, std_rate, mfu, peaks)
    emit(*lines)
    default_line, default_ratio = bnlab_default(cfg, p.ds, p.device, ratios), None
    if default_line:
        name, text = default_line
        default_ratio = (ratios[name], VARIANTS[name][0])
        emit(f"bnlab default for this model: {text}: the '{VARIANTS[name][0]}' line above",
             f"ratio paired/standard, bnlab default: {ratios[name]:.2f}")
    if p.bf16_note:
        emit(p.bf16_note)
    if p.probe_steps > 0 and (model, width) == p.models[0]:
        try:
            emit(*probe_cadence(base, p.probe_steps, p.args.warmup, p.args.rounds, p.device, workdir))
        except Exception as exc:
            emit(f"probe cadence: failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})")
    return default_ratio, max(((r, VARIANTS[n][0]) for n, r in ratios.items()), default=None)


def summary_lines(verdicts: dict, args, steps: int) -> list[str]:
    """One line per model at the end, so a reader sees the default and the fastest variant side by side."""
    lines = ["", f"== summary: the paired trainer's speed over the standard loop's (ratio of medians over "
                 f"{args.rounds} round(s), batch {args.batch_size}, {steps} timed steps) =="]
    for key, (dflt, fastest) in verdicts.items():
        parts = [f"bnlab default {dflt[0]:.2f}x ({dflt[1]})" if dflt else "bnlab default not run"]
        parts.append(f"fastest {fastest[0]:.2f}x ({fastest[1]})" if fastest else "no paired variant ran")
        lines.append(f"summary {key}: {'; '.join(parts)}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    from bnlab.paths import ENV, absolute, absolute_data_args

    absolute_data_args([])  # a relative $BNLAB_DATA_DIR: from where bnlab-bench was started
    if args.data:
        os.environ[ENV] = absolute(args.data)
    p = plan(args)
    if isinstance(p, str):
        print(f"bnlab-bench: error: {p}", file=sys.stderr)
        return 2
    try:
        load_data(p)
        for model, _ in p.models[1:]:  # Hydra's errors (unknown model) before any output
            compose([f"model={model}", *p.common])
    except Exception as exc:  # BnlabError (bad data), or Hydra's: unknown model, bad override
        return fail(exc)
    emit = Emitter()
    emit(*header(p))
    peaks, lines = peak_lines(p)
    emit(*lines)
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="bnlab-bench-") as tmp:
        workdir = Path(tmp)
        for model, width in p.models:
            verdicts[f"{model} x{width:g}"] = bench_model(p, model, width, peaks, workdir, emit)
        emit(*summary_lines(verdicts, args, p.steps))
        if args.sweep_jobs > 0:
            model, width = p.models[0]
            sweep = [f"model={model}", f"model.width={width}", *p.common, *probes_off(p.probe_cfg),
                     f"train.steps={args.sweep_steps}", f"train.eval_every={args.sweep_steps}"]
            emit("", f"== many small runs: {args.sweep_jobs} jobs of {args.sweep_steps} steps, {model} "
                     f"(width {width}), `bnlab -m seed=0,...` ==")
            emit(*sweep_speed(args.sweep_jobs, args.sweep_n_jobs, sweep, workdir / "sweep"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(emit.lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
