"""Recording during training, the evolution GIF, and ``ddetr-edu visualize`` end to end.

One tiny shapes run (64 px images, 2 optimiser steps) is trained with ``fit`` and a
``SamplingRecorder`` as its epoch callback; its checkpoint feeds the CLI tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import ddetr_edu
from ddetr_edu.cli import main
from ddetr_edu.config import get_preset, with_overrides
from ddetr_edu.data.folders import build_datasets
from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
from ddetr_edu.training.config import train_preset
from ddetr_edu.training.fit import fit
from ddetr_edu.viz.attention import ImageAttention
from ddetr_edu.viz.evolution import plot_evolution_frames, save_evolution_gif
from ddetr_edu.viz.recording import HISTORY_FILE, SamplingRecorder, load_sampling_history

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "reference"
OFFICIAL_FIXTURE = REFERENCE / "official_small_multiscale_refine_twostage.pt"
KINDS = ("decoder", "encoder", "refinement", "summary")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run dir, data dir, recorder) of a 1-epoch, 2-step training run."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("viz_run")
    shapes = ShapesConfig(num_train=4, num_val=2, image_size=64, min_size=12, max_size=40, max_objects=2)
    make_shapes_dataset(root / "data", shapes)
    model_cfg = get_preset("shapes_cpu", small_cnn_channels=(8, 8, 16, 16), d_model=64, n_heads=2,
                           enc_layers=1, dec_layers=2, dim_feedforward=32, num_queries=6)
    train_cfg = with_overrides(train_preset("shapes_cpu"), {
        "epochs": "1", "max_steps_per_epoch": "2", "batch_size": "2", "image_size": "64",
        "max_eval_images": "2"})
    _, val_set = build_datasets(root / "data", train_cfg)
    recorder = SamplingRecorder.from_dataset(val_set, root / "run" / HISTORY_FILE)
    fit(model_cfg, train_cfg, root / "data", root / "run", verbose=False, epoch_callback=recorder)
    return root / "run", root / "data", recorder


def _star(m: int, k: int) -> torch.Tensor:
    """The paper's initial offsets (M, K, 2): head direction at 2*pi*m/M, max coordinate 1, times k+1."""
    out = torch.zeros(m, k, 2)
    for head in range(m):
        direction = torch.tensor([math.cos(2 * math.pi * head / m), math.sin(2 * math.pi * head / m)])
        direction = direction / direction.abs().max()
        for point in range(k):
            out[head, point] = direction * (point + 1)
    return out


def test_the_training_loop_records_epoch_0_and_every_epoch(run):
    run_dir, _, recorder = run
    history = load_sampling_history(run_dir / HISTORY_FILE)  # weights_only load
    assert [r["epoch"] for r in history["records"]] == [0, 1]
    assert len(history["pictures"]) == 2 and history["pictures"][0].dtype == torch.uint8
    assert not any(p.name.endswith(".tmp") for p in run_dir.iterdir())  # written atomically
    first = ImageAttention.from_dict(history["records"][0]["images"][0])
    # probe points are the objects' centres: one encoder token per object
    assert first.encoder_locations.shape[1] == len(history["probe_points"][0]) >= 1
    # training moved the sampling points
    after = ImageAttention.from_dict(history["records"][1]["images"][0])
    assert not torch.allclose(first.encoder_locations, after.encoder_locations)


def test_epoch_0_is_the_star_of_the_initialisation(run):
    history = load_sampling_history(run[0] / HISTORY_FILE)
    att = ImageAttention.from_dict(history["records"][0]["images"][0])
    assert torch.equal(att.valid_ratios, torch.ones_like(att.valid_ratios))  # unpadded probe
    m, l, k = att.num_heads, att.num_levels, att.decoder_locations.shape[-2]
    star = _star(m, k)[:, None]  # (M, 1, K, 2): the same on every level
    # decoder layer 1, box references: p = ref_xy + star / K * ref_wh / 2
    ref = att.decoder_references[0][:, None, None, None, :]  # (Q, 1, 1, 1, 4)
    expected = ref[..., :2] + star / k * ref[..., 2:] * 0.5
    assert torch.allclose(att.decoder_locations[0], expected.expand_as(att.decoder_locations[0]), atol=1e-5)
    # encoder, point references (the token's centre): p = ref + star / (W_l, H_l)
    size_wh = att.spatial_shapes.flip(-1).float()[:, None, :]  # (L, 1, 2)
    from ddetr_edu.viz.coordinates import token_centre
    for row, token in enumerate(att.encoder_tokens.tolist()):
        _, centre = token_centre(token, att.spatial_shapes, att.level_start_index, att.valid_ratios)
        expected = centre + star / size_wh  # (M, L, K, 2)
        assert torch.allclose(att.encoder_locations[0, row], expected, atol=1e-5)
    # and uniform weights 1 / (L K)
    assert torch.allclose(att.decoder_weights[0], torch.full_like(att.decoder_weights[0], 1 / (l * k)))


