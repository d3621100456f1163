"""Old import path of ``bnlab.records.store``: this module IS that module (sys.modules alias), so imports and
monkeypatches through ``bnlab.results`` keep working until every caller imports ``bnlab.records.store``."""

import sys

from bnlab.records import store as _moved

sys.modules[__name__] = _moved
