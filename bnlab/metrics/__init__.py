"""Measured quantities, one idea per module; each docstring cites its source.

Every function works on any ``nn.Module`` and returns tensors or floats; the
trainer decides when to call them and when to synchronize with the host.
"""

# Importing a metric module registers its measurement (bnlab/metrics/registry.py); this order is the
# order of their keys within a record row, so it stays fixed.
from bnlab.metrics import gradnorms, landscape, divergence, curvature, ics, activations  # noqa: E402,F401,I001
from bnlab.metrics import bn_stats, recurrent_stats  # noqa: E402,F401,I001  (after the six: their keys come last)
