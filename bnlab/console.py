"""Old import path of ``bnlab.records.console``: this module IS that module (sys.modules alias), so imports and
monkeypatches through ``bnlab.console`` keep working until every caller imports ``bnlab.records.console``."""

import sys

from bnlab.records import console as _moved

sys.modules[__name__] = _moved
