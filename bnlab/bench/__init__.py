"""Benchmarks of bnlab, one home: ``bnlab-bench`` (speed.py: the paired trainer vs the standard CIFAR
loop), ``python -m bnlab.bench.probes`` (what the probes cost) and ``python -m bnlab.bench.curvature``
(Lanczos vs power iteration). One machine description (machine.py) heads every report; the paired
trainer runs under its clock and the probe-cadence ratio is measured in paired.py only.
"""

from bnlab.bench.machine import cpu_model, machine_lines, native_bf16
from bnlab.bench.mfu import matmul_peaks, peak_for, step_flops
from bnlab.bench.paired import cadence_period, compose, paired_run, probe_cadence, probes_off
from bnlab.bench.speed import VARIANTS, main, parse_args
from bnlab.bench.standard import StandardCifar, build_model, standard_loop

__all__ = ["VARIANTS", "StandardCifar", "build_model", "cadence_period", "compose", "cpu_model", "machine_lines",
           "main", "matmul_peaks", "native_bf16", "paired_run", "parse_args", "peak_for", "probe_cadence",
           "probes_off", "standard_loop", "step_flops"]
