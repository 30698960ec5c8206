"""What makes the visualizer's pictures readable: which detections are shown (threshold,
de-duplication), the per-query colour scale, labels inside the picture, distinct encoder
tokens, and class names."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ddetr_edu.boxes import box_iou, classwise_nms
from ddetr_edu.viz.attention import ImageAttention, compute_attention
from ddetr_edu.viz.coco_names import COCO_CATEGORY_NAMES, coco_label_names
from ddetr_edu.viz.decoder_figures import plot_decoder_levels, plot_decoder_sampling
from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD, select_detections
from ddetr_edu.viz.drawing import draw_box, label_position, show_picture
from ddetr_edu.viz.encoder_figures import detection_probes, distinct_tokens, plot_encoder_sampling
from ddetr_edu.viz.pipeline import VisualizeOptions, figures_for_image
from ddetr_edu.viz.summary import plot_summary
from viz_models import tiny_detector

PICTURE = np.full((64, 96, 3), 90, dtype=np.uint8)


@pytest.fixture(scope="module")
def attention() -> ImageAttention:
    torch.set_num_threads(2)
    return compute_attention(tiny_detector(two_stage=True), torch.randn(1, 3, 64, 96))[0]


def _with_detections(attention: ImageAttention, boxes, scores, labels) -> ImageAttention:
    """``attention`` whose first queries predict ``boxes`` (cxcywh) with ``scores`` and ``labels``;
    every other query scores 0.01 (background)."""
    q = attention.num_queries
    all_scores = torch.full((q,), 0.01)
    all_scores[:len(scores)] = torch.tensor(scores)
    all_labels = torch.zeros(q, dtype=torch.long)
    all_labels[:len(labels)] = torch.tensor(labels)
    layer_boxes = attention.layer_boxes.clone()
    layer_boxes[:, :len(boxes)] = torch.tensor(boxes)
    return dataclasses.replace(attention, scores=all_scores, labels=all_labels, layer_boxes=layer_boxes)


# ------------------------------------------------------------------------ which detections
def _greedy_by_hand(boxes, scores, labels, threshold):
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(labels[i] != labels[j] or box_iou(boxes[i:i + 1], boxes[j:j + 1])[0][0, 0] <= threshold
               for j in kept):
            kept.append(i)
    return kept


def test_classwise_nms_drops_same_class_overlaps_only():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 9], [20, 20, 30, 30], [0, 0, 10, 5.]])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.4, 0.7])
    labels = torch.tensor([1, 1, 2, 1, 1])
    # box 1 (0.9) suppresses box 0 (IoU 0.9, same class); box 2 is of class 2; box 4 has IoU 0.56
    assert classwise_nms(boxes, scores, labels, 0.7).tolist() == [1, 2, 4, 3]
    assert classwise_nms(boxes, scores, labels, 0.5).tolist() == [1, 2, 3]
    assert classwise_nms(boxes, scores, labels, 1.0).tolist() == [1, 2, 4, 0, 3]  # 1: keeps all
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):  # random scenes against the greedy rule written out
        xy = torch.rand(12, 2, generator=generator) * 20
        random_boxes = torch.cat([xy, xy + 5 + torch.rand(12, 2, generator=generator) * 10], dim=1)
        random_scores = torch.rand(12, generator=generator)
        random_labels = torch.randint(0, 2, (12,), generator=generator)
        assert classwise_nms(random_boxes, random_scores, random_labels, 0.3).tolist() == _greedy_by_hand(
            random_boxes, random_scores.tolist(), random_labels.tolist(), 0.3)
    with pytest.raises(ValueError, match="iou_threshold"):
        classwise_nms(boxes, scores, labels, 1.5)


def test_select_detections_thresholds_and_deduplicates(attention):
    scene = _with_detections(attention, boxes=[[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.7, 0.7, 0.3, 0.3],
                                                [0.3, 0.3, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]],
                             scores=[0.9, 0.8, 0.6, 0.5, 0.2], labels=[1, 1, 2, 0, 1])
    # query 1 repeats query 0 (same class, IoU 0.9); query 3 is the same box with another class;
    # query 4 scores below the default threshold, and every other query is background (0.01)
    assert select_detections(scene).tolist() == [0, 2, 3]
    assert select_detections(scene, top_k=2).tolist() == [0, 2]
    assert select_detections(scene, duplicate_iou=1.0).tolist() == [0, 1, 2, 3]
    assert select_detections(scene, score_threshold=0.1).tolist() == [0, 2, 3, 4]
    assert select_detections(scene, score_threshold=0.95).tolist() == []
    assert DEFAULT_SCORE_THRESHOLD >= 0.3  # the default never draws background queries
    panels = [ax.get_title() for ax in plot_decoder_sampling(PICTURE, scene).axes if ax.get_title().startswith("query")]
    assert [int(title.split()[1].rstrip(",")) for title in panels] == [0, 2, 3]
    nothing = plot_summary(PICTURE, scene, score_threshold=0.95)
    assert [ax.get_title() for ax in nothing.axes] == ["no detection with score >= 0.95"]


# ------------------------------------------------------------------------ the colour scale
def _panel_scatters(ax):
    return [c for c in ax.collections if (c.get_gid() or "").startswith("sampling-level-")]


def _check_relative_scale(scatters):
    """Drawn values are in [0, 1] with 1 reached; size and opacity grow with the value."""
    values = np.concatenate([np.asarray(c.get_array()) for c in scatters])
    assert values.min() >= 0 and values.max() == pytest.approx(1.0)
    for c in scatters:
        value, size, alpha = np.asarray(c.get_array()), np.asarray(c.get_sizes()), np.asarray(c.get_alpha())
        order = np.argsort(value)
        assert np.all(np.diff(size[order]) >= 0) and np.all(np.diff(alpha[order]) >= 0)
        assert np.all(np.diff(value) >= 0)  # drawn weakest first: the strongest points on top
    return values


def test_each_query_spans_the_whole_colour_scale(attention):
    figure = plot_decoder_sampling(PICTURE, attention, queries=[0, 1, 2])
    for ax in figure.axes:
        if ax.get_title().startswith("query"):
            values = _check_relative_scale(_panel_scatters(ax))
            assert values.min() < 0.9  # not all alike: the scale shows differences
    assert any("max weight of its query" in ax.get_ylabel() for ax in figure.axes)  # the colour bar says so
    # per-level panels of one query share that query's scale: together they reach 1 exactly once per query
    levels = plot_decoder_levels(PICTURE, attention, queries=[0, 1])
    rows = [[ax for ax in levels.axes if ax.get_title().startswith(f"query {q}:")] for q in (0, 1)]
    for row in rows:
        assert len(row) == attention.num_levels
        _check_relative_scale([c for ax in row for c in _panel_scatters(ax)])
    # encoder: one scale per token, across its level panels
    encoder = plot_encoder_sampling(PICTURE, attention, points=torch.tensor([[0.2, 0.3], [0.8, 0.7]]))
    panels = [ax for ax in encoder.axes if _panel_scatters(ax)]
    for row in range(2):
        _check_relative_scale([c for ax in panels[row * attention.num_levels:(row + 1) * attention.num_levels]
                               for c in _panel_scatters(ax)])


# ------------------------------------------------------------------------ labels
@pytest.mark.parametrize("box", [[-5, -8, 20, 10], [70, -3, 100, 20], [80, 50, 99, 70], [-10, 40, 8, 66],
                                 [30, 0, 60, 30], [40, 20, 56, 40]])
def test_box_labels_stay_inside_the_picture(box):
    h, w = PICTURE.shape[:2]
    figure = Figure(figsize=(3.0, 2.0), dpi=110)
    ax = figure.add_subplot()
    show_picture(ax, PICTURE)
    draw_box(ax, torch.tensor(box, dtype=torch.float32), "tab:orange", label="triangle 0.97")
    renderer = FigureCanvasAgg(figure).get_renderer()
    inside = ax.get_window_extent(renderer)
    (text,) = ax.texts
    extent = text.get_window_extent(renderer)
    assert inside.x0 - 0.5 <= extent.x0 and extent.x1 <= inside.x1 + 0.5, (box, extent, inside)
    assert inside.y0 - 0.5 <= extent.y0 and extent.y1 <= inside.y1 + 0.5, (box, extent, inside)
    x, y, ha, va = label_position(torch.tensor(box, dtype=torch.float32), (h, w))
    assert 0 <= x <= w and 0 <= y <= h


# ------------------------------------------------------------------------ encoder tokens
def test_encoder_rows_are_distinct_tokens_smallest_detection_first(attention):
    # queries 0 and 1: same centre, different classes (both shown); query 2: a large box elsewhere
    scene = _with_detections(attention, boxes=[[0.5, 0.5, 0.3, 0.3], [0.5, 0.5, 0.1, 0.1], [0.2, 0.25, 0.4, 0.5]],
                             scores=[0.9, 0.8, 0.7], labels=[0, 1, 2])
    assert select_detections(scene).tolist() == [0, 1, 2]
    probes = detection_probes(scene, query_level=0)
    assert [q for _, q in probes] == [1, 2]  # the small one first; query 0 shares query 1's token
    figure = plot_encoder_sampling(PICTURE, scene, class_names=["circle", "square", "star"])
    rows = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel().startswith("token")]
    tokens = [int(label.split()[1]) for label in rows]
    assert tokens == [t for t, _ in probes] and len(set(tokens)) == len(tokens) == 2
    assert rows[0].endswith("under square 0.80") and rows[1].endswith("under star 0.70")
    # given points that fall on one token twice: each token is drawn once
    assert distinct_tokens([28, 28, 5, 28, 7]) == [28, 5, 7]
    twice = plot_encoder_sampling(PICTURE, scene, points=torch.tensor([[0.5, 0.5], [0.51, 0.5], [0.1, 0.1]]))
    labels = [ax.get_ylabel() for ax in twice.axes if ax.get_ylabel().startswith("token")]
    assert len(labels) == len(set(labels)) == 2


# ------------------------------------------------------------------------ names
def test_coco_names_are_keyed_by_category_id():
    assert len(COCO_CATEGORY_NAMES) == 80 and len(set(COCO_CATEGORY_NAMES.values())) == 80
    names = coco_label_names(91)
    assert (names[1], names[18], names[90]) == ("person", "dog", "toothbrush")
    assert names[12].startswith("unused") and names[0].startswith("unused")
    assert max(COCO_CATEGORY_NAMES) == 90 and min(COCO_CATEGORY_NAMES) == 1


def test_every_figure_uses_the_class_names(attention):
    scene = _with_detections(attention, boxes=[[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]],
                             scores=[0.9, 0.6], labels=[2, 0])
    names = ["circle", "square", "triangle"]
    figures = figures_for_image(PICTURE, scene, VisualizeOptions(), names)
    for kind, figure in figures.items():
        texts = [t.get_text() for ax in figure.axes for t in ax.texts] + [ax.get_ylabel() for ax in figure.axes]
        assert any("triangle 0.90" in text for text in texts), kind
        assert not any("class " in text for text in texts), kind


def test_options_check_the_duplicate_iou():
    with pytest.raises(ValueError, match="duplicate_iou"):
        VisualizeOptions(duplicate_iou=1.5)
    assert VisualizeOptions().score_threshold == DEFAULT_SCORE_THRESHOLD
