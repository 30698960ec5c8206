"""The detector in three lines: load_detector, Detector.detect and the one image loader.

The shipped reference model looks at a shapes picture drawn here with the generator's own
config; every input kind gives the same detections; boxes are in the input picture's pixels.
"""
from __future__ import annotations

import importlib.util
import pydoc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddetr_edu import Detection, load_detector
from ddetr_edu.boxes import box_iou
from ddetr_edu.checkpoints.reference import REFERENCE_SHAPES
from ddetr_edu.data import CocoDetection, load_image
from ddetr_edu.data.shapes import SHAPE_NAMES, draw_shapes_image
from ddetr_edu.viz.loading import prepare_image

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"


@pytest.fixture(scope="module")
def detector():
    return load_detector()  # the shipped reference model


@pytest.fixture(scope="module")
def shapes_picture():
    """A 128 px validation-like picture and its objects: (pixels (H, W, 3) uint8, [(name, xyxy)])."""
    pixels, objects, _ = draw_shapes_image(np.random.default_rng([7, 1, 3]), REFERENCE_SHAPES)
    truth = [(SHAPE_NAMES[o["category_id"] - 1], [o["bbox"][0], o["bbox"][1], o["bbox"][0] + o["bbox"][2],
                                                  o["bbox"][1] + o["bbox"][3]]) for o in objects]
    return pixels, truth


def _as_rows(detections):
    return [(d.class_name, d.class_id, round(d.score, 5), tuple(round(v, 3) for v in d.box)) for d in detections]


def test_the_reference_model_finds_the_objects(detector, shapes_picture):
    pixels, truth = shapes_picture
    detections = detector.detect(pixels, score_threshold=0.3)
    assert detections and all(isinstance(d, Detection) for d in detections)
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    assert all(d.score >= 0.3 and d.class_name in SHAPE_NAMES for d in detections)
    assert all(d.class_name == SHAPE_NAMES[d.class_id] for d in detections)
    found = set()
    for d in detections:  # each detection is an object of the picture: same class, IoU >= 0.5
        same_class = [i for i, (name, _) in enumerate(truth) if name == d.class_name]
        iou, _ = box_iou(torch.tensor([d.box]), torch.tensor([truth[i][1] for i in same_class], dtype=torch.float32))
        assert same_class and iou.max() >= 0.5, f"{d} matches no object of {truth}"
        found.add(same_class[int(iou.argmax())])
    assert len(found) >= len(truth) / 2, f"found {sorted(found)} of {truth}"  # this picture: 2 of 4 (2 hidden)


def test_every_input_kind_gives_the_same_detections(detector, shapes_picture, tmp_path):
    pixels, _ = shapes_picture
    Image.fromarray(pixels).save(tmp_path / "shapes.png")
    as_uint8 = torch.from_numpy(pixels).permute(2, 0, 1)
    expected = _as_rows(detector.detect(pixels))
    for image in (tmp_path / "shapes.png", str(tmp_path / "shapes.png"), Image.fromarray(pixels),
                  Image.fromarray(pixels).convert("RGBA"), as_uint8, as_uint8.float() / 255):
        assert _as_rows(detector.detect(image)) == expected, type(image).__name__


def test_boxes_are_in_the_input_pictures_pixels_and_inside_it(detector, shapes_picture):
    pixels, _ = shapes_picture
    small = detector.detect(pixels)
    large_picture = Image.fromarray(pixels).resize((256, 256), Image.BILINEAR)  # resized back to 128 inside
    large = detector.detect(large_picture)
    assert [d.class_name for d in large[:2]] == [d.class_name for d in small[:2]]
    for a, b in zip(small[:2], large[:2]):
        assert np.allclose(np.array(b.box), 2 * np.array(a.box), atol=3.0), (a.box, b.box)
    for detections, side in ((small, 128), (large, 256)):
        assert all(0 <= d.box[0] <= d.box[2] <= side and 0 <= d.box[1] <= d.box[3] <= side for d in detections)


def test_threshold_top_k_and_duplicates(detector, shapes_picture):
    pixels, _ = shapes_picture
    everything = detector.detect(pixels, score_threshold=0.0, top_k=50, duplicate_iou=1.0)
    assert len(everything) == 50
    assert len(detector.detect(pixels, score_threshold=0.0, top_k=3)) <= 3
    assert detector.detect(pixels, score_threshold=1.0) == []
    kept = detector.detect(pixels, score_threshold=0.0, top_k=50)  # duplicates (IoU > 0.7, same class) dropped
    assert len(kept) < len(everything)


@pytest.mark.parametrize("image, match", [
    (np.zeros((64, 64, 3), dtype=np.float64), "uint8 array"),
    (np.zeros((64, 64), dtype=np.uint8), r"\(H, W, 3\)"),
    (torch.zeros(1, 3, 64, 64), r"\(3, H, W\) tensor"),
    (torch.full((3, 64, 64), -1.5), r"values in \[0, 1\]"),
    (torch.zeros(3, 64, 64, dtype=torch.int32), "uint8"),
    ([1, 2, 3], "expected a file path"),
])
def test_bad_inputs_are_one_line_value_errors(detector, image, match):
    with pytest.raises(ValueError, match=match) as error:
        detector.detect(image)
    assert "\n" not in str(error.value)


