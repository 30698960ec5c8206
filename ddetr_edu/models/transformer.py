"""The deformable transformer: flatten the levels, encode, choose the queries, decode.

Axis glossary: ``n`` batch, ``q`` queries, ``s`` tokens (sum of H_l * W_l), ``l`` levels,
``c`` model channels, ``h``/``w`` height/width.

1. Flatten: L maps (N, C, H_l, W_l) -> tokens (N, S, C); positions get a learned per-level
   embedding added (e_l, "level_embed"), so that a token knows which scale it comes from:
   pos = PE(x, y) + e_l.
2. Encode: ``DeformableEncoder`` (every token is a query).
3. Queries: either learned (``query_embed``: Q x 2C split into positional part and content,
   reference point = sigmoid(Linear(positional part))) or, for two-stage, the top-Q encoder
   proposals (see ``two_stage.py``). With DINO's mixed query selection (``ModelConfig.
   mixed_query_selection``) the proposals give the positional part only (``pos_trans``: 2C -> C)
   and the content is a learned ``content_embed`` (Q, C), the same for every image.
4. Decode: ``DeformableDecoder`` with the detector's class/box heads (``LayerHeads``).

``TransformerConfig.attention="dense"`` swaps the encoder's and the decoder's cross-attention for
DETR's dense attention and keeps everything else (``attention_choice.py``).

The level geometry is read off the maps once, as a ``Levels`` (Python ints), and handed to
everything below: nothing reads a level size back from the GPU.

Parameter names match the official ``transformer.*`` keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ddetr_edu.config import ModelConfig
from ddetr_edu.models.decoder import DeformableDecoder, LayerPrediction
from ddetr_edu.models.encoder import DeformableEncoder, valid_ratios
from ddetr_edu.models.heads import LayerHeads
from ddetr_edu.models.two_stage import encoder_proposals, proposal_position_embedding, top_proposals
from ddetr_edu.ops import Levels, MSDeformAttn
from ddetr_edu.ops.precision import autocast_off


@dataclass
class TransformerOutput:
    """Everything the transformer computed (shapes in the field comments)."""

    layers: list[LayerPrediction]  # one per decoder layer
    memory: Tensor  # (N, S, C) encoder output
    levels: Levels  # sizes ((H_l, W_l), ...) and starts (start_l, ...), Python ints
    valid_ratios: Tensor  # (N, L, 2) (w, h)
    init_reference: Tensor  # (N, Q, 2|4) reference of the first decoder layer
    enc_logits: Tensor | None = None  # (N, S, num_classes) two-stage proposal scores
    enc_boxes: Tensor | None = None  # (N, S, 4) two-stage proposal boxes (1.0 where invalid)
    encoder_attention: list[dict[str, Tensor]] | None = None


class DeformableTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        t = cfg.transformer
        self.d_model = t.d_model
        self.two_stage = cfg.two_stage
        self.num_queries = cfg.num_queries
        self.mixed_query_selection = cfg.mixed_query_selection
        self.level_embed = nn.Parameter(torch.empty(t.num_feature_levels, t.d_model))  # (L, C)
        common = dict(d_model=t.d_model, dim_feedforward=t.dim_feedforward, dropout=t.dropout,
                      n_levels=t.num_feature_levels, n_heads=t.n_heads, backend=t.attention_backend,
                      attention=t.attention)  # "dense": DETR's attention (attention_choice.py)
        self.encoder = DeformableEncoder(t.enc_layers, n_points=t.enc_n_points,
                                         own_level=not t.cross_level_attention, **common)
        self.decoder = DeformableDecoder(t.dec_layers, n_points=t.dec_n_points,
                                         look_forward_twice=cfg.look_forward_twice, **common)
        if cfg.two_stage:
            self.enc_output = nn.Linear(t.d_model, t.d_model)
            self.enc_output_norm = nn.LayerNorm(t.d_model)
            # the box's sine code (2C) -> positional part + content (2C), or, mixed, positional part (C)
            query_width = t.d_model if cfg.mixed_query_selection else 2 * t.d_model
            self.pos_trans = nn.Linear(2 * t.d_model, query_width)
            self.pos_trans_norm = nn.LayerNorm(query_width)
            if cfg.mixed_query_selection:
                self.content_embed = nn.Embedding(cfg.num_queries, t.d_model)  # (Q, C) static content
        else:
            self.reference_points = nn.Linear(t.d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Official init: Xavier-uniform for every matrix, then the deformable attention's own
        # init (offset star, uniform attention), a zero bias for the reference-point layer and
        # N(0, 1) level embeddings.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        if not self.two_stage:
            nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def forward(self, maps: list[Tensor], masks: list[Tensor], positions: list[Tensor],
                query_embed: Tensor | None, heads: LayerHeads, return_attention: bool = False
                ) -> TransformerOutput:
        """
        Args:
            maps: L projected maps (N, C, H_l, W_l); masks: L (N, H_l, W_l) bool True = padding;
            positions: L sine codes (N, C, H_l, W_l).
            query_embed: (Q, 2C) learned queries, or None for two-stage.
            heads: the detector's heads; two-stage also scores the proposals with them.
        """
        # 1. flatten the levels into one token axis; their sizes are read off the maps, once
        levels = Levels.from_maps(maps)
        tokens = torch.cat([rearrange(m, "n c h w -> n (h w) c") for m in maps], dim=1)  # (N, S, C)
        padding = torch.cat([rearrange(m, "n h w -> n (h w)") for m in masks], dim=1)  # (N, S)
        pos = torch.cat([rearrange(p, "n c h w -> n (h w) c") + self.level_embed[level].view(1, 1, -1)
                         for level, p in enumerate(positions)], dim=1)  # (N, S, C): PE + e_l
        ratios = torch.stack([valid_ratios(m) for m in masks], dim=1)  # (N, L, 2)

        # 2. encode
        memory, encoder_attention = self.encoder(tokens, pos, levels, ratios, padding,
                                                 return_attention=return_attention)

        # 3. queries and their references
        n, c = memory.shape[0], self.d_model
        enc_logits = enc_boxes = None
        if self.two_stage:
            proposal_memory, proposals = encoder_proposals(memory, padding, levels)
            # Scored in float32 even under autocast: the top-k choice below is a discrete decision,
            # and bf16 scores (8 significant bits) would reorder close proposals.
            with autocast_off(memory.device):
                proposal_memory = proposal_memory.to(self.enc_output.weight.dtype)
                proposal_memory = self.enc_output_norm(self.enc_output(proposal_memory))  # (N, S, C)
                enc_logits, enc_unactivated = heads.score_proposals(proposal_memory, proposals)
            enc_boxes = enc_unactivated.sigmoid()
            _, chosen = top_proposals(enc_logits[..., 0], enc_unactivated, self.num_queries)
            reference = chosen.sigmoid()  # (N, Q, 4) boxes
            code = proposal_position_embedding(chosen, num_feats=c // 2)  # (N, Q, 2C)
            if self.mixed_query_selection:  # DINO: position from the box, content learned
                query_pos = self.pos_trans_norm(self.pos_trans(code))  # (N, Q, C)
                tgt = self.content_embed.weight[None].expand(n, -1, -1)  # (N, Q, C)
            else:
                query_pos, tgt = self.pos_trans_norm(self.pos_trans(code)).split(c, dim=-1)  # (N, Q, C) each
        else:
            query_pos, tgt = query_embed.split(c, dim=-1)  # (Q, C) each
            query_pos = query_pos[None].expand(n, -1, -1)  # (N, Q, C)
            tgt = tgt[None].expand(n, -1, -1)
            reference = self.reference_points(query_pos).sigmoid()  # (N, Q, 2) points

        # 4. decode
        layers = self.decoder(tgt, query_pos, reference, memory, levels, ratios, padding, heads,
                              return_attention, memory_pos=pos)
        return TransformerOutput(layers, memory, levels, ratios, reference, enc_logits, enc_boxes,
                                 encoder_attention)
