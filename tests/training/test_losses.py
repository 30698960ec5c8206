"""Detection loss: focal by hand, perfect predictions, gradients, layers, num_boxes normalisation."""
import math
import os

import pytest
import torch
import torch.multiprocessing
import torch.nn.functional as F

from ddetr_edu.training import losses as losses_module
from ddetr_edu.training.focal import sigmoid_focal_loss
from ddetr_edu.training.losses import DetectionLoss, LossWeights, average_num_boxes, class_agnostic
from ddetr_edu.training.matcher import HungarianMatcher
from random_sets import random_outputs, random_targets


def random_layer(n: int, q: int, c: int, g: torch.Generator) -> dict:
    """One layer's outputs with leaf tensors that require grad: logits (n, q, c), boxes (n, q, 4)."""
    return random_outputs(n, q, c, g, requires_grad=True)


def value(scalar: torch.Tensor) -> float:
    return scalar.detach().item()


def hand_focal(x: float, y: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = 1 / (1 + math.exp(-x))
    p_t = p if y == 1 else 1 - p
    a_t = alpha if y == 1 else 1 - alpha
    return -a_t * (1 - p_t) ** gamma * math.log(p_t)


def test_sigmoid_focal_loss_by_hand_and_bce_limit():
    logits = torch.tensor([[-2.0, 0.0, 0.7], [3.0, -0.4, 1.5]])
    targets = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    expected = torch.tensor(
        [[hand_focal(x, y) for x, y in zip(row_x, row_y)] for row_x, row_y in zip(logits.tolist(), targets.tolist())]
    )
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1.0, gamma=0.0), bce)
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_focal_loss(logits, targets[:1])


def test_tiny_example_matches_hand_computation():
    # one image, 2 queries, 2 classes; query 0 sits exactly on the single target (class 1)
    target_box = [0.5, 0.5, 0.2, 0.4]
    outputs = {
        "pred_logits": torch.tensor([[[-1.0, 0.5], [2.0, 0.3]]]),
        "pred_boxes": torch.tensor([[target_box, [0.1, 0.1, 0.05, 0.05]]]),
    }
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([target_box])}]
    result = DetectionLoss(num_classes=2)(outputs, targets)
    # y = [[0, 1], [0, 0]], num_boxes = 1: L_cls = sum of the four focal terms
    cls = hand_focal(-1.0, 0) + hand_focal(0.5, 1) + hand_focal(2.0, 0) + hand_focal(0.3, 0)
    assert value(result["final/cls"]) == pytest.approx(cls, rel=1e-5)
    assert value(result["final/l1"]) == pytest.approx(0.0, abs=1e-7)
    assert value(result["final/giou"]) == pytest.approx(0.0, abs=1e-6)
    assert value(result["final/class_error"]) == pytest.approx(0.0)  # argmax of query 0 is class 1
    assert value(result["loss"]) == pytest.approx(2 * cls, rel=1e-5)


def test_box_losses_by_hand():
    # forced match (query 0 <-> target 0); L1 and 1 - GIoU of one pair with known geometry
    outputs = {"pred_logits": torch.zeros(1, 1, 1), "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])}
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.6, 0.5, 0.2, 0.2]])}]
    result = DetectionLoss(num_classes=1)(outputs, targets)
    # L1 = |0.5 - 0.6| = 0.1; boxes [0.4, 0.6] x [0.4, 0.6] and [0.5, 0.7] x [0.4, 0.6]:
    # inter 0.1 * 0.2 = 0.02, union 0.06, hull 0.3 * 0.2 = 0.06 -> GIoU = 1/3
    assert value(result["final/l1"]) == pytest.approx(0.1, abs=1e-6)
    assert value(result["final/giou"]) == pytest.approx(1 - 1 / 3, abs=1e-6)


