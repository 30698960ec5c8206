"""Random predictions and targets for the matcher and loss tests (boxes cxcywh inside the image)."""
import torch


def random_outputs(n: int, q: int, c: int, g: torch.Generator, requires_grad: bool = False) -> dict:
    """One layer's outputs: logits (n, q, c), boxes (n, q, 4); leaf tensors if ``requires_grad``."""
    centres = 0.2 + 0.6 * torch.rand(n, q, 2, generator=g)
    sizes = 0.05 + 0.3 * torch.rand(n, q, 2, generator=g)
    logits, boxes = torch.randn(n, q, c, generator=g), torch.cat([centres, sizes], -1)
    return {"pred_logits": logits.requires_grad_(requires_grad), "pred_boxes": boxes.requires_grad_(requires_grad)}


def random_targets(counts: list[int], c: int, g: torch.Generator) -> list[dict]:
    """One target dict per image with ``counts[i]`` boxes: labels (t,) in 0..c-1, boxes (t, 4)."""
    targets = []
    for t in counts:
        centres = 0.2 + 0.6 * torch.rand(t, 2, generator=g)
        sizes = 0.05 + 0.3 * torch.rand(t, 2, generator=g)
        targets.append({"labels": torch.randint(0, c, (t,), generator=g), "boxes": torch.cat([centres, sizes], -1)})
    return targets
