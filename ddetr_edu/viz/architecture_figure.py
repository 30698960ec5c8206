"""The whole detector as a block diagram, every tensor's shape written on it from a real forward
pass (:func:`ddetr_edu.viz.architecture_shapes.record_shapes`), so the picture cannot drift from
the code.

Top row: the image, the backbone maps C3..C5, the input projections (1x1 conv + GroupNorm; the
extra level a 3x3 stride-2 conv on C5), positions (sine code + level embedding), flattening.
Bottom row, read right to left: the encoder, the queries, the decoder, the heads. Returns a matplotlib ``Figure``
(no pyplot state), like every figure of ``ddetr_edu.viz``.
"""
from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ddetr_edu.viz.architecture_shapes import ArchitectureShapes

COLOURS = {"input": "#e8e8e8", "backbone": "#cfe2f3", "projection": "#d9ead3", "position": "#fff2cc",
           "encoder": "#f4cccc", "decoder": "#d9d2e9", "heads": "#fce5cd"}


def _layers(count: int) -> str:
    return f"{count} layer{'s' if count > 1 else ''}"


def _shape(shapes: ArchitectureShapes, name: str) -> str:
    """'name (1, 256, 25, 38)' for a recorded tensor."""
    return f"{name} {shapes[name]}"


def _box(ax: Axes, x: float, y: float, w: float, h: float, title: str, lines: list[str],
         kind: str, size: float = 8.5) -> None:
    """A rounded box with lower-left corner (x, y): a bold title and lines of text below it."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.3,rounding_size=0.8",
                                facecolor=COLOURS[kind], edgecolor="0.35", lw=1))
    ax.text(x + w / 2, y + h - 0.8, title, ha="center", va="top", fontsize=size + 0.5, weight="bold")
    ax.text(x + 0.8, y + h - 3.2, "\n".join(lines), ha="left", va="top", fontsize=size,
            family="monospace", linespacing=1.35)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], text: str = "") -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="0.25", lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.6, text, ha="center", va="bottom",
                fontsize=7.5, color="0.25")


def _draw_levels(ax: Axes, shapes: ArchitectureShapes, top: float, bottom: float) -> None:
    """Top row: image -> backbone maps -> projected levels -> positions -> flatten."""
    levels = shapes.cfg.transformer.num_feature_levels
    backbone = [r.name for r in shapes.records if r.name in ("C3", "C4", "C5")]
    row = min((top - bottom) / levels, 12.5)  # one row per level, at most 12.5 high
    middle = top - levels * row / 2
    _box(ax, 0, middle - 7, 11.5, 14, "image", [f"{shapes['images']}", "N 3 H W", "", "masks",
                                                  f"{shapes['masks']}", "N H W"], "input")
    for level in range(levels):
        y, h = top - (level + 1) * row + 0.8, row - 2.2
        x_rec = shapes.record(f"x{level}")
        if level < len(backbone):
            c = shapes.record(backbone[level])
            _box(ax, 15, y, 17, h, f"{c.name}  ({c.note})", [f"{c.shape}", "N C_l H_l W_l"], "backbone")
            _arrow(ax, (11.8, middle), (14.7, y + h / 2))
            _arrow(ax, (32.3, y + h / 2), (35.7, y + h / 2))
        else:  # an extra level: from C5 (the first) or the previous projected level
            source = (32.3, top - len(backbone) * row + 0.8 + h / 2) if level == len(backbone) \
                else (51, y + row + 0.3)
            ax.annotate("", xy=(35.7 if level == len(backbone) else 51, y + h / 2 if level == len(backbone)
                                else y + h + 0.3), xytext=source,
                        arrowprops=dict(arrowstyle="-|>", color="tab:red", lw=1.5, connectionstyle="arc3,rad=0.3"))
        extra = "  (extra level, 'C6')" if level == len(backbone) else "  (extra level)" if level > len(backbone) else ""
        _box(ax, 36, y, 30, h, f"x{level}{extra}", [x_rec.note, f"{x_rec.shape}  N C H_l W_l"], "projection")
        _box(ax, 69.5, y, 14, h, f"pos{level} = PE + e_{level}", [f"{shapes[f'pos{level}']}", "N C H_l W_l"],
             "position", size=8)
        _arrow(ax, (66.3, y + h / 2), (69.2, y + h / 2))
        _arrow(ax, (83.8, y + h / 2), (86.7, 75))
    sizes = [("S = " if level == 0 else "  + ") + f"{shapes[f'x{level}'][2]}*{shapes[f'x{level}'][3]}"
             for level in range(levels)]
    _box(ax, 87, 59, 13, 32, "flatten", [
        "tokens, pos", f"{shapes['tokens']}", "N S C", "", "level_embed", f"{shapes['level_embed']}", "L C",
        "", *sizes, f"  = {shapes['tokens'][1]}"], "position", size=8)


def _draw_transformer(ax: Axes, shapes: ArchitectureShapes, top: float) -> None:
    """Bottom row, right to left: encoder -> memory -> decoder (with its queries) -> heads."""
    cfg, t = shapes.cfg, shapes.cfg.transformer
    deformable = "enc_locations" in shapes
    sampled = [_shape(shapes, "enc_value"), _shape(shapes, "enc_locations"), _shape(shapes, "enc_weights")] \
        if deformable else ["dense attention over all S tokens"]
    _box(ax, 66, top - 24, 34, 24, f"encoder  x {_layers(t.enc_layers)}", [
        "in:  " + _shape(shapes, "tokens"), _shape(shapes, "enc_reference"),
        "MSDeformAttn (self), layer 0:" if deformable else "attention:", *sampled, "+ FFN, post-norm",
        "out: " + _shape(shapes, "memory")], "encoder")
    queries = ([_shape(shapes, "proposals"), f"top {cfg.num_queries} of them ->"] if cfg.two_stage
               else [_shape(shapes, "query_embed"), "split ->"])
    queries += [_shape(shapes, "tgt"), _shape(shapes, "query_pos"), _shape(shapes, "reference")]
    _box(ax, 30, top - 14, 32, 14, "queries" + ("  (two-stage)" if cfg.two_stage else ""), queries, "decoder")
    dec = [_shape(shapes, "dec0_reference"), "self-attention among the Q queries",
           "MSDeformAttn (cross) on memory, layer 0:" if deformable else "dense cross-attention on memory",
           *([_shape(shapes, "dec_locations"), _shape(shapes, "dec_weights")] if deformable else []),
           "+ FFN", "out: " + _shape(shapes, "dec0_out")]
    refine = "box refined each layer" if cfg.with_box_refine else "heads shared"
    _box(ax, 30, top - 38, 32, 20, f"decoder  x {_layers(t.dec_layers)}  ({refine})", dec, "decoder")
    _arrow(ax, (46, top - 14.4), (46, top - 17.6))
    _arrow(ax, (65.7, top - 21), (62.3, top - 21), "memory")
    if cfg.two_stage:
        _arrow(ax, (65.7, top - 7), (62.3, top - 7), "proposals")
    _box(ax, 0, top - 35, 26, 16, "heads (after every layer)", [
        "class: Linear(C, classes)", _shape(shapes, "pred_logits"), "", "box: MLP + reference",
        _shape(shapes, "pred_boxes")], "heads")
    _arrow(ax, (29.7, top - 27), (26.3, top - 27))


def plot_architecture(shapes: ArchitectureShapes) -> Figure:
    """The block diagram of the detector that recorded ``shapes`` (see the module docstring)."""
    cfg, t = shapes.cfg, shapes.cfg.transformer
    figure = Figure(figsize=(14, 9))
    ax = figure.add_axes((0.005, 0.005, 0.99, 0.95))
    ax.set_xlim(-1, 101)
    ax.set_ylim(4, 101)  # the bottom row ends at y = 6
    ax.axis("off")
    _draw_levels(ax, shapes, top=100, bottom=50)
    _draw_transformer(ax, shapes, top=44)
    _arrow(ax, (93.5, 58.7), (93.5, 44.5))
    figure.suptitle(f"Deformable DETR, recorded from one forward pass: {cfg.backbone.arch}, C = {t.d_model}, "
                    f"heads M = {t.n_heads}, levels L = {t.num_feature_levels}, points K = {t.enc_n_points}, "
                    f"queries Q = {cfg.num_queries}", fontsize=11)
    return figure
