"""Reading checkpoint files without executing arbitrary pickled code.

``torch.load`` unpickles; a pickle can name any Python callable, so loading an untrusted file
with the full unpickler can run code. We always use ``weights_only=True`` (tensors, containers,
numbers, strings only) and allow exactly one extra class, ``argparse.Namespace``, because the
official ``main.py`` stores its command-line arguments as one under ``'args'``. Any other object
in the file makes loading fail with a ValueError naming what was refused; a file that is no
``torch.save`` output at all (text, an empty or truncated file) is a ValueError too.
"""
from __future__ import annotations

import argparse
import os
import pickle
from typing import Any

import torch

from ddetr_edu.paths import folder_given_for_file

ALLOWED_GLOBALS = (argparse.Namespace,)


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with ``argparse.Namespace`` allow-listed.

    ``FileNotFoundError`` for a missing file; ``ValueError`` for a folder, or naming the file for
    one that holds other objects or that ``torch.load`` cannot read.
    """
    path = os.fspath(path)
    folder = folder_given_for_file(path, "a checkpoint", (".pth", ".pt"))
    if folder is not None:
        raise ValueError(folder)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refused to load {path!r}: it contains objects other than tensors, plain containers and "
            f"argparse.Namespace, and unpickling them could run arbitrary code. If you trust the "
            f"file, convert it yourself; the loader said: {err}") from None
    except (KeyError, RuntimeError, EOFError, OSError) as err:  # what torch.load raises on other files
        raise ValueError(
            f"{path} is not a checkpoint torch.load can read (expected a ddetr_edu training checkpoint "
            f"or an official Deformable DETR .pth): {type(err).__name__}: {err}") from None
