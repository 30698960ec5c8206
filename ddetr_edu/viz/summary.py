"""One picture per image: detections, decoder sampling, encoder sampling, refinement."""
from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import boxes_to_pixels
from ddetr_edu.viz.decoder_figures import draw_decoder_query
from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD, DUPLICATE_IOU, select_detections
from ddetr_edu.viz.drawing import (BOX_COLOURS, class_text, draw_box, level_legend, no_detection_figure,
                                   picture_array, separate_labels, show_picture, weight_colorbar)
from ddetr_edu.viz.encoder_figures import draw_encoder_token, tokens_for_points
from ddetr_edu.viz.refinement_figures import draw_refinement


def draw_detections(ax: Axes, picture, attention: ImageAttention, queries: Sequence[int],
                    class_names: Sequence[str] | None = None) -> None:
    """The final boxes of ``queries`` with class and score."""
    h, w = show_picture(ax, picture)
    for i, q in enumerate(queries):
        draw_box(ax, boxes_to_pixels(attention.layer_boxes[-1, q], (h, w)), BOX_COLOURS[i % len(BOX_COLOURS)],
                 label=class_text(int(attention.labels[q]), float(attention.scores[q]), class_names),
                 image_size=(h, w))
    ax.set_title(f"{len(queries)} detection{'s' if len(queries) != 1 else ''}", fontsize=8)


def plot_summary(image, attention: ImageAttention, layer: int = -1, head: int | None = None,
                 top_k: int = 5, score_threshold: float = DEFAULT_SCORE_THRESHOLD, query_level: int = 0,
                 class_names: Sequence[str] | None = None, duplicate_iou: float = DUPLICATE_IOU) -> Figure:
    """2 x 2 panels: the detections (:func:`select_detections`); decoder sampling of the best
    one (layer ``layer``); encoder sampling (last layer, all levels) of the token under its
    centre; refinement. One panel saying so when no detection is left."""
    picture = picture_array(image)
    queries = [int(q) for q in select_detections(attention, top_k, score_threshold, duplicate_iou)]
    if not queries:
        return no_detection_figure(picture, score_threshold)
    best = queries[0]
    figure = Figure(figsize=(10, 10 * picture.shape[0] / picture.shape[1] + 0.8), layout="constrained")
    (a, b), (c, d) = figure.subplots(2, 2)
    draw_detections(a, picture, attention, queries, class_names)
    a.set_title(f"{a.get_title()} with score >= {score_threshold:g} (duplicates dropped)", fontsize=8)
    draw_decoder_query(b, picture, attention, best, layer, head, class_names=class_names)
    level_legend(b, range(attention.num_levels), attention.spatial_shapes)
    if attention.encoder_locations is not None:
        centre = attention.layer_boxes[-1, best, :2][None]  # (1, 2)
        token = tokens_for_points(attention, centre, query_level)[0]
        draw_encoder_token(c, picture, attention, token, -1, head)
        c.set_title(f"encoder: token {token} under the best detection's centre, last layer", fontsize=8)
    else:
        show_picture(c, picture, fade=True)
        c.set_title("no encoder attention captured", fontsize=8)
    draw_refinement(d, picture, attention, queries, class_names)
    weight_colorbar(figure, [a, b, c, d], "weight / max weight of its query (decoder) or token (encoder)", 0.45)
    figure.suptitle("what the model looks at", fontsize=10)
    separate_labels(figure)
    return figure


__all__ = ["draw_detections", "plot_summary"]
