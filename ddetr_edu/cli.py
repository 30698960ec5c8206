"""The command line: ``python -m ddetr_edu <command>`` (or the ``ddetr-edu`` script).

    ddetr-edu make-shapes --out data/shapes [--seed 0] [--demo] [--set image_size=128]
    ddetr-edu train --preset shapes_cpu --data data/shapes --out runs/shapes [--epochs N]
                    [--train-preset shapes_cpu] [--resume runs/shapes/checkpoint_last.pth]
                    [--set lr=1e-4 --set num_queries=50 ...]
    ddetr-edu eval --checkpoint runs/shapes/checkpoint_best.pth --data data/shapes
    ddetr-edu eval --checkpoint r50_deformable_detr.pth --data /path/to/coco   (official weights)
    ddetr-edu demo --data data/shapes --out runs/demo
    ddetr-edu visualize --checkpoint runs/demo/checkpoint_best.pth --image photo.jpg --out runs/viz

    torchrun --nproc_per_node 8 -m ddetr_edu train --preset multiscale_refine_twostage \\
        --train-preset coco --data /path/to/coco --out runs/coco_twostage

This module only turns strings into config dataclasses and calls library functions; nothing
in the library takes an argparse namespace. Each command is a ``Command`` in :data:`COMMANDS`
(name, help, a function adding its arguments, a function running it), so more commands (e.g.
``visualize``) are added by appending one entry.

Bad input (an argument, a ``--set`` value, a missing data folder, checkpoint or image) is a
:class:`UsageError`: one line on stderr and exit code 2. The commands check their input inside
``with usage_errors():``, which turns the library's ValueError / FileNotFoundError there into a
UsageError; any other exception (a bug) keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Command:
    """One sub-command: ``add_arguments(parser)`` then ``run(args) -> exit code``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input at the command line; ``main`` prints its one-line message and exits with 2."""


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Inside the block a ValueError or FileNotFoundError is about the user's input: a UsageError."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from error


def _split_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """["a=1", "b=x"] -> {"a": "1", "b": "x"}; a pair without "=" is a UsageError."""
    result = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def split_overrides(pairs: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Route ``--set`` pairs to the model config or the training config: (model, train) strings.

    ``model.KEY=V`` and ``train.KEY=V`` say where explicitly; a bare ``KEY`` goes to whichever
    config has that field (a name in both is a UsageError asking for the prefix). The values stay
    strings; :func:`ddetr_edu.config.with_overrides` parses them by the field's type.
    """
    from ddetr_edu.config import ModelConfig, config_fields
    from ddetr_edu.training.config import TrainConfig

    known = {"model": sorted(config_fields(ModelConfig)), "train": sorted(config_fields(TrainConfig))}
    routed: dict[str, dict[str, str]] = {"model": {}, "train": {}}
    for key, value in _split_pairs(pairs).items():
        where, _, name = key.rpartition(".")
        if where not in ("", "model", "train"):
            raise UsageError(f"--set {key}: prefix must be 'model.' or 'train.', got {where!r}")
        owners = [config for config, names in known.items() if name in names and where in ("", config)]
        if len(owners) == 2:
            raise UsageError(f"--set {key}: both configs have {name!r}; write model.{name} or train.{name}")
        if not owners:
            searched = [config for config in known if where in ("", config)]
            listing = "; ".join(f"{config} fields: {', '.join(known[config])}" for config in searched)
            missing = f"the {where} config has no field" if where else "no config has a field"
            raise UsageError(f"--set {key}: {missing} {name!r}; {listing}")
        routed[owners[0]][name] = value
    return routed["model"], routed["train"]


def _given(**options: Any) -> dict[str, Any]:
    """The options given on the command line (not None) as typed overrides: {"epochs": 3}."""
    return {name: value for name, value in options.items() if value is not None}


# ----------------------------------------------------------------------------------- make-shapes
def _add_make_shapes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write the dataset into")
    parser.add_argument("--seed", type=int, default=None, help="dataset seed (default: the config's)")
    parser.add_argument("--demo", action="store_true", help="start from the demo's config (small images)")
    parser.add_argument("--workers", type=int, default=0, help="processes drawing images (0: this one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any ShapesConfig field, e.g. --set num_train=500 --set image_size=128")


def _run_make_shapes(args: argparse.Namespace) -> int:
    from ddetr_edu.config import with_overrides
    from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
    from ddetr_edu.demo import DEMO_SHAPES

    overrides = {**_split_pairs(args.set), **_given(seed=args.seed)}
    if args.workers < 0:
        raise UsageError(f"--workers: expected >= 0, got {args.workers}")
    with usage_errors():
        config = with_overrides(DEMO_SHAPES if args.demo else ShapesConfig(), overrides)
    paths = make_shapes_dataset(args.out, config, num_workers=args.workers)
    print(f"wrote {config.num_train} train and {config.num_val} val images to {paths.root}")
    return 0


