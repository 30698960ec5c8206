"""The command line and the demo pipeline, end to end on a tiny model and tiny shapes."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ddetr_edu.cli import UsageError, main, official_postprocess, split_overrides
from ddetr_edu.config import get_preset, with_overrides
from ddetr_edu.data.shapes import ShapesConfig
from ddetr_edu.training.config import TrainConfig, train_preset

TINY_SHAPES = ["--set", "num_train=4", "--set", "num_val=2", "--set", "image_size=32",
               "--set", "min_size=8", "--set", "max_size=16", "--set", "max_objects=2"]
TINY_MODEL = {"d_model": "64", "n_heads": "2", "enc_layers": "1", "dec_layers": "2", "dim_feedforward": "32",
              "small_cnn_channels": "8,8,16,16", "num_queries": "5", "num_classes": "5",
              "num_feature_levels": "3", "attention_backend": "grid_sample"}
TINY_TRAIN = {"batch_size": "2", "image_size": "32", "log_every": "1", "eval_every": "1", "lr_drop": "5"}


def _sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    assert main(["make-shapes", "--out", str(out), "--seed", "3", *TINY_SHAPES]) == 0
    return out


def test_make_shapes_writes_both_splits(shapes_dir):
    train = json.loads((shapes_dir / "train.json").read_text())
    assert len(train["images"]) == 4 and train["info"]["config"]["seed"] == 3
    assert len(list((shapes_dir / "images" / "val").glob("*.png"))) == 2


def test_train_eval_and_resume_through_the_cli(shapes_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "shapes_cpu", "--data", str(shapes_dir), "--out", str(run),
            *_sets(TINY_MODEL), *_sets(TINY_TRAIN)]
    assert main([*args, "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "AP50" in out and "done: 1 epochs" in out
    saved = torch.load(run / "checkpoint_last.pth", weights_only=True)
    assert saved["epoch"] == 1 and saved["model_config"]["transformer"]["d_model"] == 64
    assert saved["train_config"]["batch_size"] == 2

    assert main(["train", "--resume", str(run / "checkpoint_last.pth"), "--data", str(shapes_dir),
                 "--out", str(run), "--epochs", "2"]) == 0
    assert torch.load(run / "checkpoint_last.pth", weights_only=True)["epoch"] == 2
    assert "resumed from" in capsys.readouterr().out

    assert main(["eval", "--checkpoint", str(run / "checkpoint_last.pth"), "--data", str(shapes_dir)]) == 0
    table = capsys.readouterr().out
    assert "AP " in table and "AP_S" in table and "AP per class" in table


@pytest.mark.parametrize("args, message", [
    (["train", "--set", "no_such_field=1"], "no config has a field 'no_such_field'; model fields: "),
    (["train", "--set", "d_model=wide"], "ModelConfig.d_model: expected int, got 'wide'"),
    (["train", "--set", "d_model=100"], "d_model: expected a multiple of 32"),  # config validation
    (["train", "--set", "lr"], "--set expects key=value"),
    (["train", "--data", "{tmp}/missing"], "no dataset found under"),
    (["train", "--resume", "{tmp}/none.pth"], "checkpoint not found"),
    (["eval", "--checkpoint", "{tmp}/none.pth"], "checkpoint not found"),
    (["eval", "--checkpoint", "{tmp}/none.pth", "--set", "d_model=64"], "eval takes the model from --checkpoint"),
    (["make-shapes", "--set", "num_train=-1"], "num_train/num_val must be >= 0"),
])
def test_bad_input_gives_exit_code_2_and_one_line(shapes_dir, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    if args[0] != "make-shapes" and "--data" not in args:
        args += ["--data", str(shapes_dir)]
    args += ["--out", str(tmp_path / "out")] if args[0] != "eval" else []
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize("bug", [TypeError, ValueError])
def test_a_bug_inside_training_keeps_its_traceback(shapes_dir, tmp_path, monkeypatch, bug):
    import ddetr_edu.training.loop as loop

    def broken(*args, **kwargs):
        raise bug("a bug deep inside training")

    monkeypatch.setattr(loop, "build_optimizer", broken)  # called by fit(), after all input checks
    with pytest.raises(bug, match="a bug deep inside training"):
        main(["train", "--data", str(shapes_dir), "--out", str(tmp_path / "run"), "--epochs", "1",
              *_sets(TINY_MODEL), *_sets(TINY_TRAIN)])


def test_overrides_are_routed_as_strings_and_typed_by_the_config():
    model, train = split_overrides(["d_model=64", "lr=1e-3", "two_stage=true", "train.seed=5",
                                    "model.small_cnn_channels=8,16,16,32", "max_steps_per_epoch=none"])
    assert model == {"d_model": "64", "two_stage": "true", "small_cnn_channels": "8,16,16,32"}
    assert train == {"lr": "1e-3", "seed": "5", "max_steps_per_epoch": "none"}
    cfg = with_overrides(train_preset("coco"), train)
    assert (cfg.lr, cfg.seed, cfg.max_steps_per_epoch) == (1e-3, 5, None)
    model_cfg = with_overrides(get_preset("multiscale_refine"), model)
    assert model_cfg.transformer.d_model == 64 and model_cfg.two_stage is True
    assert model_cfg.backbone.small_cnn_channels == (8, 16, 16, 32)
    with pytest.raises(UsageError, match="the model config has no field 'lr'; model fields: "):
        split_overrides(["model.lr=1"])
    with pytest.raises(UsageError, match="prefix must be 'model.' or 'train.'"):
        split_overrides(["data.lr=1"])
    with pytest.raises(UsageError, match="key=value"):
        split_overrides(["d_model"])


def test_a_name_in_both_configs_needs_its_prefix(monkeypatch):
    import ddetr_edu.config as config

    real = config.config_fields  # no name is in both today: give both configs a field "shared"
    monkeypatch.setattr(config, "config_fields", lambda cls: {**real(cls), "shared": (("shared",), int)}
                        if cls in (config.ModelConfig, TrainConfig) else real(cls))
    with pytest.raises(UsageError, match="both configs have 'shared'; write model.shared or train.shared"):
        split_overrides(["shared=1"])
    assert split_overrides(["train.shared=1", "model.d_model=64"]) == ({"d_model": "64"}, {"shared": "1"})


def test_official_postprocess_maps_coco_ids_to_contiguous_labels():
    logits = torch.full((1, 2, 91), -10.0)
    logits[0, 0, 3] = 5.0  # category id 3 -> label 1 below
    logits[0, 1, 90] = 4.0  # category id 90 is not in this dataset: dropped
    outputs = {"pred_logits": logits, "pred_boxes": torch.full((1, 2, 4), 0.5)}
    (result,) = official_postprocess({1: 0, 3: 1})(outputs, torch.tensor([[10, 20]]))
    assert result["labels"][0].item() == 1 and 90 not in result["labels"].tolist()
    assert len(result["labels"]) == len(result["scores"]) == len(result["boxes"])


def test_demo_pipeline_writes_table_curves_and_pictures(tmp_path):
    from ddetr_edu.demo import run_demo, shapes_dataset_is_ready

    shapes = ShapesConfig(num_train=4, num_val=2, image_size=32, min_size=8, max_size=16, max_objects=2)
    model_cfg = get_preset("shapes_cpu", **TINY_MODEL)  # strings are parsed by the field types
    train_cfg = with_overrides(train_preset("shapes_cpu"), {**TINY_TRAIN, "epochs": "2"})
    lines = []
    result = run_demo(tmp_path / "data", tmp_path / "run", shapes=shapes, model_cfg=model_cfg,
                      train_cfg=train_cfg, num_pictures=2, report=lines.append, num_visualized=1)
    assert shapes_dataset_is_ready(tmp_path / "data", shapes)
    assert {p.name for p in result.figures} == {"loss.png", "ap.png", "detections.png"}
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in result.figures)
    assert set(result.metrics) >= {"AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"} and "AP50" in result.table
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()).keys() == result.metrics.keys()
    # a second run finds the data and the finished checkpoint: nothing is retrained
    again = run_demo(tmp_path / "data", tmp_path / "run", shapes=shapes, model_cfg=model_cfg,
                     train_cfg=train_cfg, num_pictures=2, report=lines.append, num_visualized=1)
    assert "shapes dataset found" in lines[-2] and "continuing" in lines[-1]
    assert again.metrics == pytest.approx(result.metrics, nan_ok=True)


# ------------------------------------------------------------------ classes, data files, values
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # COCO 2017's 80 ids
TINY_COCO_MODEL = {"arch": "small_cnn", "small_cnn_channels": "8,8,16,16", "d_model": "32", "n_heads": "2",
                   "enc_layers": "1", "dec_layers": "2", "dim_feedforward": "32", "num_queries": "10"}


def write_coco_layout(root, splits=("train2017", "val2017"), images_per_split=2):
    """A COCO 2017 folder: 64 x 48 noise images with boxes of category 1 and 90 each, and the 80
    gapped category ids of COCO in 'categories'."""
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"id": cid, "name": f"category_{cid}", "supercategory": "thing"} for cid in COCO_IDS]
    for split in splits:
        (root / split).mkdir()
        images, annotations = [], []
        for image_id in range(100, 100 + images_per_split):
            name = f"{image_id:012d}.jpg"
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / split / name)
            images.append({"id": image_id, "file_name": name, "width": 64, "height": 48})
            annotations += [{"id": 2 * image_id + k, "image_id": image_id, "category_id": category_id,
                             "bbox": [4 + 30 * k, 6, 24, 30], "area": 720.0, "iscrowd": 0}
                            for k, category_id in enumerate((1, 90))]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def write_checkpoint(path, model_cfg, train_cfg, class_names=None):
    """An untrained model's training checkpoint (``class_names`` None: as written before the key)."""
    from ddetr_edu.checkpoints.training_state import atomic_torch_save, build_checkpoint
    from ddetr_edu.config import config_to_dict
    from ddetr_edu.models import build_detector

    torch.manual_seed(0)
    model = build_detector(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    checkpoint = build_checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                                  epoch=1, step_in_epoch=0, global_step=1, best_ap=0.0,
                                  model_config=config_to_dict(model_cfg), train_config=train_cfg.to_dict(),
                                  class_names=class_names)
    return atomic_torch_save(checkpoint, path)


