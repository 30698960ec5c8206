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
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
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


def _split_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """["a=1", "b=x"] -> {"a": "1", "b": "x"}; a pair without "=" is a ValueError."""
    result = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def _model_field_types() -> dict[str, Any]:
    """Every ModelConfig field name (top level and backbone/transformer parts) -> its type."""
    from ddetr_edu.config import BackboneConfig, ModelConfig, TransformerConfig

    types: dict[str, Any] = {}
    for cls in (ModelConfig, BackboneConfig, TransformerConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in ("backbone", "transformer"):
                types[f.name] = hints[f.name]
    return types


def split_overrides(pairs: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Route ``--set`` pairs to the model config (converted values) or the training config (strings).

    ``model.KEY=V`` and ``train.KEY=V`` say where explicitly; a bare ``KEY`` goes to whichever
    config has that field (a name in both is a ValueError asking for the prefix).
    """
    from ddetr_edu.training.config import TrainConfig, parse_value, field_names

    model_types = _model_field_types()
    train_fields = field_names(TrainConfig)
    model_values: dict[str, Any] = {}
    train_values: dict[str, str] = {}
    for key, value in _split_pairs(pairs).items():
        where, _, name = key.rpartition(".")
        if where not in ("", "model", "train"):
            raise ValueError(f"--set {key}: prefix must be 'model.' or 'train.', got {where!r}")
        in_model, in_train = name in model_types, name in train_fields
        if where == "model" or (not where and in_model and not in_train):
            if not in_model:
                raise ValueError(f"--set {key}: ModelConfig has no field {name!r}; known: {sorted(model_types)}")
            model_values[name] = parse_value(value, model_types[name], f"ModelConfig.{name}")
        elif where == "train" or (not where and in_train and not in_model):
            if not in_train:
                raise ValueError(f"--set {key}: TrainConfig has no field {name!r}; known: {sorted(train_fields)}")
            train_values[name] = value
        elif in_model and in_train:
            raise ValueError(f"--set {key}: both configs have {name!r}; write model.{name} or train.{name}")
        else:
            raise ValueError(f"--set {key}: no config has a field {name!r}; model fields: {sorted(model_types)}; "
                             f"training fields: {sorted(train_fields)}")
    return model_values, train_values


# ----------------------------------------------------------------------------------- make-shapes
def _add_make_shapes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write the dataset into")
    parser.add_argument("--seed", type=int, default=None, help="dataset seed (default: the config's)")
    parser.add_argument("--demo", action="store_true", help="start from the demo's config (small images)")
    parser.add_argument("--workers", type=int, default=0, help="processes drawing images (0: this one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any ShapesConfig field, e.g. --set num_train=500 --set image_size=128")


def _run_make_shapes(args: argparse.Namespace) -> int:
    from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
    from ddetr_edu.demo import DEMO_SHAPES
    from ddetr_edu.training.config import with_overrides

    config = DEMO_SHAPES if args.demo else ShapesConfig()
    overrides = _split_pairs(args.set)
    if args.seed is not None:
        overrides["seed"] = str(args.seed)
    config = with_overrides(config, overrides)
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
    """(ModelConfig, TrainConfig) from the presets / checkpoint and the overrides of ``args``."""
    from ddetr_edu.config import apply_overrides, config_from_dict, get_preset
    from ddetr_edu.training.checkpoint import load_checkpoint
    from ddetr_edu.training.config import TrainConfig, train_preset, with_overrides

    model_values, train_values = split_overrides(args.set)
    if args.epochs is not None:
        train_values["epochs"] = str(args.epochs)
    if args.batch_size is not None:
        train_values["batch_size"] = str(args.batch_size)
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume)
        model_cfg = config_from_dict(checkpoint["model_config"])
        train_cfg = TrainConfig.from_dict(checkpoint["train_config"])
    else:
        model_cfg = get_preset(args.preset)
        train_cfg = train_preset(args.train_preset or ("shapes_cpu" if args.preset == "shapes_cpu" else "coco"))
    return apply_overrides(model_cfg, **model_values), with_overrides(train_cfg, train_values)


def _run_train(args: argparse.Namespace) -> int:
    from ddetr_edu.training.distributed import init_from_env, rank_zero_print, shutdown
    from ddetr_edu.training.engine import resolve_device
    from ddetr_edu.training.fit import fit

    model_cfg, train_cfg = train_configs(args)
    context = init_from_env(resolve_device(train_cfg.device).type)
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
    from ddetr_edu.checkpoints import load_official_checkpoint
    from ddetr_edu.config import config_from_dict
    from ddetr_edu.models import build_detector
    from ddetr_edu.training.checkpoint import load_checkpoint
    from ddetr_edu.training.config import TrainConfig, train_preset, with_overrides
    from ddetr_edu.training.fit import build_datasets, check_classes, evaluate_model

    _, train_values = split_overrides(args.set)
    if args.batch_size is not None:
        train_values["batch_size"] = str(args.batch_size)
    if args.max_images is not None:
        train_values["max_eval_images"] = str(args.max_images)
    postprocess = None
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except ValueError:
        checkpoint = None  # not ours: try the official format
    if checkpoint is not None:
        model_cfg = config_from_dict(checkpoint["model_config"])
        model = build_detector(model_cfg)
        model.load_state_dict(checkpoint["model"])
        train_cfg = with_overrides(TrainConfig.from_dict(checkpoint["train_config"]), train_values)
        _, val_set = build_datasets(args.data, train_cfg)
        check_classes(model_cfg, val_set)
    else:
        model = load_official_checkpoint(args.checkpoint)
        train_cfg = with_overrides(train_preset("coco"), train_values)
        _, val_set = build_datasets(args.data, train_cfg)
        postprocess = official_postprocess(val_set.category_id_to_label)
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
    from ddetr_edu.viz.pipeline import VisualizeOptions, visualize_files

    if args.head != "all" and not args.head.isdigit():
        raise ValueError(f"--head: expected 'all' or a head number (0, 1, ...), got {args.head!r}")
    options = VisualizeOptions(layer=args.layer, head=None if args.head == "all" else int(args.head),
                               top_k=args.top_k, score_threshold=args.score_threshold,
                               query_level=args.query_level)
    paths = visualize_files(args.checkpoint, args.image, args.out, options,
                            device=str(resolve_device(args.device)), short_side=args.size)
    print("\n".join(f"wrote {path}" for path in paths))
    return 0


COMMANDS: list[Command] = [
    Command("make-shapes", "write the synthetic shapes dataset", _add_make_shapes, _run_make_shapes),
    Command("train", "train a detector (torchrun for several GPUs)", _add_train, _run_train),
    Command("eval", "COCO evaluation of a checkpoint (ours or official)", _add_eval, _run_eval),
    Command("demo", "shapes data, CPU training, COCO table and pictures", _add_demo, _run_demo),
    Command("visualize", "pictures of the sampling points (decoder, encoder, refinement)", _add_visualize,
            _run_visualize),
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
    """Parse ``argv`` and run the command; returns the exit code (2 for bad input, 130 for Ctrl-C)."""
    from ddetr_edu.training.engine import NonFiniteLossError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


__all__ = ["Command", "COMMANDS", "split_overrides", "train_configs", "official_postprocess", "build_parser", "main"]
