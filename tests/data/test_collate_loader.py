"""Padding masks and reproducible loaders (per epoch, per rank, resumable mid-epoch)."""
from __future__ import annotations

import shutil

import pytest
import torch

from ddetr_edu.data import (CocoDetection, DataFileError, DataFileNotFoundError, SkipFirst, TransformConfig,
                            build_dataloader, build_train_transforms, collate_detection)


def fake_item(h, w, value):
    return torch.full((3, h, w), float(value)), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


def test_collate_pads_bottom_right_and_masks_padding():
    images, masks, targets = collate_detection([fake_item(5, 7, 1), fake_item(6, 3, 2)])
    assert images.shape == (2, 3, 6, 7) and masks.shape == (2, 6, 7) and masks.dtype == torch.bool
    assert len(targets) == 2
    assert (images[0, :, :5, :7] == 1).all() and (images[0, :, 5:] == 0).all()
    assert (images[1, :, :, :3] == 2).all() and (images[1, :, :, 3:] == 0).all()
    assert not masks[0, :5, :7].any() and masks[0, 5:].all()
    assert not masks[1, :, :3].any() and masks[1, :, 3:].all()


def test_collate_size_divisibility():
    images, masks, _ = collate_detection([fake_item(5, 7, 1), fake_item(9, 3, 2)], size_divisibility=4)
    assert images.shape[-2:] == (12, 8) and masks.shape[-2:] == (12, 8)
    assert int((~masks[0]).sum()) == 35 and int((~masks[1]).sum()) == 27


def test_collate_rejects_bad_images():
    with pytest.raises(ValueError, match=r"\(3, h, w\)"):
        collate_detection([(torch.zeros(1, 4, 4), {})])


def _batches(loader):
    return [(images, masks, [t["image_id"] for t in targets]) for images, masks, targets in loader]


def _assert_same(first, second):
    assert len(first) == len(second)
    for (i1, m1, ids1), (i2, m2, ids2) in zip(first, second):
        assert ids1 == ids2 and torch.equal(i1, i2) and torch.equal(m1, m2)


def test_loader_with_workers_is_reproducible_for_a_seed(tiny_shapes):
    dataset = CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json, build_train_transforms(TransformConfig.shapes(64)))
    first = _batches(build_dataloader(dataset, batch_size=4, shuffle=True, seed=7, num_workers=2))
    second = _batches(build_dataloader(dataset, batch_size=4, shuffle=True, seed=7, num_workers=2))
    other = _batches(build_dataloader(dataset, batch_size=4, shuffle=True, seed=8, num_workers=2))
    _assert_same(first, second)
    assert [ids for *_, ids in first] != [ids for *_, ids in other]


def test_loader_in_process_is_reproducible_with_torch_seed(tiny_shapes):
    dataset = CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json, build_train_transforms(TransformConfig.shapes(64)))
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(_batches(build_dataloader(dataset, batch_size=3, shuffle=True, seed=5, num_workers=0)))
    _assert_same(*runs)


def _ids(loader):
    return [t["image_id"] for *_, targets in loader for t in targets]


def test_order_depends_on_seed_and_epoch_only(tiny_shapes):
    dataset = CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json)
    torch.manual_seed(0)
    first = _ids(build_dataloader(dataset, 4, shuffle=True, seed=1, epoch=2))
    torch.manual_seed(99)  # the global RNG does not matter
    assert _ids(build_dataloader(dataset, 4, shuffle=True, seed=1, epoch=2)) == first
    assert _ids(build_dataloader(dataset, 4, shuffle=True, seed=1, epoch=3)) != first
    assert sorted(first) == sorted(dataset.image_ids)
    assert _ids(build_dataloader(dataset, 5, shuffle=False, seed=0)) == dataset.image_ids


def test_skipping_batches_continues_where_an_epoch_stopped(tiny_shapes):
    dataset = CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json)
    whole = _ids(build_dataloader(dataset, 3, shuffle=True, seed=4, epoch=1))
    assert _ids(build_dataloader(dataset, 3, shuffle=True, seed=4, epoch=1, skip_batches=2)) == whole[6:]
    assert list(SkipFirst(range(7), 3)) == [3, 4, 5, 6] and len(SkipFirst(range(7), 3)) == 4


def test_ranks_share_out_the_epoch(tiny_shapes):
    dataset = CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json)  # 12 images
    whole = _ids(build_dataloader(dataset, 2, shuffle=True, seed=4, epoch=1))
    parts = [_ids(build_dataloader(dataset, 2, shuffle=True, seed=4, epoch=1, rank=r, world_size=3)) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4] and sorted(sum(parts, [])) == sorted(whole)
    assert parts[1] == whole[1::3]  # rank r gets every W-th image of the one shuffled order


def test_bad_loader_settings_are_rejected(tiny_shapes):
    dataset = CocoDetection(tiny_shapes.val_images, tiny_shapes.val_json)
    with pytest.raises(ValueError, match="batch_size"):
        build_dataloader(dataset, 0, shuffle=False, seed=0)
    with pytest.raises(ValueError, match="rank"):
        build_dataloader(dataset, 2, shuffle=False, seed=0, rank=2, world_size=2)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_bad_image_is_one_line_naming_the_file_with_or_without_workers(tiny_shapes, tmp_path, num_workers, damage):
    images = tmp_path / "images"
    shutil.copytree(tiny_shapes.val_images, images)
    bad = images / sorted(p.name for p in images.iterdir())[5]
    dataset = CocoDetection(images, tiny_shapes.val_json)  # a missing image is refused here: damage it later
    if damage == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    else:
        bad.unlink()
    loader = build_dataloader(dataset, 2, shuffle=False, seed=0, num_workers=num_workers)
    # PyTorch re-raises a worker's exception as type(traceback text); DataFileError keeps its one line
    with pytest.raises(DataFileNotFoundError if damage == "missing" else DataFileError) as error:
        for _ in loader:
            pass
    assert str(bad) in str(error.value) and "\n" not in str(error.value) and "Traceback" not in str(error.value)
    assert isinstance(error.value, ValueError)  # the library's one kind of bad-input error