# ----------------------------------------------------------------------------------------- train
def _add_train(parser: argparse.ArgumentParser) -> None:
    from ddetr_edu.config import PRESET_NAMES
    from ddetr_edu.training.config import TRAIN_PRESETS

    parser.add_argument("--preset", default="shapes_cpu", choices=PRESET_NAMES, help="model preset")
    parser.add_argument("--train-preset", default=None, choices=sorted(TRAIN_PRESETS),
                        help="training preset (default: shapes_cpu for the shapes_cpu model, else coco)")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="dataset folder")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="run folder (checkpoints, log)")
    parser.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="images per process")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue from this checkpoint (its model and training configs are used)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a ModelConfig or TrainConfig field (prefix model./train. if ambiguous)")


def train_configs(args: argparse.Namespace):
    """(ModelConfig, TrainConfig) from the presets / checkpoint and the overrides of ``args``.

    Bad input (a --set value, a config that fails validation, an unreadable --resume checkpoint)
    is a :class:`UsageError`.
    """
    from ddetr_edu.checkpoints import load_checkpoint
    from ddetr_edu.config import config_from_dict, get_preset, with_overrides
    from ddetr_edu.training.config import TrainConfig, train_preset

    model_values, train_values = split_overrides(args.set)
    train_values |= _given(epochs=args.epochs, batch_size=args.batch_size)
    with usage_errors():
        if args.resume is not None:
            checkpoint = load_checkpoint(args.resume)
            model_cfg = config_from_dict(checkpoint["model_config"])
            train_cfg = TrainConfig.from_dict(checkpoint["train_config"])
        else:
            model_cfg = get_preset(args.preset)
            train_cfg = train_preset(args.train_preset or ("shapes_cpu" if args.preset == "shapes_cpu" else "coco"))
        return with_overrides(model_cfg, model_values), with_overrides(train_cfg, train_values)


def _run_train(args: argparse.Namespace) -> int:
    from ddetr_edu.training.distributed import init_from_env, rank_zero_print, shutdown
    from ddetr_edu.training.engine import resolve_device
    from ddetr_edu.data.folders import find_data
    from ddetr_edu.training.fit import fit

    model_cfg, train_cfg = train_configs(args)
    with usage_errors():
        find_data(args.data)  # the data folder's layout, before any process group or model exists
        device = resolve_device(train_cfg.device)
    context = init_from_env(device.type)
    try:
        result = fit(model_cfg, train_cfg, args.data, args.out, resume=args.resume)
    finally:
        shutdown(context)
    if result.interrupted:
        return 130
    if result.table:
        rank_zero_print(context, result.table)
    rank_zero_print(context, f"done: {result.epochs_completed} epochs, best AP {result.best_ap:.3f}; "
                             f"checkpoints in {result.run_dir}")
    return 0


# ------------------------------------------------------------------------------------------ eval
def _add_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="a ddetr_edu checkpoint, or an official Deformable DETR .pth")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (shapes or COCO layout)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a TrainConfig field (e.g. device=cuda, val scale via image_size)")


def official_postprocess(category_id_to_label: dict[int, int]):
    """Postprocessing for official COCO models, whose class index IS the COCO category id."""
    from ddetr_edu.models import postprocess

    def convert(outputs: dict, target_sizes):
        results = []
        for result in postprocess(outputs, target_sizes):
            ids = result["labels"].tolist()
            keep = [i for i, c in enumerate(ids) if c in category_id_to_label]
            labels = [category_id_to_label[ids[i]] for i in keep]
            results.append({"scores": result["scores"][keep], "boxes": result["boxes"][keep],
                            "labels": result["labels"].new_tensor(labels)})
        return results

    return convert


def _run_eval(args: argparse.Namespace) -> int:
    from ddetr_edu.checkpoints import load_official_checkpoint, read_checkpoint
    from ddetr_edu.config import config_from_dict, with_overrides
    from ddetr_edu.data.folders import build_datasets, find_data
    from ddetr_edu.models import build_detector
    from ddetr_edu.training.config import TrainConfig, train_preset
    from ddetr_edu.training.fit import check_classes, evaluate_model

    model_values, train_values = split_overrides(args.set)
    if model_values:
        raise UsageError(f"--set {', '.join(model_values)}: eval takes the model from --checkpoint; "
                         f"--set changes training fields only")
    train_values |= _given(batch_size=args.batch_size, max_eval_images=args.max_images)
    with usage_errors():  # the checkpoint file, the --set values, the data folder
        kind, checkpoint = read_checkpoint(args.checkpoint)  # "ddetr_edu" or "official"
        if kind == "official":
            model, model_cfg, train_cfg = load_official_checkpoint(checkpoint), None, train_preset("coco")
        else:
            model_cfg = config_from_dict(checkpoint["model_config"])
            train_cfg = TrainConfig.from_dict(checkpoint["train_config"])
        train_cfg = with_overrides(train_cfg, train_values)
        find_data(args.data)
    if kind == "ddetr_edu":
        model = build_detector(model_cfg)
        model.load_state_dict(checkpoint["model"])
    _, val_set = build_datasets(args.data, train_cfg)
    postprocess = None
    if model_cfg is None:
        postprocess = official_postprocess(val_set.category_id_to_label)
    else:
        with usage_errors():  # a checkpoint trained on fewer classes than the data has
            check_classes(model_cfg, val_set)
    metrics, _ = evaluate_model(model, val_set, train_cfg, postprocess=postprocess)
    print(metrics.table)
    return 0


