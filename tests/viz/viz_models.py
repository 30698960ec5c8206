"""Small detectors shared by the visualizer tests."""
from __future__ import annotations

import torch

from ddetr_edu.config import get_preset
from ddetr_edu.models import build_detector

# a tiny shapes-like detector (small CNN, 4 levels); refine + two-stage gives box references
TINY = dict(arch="small_cnn", small_cnn_channels=(8, 8, 16, 16), d_model=32, n_heads=2, enc_layers=1,
            dec_layers=2, dim_feedforward=32, dropout=0.0, num_queries=6, num_classes=3,
            attention_backend="grid_sample")


def tiny_detector(two_stage: bool, seed: int = 0, trained_like: bool = True):
    """A tiny detector; ``trained_like`` perturbs the sampling layers so that offsets and weights
    depend on the query (freshly initialised they are the constant star and uniform weights)."""
    torch.manual_seed(seed)
    preset = "multiscale_refine_twostage" if two_stage else "multiscale"
    model = build_detector(get_preset(preset, **TINY)).eval()
    if trained_like:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "sampling_offsets" in name or "attention_weights" in name:
                    p.add_(torch.randn_like(p) * 0.5)
                if "bbox_embed" in name and p.dim() == 2:
                    p.add_(torch.randn_like(p) * 0.2)
    return model
