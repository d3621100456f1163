"""The one registry of figures: name, drawing function, scope (run or sweep) and the measurement it shows.

``bnlab-plot``, the report's captions and W&B's figure upload all read ``FIGURES``.
A registered measurement (``bnlab.metrics.registry``) that no figure here names
still gets a figure: ``generic.plot_measurement`` draws its scalar keys per arm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bnlab.plots import (
    run_analysis,
    run_probes,
    run_recurrent,
    run_training,
    sweep_depth,
    sweep_final,
    sweep_seeds,
)


@dataclass(frozen=True)
class Figure:
    name: str  # the file stem in figures/ (a sweep figure drawn per config adds "_<config>")
    draw: Callable  # run figure: draw(run) -> paths; sweep figure: draw(runs, out_dir) -> paths
    scope: str  # "run" (RUN_DIR/figures) or "sweep" (SWEEP_DIR/figures)
    measurement: str | None = None  # the registered measurement it shows (None: per-step rows or analysis.json)

    @property
    def caption(self) -> str:
        """The first line of the drawing function's docstring."""
        return (self.draw.__doc__ or "").strip().split("\n")[0].replace("``", "")


FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("curves", run_training.plot_curves, "run"),
    Figure("landscape", run_probes.plot_landscape, "run", "landscape"),
    Figure("layer_norms", run_training.plot_layer_norms, "run", "layer_norms"),
    Figure("activations", run_training.plot_activations, "run", "activations"),
    Figure("curvature", run_probes.plot_curvature, "run", "curvature"),
    Figure("ics", run_probes.plot_ics, "run", "ics"),
    Figure("spectral_density", run_analysis.plot_spectral_density, "run"),
    Figure("surface_1d", run_analysis.plot_surface_1d, "run"),
    Figure("surface_2d", run_analysis.plot_surface_2d, "run"),
    Figure("slq_density", run_probes.plot_slq_density, "run", "curvature"),
    Figure("recurrent_stats", run_recurrent.plot_time_step_stats, "run", "recurrent_stats"),
    Figure("heatmap_final_acc", sweep_final.plot_heatmap_final_acc, "sweep"),
    Figure("acc_vs_lr", sweep_final.plot_acc_vs_lr, "sweep"),
    Figure("init_sensitivity", sweep_final.plot_init_sensitivity, "sweep"),
    Figure("curves_seeds", sweep_seeds.plot_curves_seeds, "sweep"),
    Figure("curves_configs", sweep_seeds.plot_curves_configs, "sweep"),
    Figure("init_scales_depth", sweep_depth.plot_init_scales_depth, "sweep", "divergence"),
    Figure("divergence_depth", sweep_depth.plot_divergence_depth, "sweep", "divergence"),
    Figure("landscape_seeds", sweep_seeds.plot_landscape_seeds, "sweep", "landscape"),
)}

RUN_FIGURES = tuple(n for n, f in FIGURES.items() if f.scope == "run")
SWEEP_FIGURES = tuple(n for n, f in FIGURES.items() if f.scope == "sweep")
# measurements with a figure of their own (here, or bnlab-explore's page for the BN statistics and the
# saved batch); every other registered one gets the generic figure
DEDICATED = frozenset(f.measurement for f in FIGURES.values() if f.measurement) | {"bn_stats", "bn_batch"}
