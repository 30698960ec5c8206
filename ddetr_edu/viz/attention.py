"""What the detector looked at, for one image: :class:`ImageAttention`.

Axis glossary: ``d`` decoder layers, ``e`` encoder layers, ``q`` queries, ``s`` tokens,
``m`` heads, ``l`` levels, ``k`` sampling points.

``model(images, masks, return_attention=True)`` returns, under ``outputs["attention"]``, the
sampling locations and attention weights of every deformable attention layer for the whole
batch. :func:`attention_from_outputs` takes one image out of that batch, on the CPU, with
everything the pictures need:

* the decoder: locations ``(D, Q, M, L, K, 2)`` and weights ``(D, Q, M, L, K)`` of each layer,
  the reference each layer used ``(D, Q, 2|4)`` and the box each layer predicted ``(D, Q, 4)``;
* the detections: per query the best class probability ``max_c sigmoid(logit_qc)`` and its class;
* the encoder: locations ``(E, S', M, L, K, 2)`` and weights of ``S'`` tokens (all tokens, or a
  subset, see :meth:`ImageAttention.restrict_encoder`);
* the level geometry: ``spatial_shapes (L, 2)`` rows (H_l, W_l), ``level_start_index (L,)`` and
  the valid ratios ``(L, 2)`` (w, h) of this image.

Coordinates: sampling locations are normalised to the *padded* level maps; references and
boxes to the *valid* (unpadded) image. ``ddetr_edu.viz.coordinates`` converts both to pixels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class ImageAttention:
    """Sampling locations and weights of one image (shapes in the field comments)."""

    spatial_shapes: Tensor  # (L, 2) int64 rows (H_l, W_l)
    level_start_index: Tensor  # (L,) int64, first token of each level
    valid_ratios: Tensor  # (L, 2) (w, h): valid fraction of each padded level map
    decoder_locations: Tensor  # (D, Q, M, L, K, 2) normalised (x, y) on the padded maps
    decoder_weights: Tensor  # (D, Q, M, L, K), sum over (l, k) = 1 per head
    decoder_references: Tensor  # (D, Q, 2) points or (D, Q, 4) boxes cxcywh, valid-normalised
    layer_boxes: Tensor  # (D, Q, 4) cxcywh valid-normalised: the box each layer predicted
    scores: Tensor  # (Q,) max_c sigmoid(logit) of the last layer
    labels: Tensor  # (Q,) int64 the class reaching that score
    encoder_locations: Tensor | None = None  # (E, S', M, L, K, 2)
    encoder_weights: Tensor | None = None  # (E, S', M, L, K)
    encoder_tokens: Tensor | None = None  # (S',) token indices held; None: all S tokens

    # ------------------------------------------------------------------ sizes
    @property
    def num_decoder_layers(self) -> int:
        return self.decoder_locations.shape[0]

    @property
    def num_encoder_layers(self) -> int:
        return 0 if self.encoder_locations is None else self.encoder_locations.shape[0]

    @property
    def num_heads(self) -> int:
        return self.decoder_locations.shape[2]

    @property
    def num_levels(self) -> int:
        return self.decoder_locations.shape[3]

    @property
    def num_queries(self) -> int:
        return self.decoder_locations.shape[1]

    # ------------------------------------------------------------------ checked selection
    def layer_index(self, layer: int, encoder: bool = False) -> int:
        """``layer`` (negative counts from the end) as an index in ``0..layers-1``; ValueError else."""
        count = self.num_encoder_layers if encoder else self.num_decoder_layers
        name = "encoder" if encoder else "decoder"
        if count == 0:
            raise ValueError(f"layer: no {name} attention was captured")
        if not -count <= layer < count:
            raise ValueError(f"layer: expected a {name} layer in {-count}..{count - 1} "
                             f"(-1 = last), got {layer}")
        return layer % count

    def check_head(self, head: int | None) -> None:
        """``head`` must be None (all heads) or in ``0..M-1``."""
        if head is not None and not 0 <= head < self.num_heads:
            raise ValueError(f"head: expected None (all heads) or 0..{self.num_heads - 1}, got {head}")

    def check_level(self, level: int) -> None:
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level: expected 0..{self.num_levels - 1}, got {level}")

    def top_queries(self, top_k: int, score_threshold: float = 0.0) -> Tensor:
        """Indices (k,) of the ``top_k`` best-scoring queries with score >= threshold, best first."""
        if top_k < 1:
            raise ValueError(f"top_k: expected >= 1, got {top_k}")
        order = torch.argsort(self.scores, descending=True)[:top_k]
        return order[self.scores[order] >= score_threshold]

    def encoder_row(self, token: int) -> int:
        """Row of ``token`` (a flattened token index) in the encoder arrays."""
        if self.encoder_locations is None:
            raise ValueError("no encoder attention was captured (run the model with return_attention=True)")
        if self.encoder_tokens is None:
            return int(token)
        rows = (self.encoder_tokens == token).nonzero()
        if len(rows) == 0:
            raise ValueError(f"token {token} is not among the captured encoder tokens "
                             f"{self.encoder_tokens.tolist()}")
        return int(rows[0, 0])

    def restrict_encoder(self, tokens: Tensor) -> "ImageAttention":
        """A copy holding the encoder sampling of ``tokens`` (P,) only (small enough to store)."""
        rows = torch.as_tensor([self.encoder_row(int(t)) for t in tokens], dtype=torch.long)
        return dataclasses.replace(self, encoder_locations=self.encoder_locations[:, rows].clone(),
                                   encoder_weights=self.encoder_weights[:, rows].clone(),
                                   encoder_tokens=torch.as_tensor(tokens, dtype=torch.long).clone())

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Tensor | None]:
        """Plain dict of tensors (loads with ``torch.load(..., weights_only=True)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "ImageAttention":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in values and cls.__dataclass_fields__[n].default
                         is dataclasses.MISSING)
        if missing:
            raise ValueError(f"ImageAttention.from_dict: missing entries {missing}")
        return cls(**{k: v for k, v in values.items() if k in names})


