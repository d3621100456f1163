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
  length, and the two evaluations left are skipped). Variants: fp32 NCHW
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
closes when the final evaluation starts (the trainer itself is unchanged: the
bench wraps ``bnlab.data.Batches.__next__`` and ``bnlab.train.evaluate`` to
read the clock); it holds ``steps`` steps of every arm, batch drawing and
augmentation, and the trainer's periodic host syncs. images/s = steps x batch
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
import contextlib
import datetime
import functools
import io
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

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

_ABSENT = object()


# ------------------------------------------------------------ the machine ----


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{device} ({p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})"
    return f"{device} ({cpu_model()})"


def git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def machine_lines(device: torch.device) -> list[str]:
    return [
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {platform.node()}, {platform.platform()}, Python {platform.python_version()}",
        f"cpu: {cpu_model()}; os.cpu_count() = {os.cpu_count()}, torch.get_num_threads() = "
        f"{torch.get_num_threads()}, OMP_NUM_THREADS = {os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"torch {torch.__version__}; device: {device_name(device)}; bnlab commit {git_commit()}",
    ]


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs on native units (any CUDA GPU bnlab targets; a CPU with oneDNN bf16)."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------- standard loop ----


class StandardCifar(torch.utils.data.Dataset):
    """CIFAR served as ``torchvision.datasets.CIFAR10`` serves it: one PIL image per item.

    ``images``: uint8 N x 3 x 32 x 32 (as ``bnlab.data.load`` returns them),
    kept as an N x 32 x 32 x 3 numpy array like torchvision's ``.data``. Each
    item is ``Image.fromarray``, then RandomCrop(32, padding) and
    RandomHorizontalFlip (when ``augment``), ToTensor and Normalize(mean, std).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: bool = True,
                 crop_padding: int = 4, flip: bool = True):
        from torchvision import transforms

        self.data = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        self.targets = labels.cpu().tolist()
        steps = []
        if augment and crop_padding:
            steps.append(transforms.RandomCrop(32, padding=crop_padding))
        if augment and flip:
            steps.append(transforms.RandomHorizontalFlip())
        steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
        self.transform = transforms.Compose(steps)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def _endless(loader):
    while True:
        yield from loader


def build_model(cfg, kind: str, num_classes: int, device: torch.device) -> torch.nn.Module:
    """The model bnlab builds for arm ``kind``, with bnlab's initialization (same seed, same weights)."""
    from bnlab import init, models

    model = models.build(cfg.model, kind, cfg.norm, num_classes)
    init.initialize(model, cfg.init, seed=cfg.seed)
    return model.to(device)


def standard_loop(cfg, ds, device: torch.device, steps: int, warmup: int, workers: int) -> dict:
    """Train each arm's model in turn for ``warmup`` + ``steps`` steps; time the ``steps``."""
    from torch.utils.data import DataLoader

    from bnlab import optim

    aug = cfg.data.augment
    dataset = StandardCifar(ds.train_x, ds.train_y, ds.mean, ds.std, augment=True,
                            crop_padding=int(aug.crop_padding), flip=bool(aug.flip))
    loader = DataLoader(dataset, batch_size=int(cfg.data.batch_size), shuffle=True, num_workers=workers,
                        drop_last=True, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(int(cfg.seed)))
    batches = _endless(loader)
    torch.manual_seed(int(cfg.seed))
    seconds, losses = 0.0, {}
    for kind in cfg.arms:
        model = build_model(cfg, kind, ds.num_classes, device)
        model.train()
        opt, sched = optim.make(model.parameters(), cfg.optim, warmup + steps)

        for _ in range(warmup):
            standard_step(model, opt, sched, batches, device)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            last = standard_step(model, opt, sched, batches, device)
        sync(device)
        seconds += time.perf_counter() - t0
        losses[kind] = last
    batches = loader = None  # ends the persistent workers
    return {"seconds": seconds, "images": steps * int(cfg.data.batch_size) * len(cfg.arms), "losses": losses}


def mfu_text(flops: float | None, steps: int, peaks: dict, seconds: float, peak: str) -> str:
    """``; X TFLOP/s = MFU Y% of PEAK peak`` for ``steps`` steps of ``flops`` each in ``seconds``, or ""."""
    if not flops or peak not in peaks:
        return ""
    achieved = flops * steps / seconds
    return f"; {achieved / 1e12:.3g} TFLOP/s = MFU {100 * achieved / peaks[peak]:.1f}% of {peak} peak"


