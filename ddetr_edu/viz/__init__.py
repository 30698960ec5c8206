"""What the model looks at: sampling points of the deformable attention, as pictures.

Axis glossary: ``d`` decoder layers, ``e`` encoder layers, ``q`` queries, ``s`` tokens,
``m`` heads, ``l`` levels, ``k`` sampling points.

* ``attention``: :class:`ImageAttention` (one image's locations/weights, from
  ``model(..., return_attention=True)``), :func:`attention_from_outputs`, :func:`compute_attention`;
* ``coordinates``: normalised locations -> pixels (padding handled through the valid ratios);
* ``detections``: :func:`select_detections`, the detections a figure shows (score >= 0.3 by
  default, duplicates dropped);
* figures (each returns a matplotlib ``Figure``, no pyplot state): :func:`plot_decoder_sampling`
  (the paper's Figure 6), :func:`plot_decoder_levels`, :func:`plot_encoder_sampling`,
  :func:`plot_refinement`, :func:`plot_summary`; sampling points are coloured and sized by their
  weight relative to the strongest point of their query;
* ``recording``: :class:`SamplingRecorder`, the sampling pattern of fixed probes during training;
  ``evolution``: its frames and an animated GIF;
* ``explorer``: :class:`SamplingExplorer`, an ipywidgets explorer for notebooks (ipywidgets, from
  the ``book`` extra, is imported when an explorer is made);
* ``pipeline``: :func:`visualize_files` (``ddetr-edu visualize``), :func:`visualize_dataset` (the demo);
* ``curves``: a training run's loss and AP curves from its logbook: :func:`plot_loss_curve`,
  :func:`plot_ap_curve`, :func:`save_curves`;
* ``architecture_shapes`` / ``architecture_figure``: every tensor's shape recorded from one forward
  pass (``record_shapes``) and the whole detector drawn with them (``plot_architecture``; book
  chapter 0); import them from their modules.

``import ddetr_edu.viz`` imports matplotlib; ``ddetr_edu``, ``ddetr_edu.ops`` and
``ddetr_edu.models`` do not.
"""
from ddetr_edu.viz.attention import ImageAttention, attention_from_outputs, compute_attention
from ddetr_edu.viz.coordinates import locations_to_pixels
from ddetr_edu.viz.curves import plot_ap_curve, plot_loss_curve, save_curves
from ddetr_edu.viz.decoder_figures import plot_decoder_levels, plot_decoder_sampling
from ddetr_edu.viz.detections import select_detections
from ddetr_edu.viz.encoder_figures import plot_encoder_sampling
from ddetr_edu.viz.evolution import plot_evolution_frames, save_evolution_gif
from ddetr_edu.viz.explorer import SamplingExplorer
from ddetr_edu.viz.loading import load_detector
from ddetr_edu.viz.pipeline import VisualizeOptions, figures_for_image, visualize_dataset, visualize_files
from ddetr_edu.viz.recording import SamplingRecorder, load_sampling_history
from ddetr_edu.viz.refinement_figures import plot_refinement
from ddetr_edu.viz.summary import plot_summary

__all__ = ["ImageAttention", "SamplingExplorer", "SamplingRecorder", "VisualizeOptions",
           "attention_from_outputs", "compute_attention", "figures_for_image", "load_detector",
           "load_sampling_history", "locations_to_pixels", "plot_ap_curve", "plot_decoder_levels",
           "plot_decoder_sampling",
           "plot_encoder_sampling", "plot_evolution_frames", "plot_loss_curve", "plot_refinement",
           "plot_summary", "save_curves", "save_evolution_gif", "select_detections", "visualize_dataset",
           "visualize_files"]
