"""Every tensor's shape in one real forward pass of the detector, recorded with forward hooks.

``record_shapes(model, images)`` runs the detector once (eval mode, no gradients) with hooks on
its parts and returns an :class:`ArchitectureShapes`: one :class:`RecordedShape` per tensor, in
the order the forward pass made them. The names (glossary: N batch, C d_model, L levels,
S tokens = sum of H_l W_l, M heads, K points, Q queries):

* ``images`` (N, 3, H, W), ``masks`` (N, H, W);
* ``C3``, ``C4``, ``C5`` backbone maps (N, C_l, H_l, W_l) (``C5`` alone for one level);
* ``x0`` .. ``x{L-1}`` projected levels (N, C, H_l, W_l), after conv + GroupNorm(32): 1x1 convs
  on the backbone maps, a 3x3 stride-2 conv on C5 for the extra level ("C6");
* ``pos0`` .. sine positional encodings (N, C, H_l, W_l); ``level_embed`` (L, C) (a parameter);
* ``tokens``, ``token_pos`` (N, S, C): the levels flattened and concatenated (pos = PE + e_l);
* ``enc_reference`` (N, S, L, 2); ``enc_value`` (N, S, M, D) (D = C / M), ``enc_locations``
  (N, S, M, L, K, 2), ``enc_weights`` (N, S, M, L, K) of encoder layer 0 (deformable attention
  only); ``memory`` (N, S, C), the encoder's output;
* ``query_embed`` (Q, 2C) (learned queries; absent for two-stage, which records
  ``proposals`` (N, S, 4) instead); ``tgt``, ``query_pos`` (N, Q, C); ``reference`` (N, Q, 2|4);
* per decoder layer d: ``dec{d}_reference`` (N, Q, L, 2|4) (the reference on every level),
  ``dec{d}_out`` (N, Q, C); ``dec_locations`` (N, Q, M, L, K, 2), ``dec_weights`` (N, Q, M, L, K)
  of decoder layer 0 (deformable attention only);
* ``pred_logits`` (N, Q, num_classes), ``pred_boxes`` (N, Q, 4).

``shapes_implied_by_config(cfg, height, width, batch)`` gives the same names' shapes from the
config and the image size alone (level sizes ceil(H / stride)); ``shape_mismatches`` compares.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ddetr_edu.config import ModelConfig
from ddetr_edu.models.detector import DeformableDETR
from ddetr_edu.models.resnet import RESNET_SPECS
from ddetr_edu.ops import MSDeformAttn


@dataclass(frozen=True)
class RecordedShape:
    """One tensor of the forward pass."""

    name: str  # e.g. "C3", "x3", "memory" (see the module docstring)
    axes: str  # its axes, e.g. "N C H W"
    shape: tuple[int, ...]
    note: str = ""  # what made it, e.g. "conv 3x3/2 2048->256 + GroupNorm(32)"


@dataclass
class ArchitectureShapes:
    """The recorded shapes of one forward pass, with the config of the model that made them."""

    cfg: ModelConfig
    records: list[RecordedShape]

    def __getitem__(self, name: str) -> tuple[int, ...]:
        return self.record(name).shape

    def record(self, name: str) -> RecordedShape:
        """The whole record (name, axes, shape, note) of the tensor ``name``."""
        for record in self.records:
            if record.name == name:
                return record
        raise KeyError(f"no recorded tensor named {name!r}; recorded: {[r.name for r in self.records]}")

    def __contains__(self, name: str) -> bool:
        return any(r.name == name for r in self.records)

    def table(self) -> str:
        """One line per tensor: name, axes, shape, note."""
        lines = [f"{'tensor':<16}{'axes':<16}{'shape':<26}what made it"]
        for r in self.records:
            lines.append(f"{r.name:<16}{r.axes:<16}{str(r.shape):<26}{r.note}")
        return "\n".join(lines)


def _projection_note(projection: nn.Sequential) -> str:
    conv, norm = projection[0], projection[1]
    size, stride = conv.kernel_size[0], conv.stride[0]
    kind = f"conv {size}x{size}" + (f"/{stride}" if stride > 1 else "")
    return f"{kind} {conv.in_channels}->{conv.out_channels} + GroupNorm({norm.num_groups})"


class _ShapeHooks:
    """Forward (pre-)hooks on the detector's parts; each appends the shapes it sees to ``records``
    in the order the forward pass meets them. ``install`` returns the handles to remove."""

    def __init__(self, model: DeformableDETR, records: list[RecordedShape]) -> None:
        self.model, self.cfg, self.records = model, model.cfg, records

    def add(self, name: str, axes: str, tensor: Tensor | tuple[int, ...], note: str = "") -> None:
        shape = tensor.shape if isinstance(tensor, Tensor) else tensor
        self.records.append(RecordedShape(name, axes, tuple(shape), note))

    def backbone(self, module, args, output) -> None:
        self.add("images", "N 3 H W", args[0])
        self.add("masks", "N H W", args[1], "True on padding")
        for level, stride, (feature, _) in zip(module.return_levels, module.strides, output):
            self.add(f"C{level + 1}", "N C_l H_l W_l", feature, f"{self.cfg.backbone.arch}, stride {stride}")

    def projection(self, level: int):
        return lambda module, args, output: self.add(f"x{level}", "N C H_l W_l", output, _projection_note(module))

    def position(self, module, args, output) -> None:
        level = sum(r.name.startswith("pos") for r in self.records)  # called once per level, in order
        self.add(f"pos{level}", "N C H_l W_l", output, "sine code of (x, y)")

    def encoder_input(self, module, args) -> None:
        self.add("level_embed", "L C", tuple(self.model.transformer.level_embed.shape),
                 "learned, one vector e_l per level")
        self.add("tokens", "N S C", args[0], "levels flattened, concatenated")
        self.add("token_pos", "N S C", args[1], "PE + level embedding e_l")

    def encoder_layer_input(self, module, args) -> None:
        self.add("enc_reference", "N S L 2", args[2], "each token's own centre, on every level")

    def value(self, module, args, output) -> None:
        m = self.cfg.transformer.n_heads
        self.add("enc_value", "N S M D", (*output.shape[:-1], m, output.shape[-1] // m),
                 "value_proj, split into M heads of D = C/M")

    def attention(self, prefix: str, queries: str):
        def hook(module, args, output):
            if isinstance(output, tuple) and len(output) == 3:  # MSDeformAttn with return_sampling
                k = output[1].shape[-2]
                self.add(f"{prefix}_locations", f"N {queries} M L K 2", output[1], f"K = {k} points per head and level")
                self.add(f"{prefix}_weights", f"N {queries} M L K", output[2], "softmax over the L K samples of a head")
        return hook

    def memory(self, module, args, output) -> None:
        self.add("memory", "N S C", output[0], f"{len(module.layers)} encoder layers")

    def proposals(self, module, args, output) -> None:
        self.add("proposals", "N S 4", output, "a box per token; the top Q become the queries")

    def decoder_input(self, module, args) -> None:
        if not self.cfg.two_stage:
            self.add("query_embed", "Q 2C", self.model.query_embed.weight, "learned: position | content")
        ref = args[2]
        self.add("tgt", "N Q C", args[0], "query content")
        self.add("query_pos", "N Q C", args[1], "query position")
        self.add("reference", f"N Q {ref.shape[-1]}", ref,
                 "box (cx, cy, w, h)" if ref.shape[-1] == 4 else "point (x, y)")

    def decoder_layer_input(self, layer: int):
        def hook(module, args):
            ref = args[2]
            self.add(f"dec{layer}_reference", f"N Q L {ref.shape[-1]}", ref, "the reference on every level")
        return hook

    def decoder_layer(self, layer: int):
        def hook(module, args, output):
            self.add(f"dec{layer}_out", "N Q C", output[0] if isinstance(output, tuple) else output,
                     "self-attn, deformable cross-attn, FFN")
        return hook

    def install(self) -> list:
        model = self.model
        encoder, decoder = model.transformer.encoder, model.transformer.decoder
        hooks = [(model.backbone, self.backbone), (model.position, self.position), (encoder, self.memory),
                 (encoder.layers[0].self_attn, self.attention("enc", "S")),
                 (decoder.layers[0].cross_attn, self.attention("dec", "Q"))]
        hooks += [(p, self.projection(level)) for level, p in enumerate(model.input_proj)]
        hooks += [(layer, self.decoder_layer(d)) for d, layer in enumerate(decoder.layers)]
        if isinstance(encoder.layers[0].self_attn, MSDeformAttn):
            hooks.append((encoder.layers[0].self_attn.value_proj, self.value))
        if self.cfg.two_stage:  # the last box head scores every token's proposal
            hooks.append((model.bbox_embed[-1], self.proposals))
        pre_hooks = [(encoder, self.encoder_input), (encoder.layers[0], self.encoder_layer_input),
                     (decoder, self.decoder_input)]
        pre_hooks += [(layer, self.decoder_layer_input(d)) for d, layer in enumerate(decoder.layers)]
        return ([module.register_forward_hook(hook) for module, hook in hooks]
                + [module.register_forward_pre_hook(hook) for module, hook in pre_hooks])


def record_shapes(model: DeformableDETR, images: Tensor, masks: Tensor | None = None) -> ArchitectureShapes:
    """Run ``model`` once on images (N, 3, H, W) (masks (N, H, W) bool or None) and record the
    shape of every tensor named in the module docstring. The model is put in eval mode."""
    if not isinstance(model, DeformableDETR):
        raise ValueError(f"model: expected a DeformableDETR (ddetr_edu.models.build_detector), "
                         f"got {type(model).__name__}")
    records: list[RecordedShape] = []
    handles = _ShapeHooks(model, records).install()
    deformable = model.cfg.transformer.attention == "deformable"
    try:
        model.eval()
        with torch.no_grad():
            outputs = model(images, masks, return_attention=deformable)
    finally:
        for handle in handles:
            handle.remove()
    records.append(RecordedShape("pred_logits", "N Q classes", tuple(outputs["pred_logits"].shape),
                                 "sigmoid logits, last decoder layer"))
    records.append(RecordedShape("pred_boxes", "N Q 4", tuple(outputs["pred_boxes"].shape),
                                 "cx cy w h in [0, 1]"))
    return ArchitectureShapes(model.cfg, records)




def level_sizes(cfg: ModelConfig, height: int, width: int) -> list[tuple[int, int]]:
    """(H_l, W_l) of every level for an H x W image: ceil(H / stride) (every stride-2 step pads
    so that it rounds up); strides 8, 16, 32 (C5: 16 with dilation), each extra level halves
    the previous one."""
    last = 16 if cfg.backbone.dilation else 32
    strides = [last] if cfg.num_backbone_levels == 1 else [8, 16, last]
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in strides]
    while len(sizes) < cfg.transformer.num_feature_levels:
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def backbone_channels(cfg: ModelConfig) -> tuple[int, ...]:
    """Channels of the backbone maps the detector reads (C3, C4, C5 or C5 alone)."""
    if cfg.backbone.arch == "small_cnn":
        channels = tuple(cfg.backbone.small_cnn_channels[1:])
    else:
        # C3..C5 from the block type (resnet.RESNET_SPECS): basic blocks keep 128, 256, 512
        # channels, bottlenecks expand them 4 times
        expansion = 4 if RESNET_SPECS[cfg.backbone.arch][1] == "bottleneck" else 1
        channels = tuple(planes * expansion for planes in (128, 256, 512))
    return channels[-cfg.num_backbone_levels:]


def shapes_implied_by_config(cfg: ModelConfig, height: int, width: int,
                             batch: int = 1) -> dict[str, tuple[int, ...]]:
    """name -> shape that ``cfg`` implies for a batch of ``batch`` H x W images (no model is run)."""
    t, n, q = cfg.transformer, batch, cfg.num_queries
    c, m, levels = t.d_model, t.n_heads, t.num_feature_levels
    sizes = level_sizes(cfg, height, width)
    s = sum(h * w for h, w in sizes)
    names = ["C5"] if cfg.num_backbone_levels == 1 else ["C3", "C4", "C5"]
    ref = 4 if cfg.with_box_refine and cfg.two_stage else 2
    shapes = {"images": (n, 3, height, width), "masks": (n, height, width), "level_embed": (levels, c),
              "tokens": (n, s, c), "token_pos": (n, s, c), "memory": (n, s, c),
              "enc_reference": (n, s, levels, 2), "tgt": (n, q, c), "query_pos": (n, q, c),
              "reference": (n, q, ref), "pred_logits": (n, q, cfg.num_classes), "pred_boxes": (n, q, 4)}
    for name, channels, (h, w) in zip(names, backbone_channels(cfg), sizes):
        shapes[name] = (n, channels, h, w)
    for level, (h, w) in enumerate(sizes):
        shapes[f"x{level}"] = shapes[f"pos{level}"] = (n, c, h, w)
    for d in range(t.dec_layers):
        refined = cfg.with_box_refine and (d > 0 or cfg.two_stage)  # later layers get boxes
        shapes[f"dec{d}_reference"] = (n, q, levels, 4 if refined else 2)
        shapes[f"dec{d}_out"] = (n, q, c)
    if cfg.two_stage:
        shapes["proposals"] = (n, s, 4)
    else:
        shapes["query_embed"] = (q, 2 * c)
    if t.attention == "deformable":
        shapes["enc_locations"] = (n, s, m, levels, t.enc_n_points, 2)
        shapes["enc_weights"] = (n, s, m, levels, t.enc_n_points)
        shapes["dec_locations"] = (n, q, m, levels, t.dec_n_points, 2)
        shapes["dec_weights"] = (n, q, m, levels, t.dec_n_points)
        shapes["enc_value"] = (n, s, m, c // m)
    return shapes


def shape_mismatches(recorded: ArchitectureShapes, expected: dict[str, tuple[int, ...]]) -> list[str]:
    """One line per name whose recorded shape differs from ``expected`` (or that is missing on
    either side); empty when every shape agrees."""
    problems = [f"{name}: recorded {recorded[name]}, expected {shape}"
                for name, shape in expected.items() if name in recorded and recorded[name] != shape]
    problems += [f"{name}: expected {expected[name]}, not recorded" for name in expected if name not in recorded]
    problems += [f"{r.name}: recorded {r.shape}, no expectation" for r in recorded.records if r.name not in expected]
    return problems
