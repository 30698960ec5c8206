"""The notebook explorer (no front end: observers and the click handler are called directly) and
the figure functions' options and errors."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.backend_bases import MouseEvent

from ddetr_edu.viz.attention import attention_from_outputs, compute_attention
from ddetr_edu.viz.coordinates import boxes_to_pixels
from ddetr_edu.viz.explorer import SamplingExplorer
from ddetr_edu.viz.pipeline import VisualizeOptions, figures_for_image
from viz_models import tiny_detector

PICTURE = np.full((64, 96, 3), 90, dtype=np.uint8)


@pytest.fixture(scope="module")
def attention():
    torch.set_num_threads(2)
    return compute_attention(tiny_detector(two_stage=True), torch.randn(1, 3, 64, 96))[0]


def test_explorer_without_ipywidgets_says_which_extra_to_install(attention, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # what `import ipywidgets` meets when absent
    with pytest.raises(ImportError, match=r"book extra: pip install -e \"\.\[book\]\""):
        SamplingExplorer(PICTURE, attention)


def _sampling_offsets(axes):
    return np.concatenate([c.get_offsets() for c in axes.collections
                           if (c.get_gid() or "").startswith("sampling-level-")])


def test_explorer_controls_redraw_and_a_click_selects_the_nearest_detection(attention):
    pytest.importorskip("ipywidgets", reason="the explorer needs ipywidgets (the book extra)")
    explorer = SamplingExplorer(PICTURE, attention, top_k=4, score_threshold=0.0)  # an untrained model
    assert len(explorer.queries) == 4 and explorer.selection["query"] == explorer.queries[0]
    middle = explorer.figure.axes[1]
    before = _sampling_offsets(middle)
    k = attention.decoder_locations.shape[-2]
    assert len(before) == attention.num_heads * attention.num_levels * k  # M * L * K points

    explorer.head.value = 1  # the observer redraws: one head's points only
    assert len(_sampling_offsets(explorer.figure.axes[1])) == attention.num_levels * k
    explorer.level.value = 2
    shown = [c.get_gid() for c in explorer.figure.axes[1].collections if (c.get_gid() or "").startswith("sampling")]
    assert shown == ["sampling-level-2"]
    explorer.layer.value = 0
    assert "decoder layer 1/" in explorer.figure.axes[1].get_title()

    # click on the centre of the third detection: its query is selected and drawn
    target = explorer.queries[2]
    x0, y0, x1, y1 = boxes_to_pixels(attention.layer_boxes[-1, target], PICTURE.shape[:2]).tolist()
    x, y = explorer.detection_axes.transData.transform(((x0 + x1) / 2, (y0 + y1) / 2))  # display coords
    event = MouseEvent("button_press_event", explorer.figure.canvas, x, y, button=1)
    assert event.inaxes is explorer.detection_axes
    explorer.figure.canvas.callbacks.process("button_press_event", event)  # as a real click
    assert explorer.selection["query"] == target
    assert f"query {target}," in explorer.figure.axes[1].get_title()
    # a click outside the detections panel changes nothing
    explorer.on_click(SimpleNamespace(inaxes=explorer.figure.axes[1], xdata=1.0, ydata=1.0))
    assert explorer.selection["query"] == target


def test_figures_for_image_and_option_errors(attention):
    # an untrained detector scores ~0.1: threshold 0 and no de-duplication show three of its queries
    every = dict(score_threshold=0.0, duplicate_iou=1.0)
    figures = figures_for_image(PICTURE, attention, VisualizeOptions(top_k=3, head=0, layer=0, **every))
    assert set(figures) == {"decoder", "encoder", "refinement", "summary"}
    decoder_panels = [ax for ax in figures["decoder"].axes if ax.get_title().startswith("query")]
    assert len(decoder_panels) == 3  # one per detection
    # nothing above the threshold: the figure says so instead of failing
    empty = figures_for_image(PICTURE, attention, VisualizeOptions(score_threshold=1.0))
    assert "no detection" in empty["decoder"].axes[0].get_title()
    with pytest.raises(ValueError, match="layer"):
        figures_for_image(PICTURE, attention, VisualizeOptions(layer=9))
    with pytest.raises(ValueError, match="head"):
        figures_for_image(PICTURE, attention, VisualizeOptions(head=5))
    with pytest.raises(ValueError, match="top_k"):
        VisualizeOptions(top_k=0)
    with pytest.raises(ValueError, match="return_attention"):
        attention_from_outputs({"pred_logits": torch.zeros(1, 2, 3)})


def _drawn_boxes(figure) -> int:
    return sum(len(ax.patches) for ax in figure.axes)


def _drawn_points(figure) -> int:
    return sum(len(c.get_offsets()) for ax in figure.axes for c in ax.collections
               if (c.get_gid() or "").startswith("sampling-level-"))


def test_no_figure_draws_a_detection_below_the_score_threshold(attention):
    """Above every score: each of the four figures is one panel saying so, with no box and no
    sampling point; between the best and the second score: only the best detection is drawn."""
    scores = attention.scores.sort(descending=True).values
    above_all = round(float(scores[0]) + 0.005, 3)
    figures = figures_for_image(PICTURE, attention, VisualizeOptions(score_threshold=above_all))
    for kind, figure in figures.items():
        assert len(figure.axes) == 1, kind
        assert figure.axes[0].get_title() == f"no detection with score >= {above_all:g}", kind
        assert _drawn_boxes(figure) == 0 and _drawn_points(figure) == 0, kind
    only_best = float(scores[0] + scores[1]) / 2
    figures = figures_for_image(PICTURE, attention, VisualizeOptions(score_threshold=only_best, top_k=5))
    detections = figures["summary"].axes[0]
    assert detections.get_title() == f"1 detection with score >= {only_best:g} (duplicates dropped)" and len(detections.patches) == 1
    best = int(attention.scores.argmax())
    assert [t.get_text() for t in detections.texts] == [f"class {int(attention.labels[best])} {float(scores[0]):.2f}"]
    assert [ax.get_title() for ax in figures["decoder"].axes if ax.get_title().startswith("query")] == [
        f"query {best}, decoder layer {attention.num_decoder_layers}/{attention.num_decoder_layers}, all heads"]
    encoder_rows = [ax.get_ylabel() for ax in figures["encoder"].axes if ax.get_ylabel().startswith("token")]
    assert len(encoder_rows) == 1  # one probe: the best detection's centre
    assert encoder_rows[0].endswith(f"under class {int(attention.labels[best])} {float(scores[0]):.2f}")


def test_the_explorer_lists_only_detections_above_the_default_threshold(attention):
    """Like every figure, the explorer's default leaves background queries out (score < 0.3); with
    none above it, it still shows the best query."""
    pytest.importorskip("ipywidgets", reason="the explorer needs ipywidgets (the book extra)")
    from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD

    explorer = SamplingExplorer(PICTURE, attention, top_k=4)
    above = [q for q in explorer.queries if attention.scores[q] >= DEFAULT_SCORE_THRESHOLD]
    if attention.scores.max() >= DEFAULT_SCORE_THRESHOLD:
        assert above == explorer.queries
    else:
        assert explorer.queries == [int(attention.scores.argmax())]
