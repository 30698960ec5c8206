"""ResNet trunk: shapes, strides, torchvision/official names, weight loading, official parity."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ddetr_edu.config import BackboneConfig
from ddetr_edu.models.backbone import Backbone
from ddetr_edu.models.resnet import ResNet, load_pretrained_backbone, load_resnet_state_dict

torch.set_num_threads(2)
SHARED = Path(__file__).resolve().parents[1] / "fixtures"
REFERENCE = SHARED / "reference"
FIXTURE = REFERENCE / "official_small_multiscale_refine_twostage.pt"
OFFICIAL_PREFIX = "backbone.0.body."

# torchvision's published parameter counts (classifier included) and its classifier sizes
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672,
                      "resnet50": 25_557_032, "resnet101": 44_549_160}
FC_PARAMS = {"resnet18": 513_000, "resnet34": 513_000, "resnet50": 2_049_000, "resnet101": 2_049_000}


def _fill_weights_module():
    spec = importlib.util.spec_from_file_location("fill_weights", REFERENCE / "fill_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASIC, BOTTLENECK = (64, 128, 256, 512), (256, 512, 1024, 2048)


@pytest.mark.parametrize("name,channels,dilation", [
    ("resnet18", BASIC, False), ("resnet18", BASIC, True), ("resnet34", BASIC, False),
    ("resnet50", BOTTLENECK, False), ("resnet50", BOTTLENECK, True), ("resnet101", BOTTLENECK, False),
])
def test_stage_shapes_and_strides(name, channels, dilation):
    model = ResNet(name, dilation=dilation).eval()
    h, w = 32, 64  # divisible by 32: every stage has exact size H / s
    with torch.no_grad():
        outs = model(torch.randn(1, 3, h, w))
    strides = (4, 8, 16, 16 if dilation else 32)
    assert model.stage_channels == channels
    assert model.stage_strides == strides
    for out, c, s in zip(outs, channels, strides):
        assert tuple(out.shape) == (1, c, h // s, w // s)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_state_dict_size_equals_torchvision(name):
    # torchvision counts BN affines as parameters; here they are frozen buffers in the state dict
    sd = ResNet(name).state_dict()
    n = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var")))
    assert n == TORCHVISION_PARAMS[name] - FC_PARAMS[name]


def test_resnet18_names_and_shapes():
    sd = ResNet("resnet18").state_dict()
    assert tuple(sd["conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(sd["layer1.0.conv2.weight"].shape) == (64, 64, 3, 3)
    assert "layer1.0.downsample.0.weight" not in sd  # same width, stride 1: identity shortcut
    assert tuple(sd["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(sd["layer4.1.bn2.running_var"].shape) == (512,)
    assert not any(k.endswith("num_batches_tracked") for k in sd)


def test_resnet50_keys_equal_official_backbone_keys():
    tsv = REFERENCE / "official_keys" / "multiscale.tsv"
    if not tsv.exists():
        pytest.fail(f"reference data missing: {tsv}")
    official = []
    for line in tsv.read_text().splitlines():
        name, shape, _ = line.split("\t")
        if name.startswith(OFFICIAL_PREFIX):
            official.append((name[len(OFFICIAL_PREFIX):], tuple(int(s) for s in shape.strip("[]").split(",") if s)))
    assert len(official) == 265
    sd = Backbone(BackboneConfig(arch="resnet50")).state_dict()
    ours = [(k[len("body."):], tuple(v.shape)) for k, v in sd.items()]
    assert ours == official  # same names, shapes and order


def test_dc5_first_block_keeps_dilation_one():
    model = ResNet("resnet50", dilation=True)
    assert model.layer4[0].conv2.stride == (1, 1) and model.layer4[0].conv2.dilation == (1, 1)
    assert model.layer4[0].downsample[0].stride == (1, 1)
    assert all(block.conv2.dilation == (2, 2) and block.conv2.padding == (2, 2) for block in model.layer4[1:])


def test_load_torchvision_style_checkpoint(tmp_path):
    source = ResNet("resnet18")
    generator = torch.Generator().manual_seed(0)
    checkpoint = {k: torch.randn(v.shape, generator=generator) for k, v in source.state_dict().items()}
    for k in list(checkpoint):  # what a torchvision BatchNorm2d state dict also holds
        if k.endswith("running_var"):
            checkpoint[k] = checkpoint[k].abs() + 0.5
            checkpoint[k.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    checkpoint["fc.weight"], checkpoint["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(checkpoint, path)

    target = ResNet("resnet18")
    load_pretrained_backbone(target, path)
    loaded = target.state_dict()
    assert set(loaded) == {k for k in checkpoint if not k.startswith("fc.") and "num_batches" not in k}
    for k, v in loaded.items():
        assert torch.equal(v, checkpoint[k]), k


def test_load_rejects_missing_file_and_wrong_keys(tmp_path):
    model = ResNet("resnet18")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_pretrained_backbone(model, tmp_path / "absent.pth")
    r34 = ResNet("resnet34").state_dict()
    with pytest.raises(ValueError, match="unexpected keys"):
        load_resnet_state_dict(model, r34)
    bad = dict(model.state_dict())
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(ValueError, match=r"conv1.weight.*\(64, 3, 7, 7\)"):
        load_resnet_state_dict(model, bad)


def test_stem_and_layer1_frozen_when_training():
    trained = Backbone(BackboneConfig(arch="resnet18", train_backbone=True))
    for name, p in trained.body.named_parameters():
        assert p.requires_grad == name.startswith(("layer2.", "layer3.", "layer4.")), name
    frozen = Backbone(BackboneConfig(arch="resnet18", train_backbone=False))
    assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.slow
def test_resnet50_matches_official_channel_means():
    """Official weights (fill rule, seed 0) -> C3, C4, C5 spatial means equal the official ones."""
    if not FIXTURE.exists():
        pytest.fail(f"reference fixture missing: {FIXTURE}")
    fixture = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    keys = [k for k in fixture["keys"] if k[0].startswith(OFFICIAL_PREFIX)]
    official = _fill_weights_module().fill_official_state_dict(keys, seed=fixture["seed"])
    backbone = Backbone(BackboneConfig(arch="resnet50"), return_levels=(2, 3, 4)).eval()
    load_resnet_state_dict(backbone.body, {k[len(OFFICIAL_PREFIX):]: v for k, v in official.items()})
    with torch.no_grad():
        levels = backbone(fixture["samples_tensor"], fixture["samples_mask"])
    expected = fixture["extras"]["backbone_channel_means"]
    assert [tuple(f.shape[1:]) for f, _ in levels] == [(512, 20, 28), (1024, 10, 14), (2048, 5, 7)]
    for (feature, _), ref in zip(levels, expected):
        got = feature.mean(dim=(2, 3))  # (N, C)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
