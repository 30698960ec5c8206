"""A synthetic COCO-format detection dataset of coloured shapes, small enough to train on a CPU.

Each image is a noisy, textured background with 1..6 shapes (circle, square, triangle, star,
cross) of random colour, size, aspect ratio and rotation. Shapes are painted in order, so later
shapes partly cover earlier ones. Object sizes are drawn log-uniformly between ``min_size`` and
``max_size`` pixels, which puts objects in all three COCO size ranges (small: box area <= 32^2,
medium, large: >= 96^2), so that AP_S, AP_M and AP_L all mean something.

Occlusion rule. A new shape is accepted only if every shape already painted keeps at least
``min_visible_fraction`` of its pixels visible; otherwise another position and size are tried
(``placement_attempts`` times) and then the shape is skipped. So no heavily hidden object is
ever painted without a label, and every object's box is the tight box of its *visible* pixels.

Annotations follow COCO: ``bbox`` = [x, y, w, h] in pixels (pixel i covers [i, i+1)),
``area`` = w * h, the area of that box (there are no masks), ``iscrowd`` = 0, category ids
start at 1, image and annotation ids start at 1.

Determinism: image i of split s is drawn from ``numpy.random.default_rng([seed, s, i])``, so the
same seed gives byte-identical JSON and PNG files, whatever the order they are made in.
"""
from __future__ import annotations

