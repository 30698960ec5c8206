"""Checkpoints: our training state, telling the two kinds apart, and official Deformable DETR weights.

* ``training_state``: what a ddetr_edu training checkpoint holds; atomic writing; RNG states;
  restoring a model, optimiser, scheduler and scaler from one;
* ``reading``: which kind a file is (``"ddetr_edu"`` or ``"official"``), told in one place;
  :func:`load_checkpoint` reads ours;
* ``official``: converting and loading checkpoints of the official Deformable DETR;
* ``safe_load``: ``torch.load`` with ``weights_only=True`` (no arbitrary pickled code);
* ``reference``: the shipped, trained shapes model (``load_reference_model``), made by
  ``make reference-model``.
"""
from ddetr_edu.checkpoints.official import (config_from_official_args, convert_official_state_dict,
                                            load_converted_state_dict, load_official_checkpoint)
from ddetr_edu.checkpoints.reading import CheckpointKind, kind_of, load_checkpoint, read_checkpoint
from ddetr_edu.checkpoints.safe_load import safe_torch_load
from ddetr_edu.checkpoints.training_state import (CHECKPOINT_FORMAT, atomic_torch_save, build_checkpoint,
                                                  capture_rng_state, restore_rng_state, restore_training_state,
                                                  unwrap_model)

__all__ = ["config_from_official_args", "convert_official_state_dict", "load_converted_state_dict",
           "load_official_checkpoint", "CheckpointKind", "kind_of", "load_checkpoint", "read_checkpoint",
           "safe_torch_load", "CHECKPOINT_FORMAT", "atomic_torch_save", "build_checkpoint", "capture_rng_state",
           "restore_rng_state", "restore_training_state", "unwrap_model"]
