"""Data paths made absolute once, where the user typed them.

A relative ``BNLAB_DATA_DIR`` or ``data.root`` means "relative to the directory
I ran the command in". Every place that later reads the path runs somewhere
else: a test's temporary directory, a joblib worker, a SLURM job, a resume
months later. So each console script calls :func:`absolute_data_args` first,
and the absolute path is what lands in ``config.yaml``, the records and the
sweep jobs. The ``abspath`` resolver (bnlab/resolvers.py) in ``configs/data/*.yaml`` covers the
default (``./data``), resolved in the job, whose working directory is the
launch directory (``hydra.job.chdir=false``).
"""

from __future__ import annotations

import os
import re

ENV = "BNLAB_DATA_DIR"
_KEYS = ("data.root", "+data.root", "++data.root")
_PLAIN = re.compile(r"^[\w./~:@%+-]+$")  # needs no quoting in a Hydra override value


def absolute(path: str) -> str:
    """``path`` with ``~`` expanded, made absolute against the current directory."""
    return os.path.abspath(os.path.expanduser(path)) if path else path


def _quote(value: str) -> str:
    if _PLAIN.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _absolute_override(arg: str) -> str:
    """``data.root=rel`` (or a sweep ``data.root=a,b``) with every path made absolute."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, QuotedString

    try:
        (o,) = OverridesParser.create().parse_overrides([arg])
    except Exception:  # noqa: BLE001 - a malformed override: preflight reports it in its own words
        return arg
    value = o.value()
    values = value.list if isinstance(value, ChoiceSweep) else [value]  # range()/glob() sweeps: no paths
    values = [v.text if isinstance(v, QuotedString) else v for v in values]  # 'quoted' sweep elements
    if not all(isinstance(v, str) for v in values):
        return arg
    key = arg.split("=", 1)[0]
    return f"{key}={','.join(_quote(absolute(v)) for v in values)}"


def absolute_data_args(args: list[str]) -> list[str]:
    """Make ``$BNLAB_DATA_DIR`` (in this process's environment, inherited by its jobs) and
    every ``data.root=`` override in ``args`` absolute; return the new ``args``."""
    env = os.environ.get(ENV)
    if env and not os.path.isabs(os.path.expanduser(env)):
        os.environ[ENV] = absolute(env)
    return [_absolute_override(a) if a.split("=", 1)[0] in _KEYS and "=" in a else a for a in args]
