"""Every chapter ends with 3-6 exercises that follow the book's convention, and every check works.

The convention (COMMON.md): a markdown cell "## Exercises", then for each exercise N.k a markdown
cell starting **Exercise N.k**, the reader's answer cell (None), the check cell
``check_N_k(answer_N_k)`` and the solution, tagged "solution" and hidden, which computes the answer
and calls the check. Three kinds of test:

* the stored chapters follow the convention (fast, no kernel);
* each solution, run on its own (the chapter's exercise import cell, then the solution cell, in
  book/ as the chapter would), passes its check, and the check raises AssertionError on a wrong
  answer derived from the solution's, saying what differs but not the expected value (fast, no
  kernel);
* in the chapters executed in fast mode (the same run as tests/book/test_chapters.py), every
  check cell said "not answered yet" and every solution cell said "correct".
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from book_helpers import (BOOK, CHAPTERS, Exercise, convention_problems, exercise_section, exercises,
                          needs_book_extra, printed, run_in_fast_mode, source)


def stored(path):
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_ends_with_exercises_by_the_convention(path):
    problems = convention_problems(stored(path), int(path.name[:2]))
    assert not problems, f"{path.name}: " + "; ".join(problems)


EVERY_EXERCISE = [(path, ex) for path in CHAPTERS for ex in exercises(stored(path))]


def run_solution(path, ex: Exercise, monkeypatch) -> tuple[dict, str]:
    """The chapter's code cells between "## Exercises" and the first exercise (the imports), then
    the solution cell, in one namespace with book/ as working directory -> (namespace, stdout)."""
    cells = stored(path)
    setup = [source(c) for c in cells[exercise_section(cells) + 1:exercises(cells)[0].task] if c["cell_type"] == "code"]
    monkeypatch.chdir(BOOK)
    monkeypatch.syspath_prepend(str(BOOK))
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in setup + [source(cells[ex.solution])]:
            exec(compile(code, f"{path.name} exercise {ex.label}", "exec"), namespace)
    return namespace, out.getvalue()


def wrong(answer):
    """An answer that differs from ``answer``: numbers moved, the first entry of a sequence changed."""
    if isinstance(answer, torch.Tensor):
        return answer + (1 if not answer.is_floating_point() else 0.1 * answer.abs().max() + 0.5)
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer + 1
    if isinstance(answer, float):
        return answer * 1.1 + 0.1
    if isinstance(answer, (list, tuple)):
        return type(answer)([wrong(answer[0]), *answer[1:]])
    raise TypeError(f"no wrong answer for {type(answer).__name__}")


@pytest.mark.parametrize("path, ex", EVERY_EXERCISE, ids=[f"{p.stem[:2]}-{ex.label}" for p, ex in EVERY_EXERCISE])
def test_check_accepts_the_solution_and_rejects_a_wrong_answer(path, ex, monkeypatch):
    namespace, said = run_solution(path, ex, monkeypatch)
    assert f"Exercise {ex.label}: correct" in said, f"the solution of {ex.label} printed {said!r}"
    check, answer = namespace[f"check_{ex.chapter}_{ex.k}"], namespace[f"answer_{ex.chapter}_{ex.k}"]
    with pytest.raises(AssertionError, match=f"Exercise {ex.label}"):
        check(wrong(answer))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(None)
    assert out.getvalue() == f"Exercise {ex.label}: not answered yet\n"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_executed_chapter_says_correct_for_every_solution(path):
    needs_book_extra()
    nb, error = run_in_fast_mode(path)
    if error is not None:
        pytest.fail(f"{path.name} did not run in fast mode (see test_chapters.py): {error}")
    found = exercises(nb.cells)
    assert found, f"{path.name}: no exercises"
    for ex in found:
        assert printed(nb.cells[ex.check]) == f"Exercise {ex.label}: not answered yet\n", (
            f"{path.name}: the check cell of {ex.label} printed {printed(nb.cells[ex.check])!r}")
        assert f"Exercise {ex.label}: correct" in printed(nb.cells[ex.solution]), (
            f"{path.name}: the solution of {ex.label} printed {printed(nb.cells[ex.solution])!r}")


def test_convention_check_names_each_breach():
    def md(text):
        return {"cell_type": "markdown", "source": text}

    def code(text, metadata=None):
        return {"cell_type": "code", "source": text, "metadata": metadata or {}}

    hidden = {"tags": ["solution"], "jupyter": {"source_hidden": True}}

    def one(k, solution_metadata=hidden, answer="answer_4_{k} = None"):
        return [md(f"**Exercise 4.{k}** Do it."), code(answer.format(k=k)), code(f"check_4_{k}(answer_4_{k})"),
                code(f"answer_4_{k} = 1\ncheck_4_{k}(answer_4_{k})", solution_metadata)]

    good = [md("# Chapter 4"), md("## Exercises"), code("from exercises.ch04 import *"), *one(1), *one(2), *one(3)]
    assert convention_problems(good, 4) == []
    assert convention_problems(good[:1], 4) == ["no markdown cell starting with '## Exercises'"]
    assert convention_problems(good[:7], 4) == ["1 exercises, expected 3 to 6"]
    assert convention_problems(good, 5)[0] == "exercise 4.1 (cell 3): expected **Exercise 5.1**"
    unhidden = good[:3] + one(1, {"tags": ["solution"]}) + one(2) + one(3)
    assert convention_problems(unhidden, 4) == [
        "exercise 4.1 (cell 3): the solution cell is not tagged 'solution' and hidden"]
    answered = good[:3] + one(1, answer="answer_4_1 = 3") + one(2) + one(3)
    assert convention_problems(answered, 4) == ["exercise 4.1 (cell 3): the answer cell should hold None and no check"]
    assert convention_problems(good + [md("More.")], 4) == [
        "cells follow the last exercise's solution: the exercises end the chapter"]


def test_checks_say_what_differs_without_giving_the_answer_away(monkeypatch):
    monkeypatch.syspath_prepend(str(BOOK))
    from exercises import assert_close, assert_equal

    with pytest.raises(AssertionError, match=r"^Exercise 9.9: the read is 1.5: too small$"):
        assert_close("9.9", 1.5, 2.25, "the read")
    with pytest.raises(AssertionError, match=r"entry 1 too large$"):
        assert_close("9.9", [1.0, 3.0], [1.0, 2.25], "the pair")
    with pytest.raises(AssertionError, match=r"entry \(0, 1\) not a number$"):
        assert_close("9.9", [[1.0, float("nan")]], [[1.0, 2.25]], "the row")
    with pytest.raises(AssertionError, match=r"should have shape \(2,\), got \(3,\)"):
        assert_close("9.9", [1, 2, 3], [1, 2], "the pair")
    with pytest.raises(AssertionError, match=r"is 7: not the library's \(too small\)$"):
        assert_equal("9.9", 7, 12, "the count")
    with pytest.raises(AssertionError, match=r"\(entry 0 differs\)$"):
        assert_equal("9.9", (3, 2), [0, 2], "the matching")
    with pytest.raises(AssertionError, match=r"\(entries 0, 1 differ\)$"):
        assert_equal("9.9", [3, 1], [0, 2], "the matching")
    assert_close("9.9", torch.tensor([1.0, 2.25]), (1.0, 2.25), "the pair")
    assert_equal("9.9", (0, 2.0), [0, 2], "the matching")


def test_wrong_answers_differ():
    assert wrong(3) == 4 and wrong(0.5) != 0.5 and wrong((1, 2)) == (2, 2)
    assert not torch.equal(wrong(torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0]))
