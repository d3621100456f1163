"""``bnlab-plot RUN_OR_SWEEP_DIR``: figures drawn from run records only (never from W&B).

Every figure names the arms in its legend, uses the Okabe-Ito colorblind-safe
palette for arms (viridis / cividis for sequential quantities), labels its axes
with units and states the data scale (model, width, dataset and its train/test
size, steps, batch, lr, seeds) in its title. Each is written as PNG (150 dpi)
and PDF. A figure whose data is absent is skipped with a one-line note
(``skipped <figure>: <reason> (<where>)``), never drawn empty.

Modules: ``style`` (palette, titles, ``save``), ``keys`` (record keys read back),
``registry`` (``FIGURES``: the one list of figures), one module per figure family
(``run_training``, ``run_probes``, ``run_analysis``, ``generic``, ``sweep_final``,
``sweep_seeds``, ``sweep_depth``), ``grouping`` (which runs a sweep figure
compares) and ``cli`` (``bnlab-plot``).

Per run, into ``RUN_DIR/figures/``:

- ``curves``: train/test loss, test accuracy, global gradient norm vs step;
- ``landscape``: Santurkar et al. 2018 Fig. 4: loss band, gradient
  predictiveness band, effective beta-smoothness (probe rows, ``landscape/*``);
- ``layer_norms``: per-layer gradient and weight norms of conv/linear weights,
  colored by depth (train rows, ``grad_norm/<param>``, ``weight_norm/<param>``);
- ``activations``: Ioffe & Szegedy 2015 Fig. 1: percentiles of tracked channels
  (train rows, ``act/<layer>/c<ch>/p<q>``);
- ``curvature``: top Hessian eigenvalue vs step, per BN mode (probe rows);
- ``ics``: internal covariate shift, ``ics/<param>/l2`` and ``/cos`` (probe rows);
- ``spectral_density``, ``surface_1d``, ``surface_2d``: from
  ``analysis/analysis.json`` (``bnlab-analyze``);
- ``slq_density``: Ghorbani et al. 2019: the Hessian's SLQ density per probe step
  and BN mode, from the in-loop SLQ probe (``curvature/slq*``, metrics.curvature.slq_runs).

Per sweep (a directory holding several runs), into ``SWEEP_DIR/figures/``:
``heatmap_final_acc`` (lr x batch size, diverged cells hatched),
``acc_vs_lr``, ``init_sensitivity`` and ``curves_seeds`` (mean and min-max band
over seeds of one config); ``init_scales_depth`` and ``divergence_depth``
(Bjorck et al. 2018: per-layer scales at step 0 and r(eta), a line per ResNet
depth) and ``landscape_seeds`` (Santurkar Fig. 4 over seeds, e.g. the DLN).

A registered measurement (``bnlab.metrics.registry``) that no figure above shows
gets ``<measurement>``: each scalar record key it owns vs step, every arm.

The data behind the figures is exposed by small functions the figures use
(``landscape_data``, ``heatmap_data``, ``lr_sweep_data``, ``init_data``,
``seed_groups``, ``seed_band``, ...) so tests and reports can check it.
"""

from bnlab.plots.cli import caption, main, make_figures, run_figures, sweep_figures
from bnlab.plots.generic import measurement_traces, plot_measurement
from bnlab.plots.grouping import depth_groups, seed_groups, sweep_groups, varying_keys
from bnlab.plots.registry import FIGURES, RUN_FIGURES, SWEEP_FIGURES, Figure
from bnlab.plots.run_analysis import plot_spectral_density, plot_surface_1d, plot_surface_2d, read_analysis
from bnlab.plots.run_probes import (
    LANDSCAPE_KEYS,
    curvature_data,
    ics_data,
    landscape_data,
    plot_curvature,
    plot_ics,
    plot_landscape,
    plot_slq_density,
    slq_data,
    slq_density,
)
from bnlab.plots.run_training import activation_traces, layer_traces, plot_activations, plot_curves, plot_layer_norms
from bnlab.plots.style import ARM_COLORS, CURVE_PANELS, Skip, arm_color, save, scale_line, series, sweep_scale_line
from bnlab.plots.sweep_depth import divergence_profile, init_profile, plot_divergence_depth, plot_init_scales_depth
from bnlab.plots.sweep_final import (
    Heatmap,
    heatmap_data,
    init_data,
    lr_sweep_data,
    plot_acc_vs_lr,
    plot_heatmap_final_acc,
    plot_init_sensitivity,
)
from bnlab.plots.sweep_seeds import plot_curves_configs, plot_curves_seeds, plot_landscape_seeds, seed_band

__all__ = [
    "ARM_COLORS", "CURVE_PANELS", "FIGURES", "LANDSCAPE_KEYS", "RUN_FIGURES", "SWEEP_FIGURES", "Figure", "Heatmap",
    "Skip", "activation_traces", "arm_color", "caption", "curvature_data", "depth_groups", "divergence_profile",
    "heatmap_data", "ics_data", "init_data", "init_profile", "landscape_data", "layer_traces", "lr_sweep_data",
    "main", "make_figures", "measurement_traces", "plot_acc_vs_lr", "plot_activations", "plot_curvature",
    "plot_curves", "plot_curves_configs", "plot_curves_seeds", "plot_divergence_depth", "plot_heatmap_final_acc",
    "plot_ics",
    "plot_init_scales_depth", "plot_init_sensitivity", "plot_landscape", "plot_landscape_seeds", "plot_layer_norms",
    "plot_measurement", "plot_slq_density", "plot_spectral_density", "plot_surface_1d", "plot_surface_2d",
    "read_analysis", "run_figures", "save", "scale_line", "seed_band", "seed_groups", "series", "slq_data",
    "slq_density", "sweep_figures", "sweep_groups", "sweep_scale_line", "varying_keys",
]
