"""Backbone wrapper: return contract, masks per level, small CNN, bad input."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddetr_edu.config import BackboneConfig
from ddetr_edu.models.backbone import Backbone, build_backbone, downsample_mask

torch.set_num_threads(2)
FIXTURE = (Path(__file__).resolve().parents[1] / "fixtures" / "reference"
           / "official_small_multiscale_refine_twostage.pt")


def _padded_batch(sizes, h, w):
    """Images (N, 3, h, w) with zeros in the padding and masks (N, h, w) True there."""
    images = torch.zeros(len(sizes), 3, h, w)
    masks = torch.ones(len(sizes), h, w, dtype=torch.bool)
    for i, (hi, wi) in enumerate(sizes):
        images[i, :, :hi, :wi] = torch.randn(3, hi, wi)
        masks[i, :hi, :wi] = False
    return images, masks


def test_downsample_mask_hand_example():
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[:, :, 3:] = True  # columns 3, 4 are padding
    # nearest: output column j reads input column floor(j * 5 / 3) = 0, 1, 3
    out = downsample_mask(mask, (3, 3))
    assert out.dtype == torch.bool and tuple(out.shape) == (1, 3, 3)
    assert out[0].tolist() == [[False, False, True]] * 3


def test_multiscale_contract_and_masks():
    backbone = build_backbone(BackboneConfig(arch="small_cnn"), return_levels=(2, 3, 4)).eval()
    images, masks = _padded_batch([(64, 96), (40, 50)], 64, 96)
    levels = backbone(images, masks)
    assert backbone.strides == [8, 16, 32]
    assert backbone.num_channels == [64, 128, 192]
    assert len(levels) == 3
    for (feature, mask), s, c in zip(levels, backbone.strides, backbone.num_channels):
        assert tuple(feature.shape) == (2, c, 64 // s, 96 // s)
        assert mask.dtype == torch.bool and tuple(mask.shape) == (2, 64 // s, 96 // s)
        assert torch.equal(mask, downsample_mask(masks, (64 // s, 96 // s)))
        assert not mask[0].any()  # the full-size image has no padding at any level
    # image 1 is valid on rows < 40 and columns < 50: at stride 8 that is 5 rows and 7 columns
    # (nearest reads input row 8 * i), i.e. ceil(40 / 8) = 5 and ceil(50 / 8) = 7
    c3_mask = levels[0][1][1]
    assert (~c3_mask).sum(0).max().item() == 5 and (~c3_mask).sum(1).max().item() == 7


def test_single_scale_and_no_mask():
    backbone = Backbone(BackboneConfig(arch="small_cnn"), return_levels=(4,)).eval()
    levels = backbone(torch.randn(1, 3, 64, 64))
    assert backbone.strides == [32] and backbone.num_channels == [192]
    (feature, mask), = levels
    assert tuple(feature.shape) == (1, 192, 2, 2) and not mask.any()


def test_small_cnn_dilation_and_size():
    backbone = Backbone(BackboneConfig(arch="small_cnn", dilation=True)).eval()
    assert backbone.strides == [8, 16, 16]
    levels = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f, _ in levels] == [(8, 8), (4, 4), (4, 4)]
    n_params = sum(p.numel() for p in backbone.parameters())
    assert 300_000 <= n_params <= 1_000_000
    assert all(p.requires_grad for p in backbone.parameters())  # trained from scratch: nothing frozen


def test_small_cnn_trains_on_a_batch():
    backbone = Backbone(BackboneConfig(arch="small_cnn"), return_levels=(2, 3, 4))
    levels = backbone(torch.randn(2, 3, 32, 32))
    sum(f.square().mean() for f, _ in levels).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in backbone.parameters())


def test_resnet_dc5_wrapper_strides():
    backbone = Backbone(BackboneConfig(arch="resnet18", dilation=True), return_levels=(4,)).eval()
    assert backbone.strides == [16] and backbone.num_channels == [512]
    with torch.no_grad():
        (feature, mask), = backbone(torch.randn(1, 3, 32, 48))
    assert tuple(feature.shape) == (1, 512, 2, 3) and tuple(mask.shape) == (1, 2, 3)


@pytest.mark.parametrize("images,masks,match", [
    (torch.randn(1, 1, 32, 32), None, r"images: expected 3 channels .*\(shape \(1, 1, 32, 32\)\)"),
    (torch.randn(3, 32, 32), None, r"images: expected 4 dimensions \(N, 3, H, W\), got shape \(3, 32, 32\)"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), None, "images: expected a floating-point tensor .*got torch.uint8"),
    ([torch.randn(3, 32, 32)], None, "images: expected a tensor .*got list"),
    (torch.randn(1, 3, 32, 32), torch.zeros(1, 32, 32), r"masks: expected a bool tensor .*torch.float32"),
    (torch.randn(1, 3, 32, 32), torch.zeros(1, 16, 32, dtype=torch.bool), r"masks: expected shape \(N, H, W\) = \(1, 32, 32\)"),
])
def test_bad_input_raises_value_error(images, masks, match):
    backbone = Backbone(BackboneConfig(arch="small_cnn"))
    with pytest.raises(ValueError, match=match):
        backbone(images, masks)


def test_unknown_arch_raises_value_error():
    with pytest.raises(ValueError, match="arch: expected one of"):
        BackboneConfig(arch="resnet42")


@pytest.mark.parametrize("cfg,levels,match", [
    (dict(arch="small_cnn"), (4, 3), "return_levels"),
    (dict(arch="small_cnn"), (5,), "return_levels"),
    (dict(arch="small_cnn"), (), "return_levels"),
    (dict(arch="small_cnn", pretrained_path="x.pth"), (2, 3, 4), "pretrained_path"),
    (dict(arch="small_cnn", small_cnn_channels=(32, 64, 100, 192)), (2, 3, 4), "channels"),
])
def test_bad_config_raises_value_error(cfg, levels, match):
    with pytest.raises(ValueError, match=match):
        Backbone(BackboneConfig(**cfg), return_levels=levels)


def test_missing_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        Backbone(BackboneConfig(arch="resnet18", pretrained_path=str(tmp_path / "absent.pth")))


def test_masks_give_official_valid_ratios():
    """Valid ratios from our per-level masks equal the official ones stored in the fixture."""
    if not FIXTURE.exists():
        pytest.fail(f"reference fixture missing: {FIXTURE}")
    fixture = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    mask = fixture["samples_mask"]  # (2, 160, 224)
    shapes = fixture["extras"]["spatial_shapes"].tolist()  # 3 backbone levels + the extra C6 level
    for level, (h, w) in enumerate(shapes):
        m = downsample_mask(mask, (h, w))  # C6 gets the image mask interpolated to its own size too
        ratio_h = (~m[:, :, 0]).sum(1).float() / h
        ratio_w = (~m[:, 0, :]).sum(1).float() / w
        torch.testing.assert_close(torch.stack([ratio_w, ratio_h], -1), fixture["extras"]["valid_ratios"][:, level])