# ------------------------------------------------------------------------------------------ demo
def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="shapes dataset folder")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from ddetr_edu.demo import run_demo

    start = time.perf_counter()
    result = run_demo(args.data, args.out, report=lambda line: print(line, flush=True))
    print(result.table)
    print(f"pictures: {', '.join(str(p) for p in result.figures)}")
    if result.visualizations:
        print(f"sampling points: {len(result.visualizations)} files in {result.visualizations[0].parent}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s; AP = {result.metrics['AP']:.3f}")
    return 0


# ------------------------------------------------------------------------------------- visualize
def _add_visualize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="a ddetr_edu checkpoint, or an official Deformable DETR .pth")
    parser.add_argument("--image", required=True, type=Path, nargs="+", help="image file(s)")
    parser.add_argument("--out", type=Path, default=Path("runs/visualize"),
                        help="folder for <image-stem>_{decoder,encoder,refinement,summary}.png")
    parser.add_argument("--layer", type=int, default=-1, help="decoder layer, 0-based (-1: the last)")
    parser.add_argument("--head", default="all", help="attention head, 0-based, or 'all'")
    parser.add_argument("--top-k", type=int, default=5, help="detections shown")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="minimum detection score")
    parser.add_argument("--query-level", type=int, default=0, help="level of the encoder pixels shown")
    parser.add_argument("--size", type=int, default=None,
                        help="short side of the model input (default: the checkpoint's evaluation size)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")


def _run_visualize(args: argparse.Namespace) -> int:
    from ddetr_edu.training.engine import resolve_device
    from ddetr_edu.viz.pipeline import VisualizeOptions, draw_visualization, prepare_visualization

    if args.head != "all" and not args.head.isdigit():
        raise UsageError(f"--head: expected 'all' or a head number (0, 1, ...), got {args.head!r}")
    with usage_errors():  # the options, the device, the image files, the checkpoint
        options = VisualizeOptions(layer=args.layer, head=None if args.head == "all" else int(args.head),
                                   top_k=args.top_k, score_threshold=args.score_threshold,
                                   query_level=args.query_level)
        prepared = prepare_visualization(args.checkpoint, args.image, options, resolve_device(args.device),
                                         args.size)
    written = draw_visualization(prepared, args.out)
    print("\n".join(f"wrote {path}" for path in written))
    return 0


# ---------------------------------------------------------------------------------------- export
def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="a ddetr_edu checkpoint, or an official Deformable DETR .pth")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="input size fixed in the graph (default: the checkpoint's evaluation "
                             "scale, square)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per call, fixed in the graph")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _run_export(args: argparse.Namespace) -> int:
    import torch

    from ddetr_edu.onnx_export import compare_with_onnxruntime, export_onnx, require_export_extra
    from ddetr_edu.viz.loading import load_detector

    try:
        require_export_extra()
    except ImportError as error:
        raise UsageError(str(error)) from error

    if args.out.exists() and not (args.overwrite and args.out.is_file()):
        raise UsageError(f"--out {args.out} exists; choose another file or pass --overwrite (files only)")
    with usage_errors():
        detector = load_detector(args.checkpoint)
        size = tuple(args.size) if args.size else (detector.transforms.eval_scale,) * 2
        args.out.parent.mkdir(parents=True, exist_ok=True)
        path = export_onnx(detector.model, args.out, image_size=size, batch_size=args.batch_size)
    images = torch.randn(args.batch_size, 3, *size, generator=torch.Generator().manual_seed(0))
    error = compare_with_onnxruntime(detector.model, path, images)  # a random batch: no image needed
    print(f"wrote {path} (input images ({args.batch_size}, 3, {size[0]}, {size[1]}), outputs scores and "
          f"boxes); onnxruntime vs PyTorch on random input: scores {error['scores']:.1e}, "
          f"boxes {error['boxes']:.1e}")
    return 0


COMMANDS: list[Command] = [
    Command("make-shapes", "write the synthetic shapes dataset", _add_make_shapes, _run_make_shapes),
    Command("train", "train a detector (torchrun for several GPUs)", _add_train, _run_train),
    Command("eval", "COCO evaluation of a checkpoint (ours or official)", _add_eval, _run_eval),
    Command("demo", "shapes data, CPU training, COCO table and pictures", _add_demo, _run_demo),
    Command("visualize", "pictures of the sampling points (decoder, encoder, refinement)", _add_visualize,
            _run_visualize),
    Command("export", "the detector as an ONNX graph, checked with onnxruntime", _add_export, _run_export),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddetr-edu", description="Deformable DETR: learn, run, train.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code: 2 for bad input (a UsageError),
    1 for a non-finite loss, 130 for Ctrl-C. Any other exception propagates with its traceback."""
    from ddetr_edu.training.engine import NonFiniteLossError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:  # bad input; any other exception is a bug and keeps its traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


__all__ = ["UsageError", "usage_errors", "Command", "COMMANDS", "split_overrides", "train_configs", "official_postprocess", "build_parser", "main"]
