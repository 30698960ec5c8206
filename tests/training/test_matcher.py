"""Hungarian matcher: batched == per image, empty targets, perfect predictions, brute force."""
import itertools
import math

import pytest
import torch

from ddetr_edu.training.matcher import HungarianMatcher
from random_sets import random_outputs, random_targets


def test_batched_equals_per_image():
    g = torch.Generator().manual_seed(0)
    outputs = random_outputs(4, 7, 5, g)
    targets = random_targets([3, 0, 7, 1], 5, g)
    batched = HungarianMatcher()(outputs, targets)
    assert len(batched) == 4
    for i in range(4):
        single_outputs = {k: v[i : i + 1] for k, v in outputs.items()}
        (single,) = HungarianMatcher()(single_outputs, [targets[i]])
        pred_b, tgt_b = batched[i]
        assert pred_b.dtype == torch.int64 and tgt_b.dtype == torch.int64
        assert len(pred_b) == len(targets[i]["labels"])  # every target is matched (t <= q)
        assert torch.equal(pred_b, single[0]) and torch.equal(tgt_b, single[1])
        assert len(set(pred_b.tolist())) == len(pred_b)  # one-to-one


def test_empty_targets():
    g = torch.Generator().manual_seed(1)
    outputs = random_outputs(2, 6, 3, g)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    matches = HungarianMatcher()(outputs, [empty, dict(empty)])
    assert len(matches) == 2
    for pred_idx, tgt_idx in matches:
        assert pred_idx.shape == (0,) and tgt_idx.shape == (0,)
        assert pred_idx.dtype == torch.int64 and tgt_idx.dtype == torch.int64


def test_more_targets_than_queries_matches_every_query():
    g = torch.Generator().manual_seed(2)
    outputs = random_outputs(1, 3, 4, g)
    targets = random_targets([5], 4, g)
    ((pred_idx, tgt_idx),) = HungarianMatcher()(outputs, targets)
    assert sorted(pred_idx.tolist()) == [0, 1, 2]
    assert len(set(tgt_idx.tolist())) == 3


def test_perfect_prediction_is_matched_to_itself():
    g = torch.Generator().manual_seed(3)
    n, q, c, t = 2, 10, 6, 4
    outputs = random_outputs(n, q, c, g)
    targets = random_targets([t, t], c, g)
    where = []  # where[i][j]: the query that holds target j of image i exactly
    for i in range(n):
        queries = torch.randperm(q, generator=g)[:t]
        outputs["pred_boxes"][i, queries] = targets[i]["boxes"]
        outputs["pred_logits"][i, queries] = -6.0
        outputs["pred_logits"][i, queries, targets[i]["labels"]] = 6.0
        where.append(queries)
    for i, (pred_idx, tgt_idx) in enumerate(HungarianMatcher()(outputs, targets)):
        assert torch.equal(where[i][tgt_idx], pred_idx)


def hand_cost(logit_row, box_p, label, box_t, w_class, w_bbox, w_giou, alpha=0.25, gamma=2.0):
    """The matching cost of one (prediction, target) pair with plain Python floats."""
    p = 1 / (1 + math.exp(-logit_row[label]))
    pos = alpha * (1 - p) ** gamma * -math.log(p + 1e-8)
    neg = (1 - alpha) * p**gamma * -math.log(1 - p + 1e-8)
    l1 = sum(abs(a - b) for a, b in zip(box_p, box_t))

    def corners(b):
        return b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2

    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = corners(box_p), corners(box_t)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    giou = inter / union - (hull - union) / hull
    return w_class * (pos - neg) + w_bbox * l1 + w_giou * -giou


@pytest.mark.parametrize(
    "weights", [(2.0, 5.0, 2.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (3.0, 0.5, 7.0)]
)
def test_matches_brute_force_search(weights):
    g = torch.Generator().manual_seed(4)
    q, t, c = 5, 3, 4
    outputs = random_outputs(1, q, c, g)
    targets = random_targets([t], c, g)
    matcher = HungarianMatcher(*weights)
    logits = outputs["pred_logits"][0].tolist()
    boxes_p, boxes_t = outputs["pred_boxes"][0].tolist(), targets[0]["boxes"].tolist()
    labels = targets[0]["labels"].tolist()
    cost = [[hand_cost(logits[i], boxes_p[i], labels[j], boxes_t[j], *weights) for j in range(t)] for i in range(q)]

    (matrix,) = matcher.cost_matrices(outputs, targets)
    torch.testing.assert_close(matrix, torch.tensor(cost), rtol=1e-5, atol=1e-5)

    # brute force: every injective map target -> query
    best = min(itertools.permutations(range(q), t), key=lambda qs: sum(cost[qs[j]][j] for j in range(t)))
    best_total = sum(cost[best[j]][j] for j in range(t))
    ((pred_idx, tgt_idx),) = matcher(outputs, targets)
    found_total = sum(cost[i][j] for i, j in zip(pred_idx.tolist(), tgt_idx.tolist()))
    assert sorted(tgt_idx.tolist()) == list(range(t))
    assert found_total == pytest.approx(best_total, abs=1e-6)
    assert {(best[j], j) for j in range(t)} == set(zip(pred_idx.tolist(), tgt_idx.tolist()))


def test_no_gradient_through_matching():
    g = torch.Generator().manual_seed(5)
    outputs = {k: v.requires_grad_() for k, v in random_outputs(1, 4, 3, g).items()}
    targets = random_targets([2], 3, g)
    (matrix,) = HungarianMatcher().cost_matrices(outputs, targets)
    assert not matrix.requires_grad
    HungarianMatcher()(outputs, targets)  # runs on tensors that require grad


def test_bad_inputs_raise_value_errors():
    g = torch.Generator().manual_seed(6)
    outputs = random_outputs(2, 4, 3, g)
    targets = random_targets([1, 2], 3, g)
    matcher = HungarianMatcher()
    with pytest.raises(ValueError, match="2 target dicts"):
        matcher(outputs, targets[:1])
    with pytest.raises(ValueError, match="pred_boxes"):
        matcher({"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"][:, :3]}, targets)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        matcher(outputs, [targets[0], {"labels": torch.tensor([0, 3]), "boxes": targets[1]["boxes"]}])
    with pytest.raises(ValueError, match="boxes"):
        matcher(outputs, [targets[0], {"labels": targets[1]["labels"], "boxes": torch.rand(2, 5)}])
    nan_outputs = {k: v.clone() for k, v in outputs.items()}
    nan_outputs["pred_boxes"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        matcher(nan_outputs, targets)
    with pytest.raises(ValueError, match="non-zero"):
        HungarianMatcher(0.0, 0.0, 0.0)