import io
import json
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SPLIT_CODES = {"train": 0, "val": 1}


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that decides the dataset; the same config and seed give the same bytes."""

    seed: int = 0
    num_train: int = 1200  # enough for a CPU demo to learn the five shapes in a few epochs
    num_val: int = 150  # ~600 objects: AP_S/M/L each rest on > 100 objects
    image_size: int = 256  # square images; 256 px leaves room for COCO's large (> 96^2) range
    min_objects: int = 1
    max_objects: int = 6
    min_size: float = 12.0  # box side in px; < 32 px is COCO "small"
    max_size: float = 160.0  # > 96 px is COCO "large"
    max_aspect: float = 1.6  # width/height stretch before rotation, in [1/a, a]
    min_visible_fraction: float = 0.5  # occlusion rule (see module docstring)
    placement_attempts: int = 20
    noise_std: float = 4.0  # per-pixel Gaussian noise added over the whole image (0..255 scale)
    texture_strength: float = 40.0  # amplitude of the smooth background texture
    min_colour_distance: float = 90.0  # RGB distance between a shape and the mean background
    shapes: tuple[str, ...] = SHAPE_NAMES  # the shapes drawn (a subset: another task), category ids 1..
    class_names: tuple[str, ...] = ()  # the categories' names in the files (empty: the shapes' names)

    def __post_init__(self) -> None:
        if self.num_train < 0 or self.num_val < 0:
            raise ValueError(f"ShapesConfig: num_train/num_val must be >= 0, got {self.num_train}/{self.num_val}")
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"ShapesConfig: need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        if not 2 <= self.min_size <= self.max_size <= self.image_size:
            raise ValueError(
                "ShapesConfig: need 2 <= min_size <= max_size <= image_size, got "
                f"{self.min_size}, {self.max_size}, {self.image_size}"
            )
        if not 0.0 <= self.min_visible_fraction <= 1.0:
            raise ValueError(f"ShapesConfig: min_visible_fraction must be in [0, 1], got {self.min_visible_fraction}")
        if self.max_aspect < 1.0:
            raise ValueError(f"ShapesConfig: max_aspect must be >= 1, got {self.max_aspect}")
        unknown = [name for name in self.shapes if name not in SHAPE_NAMES]
        if not self.shapes or unknown or len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"ShapesConfig: shapes must be distinct names from {SHAPE_NAMES}, got {self.shapes}")
        names = self.class_names
        if names and (len(names) != len(self.shapes) or len(set(names)) != len(names)):
            raise ValueError(f"ShapesConfig: class_names must be {len(self.shapes)} distinct names (one per shape "
                             f"drawn) or empty, got {self.class_names}")

    @property
    def category_names(self) -> tuple[str, ...]:
        """The names of categories 1, 2, ... in the annotation files."""
        return self.class_names or self.shapes


@dataclass(frozen=True)
class ShapesPaths:
    """Where `make_shapes_dataset` wrote the dataset."""

    root: Path
    train_json: Path
    val_json: Path
    train_images: Path
    val_images: Path

    def split(self, name: str) -> tuple[Path, Path]:
        """(image folder, annotation file) of split "train" or "val"."""
        if name == "train":
            return self.train_images, self.train_json
        if name == "val":
            return self.val_images, self.val_json
        raise ValueError(f"ShapesPaths.split: split must be 'train' or 'val', got {name!r}")


def _shape_outline(name: str, rng: np.random.Generator, cx: float, cy: float, size: float, aspect: float):
    """Vertices (P, 2) of shape `name` (a 64-gon for the circle), stretched by `aspect` then rotated."""
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        unit = np.stack([np.cos(t), np.sin(t)], axis=1) * 0.5
    elif name == "square":
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    elif name == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        unit = np.stack([np.cos(t), np.sin(t)], axis=1) * 0.55
    elif name == "star":
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 0.55, 0.23)
        unit = np.stack([np.cos(t), np.sin(t)], axis=1) * radius[:, None]
    elif name == "cross":
        a, b = 0.5, 0.17  # arm half-length and half-width
        unit = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                         [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])
    else:
        raise ValueError(f"unknown shape {name!r}; expected one of {SHAPE_NAMES}")
    stretch = np.array([np.sqrt(aspect), 1.0 / np.sqrt(aspect)])
    angle = rng.uniform(0, 2 * np.pi) if name != "circle" or aspect != 1.0 else 0.0
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (unit * stretch) @ rotation.T * size
    return points + np.array([cx, cy])


def _interpolation_matrix(coarse: int, fine: int) -> np.ndarray:
    """(fine, coarse) weights of 1-D linear interpolation from `coarse` knots to `fine` pixels."""
    position = np.linspace(0, coarse - 1, fine)
    left = np.minimum(np.floor(position).astype(int), coarse - 2)
    frac = position - left
    weights = np.zeros((fine, coarse), dtype=np.float32)
    weights[np.arange(fine), left] = 1 - frac
    weights[np.arange(fine), left + 1] = frac
    return weights


def _background(rng: np.random.Generator, config: ShapesConfig) -> np.ndarray:
    """(h, w, 3) float32 background: a random colour, a linear gradient and a smooth texture."""
    side = config.image_size
    base = rng.uniform(30, 225, size=3).astype(np.float32)
    ramp = np.linspace(-1, 1, side, dtype=np.float32)
    slope = rng.uniform(-25, 25, size=(2, 3)).astype(np.float32)  # per-channel gradient along x and along y
    knots = (rng.uniform(-1, 1, size=(3, 6, 6)) * config.texture_strength).astype(np.float32)  # (3, 6, 6)
    upsample = _interpolation_matrix(6, side)  # (side, 6)
    # texture_c(y, x) = sum_ij U(y, i) knots_c(i, j) U(x, j): bilinear upsampling of a 6x6 grid
    texture = (upsample @ knots @ upsample.T).transpose(1, 2, 0)  # (side, side, 3)
    return base + ramp[None, :, None] * slope[0] + ramp[:, None, None] * slope[1] + texture


def _pick_colour(rng: np.random.Generator, avoid: np.ndarray, min_distance: float) -> np.ndarray:
    """A random RGB colour at least `min_distance` from every colour of `avoid` (A, 3) (best of 50 tries)."""
    best, best_distance = None, -1.0
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        distance = float(np.linalg.norm(colour - avoid, axis=1).min())
        if distance >= min_distance:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _rasterise(outline: np.ndarray, side: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Fill polygon `outline` (P, 2) inside its own bounding window: ((rows, cols) slices, mask (h, w) bool)."""
    x0, y0 = np.floor(outline.min(0)).astype(int).clip(0, side)
    x1, y1 = (np.ceil(outline.max(0)).astype(int) + 1).clip(0, side)
    if x1 <= x0 or y1 <= y0:
        return None
    canvas = Image.new("L", (int(x1 - x0), int(y1 - y0)), 0)
    ImageDraw.Draw(canvas).polygon([(float(x - x0), float(y - y0)) for x, y in outline], fill=255)
    return (slice(y0, y1), slice(x0, x1)), np.asarray(canvas) > 0