@pytest.mark.slow
def test_readme_coco_command_runs_its_first_evaluation_on_a_coco_layout(tmp_path, capsys):
    # README "COCO on 8 GPUs": the paper preset (91 logits, the official convention) on data whose 80
    # categories have the labels 0..79; a tiny model, one step, then the evaluation.
    coco, run = write_coco_layout(tmp_path / "coco"), tmp_path / "run"
    assert main(["train", "--preset", "multiscale_refine_twostage", "--train-preset", "coco", "--data", str(coco),
                 "--out", str(run), "--epochs", "1", *_sets(TINY_COCO_MODEL), "--set", "max_steps_per_epoch=1"]) == 0
    out = capsys.readouterr().out
    logged = re.search(r"epoch 1: AP (\S+)", out).group(1)
    table = re.search(r"^AP +(\S+)$", out, re.MULTILINE).group(1)
    assert logged == table  # one AP scale: the log line and the COCO table print the same number
    saved = torch.load(run / "checkpoint_last.pth", weights_only=True)
    assert saved["model_config"]["num_classes"] == 80  # from the data, as --set num_classes was not given
    assert saved["class_names"] == [f"category_{cid}" for cid in COCO_IDS]


def test_num_classes_set_below_the_data_is_refused_before_training(shapes_dir, tmp_path, capsys):
    args = ["train", "--data", str(shapes_dir), "--out", str(tmp_path / "run"), *_sets(TINY_MODEL), *_sets(TINY_TRAIN)]
    assert main([*args, "--set", "num_classes=3"]) == 2
    err = capsys.readouterr().err
    assert "model num_classes=3 but the dataset has 5 classes (circle, square," in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_eval_ranks_the_data_classes_only_of_a_model_with_more_logits():
    from ddetr_edu.training.fit import dataset_postprocess

    logits = torch.full((1, 2, 91), -10.0)
    logits[0, 0, 83] = 9.0  # the best score is a class the data does not have
    logits[0, 1, 4] = 5.0
    outputs = {"pred_logits": logits, "pred_boxes": torch.full((1, 2, 4), 0.5)}
    (result,) = dataset_postprocess(80)(outputs, torch.tensor([[10, 20]]))
    assert result["labels"][0].item() == 4 and int(result["labels"].max()) < 80


