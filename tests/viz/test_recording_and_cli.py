"""Recording during training, the evolution GIF, and ``ddetr-edu visualize`` end to end.

One tiny shapes run (64 px images, 2 optimiser steps) is trained with ``fit`` and a
``SamplingRecorder`` as its epoch callback; its checkpoint feeds the CLI tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

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
