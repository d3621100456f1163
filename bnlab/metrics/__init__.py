"""Measured quantities, one idea per module; each docstring cites its source.

Every function works on any ``nn.Module`` and returns tensors or floats; the
trainer decides when to call them and when to synchronize with the host.
"""