def test_perfect_prediction_gives_zero_box_losses():
    g = torch.Generator().manual_seed(0)
    n, q, c = 2, 8, 4
    outputs = random_layer(n, q, c, g)
    targets = random_targets([3, 5], c, g)
    with torch.no_grad():
        for i, t in enumerate(targets):
            queries = torch.randperm(q, generator=g)[: len(t["labels"])]
            outputs["pred_boxes"][i, queries] = t["boxes"]
            outputs["pred_logits"][i] = -8.0
            outputs["pred_logits"][i, queries, t["labels"]] = 8.0
    result = DetectionLoss(num_classes=c)(outputs, targets)
    assert value(result["final/l1"]) < 1e-6
    assert value(result["final/giou"]) < 1e-6
    assert value(result["final/cls"]) < 1e-3  # confident and right: focal loss almost 0
    assert value(result["final/class_error"]) == 0.0


def test_layers_keys_and_weighted_total():
    g = torch.Generator().manual_seed(1)
    n, q, c = 2, 6, 3
    outputs = random_layer(n, q, c, g)
    targets = random_targets([2, 1], c, g)
    plain = DetectionLoss(num_classes=c)(outputs, targets)
    assert set(plain) == {"loss", "final/cls", "final/l1", "final/giou", "final/class_error"}

    outputs["aux_outputs"] = [random_layer(n, q, c, g) for _ in range(2)]
    outputs["enc_outputs"] = random_layer(n, 20, c, g)
    weights = LossWeights(cls=1.5, l1=3.0, giou=0.5)
    result = DetectionLoss(num_classes=c, weights=weights)(outputs, targets)
    layers = ["final", "aux0", "aux1", "enc"]
    assert set(result) == {"loss", "final/class_error"} | {f"{l}/{t}" for l in layers for t in ("cls", "l1", "giou")}
    for value in result.values():
        assert value.shape == ()
    total = sum(
        weights.cls * result[f"{l}/cls"] + weights.l1 * result[f"{l}/l1"] + weights.giou * result[f"{l}/giou"]
        for l in layers
    )
    torch.testing.assert_close(result["loss"], total)
    # the final layer's terms do not depend on the other layers
    for term in ("cls", "l1", "giou"):
        torch.testing.assert_close(result[f"final/{term}"], plain[f"final/{term}"])


def test_gradients_reach_every_layer():
    g = torch.Generator().manual_seed(2)
    n, q, c = 2, 5, 3
    outputs = random_layer(n, q, c, g)
    outputs["aux_outputs"] = [random_layer(n, q, c, g)]
    outputs["enc_outputs"] = random_layer(n, 12, c, g)
    targets = random_targets([2, 3], c, g)
    result = DetectionLoss(num_classes=c)(outputs, targets)
    assert result["loss"].requires_grad
    result["loss"].backward()
    for layer in (outputs, outputs["aux_outputs"][0], outputs["enc_outputs"]):
        for key in ("pred_logits", "pred_boxes"):
            grad = layer[key].grad
            assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_encoder_proposals_are_matched_class_agnostically():
    g = torch.Generator().manual_seed(3)
    n, q, s, c = 1, 4, 10, 5
    outputs = random_layer(n, q, c, g)
    targets = [{"labels": torch.tensor([3, 4]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]])}]
    enc = random_layer(n, s, c, g)
    with torch.no_grad():  # proposals 2 and 7 are perfect "objects" in the class-0 column
        enc["pred_boxes"][0, [2, 7]] = targets[0]["boxes"]
        enc["pred_logits"][:] = -8.0
        enc["pred_logits"][0, [2, 7], 0] = 8.0
    outputs["enc_outputs"] = enc
    criterion = DetectionLoss(num_classes=c)
    result = criterion(outputs, targets)
    assert value(result["enc/cls"]) < 1e-3 and value(result["enc/l1"]) < 1e-6
    # the same proposals scored against the real labels (3, 4) would be badly wrong
    real = criterion.layer_losses(enc, targets, criterion.matcher(enc, targets), num_boxes=2.0)
    assert value(real["cls"]) > 1.0
    assert targets[0]["labels"].tolist() == [3, 4]  # the caller's targets are left untouched
    assert class_agnostic(targets)[0]["labels"].tolist() == [0, 0]


