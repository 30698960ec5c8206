"""Box geometry: format round trips, IoU/GIoU of boxes whose answer is known by hand."""
import math

import pytest
import torch

from ddetr_edu.boxes import (
    box_area,
    box_iou,
    cxcywh_to_xyxy,
    generalized_box_iou,
    inverse_sigmoid,
    xyxy_to_cxcywh,
)


def random_xyxy(num: int, generator: torch.Generator) -> torch.Tensor:
    """(num, 4) valid xyxy boxes inside [0, 1]^2 (x1 >= x0, y1 >= y0, positive area)."""
    corners = torch.rand(num, 2, 2, generator=generator)  # (num, corner, xy)
    low, high = corners.min(dim=1).values, corners.max(dim=1).values
    return torch.cat([low, high + 1e-3], dim=-1)


def test_conversions_known_values():
    cxcywh = torch.tensor([[0.5, 0.4, 0.2, 0.6]])
    xyxy = torch.tensor([[0.4, 0.1, 0.6, 0.7]])
    torch.testing.assert_close(cxcywh_to_xyxy(cxcywh), xyxy)
    torch.testing.assert_close(xyxy_to_cxcywh(xyxy), cxcywh)


def test_round_trips_any_leading_shape():
    g = torch.Generator().manual_seed(0)
    cxcywh = torch.rand(2, 3, 5, 4, generator=g)
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(cxcywh)), cxcywh)
    xyxy = random_xyxy(20, g)
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)
    assert cxcywh_to_xyxy(cxcywh).shape == (2, 3, 5, 4)


def test_box_area_known_and_degenerate():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [2.0, 2.0, 1.0, 3.0]])
    torch.testing.assert_close(box_area(boxes), torch.tensor([6.0, 0.0, 0.0]))


def test_iou_known_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor(
        [
            [1.0, 1.0, 3.0, 3.0],  # overlap 1, union 4 + 4 - 1 = 7
            [0.0, 0.0, 2.0, 2.0],  # identical
            [5.0, 5.0, 6.0, 6.0],  # disjoint
            [0.5, 0.5, 1.5, 1.5],  # nested: 1 / 4
        ]
    )
    iou, union = box_iou(a, b)
    assert iou.shape == (1, 4) and union.shape == (1, 4)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 1.0, 0.0, 0.25]]))
    torch.testing.assert_close(union, torch.tensor([[7.0, 4.0, 5.0, 4.0]]))


def test_iou_is_symmetric_and_pairwise():
    g = torch.Generator().manual_seed(1)
    a, b = random_xyxy(6, g), random_xyxy(4, g)
    iou_ab, _ = box_iou(a, b)
    iou_ba, _ = box_iou(b, a)
    assert iou_ab.shape == (6, 4)
    torch.testing.assert_close(iou_ab, iou_ba.T)
    # entry (i, j) equals the IoU of the pair alone
    single, _ = box_iou(a[2:3], b[3:4])
    torch.testing.assert_close(iou_ab[2, 3], single[0, 0])


def test_giou_known_value_for_disjoint_boxes():
    # IoU 0; enclosing box 3 x 1 = 3, union 2: GIoU = 0 - (3 - 2) / 3
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([[-1 / 3]]))


def test_giou_range_and_far_boxes_approach_minus_one():
    g = torch.Generator().manual_seed(2)
    a, b = random_xyxy(50, g), random_xyxy(40, g)
    giou = generalized_box_iou(a, b)
    iou, _ = box_iou(a, b)
    assert giou.shape == (50, 40)
    assert bool((giou >= -1).all()) and bool((giou <= 1).all())
    assert bool((giou <= iou + 1e-6).all())  # the penalty is never negative
    tiny_far = generalized_box_iou(torch.tensor([[0.0, 0.0, 0.01, 0.01]]), torch.tensor([[10.0, 10.0, 10.01, 10.01]]))
    assert -1.0 <= float(tiny_far) < -0.99


def test_giou_equals_iou_for_coincident_and_nested_boxes():
    g = torch.Generator().manual_seed(3)
    outer = random_xyxy(10, g)
    # a box strictly inside each outer box: shrink towards its centre
    centre = (outer[:, :2] + outer[:, 2:]) / 2
    half = (outer[:, 2:] - outer[:, :2]) / 2 * 0.6
    inner = torch.cat([centre - half, centre + half], dim=-1)
    giou_same = generalized_box_iou(outer, outer).diag()
    torch.testing.assert_close(giou_same, torch.ones(10))
    giou_nested = generalized_box_iou(outer, inner).diag()
    iou_nested = box_iou(outer, inner)[0].diag()
    torch.testing.assert_close(giou_nested, iou_nested)
    torch.testing.assert_close(iou_nested, torch.full((10,), 0.36))


@pytest.mark.parametrize("which", ["boxes_a", "boxes_b"])
def test_giou_rejects_inverted_boxes(which):
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    inverted = torch.tensor([[0.5, 0.0, 0.2, 1.0]])  # x1 < x0
    a, b = (inverted, good) if which == "boxes_a" else (good, inverted)
    with pytest.raises(ValueError, match=which):
        generalized_box_iou(a, b)


def test_inverse_sigmoid_inverts_sigmoid_and_stays_finite():
    x = torch.linspace(0.01, 0.99, 50)
    torch.testing.assert_close(inverse_sigmoid(x).sigmoid(), x)
    edges = inverse_sigmoid(torch.tensor([0.0, 1.0, -0.5, 1.5]))
    bound = math.log(1e-5)
    torch.testing.assert_close(edges, torch.tensor([bound, -bound, bound, -bound]))
