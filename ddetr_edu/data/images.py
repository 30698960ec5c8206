"""Reading any image as an 8-bit RGB PIL image, with errors that name the file.

``load_image`` is the project's one image loader: the COCO dataset, the visualizer and
``Detector.detect`` all read pictures through it. It takes a file path or an already opened PIL
image (then only the orientation and mode rules below apply).

Cases handled:

* EXIF orientation (phone photos): the pixels are rotated/flipped as the EXIF tag says
  (``PIL.ImageOps.exif_transpose``), so boxes drawn on the displayed image line up.
* Grayscale (``L``, ``1``), palette (``P``) and ``CMYK``: converted to RGB.
* Alpha (``RGBA``, ``LA``, ``P`` with transparency): composited over the ImageNet mean colour,
  so that transparent pixels become ~0 after normalisation instead of arbitrary hidden colours.
* 16-bit (``I;16``, ``I;16B``, ``I;16L``) and 32-bit integer (``I``) grayscale: values are mapped
  linearly from the full 16-bit range 0..65535 to 0..255 (value / 257, the exact inverse of the
  usual 8 -> 16 bit widening). 32-bit float (``F``): values in [0, 1] are scaled by 255,
  larger ranges are clipped to 0..255.
* Missing files raise ``DataFileNotFoundError`` (a ``FileNotFoundError``); a folder, an unreadable
  or a truncated file ``DataFileError`` (a ``ValueError``); each message is one line naming the
  path (:mod:`ddetr_edu.data.errors`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ddetr_edu.data.errors import DataFileError, DataFileNotFoundError
from ddetr_edu.paths import folder_given_for_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # listed for a folder

IMAGENET_MEAN_RGB = (124, 116, 104)  # ImageNet mean (0.485, 0.456, 0.406) * 255, rounded


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (see module docstring for the rules)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if np.nanmax(values, initial=0.0) <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, IMAGENET_MEAN_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: str | os.PathLike | Image.Image) -> Image.Image:
    """An upright 8-bit RGB PIL image from ``source``: a file path (read fully, file closed) or a
    PIL image (any mode). EXIF orientation applied; grayscale, palette, CMYK, alpha, 16-bit and
    float modes converted as the module docstring says.

    Raises DataFileNotFoundError for a missing file, DataFileError (a ValueError) for a folder or
    a file that is not a readable image; one line naming the path.
    """
    if isinstance(source, Image.Image):
        upright = ImageOps.exif_transpose(source)
        return _to_rgb(upright if upright is not None else source)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"image: expected a file path or a PIL image, got {type(source).__name__}")
    path = Path(source)
    folder = folder_given_for_file(path, "an image", IMAGE_SUFFIXES)
    if folder is not None:
        raise DataFileError(folder)
    if not path.is_file():
        raise DataFileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            return _to_rgb(upright if upright is not None else opened)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else ""
        raise DataFileError(f"cannot read image file {path}: {type(error).__name__}: {reason}") from error


load_rgb_image = load_image  # the earlier name, kept for callers that use it
