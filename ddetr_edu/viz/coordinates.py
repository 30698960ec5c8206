"""From the model's normalised coordinates to pixels of the picture we draw on.

Two coordinate systems meet here:

* references and boxes are normalised to the **valid** (unpadded) image: u in [0, 1];
* sampling locations are normalised to each **padded** level map: x in [0, 1] spans W_l cells,
  of which only the first r_l * W_l are image (r_l: the valid ratio of level l).

The model maps a valid-image point u onto level l as x = u * r_l (``decoder.py``,
``encoder.py``), so the exact inverse is u = x / r_l, and in pixels of a picture of size
(h, w) (the original image or the resized model input: normalised coordinates do not change
under resizing)

    px = x / r_l,x * w,      py = y / r_l,y * h.

For one unpadded image r_l = 1 and this is x * w, y * h. Pixels are continuous: pixel i covers
[i, i + 1), so pictures are drawn with ``imshow(extent=(0, w, h, 0))``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ddetr_edu.boxes import cxcywh_to_xyxy


def _size_wh(image_size: tuple[int, int]) -> Tensor:
    h, w = image_size
    return torch.tensor([float(w), float(h)])


def locations_to_pixels(locations: Tensor, valid_ratios: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Sampling locations (..., L, K, 2) on the padded level maps -> pixels (..., L, K, 2) (x, y).

    valid_ratios (L, 2) (w, h) of this image; image_size (h, w) of the picture drawn on.
    """
    if locations.shape[-1] != 2 or locations.dim() < 3:
        raise ValueError(f"locations: expected shape (..., L, K, 2), got {tuple(locations.shape)}")
    if tuple(valid_ratios.shape) != (locations.shape[-3], 2):
        raise ValueError(f"valid_ratios: expected shape (L, 2) = {(locations.shape[-3], 2)}, "
                         f"got {tuple(valid_ratios.shape)}")
    # px = x / r_l * (w, h): (L, 1, 2) broadcast over the points
    scale = _size_wh(image_size) / valid_ratios.float()  # (L, 2)
    return locations.float() * scale[:, None, :]


def points_to_pixels(points: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Valid-normalised points (..., 2) (x, y) -> pixels (..., 2)."""
    return points.float() * _size_wh(image_size)


def boxes_to_pixels(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Valid-normalised boxes (..., 4) cxcywh -> (..., 4) xyxy pixels."""
    return cxcywh_to_xyxy(boxes.float()) * _size_wh(image_size).repeat(2)


def reference_point(reference: Tensor) -> Tensor:
    """The point of a reference: (..., 2) itself, or the centre of a (..., 4) box."""
    return reference[..., :2]


def encoder_token(point: Tensor, level: int, spatial_shapes: Tensor, level_start_index: Tensor,
                  valid_ratios: Tensor) -> int:
    """The encoder token (flattened index) of level ``level`` whose cell holds ``point``.

    point (2,) valid-normalised (x, y). The valid part of level l has
    round(r_l * W_l) x round(r_l * H_l) cells; cell j spans [j, j + 1) / (r_l W_l).
    """
    height, width = (int(v) for v in spatial_shapes[level])
    valid_w = max(1, round(float(valid_ratios[level, 0]) * width))
    valid_h = max(1, round(float(valid_ratios[level, 1]) * height))
    col = min(max(math.floor(float(point[0]) * valid_w), 0), valid_w - 1)
    row = min(max(math.floor(float(point[1]) * valid_h), 0), valid_h - 1)
    return int(level_start_index[level]) + row * width + col


def token_centre(token: int, spatial_shapes: Tensor, level_start_index: Tensor,
                 valid_ratios: Tensor) -> tuple[int, Tensor]:
    """(level, valid-normalised centre (2,) (x, y)) of an encoder token: its own reference point,
    ((j + 0.5) / (r_l W_l), (i + 0.5) / (r_l H_l)) as in ``encoder.encoder_reference_points``."""
    starts = level_start_index.tolist()
    level = max(i for i, s in enumerate(starts) if s <= token)
    height, width = (int(v) for v in spatial_shapes[level])
    if token >= starts[level] + height * width:
        raise ValueError(f"token: expected < {starts[level] + height * width} (number of tokens), got {token}")
    row, col = divmod(token - starts[level], width)
    centre = torch.tensor([(col + 0.5) / (float(valid_ratios[level, 0]) * width),
                           (row + 0.5) / (float(valid_ratios[level, 1]) * height)])
    return level, centre


__all__ = ["locations_to_pixels", "points_to_pixels", "boxes_to_pixels", "reference_point",
           "encoder_token", "token_centre"]