def attention_from_outputs(outputs: dict, index: int = 0) -> ImageAttention:
    """Image ``index`` of a batch output of ``model(..., return_attention=True)``, on the CPU.

    Per-layer boxes come from ``aux_outputs`` (earlier layers) and ``pred_boxes`` (last layer);
    without ``aux_outputs`` every layer is given the last layer's boxes.
    """
    if "attention" not in outputs:
        raise ValueError("outputs: no 'attention' entry; call the model with return_attention=True")
    att = outputs["attention"]
    n = outputs["pred_logits"].shape[0]
    if not 0 <= index < n:
        raise ValueError(f"index: expected an image of the batch, 0..{n - 1}, got {index}")

    def one(t: Tensor) -> Tensor:
        return t[index].detach().float().cpu()

    decoder = att["decoder"]
    last_boxes = one(outputs["pred_boxes"])  # (Q, 4)
    aux = outputs.get("aux_outputs") or []
    if len(aux) == len(decoder) - 1:
        layer_boxes = torch.stack([one(a["pred_boxes"]) for a in aux] + [last_boxes])
    else:
        layer_boxes = last_boxes[None].expand(len(decoder), -1, -1).clone()
    probs = one(outputs["pred_logits"]).sigmoid()  # (Q, C)
    scores, labels = probs.max(dim=-1)
    encoder = att.get("encoder") or []
    return ImageAttention(
        spatial_shapes=att["spatial_shapes"].detach().cpu().long(),
        level_start_index=att["level_start_index"].detach().cpu().long(),
        valid_ratios=one(att["valid_ratios"]),
        decoder_locations=torch.stack([one(p["locations"]) for p in decoder]),
        decoder_weights=torch.stack([one(p["weights"]) for p in decoder]),
        decoder_references=torch.stack([one(r) for r in att["decoder_references"]]),
        layer_boxes=layer_boxes,
        scores=scores,
        labels=labels,
        encoder_locations=torch.stack([one(p["locations"]) for p in encoder]) if encoder else None,
        encoder_weights=torch.stack([one(p["weights"]) for p in encoder]) if encoder else None,
    )


@torch.no_grad()
def compute_attention(model: nn.Module, images: Tensor, masks: Tensor | None = None) -> list[ImageAttention]:
    """Run ``model`` in eval mode on ``images`` (N, 3, H, W) (padding ``masks`` (N, H, W) or None)
    and return one :class:`ImageAttention` per image. The model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        outputs = model(images.to(device), None if masks is None else masks.to(device),
                        return_attention=True)
    finally:
        model.train(was_training)
    return [attention_from_outputs(outputs, i) for i in range(images.shape[0])]


__all__ = ["ImageAttention", "attention_from_outputs", "compute_attention"]
