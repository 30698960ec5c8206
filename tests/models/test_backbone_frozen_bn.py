"""FrozenBatchNorm2d: the formula, buffers only, BatchNorm2d state dicts load."""
from __future__ import annotations

import torch
from torch import nn

from ddetr_edu.models.frozen_bn import FrozenBatchNorm2d


def _filled(c: int, seed: int = 0) -> FrozenBatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = FrozenBatchNorm2d(c)
    bn.weight.copy_(1 + 0.1 * torch.randn(c, generator=g))
    bn.bias.copy_(0.1 * torch.randn(c, generator=g))
    bn.running_mean.copy_(torch.randn(c, generator=g))
    bn.running_var.copy_(torch.rand(c, generator=g) * 2 + 1e-3)
    return bn


def test_formula_matches_manual_and_eval_batchnorm():
    bn = _filled(6)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    bn = bn.double()
    shape = (1, -1, 1, 1)
    manual = ((x - bn.running_mean.view(shape)) * torch.rsqrt(bn.running_var.view(shape) + 1e-5)
              * bn.weight.view(shape) + bn.bias.view(shape))
    torch.testing.assert_close(bn(x), manual, rtol=1e-12, atol=1e-12)

    reference = nn.BatchNorm2d(6, eps=1e-5).double().eval()
    reference.load_state_dict(bn.state_dict(), strict=False)
    torch.testing.assert_close(bn(x), reference(x), rtol=1e-12, atol=1e-12)


def test_eps_is_added_before_rsqrt():
    bn = FrozenBatchNorm2d(1)
    bn.running_var.zero_()  # var 0: y = x / sqrt(1e-5)
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    assert torch.allclose(bn.double()(x), x / (1e-5) ** 0.5)


def test_buffers_not_parameters_and_stays_frozen_in_train_mode():
    bn = _filled(3).train()
    assert list(bn.parameters()) == []
    assert sorted(dict(bn.named_buffers())) == ["bias", "running_mean", "running_var", "weight"]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    bn(torch.randn(4, 3, 2, 2) * 10 + 3)
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())


def test_loads_batchnorm_state_dict_dropping_num_batches_tracked():
    source = nn.BatchNorm2d(4)
    source.running_mean.fill_(0.3)
    source.weight.data.fill_(2.0)
    bn = FrozenBatchNorm2d(4)
    bn.load_state_dict(source.state_dict(), strict=True)  # has num_batches_tracked
    assert torch.equal(bn.running_mean, torch.full((4,), 0.3))
    assert torch.equal(bn.weight, torch.full((4,), 2.0))
    assert "num_batches_tracked" not in bn.state_dict()