def test_bad_thresholds_are_value_errors(detector, shapes_picture):
    with pytest.raises(ValueError, match="score_threshold"):
        detector.detect(shapes_picture[0], score_threshold=1.5)
    with pytest.raises(ValueError, match="top_k"):
        detector.detect(shapes_picture[0], top_k=0)


def test_load_image_refuses_a_folder_and_an_unreadable_file_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    for path, match in ((tmp_path, "is a folder"), (tmp_path / "notes.txt", "cannot read image file")):
        with pytest.raises(ValueError, match=match) as error:
            load_image(path)
        assert "\n" not in str(error.value) and str(path) in str(error.value)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA", "RGBA", "1"])
def test_load_image_turns_any_pil_mode_into_rgb(mode):
    picture = load_image(Image.new("RGB", (9, 5), (30, 60, 90)).convert(mode))
    assert picture.mode == "RGB" and picture.size == (9, 5)


def _phone_photo(tmp_path) -> Path:
    """A landscape picture stored with EXIF orientation 6: displayed as a 40 x 80 portrait."""
    stored = Image.new("RGB", (80, 40), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 20, 40))  # red on the left of the stored pixels = top when displayed
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    return tmp_path / "phone.jpg"


def test_one_loader_for_detect_the_dataset_and_the_visualizer(detector, tmp_path):
    path = _phone_photo(tmp_path)
    upright = load_image(path)
    assert upright.size == (40, 80) and np.asarray(upright)[5, 20, 0] > 200
    with Image.open(path) as opened:  # an opened file with its EXIF tag: rotated too
        assert load_image(opened).size == (40, 80)
    tensor, size = detector.prepare(path)
    assert size == (80, 40)
    _, visualized = prepare_image(path, detector.transforms)
    assert torch.equal(tensor, visualized)
    annotations = {"images": [{"id": 1, "file_name": "phone.jpg", "width": 40, "height": 80}],
                   "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "ann.json").write_text(__import__("json").dumps(annotations))
    picture, target = CocoDetection(tmp_path, tmp_path / "ann.json").load_raw(0)
    assert picture.size == (40, 80) and np.array_equal(np.asarray(picture), np.asarray(upright))


def test_our_checkpoint_and_its_class_names(tmp_path):
    from ddetr_edu.checkpoints.training_state import atomic_torch_save, build_checkpoint
    from ddetr_edu.config import config_to_dict, get_preset
    from ddetr_edu.models import build_detector
    from ddetr_edu.training.config import train_preset

    torch.manual_seed(0)
    cfg = get_preset("shapes_cpu")
    model = build_detector(cfg)
    optimizer = torch.optim.AdamW(model.parameters())
    checkpoint = build_checkpoint(model=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1),
                                  scaler=None, epoch=1, step_in_epoch=0, global_step=1, best_ap=0.0,
                                  model_config=config_to_dict(cfg), train_config=train_preset("shapes_cpu").to_dict())
    atomic_torch_save(checkpoint, tmp_path / "old.pth")  # written before class names were stored
    atomic_torch_save(dict(checkpoint, class_names=list("abcde")), tmp_path / "named.pth")
    old, named = load_detector(tmp_path / "old.pth"), load_detector(tmp_path / "named.pth")
    assert old.kind == named.kind == "ddetr_edu" and not old.model.training
    assert old.transforms.eval_scale == 96  # the shapes recipe's scale
    picture = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    everything = named.detect(picture, score_threshold=0.0, top_k=5)
    assert len(everything) == 5 and {d.class_name for d in everything} <= set("abcde")
    assert all(d.class_name.startswith("class ") for d in old.detect(picture, score_threshold=0.0, top_k=5))
    assert all(0 <= d.box[0] <= d.box[2] <= 90 and 0 <= d.box[1] <= d.box[3] <= 60 for d in everything)


def test_an_official_checkpoint_gets_coco_names_and_coco_scale(tmp_path):
    spec = importlib.util.spec_from_file_location("fill_weights", REFERENCE / "fill_weights.py")
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    fixture = torch.load(REFERENCE / "official_small_multiscale_refine_twostage.pt", weights_only=True)
    state = fill.fill_official_state_dict(fixture["keys"], fixture["seed"])
    torch.save({"model": state, "args": fixture["args"]}, tmp_path / "official.pth")
    detector = load_detector(tmp_path / "official.pth")
    assert detector.kind == "official"
    assert detector.class_name(1) == "person" and detector.class_name(3) == "car"
    assert detector.transforms.eval_scale == 800 and detector.transforms.max_size == 1333


def test_help_reads_well():
    from ddetr_edu.inference import Detector
    from ddetr_edu.models.detector import DeformableDETR

    for thing, words in ((load_detector, ["reference model", "official"]),
                         (Detector.detect, ["(H, W, 3) uint8", "(3, H, W)", "score_threshold", "clipped"]),
                         (load_image, ["EXIF", "folder"]),
                         (DeformableDETR.forward, ["(N, 3, H, W)", "pred_boxes"])):
        text = pydoc.render_doc(thing, renderer=pydoc.plaintext)
        assert all(w in text for w in words), (thing, words)
