"""Training configuration: one typed dataclass and its named presets.

The model is described by :class:`ddetr_edu.config.ModelConfig`; everything about *how* it is
trained (optimiser, schedule, batching, evaluation, checkpoints) lives here, in
:class:`TrainConfig`. Two presets exist:

* ``"coco"``: the paper's recipe (50 epochs, AdamW lr 2e-4, backbone 2e-5, drop x0.1 at 40,
  clip 0.1, batch 2 per GPU, DETR's multi-scale augmentation).
* ``"shapes_cpu"``: the synthetic-shapes demo that reaches AP >= 0.5 in minutes on 2 CPU cores.

Library code takes a :class:`TrainConfig`. Fields are changed, from typed values or from the
command line's strings, by :func:`ddetr_edu.config.with_overrides` (the one override mechanism):
``with_overrides(train_preset("coco"), {"lr": 1e-4, "epochs": "3"})``. Every field has a rule
(:data:`FIELD_RULES`); a value that breaks it is a one-line ``ValueError`` naming the field, so an
impossible value (``max_eval_images=-3``, ``device="tpu"``, ``betas=(0.9,)``) stops a run before it
starts.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

AmpMode = Optional[Literal["bf16", "fp16"]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A finite int or float (not a bool, NaN or inf)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Every TrainConfig field has one rule: (fields, the test a value must pass, what is expected).
FIELD_RULES: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (("epochs", "batch_size", "eval_every", "log_every", "lr_drop"), lambda v: _is_int(v) and v >= 1,
     "a positive int"),
    (("num_workers", "seed"), lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    (("max_steps_per_epoch", "max_eval_images"), lambda v: v is None or (_is_int(v) and v >= 1),
     "None (no limit) or an int >= 1"),
    (("lr",), lambda v: _is_real(v) and v > 0, "a finite number > 0"),
    (("lr_backbone", "lr_linear_proj_mult", "weight_decay", "clip_max_norm"), lambda v: _is_real(v) and v >= 0,
     "a finite number >= 0"),
    (("lr_drop_factor",), lambda v: _is_real(v) and 0 < v <= 1, "in (0, 1] (the lr is multiplied by it)"),
    (("betas",), lambda v: isinstance(v, tuple) and len(v) == 2 and all(_is_real(b) and 0 <= b < 1 for b in v),
     "two numbers in [0, 1) (Adam's beta1, beta2)"),
    (("crop_prob", "flip_prob"), lambda v: _is_real(v) and 0 <= v <= 1, "in [0, 1]"),
    (("find_unused_parameters", "scale_jitter"), lambda v: isinstance(v, bool), "True or False"),
    (("lr_linear_proj_names", "lr_backbone_names"),
     lambda v: isinstance(v, tuple) and all(isinstance(part, str) and part for part in v),
     "a tuple of non-empty parameter-name parts"),
    (("amp",), lambda v: v in (None, "bf16", "fp16"), "None, 'bf16' or 'fp16'"),
    (("augmentation",), lambda v: v in ("coco", "shapes"), "'coco' or 'shapes'"),
    (("device",), lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v) is not None,
     "'auto', 'cpu', 'cuda' or 'cuda:N' (whether CUDA exists is checked when training starts)"),
    (("image_size",), lambda v: _is_int(v) and v >= 8, "an int >= 8 (the shapes recipe crops to 5/8 of it)"),
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the paper's COCO recipe (Section 5 and the official code)."""

    epochs: int = 50  # paper: 50 epochs on COCO
    lr: float = 2e-4  # AdamW learning rate of the transformer and heads
    lr_backbone: float = 2e-5  # ResNet-50 learns 10x slower (paper, Section 5)
    lr_linear_proj_mult: float = 0.1  # sampling offsets / reference points learn at lr * 0.1
    lr_linear_proj_names: tuple[str, ...] = ("sampling_offsets", "reference_points")
    lr_backbone_names: tuple[str, ...] = ("backbone",)  # parameter names holding these -> lr_backbone
    weight_decay: float = 1e-4  # AdamW weight decay, every group
    betas: tuple[float, float] = (0.9, 0.999)  # Adam defaults, as in the paper
    lr_drop: int = 40  # StepLR: lr x0.1 after this many epochs (paper: at epoch 40)
    lr_drop_factor: float = 0.1  # the StepLR gamma
    clip_max_norm: float = 0.1  # gradient clipping (total L2 norm); 0 turns it off
    batch_size: int = 2  # images per process (paper: 2 per GPU x 8 GPUs = 16)
    num_workers: int = 2  # DataLoader worker processes per training process
    eval_every: int = 1  # COCO evaluation every N epochs (and always after the last)
    amp: AmpMode = None  # "bf16" (CUDA or CPU) or "fp16" (CUDA, with a GradScaler) autocast
    seed: int = 42  # seeds python, numpy, torch and the data order (+ rank in workers)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    max_steps_per_epoch: Optional[int] = None  # cut every epoch short (tests, fast notebooks)
    max_eval_images: Optional[int] = None  # evaluate on the first N validation images only
    log_every: int = 10  # steps between JSONL log lines
    find_unused_parameters: bool = False  # DDP flag; two-stage/refine use every parameter
    # data augmentation (ddetr_edu.data.transforms.TransformConfig is built from these)
    augmentation: Literal["coco", "shapes"] = "coco"  # DETR's COCO recipe, or it scaled to image_size
    image_size: int = 256  # "shapes": the images' side; scales 3/4..9/8 of it, crops 5/8..1
    scale_jitter: bool = True  # False: train at the evaluation scale only (fastest on a CPU)
    crop_prob: float = 0.5  # probability of DETR's resize-crop-resize branch
    flip_prob: float = 0.5  # horizontal flip

    def __post_init__(self) -> None:
        for names, ok, expected in FIELD_RULES:
            for name in names:
                if not ok(getattr(self, name)):
                    raise ValueError(f"TrainConfig.{name} must be {expected}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (tuples kept), safe for ``torch.save`` + ``weights_only=True`` and JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise (a checkpoint from another version)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainConfig.from_dict: unknown keys {unknown}; known: {sorted(known)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fixed)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # The paper's recipe, 8 GPUs x batch 2.
    "coco": TrainConfig(),
    # Synthetic shapes on 2 CPU cores (`make demo`): 96 px images at one scale, no crop, batch 4
    # (twice the updates of batch 8 for the same compute: better in a short run), a higher lr
    # than COCO's for the small from-scratch model, the backbone at the same lr (it is not
    # pre-trained), lr x0.1 for the last 4 of 21 epochs over the demo's 2000 training images
    # (about 10 500 steps, the most that fit `make demo`'s 15 minutes with room to spare).
    "shapes_cpu": TrainConfig(
        epochs=21,
        lr=5e-4,
        lr_backbone=5e-4,
        lr_drop=17,
        clip_max_norm=0.1,
        batch_size=4,
        num_workers=0,  # measured: 1 worker made an epoch 35% slower (29 s -> 39 s)
        eval_every=3,
        device="cpu",
        log_every=10,
        augmentation="shapes",
        image_size=96,
        scale_jitter=False,
        crop_prob=0.0,
    ),
}


def train_preset(name: str) -> TrainConfig:
    """The named :class:`TrainConfig` preset (``"coco"`` or ``"shapes_cpu"``)."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; expected one of {sorted(TRAIN_PRESETS)}")
    return TRAIN_PRESETS[name]


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    """``config`` for ``epochs`` epochs, the last fifth of them (at least one) at lr x0.1, as in the
    ``shapes_cpu`` preset (a ValueError for ``epochs`` < 1)."""
    if not _is_int(epochs) or epochs < 1:
        raise ValueError(f"epochs: expected an integer >= 1, got {epochs!r}")
    return dataclasses.replace(config, epochs=epochs, lr_drop=max(1, epochs - max(1, round(epochs / 5))))


__all__ = ["AmpMode", "TrainConfig", "TRAIN_PRESETS", "train_preset", "with_epochs"]
