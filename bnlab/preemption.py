"""Stopping cleanly when the scheduler or the user asks: SIGTERM, SIGINT, submitit's signal.

A signal only sets a flag; the training loop finishes the step it is in,
flushes the records, writes ``checkpoints/last.pt`` and then stops, so the
checkpoint is always a step boundary and re-running the same command resumes
exactly there. A second SIGINT (Ctrl-C twice) stops at once.

Under the submitit launcher (SLURM), submitit owns SIGTERM (it ignores it) and
its preemption signal (SIGUSR2, or ``$SUBMITIT_PREEMPT_SIGNAL``), whose handler
requeues the job. bnlab leaves SIGTERM to it and wraps the preemption signal:
checkpoint first at the step boundary, then submitit's own handler runs and
requeues; the requeued job reruns the same command in the same dir and resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

INTERRUPTED_EXIT = 3  # exit code: stopped by a signal after writing a checkpoint; rerun to resume


class Interrupted(Exception):
    """Raised by the training loop after it checkpointed in answer to a signal."""

    exit_code = INTERRUPTED_EXIT

    def __init__(self, signum: int, step: int, ckpt):
        self.signum, self.step, self.ckpt = signum, step, ckpt
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint {ckpt}; "
            f"rerun the same command (same run dir) to resume"
        )


def _submitit_signal() -> signal.Signals | None:
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", None) or getattr(signal, name, None)


class StopSignals:
    """Context manager: while inside, the signals above set ``requested`` instead of killing."""

    def __init__(self):
        self.requested: int | None = None
        self._old: dict[int, object] = {}
        self.chain = None  # a launcher's handler to call after the checkpoint (submitit)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals can only be caught in the main thread (e.g. some launchers' threads)
        wanted = [signal.SIGINT, signal.SIGTERM]
        sub = _submitit_signal()
        if sub is not None and callable(signal.getsignal(sub)):
            wanted.append(sub)  # a Python handler there means a launcher (submitit) wants it
        for sig in wanted:
            old = signal.getsignal(sig)
            if sig == signal.SIGTERM and callable(old) and old is not signal.default_int_handler:
                continue  # submitit bypasses SIGTERM on purpose: leave its choice alone
            self._old[sig] = old
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now, the last periodic checkpoint remains
        self.requested = signum
        old = self._old.get(signum)
        if callable(old) and old is not signal.default_int_handler:
            self.chain = (old, signum)
        log.warning("%s received: finishing this step, then writing a checkpoint and stopping",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def hand_over(self) -> None:
        """After the checkpoint: let a launcher's handler act (submitit requeues and exits)."""
        if self.chain is not None:
            handler, signum = self.chain
            handler(signum, None)


class DeferredSignals:
    """Context manager: SIGTERM and SIGINT wait until the block is done (``caught`` names them).

    For work that must not be cut in half, such as W&B finishing its runs: wandb
    writes an offline run's transaction log at finish, so a signal there would
    leave empty ``.wandb`` files behind a run whose records say "completed". The
    block is bounded on its own (``logger.finish_timeout``). A second Ctrl-C still
    stops at once.
    """

    def __init__(self):
        self.caught: list[str] = []
        self._old: dict[int, object] = {}

    def __enter__(self) -> DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and name in self.caught:
            raise KeyboardInterrupt
        self.caught.append(name)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
