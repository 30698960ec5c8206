"""CocoDetection on the shapes set and on every awkward input, built on the fly in tmp_path."""
from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ddetr_edu.boxes import cxcywh_to_xyxy
from ddetr_edu.data import CocoDetection, DataFileError, load_rgb_image, read_class_names
from ddetr_edu.data.images import IMAGENET_MEAN_RGB

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def write_coco(root, images, annotations, categories=CATEGORIES):
    """images: [(file_name, PIL image or None (no file written), (w, h))]; returns the JSON path."""
    entries = []
    for image_id, (file_name, image, (w, h)) in enumerate(images, start=1):
        if image is not None:
            image.save(root / file_name)
        entries.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
    anns = [dict(a, id=i, iscrowd=a.get("iscrowd", 0), area=a.get("area", 1.0)) for i, a in enumerate(annotations, 1)]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns, "categories": categories}))
    return path


def rgb(w=40, h=30, colour=(10, 20, 30)):
    return Image.new("RGB", (w, h), colour)


def test_shapes_items_follow_the_target_contract(tiny_shapes):
    dataset = CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json)
    assert dataset.num_classes == 5 and dataset.label_to_category_id == [1, 2, 3, 4, 5]
    image, target = dataset[0]
    assert image.shape == (3, 256, 256) and image.dtype == torch.float32
    assert set(target) == {"boxes", "labels", "image_id", "orig_size", "size"}
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (len(target["labels"]), 4)
    assert target["labels"].dtype == torch.int64 and int(target["labels"].max()) < 5
    assert target["orig_size"].tolist() == [256, 256] and target["size"].tolist() == [256, 256]
    # normalised cxcywh boxes map back to the file's pixel boxes
    anns = dataset.coco.loadAnns(dataset.coco.getAnnIds(imgIds=target["image_id"]))
    expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
    assert torch.allclose(cxcywh_to_xyxy(target["boxes"]) * 256, expected, atol=1e-4)


def test_category_ids_map_to_contiguous_labels(tmp_path):
    ann = write_coco(tmp_path, [("a.png", rgb(), (40, 30))],
                     [{"image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 5]},
                      {"image_id": 1, "category_id": 3, "bbox": [5, 5, 4, 4]}])
    dataset = CocoDetection(tmp_path, ann)
    _, target = dataset.load_raw(0)
    assert dataset.label_to_category_id == [3, 7] and dataset.class_names == ["cat", "dog"]
    assert target["labels"].tolist() == [1, 0]
    assert target["boxes"].tolist() == [[1, 2, 11, 7], [5, 5, 9, 9]]


def test_missing_and_corrupt_images_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "gone.png").write_bytes(b"there when the dataset is built")
    ann = write_coco(tmp_path, [("gone.png", None, (40, 30)), ("broken.png", None, (40, 30))], [])
    dataset = CocoDetection(tmp_path, ann)
    (tmp_path / "gone.png").unlink()  # removed while the dataset is in use
    with pytest.raises(FileNotFoundError, match="gone.png"):
        dataset[0]
    with pytest.raises(ValueError, match="broken.png"):
        dataset[1]


def test_missing_images_are_counted_when_the_dataset_is_built(tmp_path):
    files = [(f"{k}.png", None, (40, 30)) for k in range(6)]
    for name in ("1.png", "3.png"):
        rgb(40, 30).save(tmp_path / name)
    (tmp_path / "5.png").mkdir()  # a folder where an image should be
    ann = write_coco(tmp_path, files, [])
    with pytest.raises(FileNotFoundError) as error:
        CocoDetection(tmp_path, ann)
    assert str(error.value) == (f"{ann}: 4 of the 6 images it names are missing under {tmp_path} (5.png is a "
                                f"folder): 0.png, 2.png, 4.png, ...")


def test_truncated_image_names_the_file(tmp_path):
    rgb(64, 64).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="cut.jpg"):
        load_rgb_image(tmp_path / "cut.jpg")


def test_grayscale_rgba_and_16_bit_become_rgb_8_bit(tmp_path):
    gray = Image.new("L", (8, 6), 77)
    rgba = Image.new("RGBA", (8, 6), (200, 100, 50, 255))
    rgba.putpixel((0, 0), (255, 255, 255, 0))  # fully transparent pixel
    sixteen = Image.fromarray(np.full((6, 8), 65535, dtype=np.uint16))
    sixteen.putpixel((1, 0), 257 * 40)
    for name, image in (("g.png", gray), ("a.png", rgba), ("s.png", sixteen)):
        image.save(tmp_path / name)
    assert Image.open(tmp_path / "s.png").mode.startswith("I")  # really stored as 16-bit
    loaded_gray, loaded_rgba, loaded_16 = (np.asarray(load_rgb_image(tmp_path / n)) for n in ("g.png", "a.png", "s.png"))
    for array in (loaded_gray, loaded_rgba, loaded_16):
        assert array.shape == (6, 8, 3) and array.dtype == np.uint8
    assert (loaded_gray == 77).all()
    assert loaded_rgba[0, 0].tolist() == list(IMAGENET_MEAN_RGB) and loaded_rgba[1, 1].tolist() == [200, 100, 50]
    assert loaded_16[0, 0].tolist() == [255] * 3 and loaded_16[0, 1].tolist() == [40] * 3


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    ann = write_coco(tmp_path, [("phone.jpg", None, (20, 40))], [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 10]}])
    image, target = CocoDetection(tmp_path, ann).load_raw(0)
    assert image.size == (20, 40)  # displayed upright: portrait
    pixels = np.asarray(image).astype(int)
    assert pixels[2, 10, 0] > 200 and pixels[-3, 10, 0] < 50  # the red strip is now on top
    assert target["orig_size"].tolist() == [40, 20]