def test_recorder_replaces_an_epoch_and_continues_a_history(run, tmp_path):
    run_dir, _, recorder = run
    path = tmp_path / HISTORY_FILE
    path.write_bytes((run_dir / HISTORY_FILE).read_bytes())
    images = [torch.from_numpy(p.numpy()).permute(2, 0, 1).float() / 255 for p in recorder.pictures]
    again = SamplingRecorder(images, path, keep_existing=True)
    assert [r["epoch"] for r in again.records] == [0, 1]
    fresh = SamplingRecorder(images, path)  # a new run starts an empty history
    assert fresh.records == []
    with pytest.raises(ValueError, match="not a sampling history"):
        torch.save({"format": "other"}, tmp_path / "other.pt")
        load_sampling_history(tmp_path / "other.pt")


def test_evolution_frames_and_gif(run, tmp_path):
    history = load_sampling_history(run[0] / HISTORY_FILE)
    frames = plot_evolution_frames(history, image_index=1)
    assert len(frames) == 2 and "epoch 0" in frames[0].texts[0].get_text()
    gif = save_evolution_gif(history, tmp_path / "evolution.gif")
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 2


# ------------------------------------------------------------------------------ the CLI
def test_cli_writes_the_four_pictures(run, tmp_path, capsys):
    run_dir, data_dir, _ = run
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    out = tmp_path / "viz"
    code = main(["visualize", "--checkpoint", str(run_dir / "checkpoint_last.pth"), "--image", str(image),
                 "--out", str(out), "--top-k", "3", "--head", "1", "--layer", "0"])
    assert code == 0
    expected = {f"{image.stem}_{kind}.png" for kind in KINDS}
    assert {p.name for p in out.iterdir()} == expected
    assert all((out / name).read_bytes()[:4] == b"\x89PNG" for name in expected)
    assert str(out / f"{image.stem}_summary.png") in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["missing image", "not an image", "random dict", "not a checkpoint",
                                 "missing checkpoint", "bad head", "bad layer"])
