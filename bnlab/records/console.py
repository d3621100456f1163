"""What a person sees: a live progress bar with every arm's loss and accuracy,
and the final summary table. Hydra's log lines go through rich's handler on the
same console (configs/hydra/job_logging/rich.yaml), so they print above the
bar instead of tangling with it. The bar is off when stdout is not a terminal.

The console is a view, not the record: ``guard_stdout`` makes a closed, full
or broken stdout (``>&-``, ``> /dev/full``, ``| head``) cost the console output
only. The run goes on, its records are complete, and one line on stderr says
the output was lost (not for a pipe whose reader stopped: that is a choice).
"""

from __future__ import annotations

import os
import sys

from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


class LiveProgress:
    def __init__(self, total: int, arms: list[str], mode: str = "auto"):
        console = get_console()
        enabled = mode == "on" or (mode == "auto" and console.is_terminal)
        self.arms = arms
        self._progress = (
            Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[live]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            if enabled
            else None
        )
        self._task = None
        self.total = total

    def __enter__(self):
        if self._progress:
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total, live="")
        return self

    def __exit__(self, *exc):
        if self._progress:
            self._progress.stop()

    def update(self, step: int, live: dict[str, dict]) -> None:
        """Advance to ``step`` and show each arm's latest loss/accuracy (host floats)."""
        if not self._progress:
            return
        parts = []
        for arm in self.arms:
            s = live.get(arm)
            if not s:
                continue
            if s.get("diverged"):
                parts.append(f"[red]{arm}: diverged@{s['diverged']}[/]")
            else:
                parts.append(f"{arm}: loss {s['loss']:.3f} acc {s['acc']:.3f}")
        self._progress.update(self._task, completed=step, live="  ".join(parts))


def _fmt(v, spec=".4f"):
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def summary_table(summary: dict) -> Table:
    d = summary["data"]
    table = Table(
        title=f"bnlab pair {summary['pair_id']}: {summary['model']} on {d['name']} "
        f"({d['train_size']} train / {d['test_size']} test images), {summary['steps']} steps, "
        f"batch {summary['batch_size']}, lr {summary['lr']}, seed {summary['seed']}",
        title_justify="left",
    )
    for col in ("arm", "final test acc", "best test acc", "final test loss", "final train loss",
                f"steps to {summary['target_acc']:.0%}", "diverged", "train time (s)"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm, a in summary["arms"].items():
        div = f"[red]step {a['diverged_step']}[/]" if a["diverged"] else "no"
        table.add_row(
            arm,
            _fmt(a["final_test_acc"]),
            _fmt(a["best_test_acc"]),
            _fmt(a["final_test_loss"]),
            _fmt(a["final_train_loss"]),
            _fmt(a["steps_to_target"]),
            div,
            _fmt(a["train_time_s"], ".1f"),
        )
    return table


def print_summary(summary: dict, run_dir) -> None:
    console = get_console()
    console.print(summary_table(summary))
    console.print(f"records: {run_dir}")


class _GuardedStdout:
    """sys.stdout that turns its first failing write or flush into one notice, then drops output."""

    def __init__(self, stream):
        self._stream, self.lost = stream, False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._lose(exc)

    def _lose(self, exc: Exception) -> None:
        self.lost = True
        try:
            if self._stream.fileno() == 1:
                # what the stream still buffers (flushed at exit) and child processes' output land in /dev/null
                _point_at_devnull(1)
        except (OSError, ValueError):
            pass
        if not isinstance(exc, BrokenPipeError):  # `| head`: the reader chose to stop, as usual say nothing
            to_stderr(f"bnlab: console output lost (stdout: {getattr(exc, 'strerror', None) or exc}); a run goes "
                      f"on and writes its records in full")

    def __getattr__(self, name):  # isatty, fileno, encoding... of the real stream
        return getattr(self._stream, name)


def guard_stdout() -> None:
    """Make a closed or failing stdout a console problem only (see the module docstring).

    A closed fd 1 or 2 is pointed at /dev/null first, so that no file the run opens later
    takes its number and receives console output (of this process or a child's).
    """
    if isinstance(sys.stdout, _GuardedStdout):
        return
    for fd in (2, 1):
        try:
            os.fstat(fd)
        except OSError:
            _point_at_devnull(fd)
    # None: Python found the fd closed at startup (if something took the number since, it is not ours)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        to_stderr("bnlab: stdout is closed: console output is lost; a run goes on and writes its records in full")
    sys.stdout = _GuardedStdout(sys.stdout)


def _point_at_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def to_stderr(line: str) -> None:
    """One line on stderr, if stderr works (a full or closed stderr must not turn into a traceback)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
