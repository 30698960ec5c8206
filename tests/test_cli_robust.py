"""The command line never loses a user's file and says in one line what is wrong with a path:
--overwrite safety, missing images before anything is written, a folder given for a file (and
the reverse), export's output, a live run holding --out, resume advice, epoch numbering."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from ddetr_edu.cli import continue_advice, main
from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
from ddetr_edu.training.loop import stopped_where
from ddetr_edu.training.run_lock import acquire_run_lock

from test_cli import TINY_SHAPES, _one_line_error, _train_args, finished_run, shapes_dir  # noqa: F401 (fixtures)


def _user_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["photos", "coco_by_hand", "photos_in_a_shapes_dataset"])
def test_make_shapes_never_touches_a_folder_holding_other_files_overwrite_or_not(shapes_dir, tmp_path, capsys,
                                                                                   layout):
    folder = tmp_path / "mine"
    if layout == "photos_in_a_shapes_dataset":
        shutil.copytree(shapes_dir, folder)
        (folder / "images" / "train" / "holiday.jpg").write_bytes(b"a photo")
    else:
        (folder / "images" / "train").mkdir(parents=True)
        (folder / "images" / "train" / "000001.jpg").write_bytes(b"a photo")
        (folder / "images" / "train" / "cat.png").write_bytes(b"another")
        if layout == "coco_by_hand":
            (folder / "train.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    before = _user_files(folder)
    for overwrite in ([], ["--overwrite"]):
        assert main(["make-shapes", "--out", str(folder), "--seed", "4", *TINY_SHAPES, *overwrite]) == 2
        err = _one_line_error(capsys)
        assert f"--out {folder} holds files that make-shapes did not write (" in err and "new or empty folder" in err
        assert _user_files(folder) == before
    with pytest.raises(ValueError, match="holds files that make-shapes did not write"):  # the library refuses too
        make_shapes_dataset(folder, ShapesConfig(num_train=1, num_val=1, image_size=32, min_size=8, max_size=16))
    assert _user_files(folder) == before


@pytest.mark.slow
def test_train_overwrite_removes_only_the_runs_own_files(shapes_dir, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "notes.txt").write_text("my notes")
    (run / "plots").mkdir()
    (run / "plots" / "loss.png").write_bytes(b"png")
    assert main([*_train_args(shapes_dir, run), "--epochs", "1", "--overwrite"]) == 0
    assert (run / "notes.txt").read_text() == "my notes" and (run / "plots" / "loss.png").read_bytes() == b"png"


def test_missing_images_are_found_before_anything_is_written(shapes_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    for name in ("000001.png", "000003.png"):
        (data / "images" / "train" / name).unlink()
    out = tmp_path / "run"
    assert main([*_train_args(data, out), "--epochs", "1", "--set", "max_steps_per_epoch=1"]) == 2
    err = _one_line_error(capsys)
    assert err == (f"error: {data / 'train.json'}: 2 of the 4 images it names are missing under "
                   f"{data / 'images' / 'train'}: 000001.png, 000003.png\n")
    assert not out.exists()  # no run folder, no log: the same command works once the images are back


@pytest.mark.parametrize("args, message", [
    (["eval", "--checkpoint", "{run}", "--data", "{data}"],
     "{run} is a folder; expected a checkpoint file (it holds checkpoint_best.pth, checkpoint_last.pth)"),
    (["train", "--resume", "{run}", "--data", "{data}", "--out", "{tmp}/new"], "{run} is a folder; expected a checkpoint"),
    (["visualize", "--image", "{data}/images", "--out", "{tmp}/vis"], "{data}/images is a folder; expected an image file"),
    (["visualize", "--image", "{data}/images/val", "--out", "{tmp}/vis"],
     "{data}/images/val is a folder; expected an image file (it holds 000000.png, 000001.png)"),
    (["eval", "--checkpoint", "{run}/checkpoint_last.pth", "--data", "{run}/log.jsonl"],
     "{run}/log.jsonl is a file; expected a dataset folder"),
    (["export", "--checkpoint", "{run}", "--out", "{tmp}/a.onnx"], "{run} is a folder; expected a checkpoint file"),
])
def test_a_folder_given_for_a_file_and_the_reverse_say_so(shapes_dir, finished_run, tmp_path, capsys, args, message):
    fill = {"run": finished_run, "data": shapes_dir, "tmp": tmp_path}
    assert main([a.format(**fill) for a in args]) == 2
    assert message.format(**fill) in _one_line_error(capsys)


def _onnx_graph(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_export_never_replaces_its_checkpoint_nor_a_file_that_is_not_an_onnx_graph(finished_run, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint.pth"
    shutil.copy(finished_run / "checkpoint_last.pth", checkpoint)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    graph = _onnx_graph(tmp_path / "old.onnx")
    before = _user_files(tmp_path)
    cases = [(checkpoint, ["--overwrite"], f"--out {checkpoint} is the checkpoint that --checkpoint reads"),
             (notes, ["--overwrite"], f"--out {notes} exists and is not an ONNX graph; export never replaces it"),
             (tmp_path, ["--overwrite"], f"--out {tmp_path} is a folder; expected the .onnx file to write"),
             (graph, [], f"--out {graph} exists (an ONNX graph); choose another file or pass --overwrite")]
    for out, extra, message in cases:
        assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), *extra]) == 2
        assert message in _one_line_error(capsys)
    assert _user_files(tmp_path) == before


def test_a_live_run_holding_out_is_named_whatever_the_options(shapes_dir, tmp_path, capsys):
    run = tmp_path / "run"
    with acquire_run_lock(run):  # this process plays the other run
        for extra in ([], ["--overwrite"]):
            assert main([*_train_args(shapes_dir, run), "--epochs", "1", *extra]) == 2
            assert f"{run} is in use by another run (pid " in _one_line_error(capsys)


def test_resume_advice_names_what_to_drop_from_the_command(tmp_path):
    interrupted = tmp_path / "checkpoint_interrupted.pth"
    args = argparse.Namespace(resume=None, overwrite=False)
    assert continue_advice(args, interrupted) == f"the same command with --resume {interrupted}"
    args = argparse.Namespace(resume=tmp_path / "checkpoint_last.pth", overwrite=True)
    assert continue_advice(args, interrupted) == (f"the same command with --resume {interrupted} instead of "
                                                  f"--resume {tmp_path / 'checkpoint_last.pth'} and --overwrite")


def test_resuming_on_other_classes_advises_what_resume_allows(shapes_dir, finished_run, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    for split in ("train", "val"):
        content = json.loads((data / f"{split}.json").read_text())
        content["categories"][0]["name"] = "disc"
        (data / f"{split}.json").write_text(json.dumps(content))
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["train", "--resume", str(run / "checkpoint_last.pth"), "--data", str(data), "--out", str(run),
                 "--epochs", "2"]) == 2
    err = _one_line_error(capsys)
    assert "--resume continues this model as it is" in err and f"--init-from {run / 'checkpoint_last.pth'}" in err
    assert "set num_classes" not in err  # the advice --resume would refuse


@pytest.mark.parametrize("checkpoint, where", [
    ({"epoch": 0, "step_in_epoch": 0}, "before epoch 1/3"),
    ({"epoch": 0, "step_in_epoch": 5}, "in epoch 1/3 after step 5"),
    ({"epoch": 1, "step_in_epoch": 0}, "after epoch 1/3"),
    ({"epoch": 1, "step_in_epoch": 0, "epoch_end_due": True}, "after training epoch 1/3, before its evaluation"),
])
def test_messages_number_epochs_from_1_like_the_progress_line(checkpoint, where):
    assert stopped_where(checkpoint, 3).startswith(where)