def draw_shapes_image(rng: np.random.Generator, config: ShapesConfig) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """One image: pixels (h, w, 3) uint8, objects and the occlusion map.

    objects: [{"category_id", "bbox" [x, y, w, h] of the visible pixels, "visible_fraction"}, ...]
    in painting order; owner (h, w) int32: index of the object on top at each pixel, -1 = background.
    """
    side = config.image_size
    image = _background(rng, config).astype(np.float32)  # (h, w, 3)
    background_mean = image.reshape(-1, 3).mean(0)
    owner = np.full((side, side), -1, dtype=np.int32)  # index of the object painted on top, -1 = background
    full_pixels: list[int] = []  # pixels of each object when painted
    visible = np.zeros(0, dtype=np.int64)  # pixels of each object still on top now
    categories: list[int] = []
    colours: list[np.ndarray] = []
    target_count = int(rng.integers(config.min_objects, config.max_objects + 1))
    log_min, log_max, log_aspect = np.log(config.min_size), np.log(config.max_size), np.log(config.max_aspect)
    for _ in range(target_count):
        name_index = int(rng.integers(len(config.shapes)))
        for _attempt in range(config.placement_attempts):
            size = float(np.exp(rng.uniform(log_min, log_max)))
            aspect = float(np.exp(rng.uniform(-log_aspect, log_aspect)))
            cx, cy = rng.uniform(size / 2, side - size / 2, size=2)
            outline = _shape_outline(config.shapes[name_index], rng, cx, cy, size, aspect)
            drawn = _rasterise(outline, side)
            if drawn is None or drawn[1].sum() < 4:
                continue
            window, mask = drawn
            under = owner[window][mask]
            covered = np.bincount(under[under >= 0], minlength=len(full_pixels))
            # occlusion rule: every earlier object keeps >= min_visible_fraction of its pixels
            if np.all(visible - covered >= config.min_visible_fraction * np.asarray(full_pixels)):
                break
        else:
            continue  # no acceptable place found: skip this object
        # the colour must stand out from the background and from the shapes it overlaps
        avoid = np.stack([background_mean] + [colours[i] for i in np.nonzero(covered)[0]])
        colour = _pick_colour(rng, avoid, config.min_colour_distance)
        width = window[1].stop - window[1].start
        shade = 1.0 + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, width)[None, :, None]  # soft shading
        patch = image[window]
        patch[mask] = (colour * shade * np.ones_like(patch))[mask]
        owner[window][mask] = len(full_pixels)
        visible = np.append(visible - covered, int(mask.sum()))
        full_pixels.append(int(mask.sum()))
        categories.append(name_index + 1)
        colours.append(colour)
    image += rng.standard_normal(size=image.shape, dtype=np.float32) * config.noise_std
    objects = []
    for index, category_id in enumerate(categories):
        ys, xs = np.nonzero(owner == index)
        x0, y0 = int(xs.min()), int(ys.min())
        objects.append({"category_id": category_id,
                        "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                        "visible_fraction": len(xs) / full_pixels[index]})
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects, owner


def _write_bytes_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _render_images(image_dir: Path, split: str, indices: range, config: ShapesConfig) -> list[list[dict]]:
    """Draw and save images `indices` of `split`; return the objects of each."""
    all_objects = []
    for index in indices:
        rng = np.random.default_rng([config.seed, SPLIT_CODES[split], index])
        pixels, objects, _ = draw_shapes_image(rng, config)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=1)
        _write_bytes_atomically(image_dir / f"{index:06d}.png", buffer.getvalue())
        all_objects.append(objects)
    return all_objects


def _make_split(root: Path, split: str, count: int, config: ShapesConfig, num_workers: int) -> Path:
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    if num_workers > 1 and count > 1:
        # images are independent (one RNG each), so worker processes give the same bytes
        chunk = min(64, -(-count // num_workers))  # small chunks keep the workers evenly busy
        ranges = [range(start, min(start + chunk, count)) for start in range(0, count, chunk)]
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with context.Pool(min(num_workers, len(ranges))) as pool:
            parts = pool.starmap(_render_images, [(image_dir, split, r, config) for r in ranges])
        objects_per_image = [objects for part in parts for objects in part]
    else:
        objects_per_image = _render_images(image_dir, split, range(count), config)
    for stale in image_dir.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png"):  # left by an earlier, larger run
        if int(stale.stem) >= count:
            stale.unlink()
    images, annotations = [], []
    for index, objects in enumerate(objects_per_image):
        image_id = index + 1
        images.append({"id": image_id, "file_name": f"{index:06d}.png",
                       "height": config.image_size, "width": config.image_size})
        for obj in objects:
            w, h = obj["bbox"][2], obj["bbox"][3]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": obj["category_id"],
                                "bbox": obj["bbox"], "area": w * h, "iscrowd": 0})
    dataset = {
        "info": {"description": f"ddetr-edu synthetic shapes, {split} split", "config": asdict(config)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"}
                       for i, name in enumerate(config.category_names)],
    }
    json_path = root / f"{split}.json"
    _write_bytes_atomically(json_path, json.dumps(dataset, separators=(",", ":")).encode("utf-8"))
    return json_path


def _made_with(ann_file: Path) -> dict | None:
    """The ShapesConfig (as a dict) recorded in ``ann_file``'s ``info``, or None for another file."""
    try:
        info = json.loads(ann_file.read_text(encoding="utf-8")).get("info")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    made_with = info.get("config") if isinstance(info, dict) else None
    return made_with if isinstance(made_with, dict) else None


def _is_own_image(path: Path) -> bool:
    """A file named as make-shapes names its images (``000123.png``)."""
    return path.is_file() and path.suffix == ".png" and len(path.stem) == 6 and path.stem.isdigit()


def files_not_made_by_make_shapes(root: str | os.PathLike) -> list[str]:
    """The files and folders under ``root`` (relative names) that a shapes dataset does not hold,
    hidden ones aside: writing a dataset there would risk them, so it is refused, ``--overwrite``
    or not. Its own files are ``train.json`` / ``val.json`` whose ``info.config`` names shapes
    settings, and ``images/{train,val}/NNNNNN.png`` (a file named like that counts as its own)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name in ("train.json", "val.json") and entry.is_file() and _made_with(entry) is not None:
            continue
        if entry.name != "images" or not entry.is_dir():
            found.append(entry.name)
            continue
        for split_dir in sorted(entry.iterdir()):
            if split_dir.name.startswith("."):
                continue
            if split_dir.name not in SPLIT_CODES or not split_dir.is_dir():
                found.append(f"images/{split_dir.name}")
                continue
            found += [f"images/{split_dir.name}/{file.name}" for file in sorted(split_dir.iterdir())
                      if not file.name.startswith(".") and not _is_own_image(file)]
    return found


def dataset_conflict(root: str | os.PathLike, config: ShapesConfig) -> str | None:
    """What writing the dataset of ``config`` into ``root`` would replace, as one line; None: nothing.

    Nothing is replaced when ``root`` is missing or empty, or holds the shapes dataset of this
    very ``config``, finished or not (the images of a split come before its JSON file). The
    manifest is each JSON file's ``info.config``. Other content is named: a shapes dataset made
    with other settings (which ones), an annotation file of another dataset, other files.
    """
    root = Path(root)
    if not root.exists():
        return None
    if not root.is_dir():
        return f"{root} is a file, not a folder"
    wanted = json.loads(json.dumps(asdict(config)))  # tuples as lists, as read back from JSON
    ann_files = [root / f"{split}.json" for split in SPLIT_CODES if (root / f"{split}.json").exists()]
    for ann_file in ann_files:
        made_with = _made_with(ann_file)
        if made_with is None:
            return f"{root} holds {ann_file.name}, which is not the annotation file of a shapes dataset"
        defaults = json.loads(json.dumps(asdict(ShapesConfig())))  # a field newer than the file: its default
        changes = [f"{name} {made_with.get(name, defaults[name])} instead of {value}" for name, value in wanted.items()
                   if made_with.get(name, defaults[name]) != value]
        if changes:
            return f"{root} holds a shapes dataset made with other settings: {', '.join(changes)}"
    images = root / "images"
    others = [p.name for p in root.iterdir() if p.name not in ("train.json", "val.json", "images")]
    others += [f"images/{p.name}" for p in images.iterdir() if p.name not in SPLIT_CODES] if images.is_dir() else []
    others = sorted(name for name in others if not name.split("/")[-1].startswith("."))
    if others and not ann_files:
        return f"{root} holds {', '.join(others[:4])}{' ...' if len(others) > 4 else ''} and no shapes dataset"
    return None


def make_shapes_dataset(
    out_dir: str | os.PathLike, config: ShapesConfig | None = None, num_workers: int | None = None
) -> ShapesPaths:
    """Write the shapes dataset under `out_dir` and return its paths.

    Layout: ``out_dir/train.json``, ``out_dir/val.json``, ``out_dir/images/train/000000.png``, ...
    (``file_name`` in the JSON is relative to ``images/<split>``). A shapes dataset already there
    is replaced, whatever settings made it (:func:`dataset_conflict` tells first); a folder with
    any other file is a ValueError (:func:`files_not_made_by_make_shapes`), so no user's file is
    ever replaced or deleted. Files are written atomically
    (temporary file, then ``os.replace``); the same config gives the same bytes, with any
    `num_workers` (0 or 1: in this process; more: that many worker processes; None: up to 4
    processes for sets of 100 images or more, else in this process). Per image: ~10 ms drawing,
    ~10 ms PNG encoding on one core.
    """
    config = ShapesConfig() if config is None else config
    foreign = files_not_made_by_make_shapes(out_dir)
    if foreign:
        raise ValueError(f"{out_dir} holds files that make-shapes did not write ({', '.join(foreign[:4])}"
                         f"{' ...' if len(foreign) > 4 else ''}); it never replaces them, with --overwrite or "
                         f"not: choose a new or empty folder")
    if num_workers is None:
        large = config.num_train + config.num_val >= 100
        num_workers = min(4, os.cpu_count() or 1) if large else 0
    if num_workers < 0:
        raise ValueError(f"make_shapes_dataset: num_workers must be >= 0, got {num_workers}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    train_json = _make_split(root, "train", config.num_train, config, num_workers)
    val_json = _make_split(root, "val", config.num_val, config, num_workers)
    return ShapesPaths(root=root, train_json=train_json, val_json=val_json,
                       train_images=root / "images" / "train", val_images=root / "images" / "val")