@pytest.mark.parametrize("layout", ["shapes", "COCO 2017"])
def test_eval_on_a_folder_with_the_validation_split_only(tmp_path, capsys, shapes_dir, layout):
    data = tmp_path / "data"
    if layout == "shapes":
        shutil.copytree(shapes_dir / "images" / "val", data / "images" / "val")
        shutil.copy(shapes_dir / "val.json", data / "val.json")
        model_cfg = get_preset("shapes_cpu", **TINY_MODEL)
        train_cfg = with_overrides(train_preset("shapes_cpu"), TINY_TRAIN)
        names = ["circle", "square", "triangle", "star", "cross"]
    else:  # a model with the official 91 logits, on COCO's 80 categories: evaluated on labels 0..79
        write_coco_layout(data, splits=("val2017",))
        model_cfg = get_preset("multiscale", **TINY_COCO_MODEL)
        train_cfg = with_overrides(train_preset("coco"), {"num_workers": "0"})
        names = [f"category_{cid}" for cid in COCO_IDS]
    assert model_cfg.num_classes == (5 if layout == "shapes" else 91)
    checkpoint = write_checkpoint(tmp_path / "model.pth", model_cfg, train_cfg, names)
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^AP +\d\.\d{3}$", out, re.MULTILINE) and "AP per class" in out


