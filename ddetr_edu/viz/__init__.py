"""What the model looks at: sampling points of the deformable attention, as pictures.

Axis glossary: ``d`` decoder layers, ``e`` encoder layers, ``q`` queries, ``s`` tokens,
``m`` heads, ``l`` levels, ``k`` sampling points.

* ``attention``: :class:`ImageAttention` (one image's locations/weights, from
  ``model(..., return_attention=True)``), :func:`attention_from_outputs`, :func:`compute_attention`;
* ``coordinates``: normalised locations -> pixels (padding handled through the valid ratios);
* figures (each returns a matplotlib ``Figure``, no pyplot state): :func:`plot_decoder_sampling`
  (the paper's Figure 6), :func:`plot_encoder_sampling`, :func:`plot_refinement`,
  :func:`plot_summary`;
* ``recording``: :class:`SamplingRecorder`, the sampling pattern of fixed probes during training;
  ``evolution``: its frames and an animated GIF;
* ``explorer``: :class:`SamplingExplorer`, an ipywidgets explorer for notebooks;
* ``pipeline``: :func:`visualize_files` (``ddetr-edu visualize``), :func:`visualize_dataset` (the demo).

Submodules load lazily: ``import ddetr_edu.viz`` does not import matplotlib until a name is used.
"""
from __future__ import annotations

from ddetr_edu.lazy_exports import lazy_exports

_LAZY = {
    "ImageAttention": "attention",
    "attention_from_outputs": "attention",
    "compute_attention": "attention",
    "locations_to_pixels": "coordinates",
    "plot_decoder_sampling": "decoder_figures",
    "plot_encoder_sampling": "encoder_figures",
    "plot_refinement": "refinement_figures",
    "plot_summary": "summary",
    "SamplingRecorder": "recording",
    "load_sampling_history": "recording",
    "plot_evolution_frames": "evolution",
    "save_evolution_gif": "evolution",
    "SamplingExplorer": "explorer",
    "VisualizeOptions": "pipeline",
    "figures_for_image": "pipeline",
    "visualize_files": "pipeline",
    "visualize_dataset": "pipeline",
    "load_detector": "loading",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
