"""Checks of the book's exercises, one module per chapter (``chNN.py``; the full-training chapter's
in ``full_training.py``).

A chapter imports its module (its working directory is ``book/``) and calls ``check_N_k(answer)``
on the reader's answer to exercise N.k. Every check computes what it expects with the library from
the inputs the exercise states, then:

* prints "Exercise N.k: not answered yet" when the answer is still None;
* raises AssertionError saying what differs when the answer is wrong (which entries, too large or
  too small), without giving the expected value away;
* prints "Exercise N.k: correct" when it is right.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def unanswered(label: str, answer) -> bool:
    """True (after saying so) when the reader has not answered exercise ``label`` yet."""
    if answer is None:
        print(f"Exercise {label}: not answered yet")
        return True
    return False


def correct(label: str) -> None:
    print(f"Exercise {label}: correct")


def assert_close(label: str, answer, expected, what: str, atol: float = 1e-6, rtol: float = 1e-6) -> None:
    """AssertionError naming ``what`` unless ``answer`` (a number, a sequence or a tensor) equals
    ``expected`` in shape and, elementwise, within atol + rtol * |expected|."""
    try:
        got = torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise AssertionError(f"Exercise {label}: {what} should be numbers, got {answer!r} ({error})") from None
    want = torch.as_tensor(expected, dtype=torch.float64)
    assert got.shape == want.shape, (f"Exercise {label}: {what} should have shape {tuple(want.shape)}, "
                                     f"got {tuple(got.shape)}")
    wrong = ~torch.isclose(got, want, atol=atol, rtol=rtol)
    assert not wrong.any(), f"Exercise {label}: {what} is {_short(got)}: {_which(got, want, wrong)}"


def assert_equal(label: str, answer, expected, what: str) -> None:
    """AssertionError naming ``what`` unless ``answer == expected`` (ints, tuples, lists)."""
    got, want = _plain(answer), _plain(expected)
    if got == want:
        return
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        hint = "too large" if got > want else "too small"
    elif isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        differ = [str(i) for i, (a, b) in enumerate(zip(got, want)) if a != b]
        hint = f"entry {differ[0]} differs" if len(differ) == 1 else f"entries {', '.join(differ)} differ"
    else:
        hint = f"expected {len(want) if isinstance(want, list) else 1} value(s)"
    raise AssertionError(f"Exercise {label}: {what} is {answer!r}: not the library's ({hint})")


def _which(got: torch.Tensor, want: torch.Tensor, wrong: torch.Tensor) -> str:
    """Which entries differ from the library's, and how: never the expected values themselves."""
    def how(a: torch.Tensor, b: torch.Tensor) -> str:
        return "not a number" if a.isnan() else "too large" if a > b else "too small"

    if got.dim() == 0:
        return how(got, want)
    entries = [f"{tuple(i) if len(i) > 1 else i[0]} {how(got[tuple(i)], want[tuple(i)])}"
               for i in wrong.nonzero().tolist()[:6]]
    return "entry " + ", ".join(entries) + ("" if int(wrong.sum()) <= 6 else ", ...")


def _plain(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _short(tensor: torch.Tensor) -> str:
    if tensor.dim() == 0:
        return f"{float(tensor):.6g}"
    values = [f"{float(v):.6g}" for v in tensor.flatten()[:8]]
    return "[" + ", ".join(values) + (", ..." if tensor.numel() > 8 else "") + "]"


__all__ = ["unanswered", "correct", "assert_close", "assert_equal"]