def test_eval_refuses_a_checkpoint_trained_on_other_classes(tmp_path, capsys, shapes_dir):
    model_cfg = get_preset("shapes_cpu", **TINY_MODEL)
    train_cfg = with_overrides(train_preset("shapes_cpu"), TINY_TRAIN)
    checkpoint = write_checkpoint(tmp_path / "model.pth", model_cfg, train_cfg, ["a", "b", "c", "d", "e"])
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(shapes_dir)]) == 2
    err = capsys.readouterr().err
    assert "the model was trained on the classes ['a', 'b', 'c', 'd', 'e']" in err and err.count("\n") == 1
    write_checkpoint(checkpoint, model_cfg, train_cfg)  # an older checkpoint without class names: no check
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(shapes_dir)]) == 0


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("value, message", [
    ("max_eval_images=-3", "TrainConfig.max_eval_images must be None (no limit) or an int >= 1, got -3"),
    ("device=tpu", "TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("betas=0.9", "TrainConfig.betas must be two numbers in [0, 1)"),
    ("lr_drop_factor=nan", "TrainConfig.lr_drop_factor must be in (0, 1]"),
    ("num_workers=-2", "TrainConfig.num_workers must be an int >= 0, got -2"),
])
def test_impossible_training_values_exit_2_with_one_line(shapes_dir, tmp_path, capsys, command, value, message):
    if command == "train":
        args = ["train", "--data", str(shapes_dir), "--out", str(tmp_path / "run"), *_sets(TINY_MODEL)]
    else:
        model_cfg = get_preset("shapes_cpu", **TINY_MODEL)
        checkpoint = write_checkpoint(tmp_path / "model.pth", model_cfg, train_preset("shapes_cpu"))
        args = ["eval", "--checkpoint", str(checkpoint), "--data", str(shapes_dir)]
    assert main([*args, "--set", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def _copy_of(shapes_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    return data


def test_a_bad_image_met_in_a_worker_while_training_is_one_line(shapes_dir, tmp_path, capsys):
    data = _copy_of(shapes_dir, tmp_path)
    bad = sorted((data / "images" / "train").iterdir())[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                 *_sets(TINY_MODEL), *_sets(TINY_TRAIN), "--set", "num_workers=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read image file {bad}") and err.count("\n") == 1, err


@pytest.mark.parametrize("bbox", ["NaN", "Infinity", '"a"'])
def test_eval_on_boxes_that_are_not_numbers_names_the_file_and_annotation(shapes_dir, tmp_path, capsys, bbox):
    data = _copy_of(shapes_dir, tmp_path)
    content = json.loads((data / "val.json").read_text())
    annotation = content["annotations"][-1]
    annotation["bbox"][2] = "BAD"
    (data / "val.json").write_text(json.dumps(content).replace('"BAD"', bbox))  # NaN: what json.dumps writes
    model_cfg = get_preset("shapes_cpu", **TINY_MODEL)
    train_cfg = with_overrides(train_preset("shapes_cpu"), TINY_TRAIN)
    checkpoint = write_checkpoint(tmp_path / "model.pth", model_cfg, train_cfg)
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"annotation file {data / 'val.json'}: annotation {annotation['id']} has bbox" in err
    assert err.count("\n") == 1, err


# --------------------------------------------------------- no silent loss: runs, datasets, Ctrl-C
def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def _train_args(shapes_dir, run):
    return ["train", "--data", str(shapes_dir), "--out", str(run), *_sets(TINY_MODEL), *_sets(TINY_TRAIN)]


@pytest.fixture(scope="module")
def finished_run(shapes_dir, tmp_path_factory):
    """A one-epoch run of the tiny model (checkpoint_last, checkpoint_best, log.jsonl)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main([*_train_args(shapes_dir, run), "--epochs", "1"]) == 0
    return run


def test_train_into_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(
        shapes_dir, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main([*_train_args(shapes_dir, run), "--epochs", "1"]) == 2
    err = _one_line_error(capsys)
    assert f"--out {run} already holds a run" in err and f"--resume {run / 'checkpoint_last.pth'}" in err
    assert "a new --out" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing touched

    (run / "log.jsonl").write_text((run / "log.jsonl").read_text() * 2)  # a log no new run may keep
    assert main([*_train_args(shapes_dir, run), "--epochs", "1", "--overwrite"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [0]  # the log started afresh


@pytest.mark.parametrize("args", [
    ["train", "--data", "{data}", "--out", "{file}"],
    ["make-shapes", "--out", "{file}"],
    ["demo", "--data", "{file}", "--out", "{tmp}/run"],
    ["demo", "--data", "{tmp}/data", "--out", "{file}"],
])
def test_a_folder_option_naming_a_file_is_one_line(shapes_dir, tmp_path, capsys, args):
    file = tmp_path / "a_file"
    file.write_text("keep me")
    assert main([a.format(data=shapes_dir, file=file, tmp=tmp_path) for a in args]) == 2
    assert f"{file} is a file" in _one_line_error(capsys)
    assert file.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_make_shapes_never_replaces_another_dataset_unless_told(shapes_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)  # seed 3, 4 train images
    train_json = (data / "train.json").read_bytes()
    assert main(["make-shapes", "--out", str(data), "--seed", "4", *TINY_SHAPES]) == 2
    err = _one_line_error(capsys)
    assert f"{data} holds a shapes dataset made with other settings: seed 3 instead of 4" in err
    assert "--overwrite" in err and (data / "train.json").read_bytes() == train_json
    assert main(["make-shapes", "--out", str(data), "--seed", "3", *TINY_SHAPES]) == 0  # the same dataset
    assert (data / "train.json").read_bytes() == train_json
    assert main(["make-shapes", "--out", str(data), "--seed", "4", *TINY_SHAPES, "--overwrite"]) == 0
    assert json.loads((data / "train.json").read_text())["info"]["config"]["seed"] == 4

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["make-shapes", "--out", str(other), *TINY_SHAPES]) == 2
    assert f"{other} holds files that make-shapes did not write (notes.txt)" in _one_line_error(capsys)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_demo_never_replaces_another_dataset(shapes_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes_dir, data)
    before = (data / "train.json").read_bytes()
    assert main(["demo", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    err = _one_line_error(capsys)
    assert f"{data} holds a shapes dataset made with other settings: seed 3 instead of 0, num_train 4 instead " \
           f"of 2000" in err and "--data" in err
    assert (data / "train.json").read_bytes() == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--preset", "multiscale"], "--preset multiscale would change the model that --resume {last} continues ("),
    (["--set", "d_model=128"], "--set would change the model that --resume {last} continues (d_model 64 -> 128)"),
    (["--train-preset", "coco"], "--train-preset coco would change the training configuration that --resume {last}"),
])
def test_resume_refuses_options_that_contradict_its_checkpoint(shapes_dir, finished_run, tmp_path, capsys,
                                                                args, message):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["train", "--data", str(shapes_dir), "--out", str(run), "--resume", str(run / "checkpoint_last.pth"),
                 "--epochs", "2", *args]) == 2
    assert message.format(last=run / "checkpoint_last.pth") in _one_line_error(capsys)
    assert torch.load(run / "checkpoint_last.pth", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("content", [b"", b"just some text\n", "truncated"])
def test_resume_from_a_broken_checkpoint_is_one_line_naming_it(shapes_dir, finished_run, tmp_path, capsys, content):
    broken = tmp_path / "broken.pth"
    whole = (finished_run / "checkpoint_last.pth").read_bytes()
    broken.write_bytes(whole[: len(whole) // 2] if content == "truncated" else content)
    assert main(["train", "--data", str(shapes_dir), "--out", str(tmp_path / "run"), "--resume", str(broken)]) == 2
    assert str(broken) in _one_line_error(capsys)


def _interrupt_epoch(monkeypatch, epoch: int):
    """Ctrl-C in the middle of training epoch ``epoch`` (0-based), once."""
    import ddetr_edu.training.loop as loop

    real = loop.train_one_epoch

    def stopping(model, criterion, loader, optimizer, cfg, state, **kwargs):
        if state.epoch == epoch:
            monkeypatch.setattr(loop, "train_one_epoch", real)
            raise KeyboardInterrupt
        return real(model, criterion, loader, optimizer, cfg, state, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", stopping)


def _interrupted_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"(?<!_)interrupted", line)]


def test_train_ctrl_c_says_once_how_to_continue_and_that_works(shapes_dir, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    command = [*_train_args(shapes_dir, run), "--epochs", "2"]
    _interrupt_epoch(monkeypatch, 1)
    assert main(command) == 130
    captured = capsys.readouterr()
    assert len(_interrupted_lines(captured.out + captured.err)) == 1
    hint = f"the same command with --resume {run / 'checkpoint_interrupted.pth'}"
    assert hint in captured.out
    assert main([*command, "--resume", str(run / "checkpoint_interrupted.pth")]) == 0
    assert "done: 2 epochs" in capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_best.pth", "checkpoint_last.pth", "log.jsonl"]


def test_demo_ctrl_c_says_once_to_run_it_again_and_that_continues(shapes_dir, tmp_path, capsys, monkeypatch):
    import ddetr_edu.demo as demo

    monkeypatch.setattr(demo, "DEMO_SHAPES", ShapesConfig(seed=3, num_train=4, num_val=2, image_size=32,
                                                          min_size=8, max_size=16, max_objects=2))
    command = ["demo", "--data", str(shapes_dir), "--out", str(tmp_path / "run"), "--epochs", "2"]
    _interrupt_epoch(monkeypatch, 1)
    assert main(command) == 130
    captured = capsys.readouterr()
    assert len(_interrupted_lines(captured.out + captured.err)) == 1, captured
    assert "run the demo again (same options) to continue" in captured.out and "--resume" not in captured.out
    assert main(command) == 0
    out = capsys.readouterr().out
    assert f"continuing {tmp_path / 'run' / 'checkpoint_interrupted.pth'}" in out and "AP = " in out
    assert not (tmp_path / "run" / "checkpoint_interrupted.pth").exists()


def test_demo_quick_and_epochs_shorten_the_training():
    from ddetr_edu.demo import QUICK_EPOCHS, demo_train_config

    full = demo_train_config()
    assert full == train_preset("shapes_cpu") and (full.epochs, full.lr_drop) == (21, 17)
    quick = demo_train_config(quick=True)
    assert (quick.epochs, quick.lr_drop) == (QUICK_EPOCHS, QUICK_EPOCHS - 1)
    assert quick == with_overrides(full, {"epochs": QUICK_EPOCHS, "lr_drop": QUICK_EPOCHS - 1})
    assert (demo_train_config(epochs=10).epochs, demo_train_config(quick=True, epochs=1).lr_drop) == (10, 1)
    with pytest.raises(ValueError, match="epochs: expected an integer >= 1, got 0"):
        demo_train_config(epochs=0)


@pytest.mark.parametrize("command, shown", [
    ("train", ["(default: runs/train)", "(default: data/shapes)", "(default: shapes_cpu;"]),
    ("demo", ["(default: data/shapes)", "(default: runs/demo, with --quick runs/demo_quick)",
              "4 epochs instead of 21", "(default: 21, with --quick 4)"]),
    ("make-shapes", ["(default: 0)", "(default: the config's)"]),
])
def test_help_shows_the_defaults(capsys, command, shown):
    from ddetr_edu.demo import QUICK_EPOCHS

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert all(item in text for item in shown), text
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text
    assert QUICK_EPOCHS == 4  # the demo's help text states it
