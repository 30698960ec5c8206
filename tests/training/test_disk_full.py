"""A full disk while a run writes its checkpoint or its log: one line naming the file and "no
space left on device", the last good checkpoint intact, no partial file. The write is made to
raise ENOSPC as a full disk does (``torch.save`` first writes part of the file, then fails, then
its zip writer fails again while being torn down, hiding the first error)."""
from __future__ import annotations

import errno

import pytest
import torch

import ddetr_edu.checkpoints.training_state as training_state
from ddetr_edu.checkpoints.training_state import atomic_torch_save
from ddetr_edu.disk_full import DiskFullError, disk_full_cause
from ddetr_edu.training.config import TrainConfig
from ddetr_edu.training.logbook import Logbook, read_log
from ddetr_edu.training.loop import LAST, train_loop
from ddetr_edu.training.losses import DetectionLoss

from engine_standins import NUM_CLASSES, TinyBoxes, TinyDetector, collate


class FullDiskSave:
    """``torch.save`` that writes a few bytes and then fails as on a full disk, from call ``fail_at`` on."""

    def __init__(self, fail_at: int = 1):
        self.calls, self.fail_at, self.real = 0, fail_at, torch.save

    def __call__(self, obj, file):
        self.calls += 1
        if self.calls < self.fail_at:
            return self.real(obj, file)
        file.write(b"PK\x03\x04 partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # what torch's zip writer does next
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3105600 vs 3105488")


def test_the_disk_full_error_is_found_behind_torchs_second_error():
    try:
        FullDiskSave()(None, open("/dev/null", "wb"))
    except RuntimeError as error:
        assert disk_full_cause(error).errno == errno.ENOSPC
    assert disk_full_cause(RuntimeError("unexpected pos")) is None


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    path = atomic_torch_save({"epoch": 1}, tmp_path / LAST)
    before = path.read_bytes()
    monkeypatch.setattr(training_state.torch, "save", FullDiskSave())
    with pytest.raises(DiskFullError) as error:
        atomic_torch_save({"epoch": 2}, path)
    assert str(error.value) == (f"no space left on device while writing {path}; the previous {LAST} is intact "
                                f"and no partial file is left")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [LAST]


def test_training_on_a_full_disk_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=2, num_workers=0, device="cpu", seed=3, log_every=1)
    torch.manual_seed(0)
    train_loop(TinyDetector(), DetectionLoss(NUM_CLASSES), TinyBoxes(4), None, collate,
               TrainConfig(**{**cfg.to_dict(), "epochs": 1}), tmp_path, verbose=False)
    good = (tmp_path / LAST).read_bytes()
    monkeypatch.setattr(training_state.torch, "save", FullDiskSave())
    with pytest.raises(DiskFullError, match=f"no space left on device while writing {tmp_path / LAST}; "):
        train_loop(TinyDetector(), DetectionLoss(NUM_CLASSES), TinyBoxes(4), None, collate, cfg, tmp_path,
                   resume=tmp_path / LAST, verbose=False)
    assert (tmp_path / LAST).read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST, "log.jsonl"]  # no temporary file, no lock


class FullDiskFile:
    """A file whose writes fail after ``room`` bytes, as on a full disk."""

    def __init__(self, real, room: int):
        self.real, self.room = real, room

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.real.close()

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.real.write(data[: self.room])  # a partial line, then the error
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.real.write(data)


def test_a_full_disk_while_logging_cuts_the_partial_line_and_names_the_log(tmp_path, monkeypatch):
    logbook = Logbook(tmp_path / "log.jsonl", records=[])
    logbook.write("train", step=1, loss=1.5)
    real_open = type(logbook.path).open
    monkeypatch.setattr(type(logbook.path), "open", lambda self, *a, **k: FullDiskFile(real_open(self, *a, **k), 10))
    with pytest.raises(DiskFullError, match=f"no space left on device while writing {tmp_path / 'log.jsonl'}; "
                                            "its 1 complete records are intact"):
        logbook.write("train", step=2, loss=1.25)
    monkeypatch.undo()
    assert read_log(tmp_path / "log.jsonl") == [{"kind": "train", "step": 1, "loss": 1.5}]
    assert (tmp_path / "log.jsonl").read_text().endswith("}\n")