def test_cli_bad_input_is_a_clear_error(run, tmp_path, capsys, bad):
    run_dir, data_dir, _ = run
    checkpoint = run_dir / "checkpoint_last.pth"
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    extra: list[str] = []
    if bad == "missing image":
        image, message = tmp_path / "nope.jpg", "image file not found"
    elif bad == "not an image":
        image = tmp_path / "notes.jpg"
        image.write_text("not a picture")
        message = "cannot read image file"
    elif bad == "random dict":
        checkpoint = tmp_path / "random.pth"
        torch.save({"weights": torch.zeros(3), "step": 4}, checkpoint)
        message = "neither a ddetr_edu training checkpoint"
    elif bad == "not a checkpoint":
        checkpoint = tmp_path / "notes.pth"
        checkpoint.write_text("hello")
        message = "not a checkpoint torch.load can read"
    elif bad == "missing checkpoint":
        checkpoint, message = tmp_path / "none.pth", "checkpoint not found"
    elif bad == "bad head":
        extra, message = ["--head", "7"], "head: expected None"
    else:
        extra, message = ["--layer", "5"], "layer: expected a decoder layer"
    code = main(["visualize", "--checkpoint", str(checkpoint), "--image", str(image),
                 "--out", str(tmp_path / "out"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_cli_on_an_official_checkpoint(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fill_weights", REFERENCE / "fill_weights.py")
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    fixture = torch.load(OFFICIAL_FIXTURE, map_location="cpu", weights_only=True)
    checkpoint = {"model": fill.fill_official_state_dict(fixture["keys"], fixture["seed"]),
                  "args": argparse.Namespace(**fixture["args"]), "epoch": 49}
    torch.save(checkpoint, tmp_path / "official.pth")
    picture = (torch.rand(90, 120, 3) * 255).to(torch.uint8).numpy()
    Image.fromarray(picture).save(tmp_path / "photo.jpg")
    code = main(["visualize", "--checkpoint", str(tmp_path / "official.pth"), "--image", str(tmp_path / "photo.jpg"),
                 "--out", str(tmp_path / "out"), "--size", "128", "--top-k", "2"])
    assert code == 0, capsys.readouterr().err
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"photo_{kind}.png" for kind in KINDS}
    from ddetr_edu.viz.loading import load_detector

    names = load_detector(tmp_path / "official.pth").class_names  # labels are COCO category ids
    assert (names[1], names[3], names[90]) == ("person", "car", "toothbrush")


def _checkpoint_with_class_names(run_dir: Path, tmp_path: Path, names) -> Path:
    """A copy of the run's checkpoint whose "class_names" is ``names`` (absent when None)."""
    checkpoint = torch.load(run_dir / "checkpoint_last.pth", map_location="cpu", weights_only=False)
    checkpoint.pop("class_names", None)
    if names is not None:
        checkpoint["class_names"] = names
    path = tmp_path / f"checkpoint_{'none' if names is None else len(names)}.pth"
    torch.save(checkpoint, path)
    return path


def test_labels_use_the_class_names_stored_in_the_checkpoint(run, tmp_path):
    from ddetr_edu.viz.attention import compute_attention
    from ddetr_edu.viz.loading import load_detector
    from ddetr_edu.viz.pipeline import VisualizeOptions, figures_for_image, prepare_visualization

    run_dir, data_dir, _ = run
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    names = [f"shape-{i}" for i in range(20)]
    assert load_detector(_checkpoint_with_class_names(run_dir, tmp_path, names)).class_names == names
    assert load_detector(_checkpoint_with_class_names(run_dir, tmp_path, None)).class_names is None  # older ones
    with pytest.raises(ValueError, match=r"class_names must be a list of strings"):
        load_detector(_checkpoint_with_class_names(run_dir, tmp_path, "circle,square"))
    prepared = prepare_visualization(_checkpoint_with_class_names(run_dir, tmp_path, names), [image],
                                     VisualizeOptions(top_k=2, score_threshold=0.0))  # a 2-step model scores low
    _, picture, tensor = prepared.images[0]
    attention = compute_attention(prepared.detector.model, tensor[None])[0]
    figures = figures_for_image(picture, attention, prepared.options, prepared.detector.class_names)
    label = f"{names[int(attention.labels[attention.top_queries(1)[0]])]} "
    for kind, figure in figures.items():  # every figure names the detections by the checkpoint's names
        texts = [t.get_text() for ax in figure.axes for t in ax.texts] + [ax.get_ylabel() for ax in figure.axes]
        assert any(label in text for text in texts), kind
        assert not any("class " in text for text in texts), kind


def test_cli_says_when_and_how_it_resizes_a_photo(run, tmp_path, capsys):
    run_dir, data_dir, _ = run
    checkpoint = run_dir / "checkpoint_last.pth"
    Image.fromarray((torch.rand(80, 100, 3) * 255).to(torch.uint8).numpy()).save(tmp_path / "photo.png")
    val_image = sorted((data_dir / "images" / "val").glob("*.png"))[0]  # 64 x 64: the evaluation scale
    code = main(["visualize", "--checkpoint", str(checkpoint), "--image", str(tmp_path / "photo.png"),
                 str(val_image), "--out", str(tmp_path / "a"), "--top-k", "1"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert "photo.png: 100x80 -> 80x64 (the checkpoint's evaluation scale; --size to change)" in out
    assert not any(line.startswith(val_image.name) for line in out)  # not resized: nothing said
    code = main(["visualize", "--checkpoint", str(checkpoint), "--image", str(val_image),
                 "--out", str(tmp_path / "b"), "--top-k", "1", "--size", "96"])
    assert code == 0
    assert f"{val_image.name}: 64x64 -> 96x96 (--size 96)" in capsys.readouterr().out.splitlines()


def _visualize_in_a_capped_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m ddetr_edu visualize ARGS`` with its address space capped at 8 GiB: without the
    size limit a 100000-pixel input asks for ~24 GB, which must fail fast here, not fill the machine."""
    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    return subprocess.run([sys.executable, "-m", "ddetr_edu", "visualize", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, preexec_fn=cap_memory)


@pytest.mark.parametrize("size", ["2049", "31"])
def test_cli_size_has_a_limit(run, tmp_path, capsys, size):
    run_dir, data_dir, _ = run
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    code = main(["visualize", "--checkpoint", str(run_dir / "checkpoint_last.pth"), "--image", str(image),
                 "--out", str(tmp_path / "out"), "--size", size])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected 32 to 2048 pixels" in err and f"got {size}" in err
    assert not (tmp_path / "out").exists()


def test_cli_size_100000_is_refused_before_anything_is_computed(run, tmp_path):
    """Without the limit this asks for ~24 GB: run in a process whose address space is capped at
    8 GiB, so that a regression fails here at once instead of filling the machine."""
    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    run_dir, data_dir, _ = run
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    package_root = Path(ddetr_edu.__file__).resolve().parents[1]  # the ddetr_edu under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "ddetr_edu", "visualize", "--checkpoint",
                             str(run_dir / "checkpoint_last.pth"), "--image", str(image), "--out", str(tmp_path / "out"),
                             "--size", "100000"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=env, preexec_fn=cap_memory)
    assert result.returncode == 2, result.stderr[-1000:]
    assert result.stderr.strip() == ("error: short_side: expected 32 to 2048 pixels (the short side of the model "
                                     "input), got 100000")
    assert not (tmp_path / "out").exists()


def test_the_long_side_of_the_model_input_is_capped(tmp_path):
    import dataclasses

    from ddetr_edu.data.transforms import TransformConfig
    from ddetr_edu.viz.loading import MAX_LONG_SIDE, prepare_image

    Image.fromarray(torch.zeros(20, 400, 3, dtype=torch.uint8).numpy()).save(tmp_path / "strip.png")
    lax_recipe = dataclasses.replace(TransformConfig.coco(), max_size=8000)  # long side <= 10 x the short one
    _, tensor = prepare_image(tmp_path / "strip.png", lax_recipe, short_side=2048)
    height, width = tensor.shape[-2:]  # 2048 x 40960 asked: the long side capped, the aspect kept
    assert width <= MAX_LONG_SIDE and height < 2048 and abs(width / height - 20) < 0.2


def test_cli_out_naming_a_file_is_one_line_before_the_model_runs(run, tmp_path, capsys):
    run_dir, data_dir, _ = run
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    code = main(["visualize", "--checkpoint", str(run_dir / "checkpoint_last.pth"), "--image", str(image),
                 "--out", str(existing)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err, err
    assert existing.read_text() == "keep me"


# ------------------------------------------------------------------------------ the reference model
def _fake_reference(run_dir: Path, folder: Path, monkeypatch, names=None) -> list[str]:
    """Point ``ddetr_edu.checkpoints.reference`` at weights + card made from the run's checkpoint."""
    import json

    from ddetr_edu.checkpoints import reference

    checkpoint = torch.load(run_dir / "checkpoint_last.pth", map_location="cpu", weights_only=False)
    names = names or [f"reference-shape-{i}" for i in range(checkpoint["model_config"]["num_classes"])]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint["model"], folder / "weights.pt")
    card = {"model_config": checkpoint["model_config"], "train_config": checkpoint["train_config"],
            "class_names": names, "metrics": {"AP": 0.5}}
    (folder / "card.json").write_text(json.dumps(card, default=list), encoding="utf-8")
    monkeypatch.setattr(reference, "REFERENCE_DIR", folder)
    monkeypatch.setattr(reference, "WEIGHTS_FILE", folder / "weights.pt")
    monkeypatch.setattr(reference, "CARD_FILE", folder / "card.json")
    return names


def test_cli_without_checkpoint_uses_the_reference_model(run, tmp_path, monkeypatch, capsys):
    from ddetr_edu.viz.pipeline import prepare_visualization

    run_dir, data_dir, _ = run
    names = _fake_reference(run_dir, tmp_path / "reference", monkeypatch)
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    prepared = prepare_visualization(None, [image])
    assert prepared.detector.class_names == names
    reference_state = torch.load(tmp_path / "reference" / "weights.pt", weights_only=True)
    assert all(torch.equal(value, reference_state[key]) for key, value in prepared.detector.model.state_dict().items())
    code = main(["visualize", "--image", str(image), "--out", str(tmp_path / "out"), "--top-k", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "no --checkpoint: the shipped reference model (shapes, validation AP 0.500" in out, out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"{image.stem}_{kind}.png" for kind in KINDS}


def test_cli_without_checkpoint_or_reference_is_one_line(run, tmp_path, monkeypatch, capsys):
    from ddetr_edu.checkpoints import reference

    _, data_dir, _ = run
    monkeypatch.setattr(reference, "WEIGHTS_FILE", tmp_path / "none.pt")
    monkeypatch.setattr(reference, "CARD_FILE", tmp_path / "none.json")
    image = sorted((data_dir / "images" / "val").glob("*.png"))[0]
    code = main(["visualize", "--image", str(image), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reference model is not there" in err, err
    assert not (tmp_path / "out").exists()


def test_cli_help_names_the_defaults(capsys):
    from ddetr_edu.viz.detections import DEFAULT_SCORE_THRESHOLD

    with pytest.raises(SystemExit):
        main(["visualize", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: the reference model shipped in the package" in help_text
    assert f"minimum detection score (default {DEFAULT_SCORE_THRESHOLD:g})" in help_text


def test_the_evolution_frames_use_the_recorded_class_names(run):
    _, _, recorder = run
    history = load_sampling_history(recorder.path)
    assert history["class_names"] == ["circle", "square", "triangle", "star", "cross"]
    frame = plot_evolution_frames(history)[-1]
    texts = [t.get_text() for ax in frame.axes for t in ax.texts]
    assert texts and all(t.split()[0] in history["class_names"] for t in texts), texts
    renamed = plot_evolution_frames(history, class_names=["a", "b", "c", "d", "e"])[-1]
    assert all(t.get_text().split()[0] in "abcde" for ax in renamed.axes for t in ax.texts)
