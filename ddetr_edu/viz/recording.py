"""Recording the sampling pattern while the detector trains.

A :class:`SamplingRecorder` holds a fixed probe batch (a few validation images) and, for each
image, fixed probe points (valid-normalised (x, y), e.g. the objects' centres). Each call
``recorder(model, epoch)`` runs the model in eval mode with ``return_attention=True`` under
``no_grad`` (no random numbers are drawn, so training is unaffected) and stores, per image:

* the decoder: every layer's locations (D, Q, M, L, K, 2), weights, references, boxes, scores;
* the encoder: every layer's locations (E, P, M, L, K, 2) and weights of the P tokens of level
  ``query_level`` under the probe points;

as one entry of the history file (``sampling_history.pt`` in the run folder, rewritten
atomically after each call). Epoch 0 is the pattern before training: the star of the paper's
initialisation. The history is a plain dict that loads with ``torch.load(weights_only=True)``:

    {"format": HISTORY_FORMAT, "pictures": [(h, w, 3) uint8], "probe_points": [(P_i, 2)],
     "query_level": int, "records": [{"epoch": int, "images": [ImageAttention.to_dict()]}],
     "class_names": [str] or None}

(``class_names``, the labels' names, may be missing in histories written before it existed.)

``ddetr_edu.viz.evolution`` turns it into frames and a GIF.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ddetr_edu.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ddetr_edu.models.inputs import pad_images
from ddetr_edu.checkpoints.training_state import atomic_torch_save
from ddetr_edu.viz.attention import compute_attention
from ddetr_edu.viz.encoder_figures import tokens_for_points

HISTORY_FORMAT = "ddetr_edu.sampling_history.v1"
HISTORY_FILE = "sampling_history.pt"


def denormalise(image: Tensor) -> Tensor:
    """ImageNet-normalised (3, h, w) -> (h, w, 3) uint8 picture: x * std + mean, times 255."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = (image.detach().cpu().float() * std + mean).clamp(0, 1)
    return (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


class SamplingRecorder:
    """Stores the sampling pattern of fixed probes, once per call (see the module docstring).

    Args:
        probe_images: ImageNet-normalised (3, h_i, w_i) model inputs (padded into one batch).
        path: the history file (e.g. ``run_dir / HISTORY_FILE``).
        probe_points: per image (P_i, 2) valid-normalised (x, y) or None; default the image centre.
        query_level: level of the encoder tokens under the probe points (0 = finest).
        keep_existing: continue the history already in ``path`` (a resumed run) instead of
            starting a new one.
        class_names: the labels' names (stored for the pictures' labels), or None.
    """

    def __init__(self, probe_images: Sequence[Tensor], path: str | os.PathLike,
                 probe_points: Sequence[Tensor] | None = None, query_level: int = 0,
                 keep_existing: bool = False, class_names: Sequence[str] | None = None) -> None:
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        if len(probe_images) == 0:
            raise ValueError("probe_images: expected at least one image")
        self.images, self.masks = pad_images(list(probe_images))  # (N, 3, H, W), (N, H, W)
        self.pictures = [denormalise(image) for image in probe_images]
        if probe_points is None:
            probe_points = [torch.tensor([[0.5, 0.5]]) for _ in probe_images]
        if len(probe_points) != len(probe_images):
            raise ValueError(f"probe_points: expected one (P, 2) tensor per probe image "
                             f"({len(probe_images)}), got {len(probe_points)}")
        centre = torch.tensor([[0.5, 0.5]])
        self.probe_points = [centre if p is None else torch.as_tensor(p, dtype=torch.float32).reshape(-1, 2)
                             for p in probe_points]
        self.query_level = query_level
        self.path = Path(path)
        self.records: list[dict] = []
        if keep_existing and self.path.is_file():
            self.records = list(load_sampling_history(self.path)["records"])

    @classmethod
    def from_dataset(cls, dataset, path: str | os.PathLike, count: int = 2, query_level: int = 0,
                     keep_existing: bool = False) -> "SamplingRecorder":
        """Probes = the first ``count`` images of ``dataset`` (evaluation transforms), probe points =
        the centres of their ground-truth boxes (the image centre for an image without objects)."""
        if len(dataset) == 0:
            raise ValueError("dataset: expected at least one image for the probes, got an empty dataset")
        images, points = [], []
        for index in range(min(count, len(dataset))):
            image, target = dataset[index]
            images.append(image)
            points.append(target["boxes"][:, :2].clone() if len(target["boxes"]) else None)  # cxcywh -> centres
        return cls(images, path, points, query_level, keep_existing, getattr(dataset, "class_names", None))

    @torch.no_grad()
    def record(self, model: nn.Module, epoch: int) -> None:
        """Run ``model`` on the probes and store the result as epoch ``epoch`` (replacing an
        earlier entry of the same epoch); the history file is rewritten atomically."""
        attentions = compute_attention(model, self.images, self.masks)
        images = []
        for attention, points in zip(attentions, self.probe_points):
            tokens = tokens_for_points(attention, points, self.query_level)
            images.append(attention.restrict_encoder(torch.tensor(tokens)).to_dict())
        self.records = [r for r in self.records if r["epoch"] != int(epoch)]
        self.records.append({"epoch": int(epoch), "images": images})
        self.records.sort(key=lambda r: r["epoch"])
        atomic_torch_save(self.history(), self.path)

    __call__ = record  # usable as the training loop's epoch callback: callback(model, epoch)

    def history(self) -> dict:
        """The history dict (see the module docstring)."""
        return {"format": HISTORY_FORMAT, "pictures": self.pictures, "probe_points": self.probe_points,
                "query_level": self.query_level, "records": self.records, "class_names": self.class_names}


def load_sampling_history(path: str | os.PathLike) -> dict:
    """Read a history written by :class:`SamplingRecorder` (safely: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sampling history not found: {path}")
    history = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(history, dict) or history.get("format") != HISTORY_FORMAT:
        raise ValueError(f"{path} is not a sampling history (format {HISTORY_FORMAT!r})")
    return history


__all__ = ["HISTORY_FORMAT", "HISTORY_FILE", "SamplingRecorder", "denormalise", "load_sampling_history"]