def test_num_boxes_normalisation():
    g = torch.Generator().manual_seed(4)
    q, c = 6, 3
    one = random_layer(1, q, c, g)
    target = random_targets([3], c, g)
    single = DetectionLoss(num_classes=c)(one, target)
    # the same image twice: every sum doubles and so does num_boxes, the loss stays
    twice = {k: torch.cat([v, v]).detach() for k, v in one.items()}
    double = DetectionLoss(num_classes=c)(twice, target + target)
    for key in ("final/cls", "final/l1", "final/giou", "loss"):
        torch.testing.assert_close(double[key], single[key])
    # no boxes at all: num_boxes is clamped to 1, L_cls = sum of all focal terms
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    result = DetectionLoss(num_classes=c)(one, empty)
    expected = sigmoid_focal_loss(one["pred_logits"], torch.zeros(1, q, c)).sum()
    torch.testing.assert_close(result["final/cls"], expected)
    assert value(result["final/l1"]) == 0.0 and value(result["final/giou"]) == 0.0
    result["loss"].backward()  # still differentiable


def test_num_boxes_is_averaged_across_processes(monkeypatch):
    targets = random_targets([2, 1], 3, torch.Generator().manual_seed(5))
    assert average_num_boxes(targets) == 3.0

    class FakeDist:  # another process contributes 9 boxes, world size 2
        reduced = []

        @staticmethod
        def is_available():
            return True

        @staticmethod
        def is_initialized():
            return True

        @staticmethod
        def get_world_size():
            return 2

        @staticmethod
        def all_reduce(tensor):
            FakeDist.reduced.append(float(tensor))
            tensor += 9.0

    monkeypatch.setattr(losses_module, "dist", FakeDist)
    assert average_num_boxes(targets) == 6.0  # (3 + 9) / 2
    assert FakeDist.reduced == [3.0]
    outputs = random_layer(2, 5, 3, torch.Generator().manual_seed(6))
    distributed = DetectionLoss(num_classes=3)(outputs, targets)
    monkeypatch.undo()
    local = DetectionLoss(num_classes=3)(outputs, targets)
    torch.testing.assert_close(distributed["final/l1"], local["final/l1"] * 3 / 6)


def test_bad_inputs_raise_value_errors():
    g = torch.Generator().manual_seed(7)
    outputs = random_layer(2, 4, 3, g)
    targets = random_targets([1, 1], 3, g)
    with pytest.raises(ValueError, match=r"pred_logits must be \(2, q, 5\)"):
        DetectionLoss(num_classes=5)(outputs, targets)
    with pytest.raises(ValueError, match="aux0 outputs lack the key 'pred_boxes'"):
        DetectionLoss(num_classes=3)({**outputs, "aux_outputs": [{"pred_logits": outputs["pred_logits"]}]}, targets)
    with pytest.raises(ValueError, match="num_classes"):
        DetectionLoss(num_classes=0)
    assert isinstance(DetectionLoss(num_classes=3).matcher, HungarianMatcher)


def _num_boxes_worker(rank: int, world_size: int, init_file: str, result_dir: str) -> None:
    """One process of a real gloo group: rank r holds r + 1 images of 2 boxes each."""
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback: no hostname lookup on machines without DNS
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        targets = [{"labels": torch.zeros(2, dtype=torch.int64), "boxes": torch.rand(2, 4)}] * (rank + 1)
        torch.save(average_num_boxes(targets), f"{result_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_num_boxes_all_reduce_in_a_real_process_group(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    if "fork" not in torch.multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    # fork: the children reuse the imported modules (spawn would import torch again in each)
    torch.multiprocessing.start_processes(
        _num_boxes_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    # rank 0: 2 boxes, rank 1: 4 boxes -> both normalise by (2 + 4) / 2 = 3
    assert [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)] == [3.0, 3.0]
