"""An ipywidgets explorer of the sampling points, for notebooks.

    explorer = SamplingExplorer(picture, attention, class_names=...)
    explorer.widget            # display it: layer / head / level / query controls and the figure

Three panels: the detections (click one to select its query), the decoder sampling of the
selected query (chosen layer, head, level), and the encoder sampling of the token under the
detection's centre (last encoder layer). Every control calls :meth:`SamplingExplorer.update`
through its observer; a click on the detections panel goes through :meth:`on_click`, a
matplotlib ``button_press_event`` handler that selects the nearest detection's query.

Both work without a front end (the book and the tests call them directly). For live clicks use
an interactive backend: create the figure with ``%matplotlib widget`` (ipympl) and pass it as
``figure=plt.figure()``; the figure's canvas then replaces the static image in the widget.

ipywidgets comes with the ``book`` extra (``pip install -e ".[book]"``); it is imported when an
explorer is made, so this module imports without it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.coordinates import boxes_to_pixels
from ddetr_edu.viz.decoder_figures import draw_decoder_query
from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD, select_detections
from ddetr_edu.viz.drawing import class_text, picture_array, weight_colorbar
from ddetr_edu.viz.encoder_figures import draw_encoder_token, tokens_for_points
from ddetr_edu.viz.summary import draw_detections

ALL = -1  # the "all" choice of the head and level controls


def _ipywidgets():
    """The ipywidgets module, or an ImportError that says where it comes from."""
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError("SamplingExplorer needs ipywidgets, which comes with the book extra: "
                          "pip install -e \".[book]\" (or pip install ipywidgets)") from error
    return ipywidgets


class SamplingExplorer:
    """Interactive view of one image's :class:`ImageAttention` (see the module docstring)."""

    def __init__(self, image, attention: ImageAttention, class_names: Sequence[str] | None = None,
                 top_k: int = 10, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 figure: Figure | None = None) -> None:
        self.picture = picture_array(image)
        self.attention = attention
        self.class_names = class_names
        queries = select_detections(attention, top_k, score_threshold)  # best first, duplicates dropped
        if len(queries) == 0:  # nothing above the threshold: still show the best query
            queries = attention.top_queries(1)
        self.queries = [int(q) for q in queries]
        widgets = _ipywidgets()
        self.layer = widgets.IntSlider(value=attention.num_decoder_layers - 1, min=0,
                                       max=attention.num_decoder_layers - 1, description="layer")
        self.head = widgets.Dropdown(options=[("all", ALL)] + [(str(m), m) for m in range(attention.num_heads)],
                                     value=ALL, description="head")
        self.level = widgets.Dropdown(options=[("all", ALL)] + [(str(l), l) for l in range(attention.num_levels)],
                                      value=ALL, description="level")
        self.query = widgets.Dropdown(
            options=[(f"{q}: {class_text(int(attention.labels[q]), float(attention.scores[q]), class_names)}", q)
                     for q in self.queries],
            value=self.queries[0], description="query")
        for control in (self.layer, self.head, self.level, self.query):
            control.observe(self._on_change, names="value")
        self.figure = figure if figure is not None else Figure(figsize=(12, 4.4), layout="constrained")
        self.figure.canvas.mpl_connect("button_press_event", self.on_click)
        self.output = widgets.Output()
        live = isinstance(self.figure.canvas, widgets.DOMWidget)  # ipympl: the canvas is a widget
        self.widget = widgets.VBox([widgets.HBox([self.layer, self.head]),
                                    widgets.HBox([self.level, self.query]),
                                    self.figure.canvas if live else self.output])
        self._live = live
        self.detection_axes = None
        self.update()

    # ----------------------------------------------------------------- state
    @property
    def selection(self) -> dict:
        """The current choices: layer (0-based), head / level (None = all), query."""
        return {"layer": self.layer.value, "head": None if self.head.value == ALL else self.head.value,
                "level": None if self.level.value == ALL else self.level.value, "query": self.query.value}

    def _on_change(self, change) -> None:
        self.update()

    def nearest_query(self, x: float, y: float) -> int:
        """The detection (among the explorer's queries) whose box centre is nearest to pixel (x, y)."""
        h, w = self.picture.shape[:2]
        boxes = boxes_to_pixels(self.attention.layer_boxes[-1, self.queries], (h, w))  # (k, 4)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        distance = ((centres - torch.tensor([x, y])) ** 2).sum(-1)
        return self.queries[int(torch.argmin(distance))]

    def on_click(self, event) -> None:
        """``button_press_event`` handler: a click on the detections panel selects a query."""
        if event.inaxes is not self.detection_axes or event.xdata is None or event.ydata is None:
            return
        self.query.value = self.nearest_query(event.xdata, event.ydata)  # the observer redraws

    # ----------------------------------------------------------------- drawing
    def update(self) -> None:
        """Redraw the three panels for the current selection."""
        s = self.selection
        a = self.attention
        self.figure.clear()
        left, middle, right = self.figure.subplots(1, 3)
        self.detection_axes = left
        draw_detections(left, self.picture, a, self.queries, self.class_names)
        left.set_title(f"{len(self.queries)} detections (click one)", fontsize=8)
        levels = None if s["level"] is None else [s["level"]]
        draw_decoder_query(middle, self.picture, a, s["query"], s["layer"], s["head"], levels,
                           class_names=self.class_names)
        if a.encoder_locations is not None:
            token = tokens_for_points(a, a.layer_boxes[-1, s["query"], :2][None], 0)[0]
            draw_encoder_token(right, self.picture, a, token, -1, s["head"], levels)
        weight_colorbar(self.figure, [middle, right], "weight / max weight of its query or token", 0.7)
        self._show()

    def _show(self) -> None:
        if self._live:
            self.figure.canvas.draw_idle()
            return
        from IPython import get_ipython

        if get_ipython() is None:  # plain Python (tests): the figure is up to date, nothing to show
            return
        from IPython.display import display

        self.output.clear_output(wait=True)
        with self.output:
            display(self.figure)


__all__ = ["SamplingExplorer"]
