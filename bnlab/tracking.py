"""Old import path of ``bnlab.records.wandb_log``: this module IS that module (sys.modules alias), so imports and
monkeypatches through ``bnlab.tracking`` keep working until every caller imports ``bnlab.records.wandb_log``."""

import sys

from bnlab.records import wandb_log as _moved

sys.modules[__name__] = _moved
