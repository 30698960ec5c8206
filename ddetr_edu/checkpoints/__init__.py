"""Checkpoints: safe loading and conversion of official Deformable DETR weights."""
from ddetr_edu.checkpoints.official import (config_from_official_args, convert_official_state_dict,
                                            load_converted_state_dict, load_official_checkpoint)
from ddetr_edu.checkpoints.safe_load import safe_torch_load

__all__ = ["config_from_official_args", "convert_official_state_dict", "load_converted_state_dict",
           "load_official_checkpoint", "safe_torch_load"]