def standard_step(model, opt, sched, batches, device) -> float:
    """One step of the standard loop: next batch to the device, forward, backward, SGD, its loss."""
    x, y = next(batches)
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss.item()  # the per-step host sync of a loop that prints its loss


# ----------------------------------------------------------- paired trainer ----


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("bnlab.configs", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def has_key(cfg, key: str) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT


def probes_off(cfg) -> list[str]:
    """``metrics.<name>.every=null`` for every measurement with a cadence."""
    return [f"metrics.{name}.every=null" for name in cfg.metrics if "every" in cfg.metrics[name]]


def cadence_period(cfg) -> int:
    """Least common multiple of the probe cadences that are on (one full period of them)."""
    period = 1
    for name in cfg.metrics:
        every = cfg.metrics[name].get("every")
        if every:
            period = math.lcm(period, int(every))
    return period


@contextlib.contextmanager
def preserved_globals():
    """Global torch switches a run may flip (determinism, TF32, matmul precision), restored after."""
    det = torch.are_deterministic_algorithms_enabled()
    det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    matmul = torch.get_float32_matmul_precision()
    cudnn_tf32, cuda_tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    cudnn_bench = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn_tf32, cuda_tf32
        torch.backends.cudnn.benchmark = cudnn_bench


def math_mode() -> str:
    return (f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, matmul precision "
            f"{torch.get_float32_matmul_precision()}, deterministic={torch.are_deterministic_algorithms_enabled()}")


@contextlib.contextmanager
def timed_window(start_draw: int, device: torch.device):
    """Clock reads inside ``train.run``: when batch number ``start_draw`` is drawn, and when
    the next evaluation starts (the final one, with ``train.eval_every`` = run length).

    Test-set evaluations (at step 0 and at the end, outside the window) are
    skipped: ``train.evaluate`` returns loss 0 and accuracy 0 meanwhile.
    """
    from bnlab import data, train

    marks = {"start": None, "end": None, "draws": 0}
    orig_next, orig_eval = data.Batches.__next__, train.evaluate

    def next_(self):
        if marks["draws"] == start_draw:
            sync(device)
            marks["start"] = time.perf_counter()
        marks["draws"] += 1
        return orig_next(self)

    def evaluate_(*args, **kwargs):  # the bench needs no accuracy: evaluation is skipped
        if marks["start"] is not None and marks["end"] is None:
            sync(device)
            marks["end"] = time.perf_counter()
        return {"loss": 0.0, "acc": 0.0}

    data.Batches.__next__, train.evaluate = next_, evaluate_
    try:
        yield marks
    finally:
        data.Batches.__next__, train.evaluate = orig_next, orig_eval


def paired_run(overrides: list[str], steps: int, warmup: int, device: torch.device, workdir: Path) -> dict:
    """One ``bnlab.train.run`` of ``warmup`` + ``steps`` steps; the last ``steps`` are timed."""
    from bnlab import train

    total = warmup + steps
    # evaluations at step 0 and at the end only (both skipped, outside the window)
    cfg = compose([*overrides, f"train.steps={total}", f"train.eval_every={total}"])
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(dir=workdir))
    with preserved_globals(), timed_window(warmup, device) as marks, contextlib.redirect_stdout(io.StringIO()):
        summary = train.run(cfg, out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    arms = summary["arms"]
    trained = [a["steps_trained"] for a in arms.values()]
    res = {"diverged": [n for n, a in arms.items() if a["diverged"]],
           "precision": str(cfg.train.get("precision", "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"))}
    if marks["start"] is not None and marks["end"] is not None and all(t == total for t in trained):
        res.update(seconds=marks["end"] - marks["start"], images=steps * int(cfg.data.batch_size) * len(arms),
                   clock="perf_counter window")
    else:  # the window markers did not fire (trainer changed, or an arm stopped early)
        res.update(seconds=sum(a["train_time_s"] for a in arms.values()),
                   images=sum(trained) * int(cfg.data.batch_size),
                   clock="summary train_time_s of all arms, warm-up included (window markers did not fire)")
    return res


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


# ------------------------------------------------------------------- MFU ----


def step_flops(cfg, kind: str, num_classes: int, device: torch.device) -> int:
    """FLOPs of one training step (forward + backward) of a fresh model, counted by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(cfg, kind, num_classes, device).train()
    b = int(cfg.data.batch_size)
    x = torch.randn(b, 3, 32, 32, device=device)
    y = torch.randint(0, num_classes, (b,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return int(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int, precision: str = "highest") -> float:
    """FLOP/s of an n x n x n ``torch.matmul`` (best of ``reps`` timed after two warm-up calls)."""
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(2):
            a @ b
        best = float("inf")
        inner = 10 if device.type == "cuda" else 1
        for _ in range(reps):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                a @ b
            sync(device)
            best = min(best, (time.perf_counter() - t0) / inner)
        return 2 * n**3 / best
    finally:
        torch.set_float32_matmul_precision(prev)


def matmul_peaks(device: torch.device, n: int) -> dict[str, float]:
    """fp32, tf32 and bf16 matmul FLOP/s on a GPU; on a CPU fp32, and bf16 where the CPU has native
    bf16 units (AMX / AVX512-BF16; elsewhere bf16 is an emulated slow path, no meaningful peak)."""
    peaks = {"fp32": matmul_peak(device, torch.float32, n, 3)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_peak(device, torch.float32, n, 3, precision="high")
    if device.type == "cuda" or native_bf16(device):
        peaks["bf16"] = matmul_peak(device, torch.bfloat16, n, 3)
    return peaks


def peak_for(precision: str, device: torch.device, peaks: dict) -> str:
    """The measured peak that matches a run's math (tf32 exists on a GPU only; a CPU without
    native bf16 has only its fp32 peak)."""
    if device.type == "cuda" or precision in peaks:
        return precision
    return "fp32"


# ------------------------------------------------------- many small runs ----


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


# ------------------------------------------------------------------- main ----


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


def main(argv=None) -> int:
    args = parse_args(argv)
    from bnlab import data, train
    from bnlab.errors import BnlabError
    lines: list[str] = []

    def emit(*new: str) -> None:
        for line in new:
            lines.append(line)
            print(line, flush=True)

    from bnlab.paths import ENV, absolute, absolute_data_args

    absolute_data_args([])  # a relative $BNLAB_DATA_DIR: from where bnlab-bench was started
    if args.data:
        os.environ[ENV] = absolute(args.data)
    device = train.pick_device(args.device)
    on_gpu = device.type == "cuda"
    steps = args.steps if args.steps is not None else (200 if on_gpu else 100)
    specs = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        models_ = [(m.split(":")[0], float(m.split(":")[1]) if ":" in m else
                    (args.width if args.width is not None else DEFAULT_WIDTH.get(m, 1.0))) for m in specs]
    except ValueError:
        print(f"bnlab-bench: error: --models {args.models}: each entry is MODEL or MODEL:WIDTH, e.g. resnet20:0.5",
              file=sys.stderr)
        return 2
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
        print(f"bnlab-bench: error: {'; '.join(bad)}", file=sys.stderr)
        return 2
    common = ["logger=none", "train.progress=off", f"data.batch_size={args.batch_size}", f"optim.lr={args.lr}",
              f"init={args.init}",
              "data.augment.enabled=true", "data.augment.crop_padding=4", "data.augment.flip=true",
              "train.save_checkpoint=false", "train.eval_batch_stats=false", f"device={device}",
              *args.paired_override]

    try:
        probe_cfg = compose(["model=" + models_[0][0], *common])
    except Exception as exc:  # Hydra's errors: unknown model, bad override
        return fail(exc)
    # resumable checkpoints and resume would write or read mid-run: off, where this bnlab has them
    common += [o for o in ("train.checkpoint_every=null", "train.resume=never") if has_key(probe_cfg, o.split("=")[0])]
    off = probes_off(probe_cfg)
    probe_steps = cadence_period(probe_cfg) if args.probe_steps is None else args.probe_steps
    try:  # one dataset for every model (only model keys differ between them), checked before any output
        ds = data.load(probe_cfg.data, torch.device("cpu"))
        # the trainer's own check: a batch larger than the training set would loop forever in _endless
        data.Batches(ds, args.batch_size, seed=0)
    except BnlabError as exc:
        return fail(exc)

    emit("bnlab-bench: the standard torchvision CIFAR loop vs bnlab's paired trainer"
         + (" (--quick: tiny settings, the numbers mean nothing)" if args.quick else ""))
    emit(*machine_lines(device))
    model_list = ", ".join(f"{m} x{w:g}" for m, w in models_)
    emit(f"settings: models {model_list}; batch {args.batch_size}; {steps} timed steps per arm after "
         f"{args.warmup} warm-up steps, both sides; SGD lr {args.lr} (momentum {probe_cfg.optim.momentum}), "
         f"init {probe_cfg.init.scheme}, seed {probe_cfg.seed}; arms {list(probe_cfg.arms)}; "
         f"augmentation random crop (padding 4) + horizontal flip on both sides")
    emit(f"standard loop: torchvision Dataset of PIL images, RandomCrop/RandomHorizontalFlip/ToTensor/Normalize "
         f"per image, DataLoader(shuffle=True, num_workers={args.workers}, drop_last=True, "
         f"pin_memory={on_gpu}, persistent_workers={args.workers > 0}), one model at a time, fp32, loss.item() "
         f"every step; torch defaults ({math_mode()})")
    emit(f"paired trainer: bnlab.train.run, overrides {' '.join(common)}, probes off "
         f"({len(off)} metrics.*.every=null), train.eval_every = run length (test-set evaluation skipped), "
         f"checkpoints off; bnlab defaults "
         f"otherwise (train.deterministic={probe_cfg.train.deterministic}, "
         f"train.log_every={probe_cfg.train.log_every})")
    emit("timing: time.perf_counter around the timed steps only (paired: from the draw of batch number "
         "<warm-up> to the start of the final evaluation); dataset loading, model building and evaluation "
         "excluded" + ("; torch.cuda.synchronize() before each clock read" if on_gpu else ""))
    emit("images/s = timed steps x batch x 2 arms / seconds (both sides); ratio = paired / standard "
         "(> 1: the paired trainer is faster)")
    emit(f"rounds: {args.rounds}; each round times the standard loop, then every paired variant, in this order; "
         f"every side's number is its median over the rounds (seconds: median too; the range follows), and "
         f"each ratio is of medians")

    peaks = {}
    if not args.no_mfu:
        n = args.matmul_size or (8192 if on_gpu else 2048)
        peaks = matmul_peaks(device, n)
        emit(f"matmul peak (best of 3 timed {n}x{n}x{n} torch.matmul, this run): "
             + ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in peaks.items())
             + ("; MFU of each run against the peak of its math (the standard loop: torch defaults, convs "
                "in TF32; paired train.precision=fp32: TF32 off, full fp32)" if on_gpu
                else "; on CPU, MFU of a bf16 run is against the bf16 rate where one was measured (native bf16), "
                     "of every other run against the fp32 rate"))

    # per model: (bnlab default's ratio, its label) and (the fastest variant's ratio, its label)
    verdicts: dict[str, tuple[tuple[float, str] | None, tuple[float, str] | None]] = {}
    with tempfile.TemporaryDirectory(prefix="bnlab-bench-") as tmp:
        workdir = Path(tmp)
        for model, width in models_:
            base = [f"model={model}", f"model.width={width}", *common]
            try:
                cfg = compose(base)
            except Exception as exc:  # Hydra's errors (unknown model)
                return fail(exc)
            emit("", f"== {model} (width {width}), {ds.name} {ds.train_size} training images from {ds.source} ==")
            flops = None
            if peaks:
                flops = sum(step_flops(cfg, kind, ds.num_classes, device) for kind in cfg.arms)
                emit(f"FLOPs of one step of both arms (FlopCounterMode, forward + backward, conv/matmul): "
                     f"{flops / 1e9:.3g} GFLOP ({flops / (2 * args.batch_size) / 1e6:.3g} MFLOP per image per arm)")

            mfu = functools.partial(mfu_text, flops, steps, peaks)

            # Rounds: the standard loop and every variant in turn, `--rounds` times; medians are
            # reported, so a slow spell of a shared machine hits one round, not one side.
            runs: dict[str, list[dict]] = {"standard": [], **{n: [] for n in names}}
            failed: dict[str, str] = {}
            for _ in range(args.rounds):
                with preserved_globals():
                    torch.use_deterministic_algorithms(False)
                    runs["standard"].append(standard_loop(cfg, ds, device, steps, args.warmup, args.workers))
                for name in names:
                    label, extra, _ = VARIANTS[name]
                    if name in failed or any(not has_key(cfg, o.split("=")[0]) for o in extra):
                        continue
                    try:
                        runs[name].append(paired_run(base + extra, steps, args.warmup, device, workdir))
                    except Exception as exc:  # e.g. torch.compile without a compiler: report, go on
                        failed[name] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"

            def summary(rs: list[dict]) -> tuple[float, float, str]:
                """(median images/s, median seconds, spread over the rounds as text)."""
                rates = sorted(r["images"] / r["seconds"] for r in rs)
                spread = f", rounds {min(rates):.1f}-{max(rates):.1f}" if len(rs) > 1 else ""
                return statistics.median(rates), statistics.median(r["seconds"] for r in rs), spread

            std_rate, std_s, spread = summary(runs["standard"])
            std_peak = peak_for("tf32" if torch.backends.cudnn.allow_tf32 else "fp32", device, peaks)
            emit(f"standard loop: {std_rate:.1f} images/s ({std_s:.2f} s for {len(cfg.arms)} x {steps} "
                 f"steps of {args.batch_size}{spread}){mfu(std_s, std_peak)}")
            ratios: dict[str, float] = {}  # paired/standard of every variant printed with numbers
            for name in names:
                label, extra, _ = VARIANTS[name]
                missing = [o.split("=")[0] for o in extra if not has_key(cfg, o.split("=")[0])]
                if missing:
                    emit(f"paired {label}: skipped, not in this bnlab's config: {', '.join(missing)}")
                    continue
                if name in failed:
                    emit(f"paired {label}: failed ({failed[name]})")
                    continue
                rs = runs[name]
                rate, secs, spread = summary(rs)
                diverged = sorted({a for r in rs for a in r["diverged"]})
                note = f"; diverged: {', '.join(diverged)}, not comparable" if diverged else ""
                clocks = {r["clock"] for r in rs} - {"perf_counter window"}
                note += f"; clock: {', '.join(sorted(clocks))}" if clocks else ""
                emit(f"paired {label}: {rate:.1f} images/s ({secs:.2f} s{spread})"
                     f"{mfu(secs, peak_for(rs[0]['precision'], device, peaks))}{note}")
                ratios[name] = rate / std_rate
                emit(f"ratio paired/standard, {label}: {ratios[name]:.2f}")
            default_line = bnlab_default(cfg, ds, device, ratios)
            default_ratio = None
            if default_line:
                name, text = default_line
                default_ratio = (ratios[name], VARIANTS[name][0])
                emit(f"bnlab default for this model: {text}: the '{VARIANTS[name][0]}' line above")
                emit(f"ratio paired/standard, bnlab default: {ratios[name]:.2f}")
            fastest = max(((r, VARIANTS[n][0]) for n, r in ratios.items()), default=None)
            verdicts[f"{model} x{width:g}"] = (default_ratio, fastest)
            if bf16_note:
                emit(bf16_note)
            if probe_steps > 0 and (model, width) == models_[0]:
                # alternated over the rounds like the speed runs: one slow spell must not land on one side
                t_off, t_on = [], []
                try:
                    for _ in range(args.rounds):
                        t_off.append(paired_run(base + off, probe_steps, args.warmup, device, workdir)["seconds"])
                        t_on.append(paired_run(base, probe_steps, args.warmup, device, workdir)["seconds"])
                except Exception as exc:
                    emit(f"probe cadence: failed ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})")
                    continue

                def med(ts: list[float]) -> str:
                    spread = f" (rounds {min(ts):.2f}-{max(ts):.2f})" if len(ts) > 1 else ""
                    return f"{statistics.median(ts):.2f} s{spread}"

                emit(f"probe cadence (fp32, {probe_steps} timed steps after the warm-up = "
                     f"{probe_steps / cadence_period(cfg):.3g} period(s) of the default cadence; medians of "
                     f"{args.rounds} round(s)): {med(t_off)} without probes, {med(t_on)} with them")
                ratio = statistics.median(t_on) / statistics.median(t_off)
                emit(f"ratio default probe cadence / no probes: {ratio:.3f}")

        # one line per model at the end, so a reader sees the default and the fastest variant side by side
        emit("", f"== summary: the paired trainer's speed over the standard loop's (ratio of medians over "
                 f"{args.rounds} round(s), batch {args.batch_size}, {steps} timed steps) ==")
        for key, (dflt, fastest) in verdicts.items():
            parts = [f"bnlab default {dflt[0]:.2f}x ({dflt[1]})" if dflt else "bnlab default not run"]
            parts.append(f"fastest {fastest[0]:.2f}x ({fastest[1]})" if fastest else "no paired variant ran")
            emit(f"summary {key}: {'; '.join(parts)}")

        if args.sweep_jobs > 0:
            model, width = models_[0]
            sweep = [f"model={model}", f"model.width={width}", *common, *off, f"train.steps={args.sweep_steps}",
                     f"train.eval_every={args.sweep_steps}"]
            emit("", f"== many small runs: {args.sweep_jobs} jobs of {args.sweep_steps} steps, {model} "
                     f"(width {width}), `bnlab -m seed=0,...` ==")
            emit(*sweep_speed(args.sweep_jobs, args.sweep_n_jobs, sweep, workdir / "sweep"))

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
