"""ResNet-18/34/50/101 (V1.5) with frozen BatchNorm, written to load torchvision ImageNet weights.

The network is a stem (7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool: stride 4) followed by
four stages ``layer1..layer4``. Each stage halves the resolution (except ``layer1``) and is a stack
of residual blocks ``y = relu(F(x) + shortcut(x))``:

* ``BasicBlock`` (ResNet-18/34): two 3x3 convs, ``expansion = 1``;
* ``Bottleneck`` (ResNet-50/101): 1x1 reduce, 3x3, 1x1 expand (x4), ``expansion = 4``.
  "V1.5": the stride sits on the 3x3 conv (the original paper put it on the first 1x1).

Outputs of ``layer1..layer4`` have strides 4, 8, 16, 32; the detector calls ``layer2..layer4``
C3, C4, C5 (stride 2^l for C_l). DC5 ("dilated C5") replaces the stride of ``layer4`` by dilation
2, so C5 keeps stride 16 and twice the resolution at the same number of parameters.

Parameter names equal torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``
...), so ``load_pretrained_backbone(model, "resnet50-0676ba61.pth")`` loads an ImageNet checkpoint
with strict key checking (its ``fc.*`` classifier and ``num_batches_tracked`` counters are dropped).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ddetr_edu.models.frozen_bn import FrozenBatchNorm2d
from ddetr_edu.models.trunk import Trunk

# blocks per stage, block type
RESNET_SPECS: dict[str, tuple[tuple[int, int, int, int], str]] = {
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
    "resnet101": ((3, 4, 23, 3), "bottleneck"),
}


def _conv3x3(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    # padding = dilation keeps H, W (up to the stride) for any dilation
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); two 3x3 convs."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride, dilation)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:  # (N, c_in, H, W) -> (N, planes, H/s, W/s)
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, dilation) -> 1x1 expand x4, plus shortcut (ResNet V1.5)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)  # V1.5: the stride is here
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = FrozenBatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:  # (N, c_in, H, W) -> (N, 4 * planes, H/s, W/s)
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(Trunk):
    """ResNet trunk without the classifier: image (N, 3, H, W) -> the requested stage outputs.

    Attributes:
        stage_channels: output channels of layer1..layer4, e.g. (256, 512, 1024, 2048) for R50.
        stage_strides: output strides of layer1..layer4: (4, 8, 16, 32), or (4, 8, 16, 16) with DC5.
    """

    def __init__(self, name: str = "resnet50", dilation: bool = False) -> None:
        super().__init__()
        if name not in RESNET_SPECS:
            raise ValueError(f"name: expected one of {sorted(RESNET_SPECS)}, got {name!r}")
        depths, kind = RESNET_SPECS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.name = name
        self.dilation = dilation

        # stem: stride 2 conv + stride 2 max-pool = stride 4
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        self._c_in, self._dilation = 64, 1
        self.layer1 = self._make_stage(block, 64, depths[0], stride=1)
        self.layer2 = self._make_stage(block, 128, depths[1], stride=2)
        self.layer3 = self._make_stage(block, 256, depths[2], stride=2)
        self.layer4 = self._make_stage(block, 512, depths[3], stride=2, dilate=dilation)
        self.stage_channels = tuple(p * block.expansion for p in (64, 128, 256, 512))
        self.stage_strides = (4, 8, 16, 16 if dilation else 32)
        self.init_convs()

    def _make_stage(self, block: type[nn.Module], planes: int, depth: int, stride: int,
                    dilate: bool = False) -> nn.Sequential:
        # DC5: the stride is traded for dilation. As in torchvision, the first block of the stage
        # keeps the previous dilation; the following blocks use the new one.
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        c_out = planes * block.expansion
        downsample = None
        if stride != 1 or self._c_in != c_out:
            downsample = nn.Sequential(_conv1x1(self._c_in, c_out, stride), FrozenBatchNorm2d(c_out))
        blocks = [block(self._c_in, planes, stride, previous_dilation, downsample)]
        self._c_in = c_out
        blocks += [block(c_out, planes, 1, self._dilation) for _ in range(depth - 1)]
        return nn.Sequential(*blocks)

    def run_stem(self, images: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(images))))  # (N, 64, H/4, W/4)


def load_resnet_state_dict(model: ResNet, state_dict: Mapping[str, Tensor]) -> None:
    """Copy a torchvision-named ResNet state dict into ``model`` with strict key and shape checks.

    ``fc.*`` (the ImageNet classifier) and ``*.num_batches_tracked`` are ignored. Any other missing,
    unexpected or mis-shaped key raises ``ValueError`` naming it.
    """
    wanted = {k: v for k, v in state_dict.items()
              if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    own = model.state_dict()
    missing = sorted(set(own) - set(wanted))
    unexpected = sorted(set(wanted) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"state_dict does not match {model.name} (dilation={model.dilation}): "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}")
    for key, value in wanted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(own[key].shape)}, "
                             f"got {tuple(value.shape)}")
    model.load_state_dict(wanted, strict=True)


def read_backbone_weights(path: str | os.PathLike, arch: str = "resnet50") -> Mapping[str, Tensor]:
    """The ImageNet state dict in a local torchvision ``.pth`` file (nothing is downloaded).

    The file is read safely (``weights_only=True``); it may be a plain state dict or a dict holding
    one under ``"state_dict"`` or ``"model"``. A missing file is a FileNotFoundError; a whole
    detector (our training checkpoint, an official Deformable DETR checkpoint, a detector's
    state_dict) is a one-line ValueError that says so and points to ``--init-from``.
    """
    from ddetr_edu.checkpoints.init_weights import describe_weights_file
    from ddetr_edu.checkpoints.safe_load import safe_torch_load

    where = os.fspath(path)
    if not os.path.isfile(where):
        raise FileNotFoundError(
            f"pretrained backbone weights not found at {where!r}; download the torchvision "
            f"ImageNet checkpoint for {arch} (e.g. resnet50-0676ba61.pth) yourself and pass its path")
    checkpoint = safe_torch_load(where)
    whole = describe_weights_file(checkpoint)
    if whole is not None:
        raise ValueError(f"pretrained_path={where} is {whole}, not ImageNet backbone weights; to start from "
                         f"it use --init-from {where} (from Python: fit(..., init_from=...))")
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{where!r}: expected a state dict, got {type(checkpoint).__name__}")
    for wrapper in ("state_dict", "model"):
        if wrapper in checkpoint and isinstance(checkpoint[wrapper], Mapping):
            checkpoint = checkpoint[wrapper]
    return checkpoint


def load_pretrained_backbone(model: ResNet, path: str | os.PathLike) -> None:
    """Load ImageNet weights from a local torchvision ``.pth`` file (:func:`read_backbone_weights`)."""
    load_resnet_state_dict(model, read_backbone_weights(path, model.name))
