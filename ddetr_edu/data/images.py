"""Reading any image file as an 8-bit RGB PIL image, with errors that name the file.

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
* Missing files raise ``DataFileNotFoundError`` (a ``FileNotFoundError``), unreadable or truncated
  ones ``DataFileError`` (a ``ValueError``); both messages name the file
  (:mod:`ddetr_edu.data.errors`).
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


def load_rgb_image(path: str | os.PathLike) -> Image.Image:
    """Open `path` and return an upright 8-bit RGB image (fully loaded, file closed)."""
    path = Path(path)
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
        raise DataFileError(f"cannot read image file {path}: {type(error).__name__}: {error}") from error
