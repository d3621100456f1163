"""What a person sees: a live progress bar with every arm's loss and accuracy,
and the final summary table. Hydra's log lines go through rich's handler on the
same console (configs/hydra/job_logging/rich.yaml), so they print above the
bar instead of tangling with it. The bar is off when stdout is not a terminal.
"""

from __future__ import annotations

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
