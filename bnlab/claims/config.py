"""The thresholds and margins of ``bnlab-claims``: configs/claims/default.yaml, overridden by ``--config``.

Each margin's one-line reason is its trailing comment in the default file (shown in claims.md
and the report).
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path

import yaml

from bnlab.errors import BnlabError

# thresholds that are counts, and those strictly between 0 and 1; every other one is any finite number
COUNT_KEYS = ("min_probes", "min_seeds", "bootstrap_resamples")
FRACTION_KEYS = ("confidence",)
RATIO_KEYS = ("lr_min_ratio", "divergence_min_ratio", "speedup_min_ratio", "landscape_min_ratio", "beta_min_ratio",
              "ics_min_ratio", "drift_min_ratio", "lstm_speedup_min_ratio", "lstm_gamma_min_ratio")


def _default_text() -> str:
    return (resources.files("bnlab.configs") / "claims/default.yaml").read_text()


def default_config() -> dict:
    return yaml.safe_load(_default_text())


def margin_reasons() -> dict[str, str]:
    """The one-line reason after each key in configs/claims/default.yaml (its trailing comment)."""
    return dict(re.findall(r"^(\w+):[^#\n]*#\s*(.+)$", _default_text(), flags=re.M))


def load_config(path: Path | None = None) -> dict:
    """The thresholds: the defaults, overridden by the keys of the YAML file ``path``.

    BnlabError (one line) for a file that is not YAML or not a mapping, an unknown key, or a
    threshold that is not a finite number (a count must be a positive integer, a confidence in (0, 1),
    a ratio margin finite and > 0).
    """
    cfg = default_config()
    if path is None:
        return cfg
    where = f"--config {path}"
    try:
        given = yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        what = f"line {mark.line + 1}: {getattr(exc, 'problem', '')}" if mark else exc.__class__.__name__
        raise BnlabError(f"{where} is not a readable YAML file ({what}); fix it or pass another file") from None
    if not isinstance(given, dict):
        raise BnlabError(f"{where} must be a mapping of thresholds (e.g. 'min_probes: 5'), not "
                         f"{type(given).__name__}; see configs/claims/default.yaml")
    for key, value in given.items():
        if key not in cfg:
            raise BnlabError(f"{where}: unknown threshold {key!r}; known: {', '.join(cfg)}")
        cfg[key] = _threshold(where, key, value)
    return cfg


def _threshold(where: str, key: str, value) -> float | int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    want = "a finite number"
    if key in COUNT_KEYS:
        ok, want = ok and isinstance(value, int) and value >= 1, "a positive integer"
    elif key in FRACTION_KEYS:
        ok, want = ok and 0 < value < 1, "a number in (0, 1)"
    elif key in RATIO_KEYS:
        ok, want = ok and value > 0, "a finite number > 0 (a ratio)"
    if not ok:
        raise BnlabError(f"{where}: {key}={value!r} must be {want}; see configs/claims/default.yaml")
    return value
