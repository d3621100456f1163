"""Arms side by side on a CPU: one thread per arm, the cores split between them.

Why: the arms of a pair share nothing but the batch, and on a few CPU cores
many of a narrow network's ops are too small to keep two threads busy (on
2 cores PyTorch's channels_last BatchNorm at 8 channels is slower on two
threads than on one). Stepping the arms at once, each on its own core, keeps
every core on whole ops. The speed this buys is measured by ``bnlab-bench``
(variant ``sequential`` vs the default) and written to results/bench/.

Determinism: an arm's numbers depend on its own intra-op thread count only,
which is fixed by the config and the machine's core count, never by which
thread finishes first: the arms share no mutable state (each has its own
model, optimizer, noise generators and tally; they only read the same batch
and the same plain-value probe settings, never the OmegaConf config). The
whole step runs in the arm's thread, probes included, so turning a probe on
or off never changes the thread count, and hence the rounding, of the
training step. The slowest arm so far starts first, so with
more arms than threads the others fill the remaining threads.

When it pays: for small models only. ``auto`` steps the arms at once when one
arm's forward pass costs less than ``SMALL_MODEL_FLOPS`` per image (conv and
linear FLOPs, counted once per run). Measured on 2 cores (results/bench/
speed.txt, docs/speed.md): narrow ResNet-20 (x0.5, 20 MFLOP) trains
1.18-1.23x faster with the arms at once than one after the other on two
threads each, VGG-11 x0.25 (20 MFLOP) 1.03-1.05x; full-width ResNet-20 (81
MFLOP) is compute-bound, its convolutions use two threads well, and at once
it was 1.06-1.12x slower in three runs of four (the arms contend for cache and
memory bandwidth). The rule depends on the model
alone, never on timing, so the same command always runs the same way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

SETTINGS = ("auto", True, False)
# ``auto``: arms at once below this many forward FLOPs per image of one arm (see above)
SMALL_MODEL_FLOPS = 40e6


def workers(setting, device: torch.device, n_arms: int, compiled: bool, flops_per_image=None) -> int:
    """How many arm threads to use (0: step the arms one after the other).

    ``auto``: on a CPU with at least two intra-op threads and two arms, not
    with ``train.compile`` (compiled graphs are not stepped from threads),
    for a small model: ``flops_per_image()`` (called only then) below
    ``SMALL_MODEL_FLOPS``. ``true`` forces it wherever there are two arms;
    ``false`` never.
    """
    cores = torch.get_num_threads()
    if setting is False or n_arms < 2:
        return 0
    if setting == "auto" and (device.type != "cpu" or compiled or cores < 2):
        return 0
    if setting == "auto" and flops_per_image is not None and flops_per_image() >= SMALL_MODEL_FLOPS:
        return 0
    return min(n_arms, max(cores, 2))


def forward_flops(model: torch.nn.Module, image_shape) -> int:
    """Conv and linear FLOPs of one forward pass of one image (``torch.utils.flop_counter``).

    Eval mode, no gradient, a zero image, and ``preserved`` around it: the
    model, its running statistics and every generator are left bitwise as they were.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from bnlab.metrics._state import preserved

    p = next(model.parameters())
    x = torch.zeros(1, *image_shape, device=p.device)
    with preserved(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()
        model(x)
    return int(counter.get_total_flops())


class ArmPool:
    """A pool of ``n`` threads, each running its ops on ``cores // n`` intra-op threads."""

    def __init__(self, n: int):
        self.n = n
        self.threads_per_arm = max(1, torch.get_num_threads() // max(n, 1))
        self._pool = (ThreadPoolExecutor(n, thread_name_prefix="bnlab-arm",
                                         initializer=torch.set_num_threads, initargs=(self.threads_per_arm,))
                      if n else None)

    def map(self, fn, items: list) -> list:
        """``[fn(i) for i in items]``, concurrently when the pool has threads; exceptions propagate."""
        if self._pool is None or len(items) < 2:
            return [fn(i) for i in items]
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