def test_size_mismatch_between_file_and_json_is_an_error(tmp_path):
    ann = write_coco(tmp_path, [("a.png", rgb(40, 30), (50, 30))], [])
    with pytest.raises(ValueError, match="a.png"):
        CocoDetection(tmp_path, ann)[0]


def test_bad_boxes_are_clipped_or_dropped_with_one_warning(tmp_path):
    annotations = [
        {"image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10]},  # fine
        {"image_id": 1, "category_id": 3, "bbox": [30, 20, 20, 20]},  # sticks out: clipped to (30, 20, 40, 30)
        {"image_id": 1, "category_id": 3, "bbox": [-5, 2, 10, 3]},  # sticks out on the left: clipped
        {"image_id": 1, "category_id": 7, "bbox": [5, 5, 0, 10]},  # zero width: dropped
        {"image_id": 1, "category_id": 7, "bbox": [5, 5, 10, -4]},  # negative height: dropped
        {"image_id": 1, "category_id": 7, "bbox": [100, 100, 5, 5]},  # outside: dropped
        {"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # crowd: left out, no warning
    ]
    ann = write_coco(tmp_path, [("a.png", rgb(40, 30), (40, 30))], annotations)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoDetection(tmp_path, ann)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "2 boxes clipped to their image (annotation ids 2, 3)" in message
    assert "3 boxes dropped (no area inside the image) (annotation ids 4, 5, 6)" in message
    _, target = dataset.load_raw(0)
    assert target["boxes"].tolist() == [[5, 5, 15, 15], [30, 20, 40, 30], [0, 2, 5, 5]]
    image, normalised = dataset[0]
    assert normalised["boxes"].min() >= 0 and normalised["boxes"].max() <= 1


def test_clean_file_gives_no_warning(tiny_shapes):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CocoDetection(tiny_shapes.train_images, tiny_shapes.train_json)


def test_images_without_annotations_are_kept_as_negatives(tmp_path):
    ann = write_coco(tmp_path, [("a.png", rgb(), (40, 30)), ("b.png", rgb(), (40, 30))],
                     [{"image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5]}])
    dataset = CocoDetection(tmp_path, ann)
    assert len(dataset) == 2
    image, target = dataset[0]
    assert image.shape == (3, 30, 40)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["labels"].dtype == torch.int64


def test_unknown_category_id_names_file_and_id(tmp_path):
    ann = write_coco(tmp_path, [("a.png", rgb(), (40, 30))], [{"image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(ValueError, match=r"ann\.json.*category_id 99"):
        CocoDetection(tmp_path, ann)


def test_missing_or_invalid_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDetection(tmp_path, tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        CocoDetection(tmp_path, tmp_path / "bad.json")


@pytest.mark.parametrize("bbox", [[1, 2, float("nan"), 5], [1, 2, 10, float("inf")], [1, "a", 10, 5],
                                  [1, 2, 10], [True, 2, 10, 5]])
@pytest.mark.parametrize("crowd", [0, 1])  # crowd regions are scored as "ignore": their boxes count too
def test_non_finite_or_non_numeric_bbox_names_file_and_annotation(tmp_path, bbox, crowd):
    annotations = [{"image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10]},
                   {"image_id": 1, "category_id": 3, "bbox": bbox, "iscrowd": crowd}]  # annotation id 2
    ann = write_coco(tmp_path, [("a.png", rgb(), (40, 30))], annotations)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an error, not a "boxes clipped" warning
        with pytest.raises(DataFileError, match=r"ann\.json: annotation 2 has bbox .*four finite numbers"):
            CocoDetection(tmp_path, ann)


@pytest.mark.parametrize("area", [None, float("nan"), "big", -1])
def test_missing_or_bad_area_names_file_and_annotation(tmp_path, area):
    annotation = {"image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10], "area": area}
    ann = write_coco(tmp_path, [("a.png", rgb(), (40, 30))], [annotation])
    content = json.loads(ann.read_text())
    if area is None:
        del content["annotations"][0]["area"]
    ann.write_text(json.dumps(content))
    with pytest.raises(DataFileError, match=r"ann\.json: annotation 1 has area"):
        CocoDetection(tmp_path, ann)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("annotations"), "expected a JSON object with an 'annotations' list"),
    (lambda c: c.update(images=[]), "'images' is empty"),
    (lambda c: c.update(categories=[]), "'categories' is empty"),
    (lambda c: c["images"][0].pop("width"), "image 1 has file_name 'a.png', width None"),
    (lambda c: c["images"].append(dict(c["images"][0])), "image id 1 appears twice"),
    (lambda c: c["annotations"][0].pop("id"), "annotation number 0 has id None"),
])
def test_incomplete_annotation_files_name_the_file(tmp_path, change, message):
    annotations = [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}]
    ann = write_coco(tmp_path, [("a.png", rgb(), (40, 30))], annotations)
    content = json.loads(ann.read_text())
    change(content)
    ann.write_text(json.dumps(content))
    with pytest.raises(DataFileError, match=re.escape(f"annotation file {ann}: {message}")):
        CocoDetection(tmp_path, ann)


def test_class_names_are_read_in_label_order(tmp_path):
    ann = write_coco(tmp_path, [("a.png", rgb(), (40, 30))], [],
                     categories=[{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 44}])
    assert read_class_names(ann) == ["person", "44", "toothbrush"] == CocoDetection(tmp_path, ann).class_names
