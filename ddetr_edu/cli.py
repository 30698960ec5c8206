"""The command line: ``python -m ddetr_edu <command>`` (or the ``ddetr-edu`` script).

    ddetr-edu make-shapes --out data/shapes [--seed 0] [--demo] [--set image_size=128] [--overwrite]
    ddetr-edu train --preset shapes_cpu --data data/shapes --out runs/shapes [--epochs N]
                    [--train-preset shapes_cpu] [--resume runs/shapes/checkpoint_last.pth | --overwrite]
                    [--set lr=1e-4 --set num_queries=50 ...]
    ddetr-edu train --init-from reference --data my_data --out runs/mine     (fine-tuning)
    ddetr-edu train --data my_data --out runs/check --overfit-batch         (sanity check)
    ddetr-edu eval --checkpoint runs/shapes/checkpoint_best.pth --data data/shapes
    ddetr-edu eval --checkpoint r50_deformable_detr.pth --data /path/to/coco   (official weights)
    ddetr-edu demo --data data/shapes --out runs/demo [--quick | --epochs N]
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
UsageError; a bad data file found later, while training or evaluating (an unreadable image,
also in a DataLoader worker), is a :class:`~ddetr_edu.data.errors.DataFileError`, printed the
same way. Any other exception (a bug) keeps its traceback.
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


def _require_folder(option: str, path: Path) -> None:
    """A UsageError when ``path``, given to ``option`` as a folder to write into, is a file."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file; expected a folder (missing or a folder)")


# ----------------------------------------------------------------------------------- make-shapes
def _add_make_shapes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="folder to write the dataset into (a folder holding anything else is refused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the shapes dataset in --out even if it was made with other settings "
                             "(a folder holding any other file is refused, with or without it)")
    parser.add_argument("--seed", type=int, default=None, help="dataset seed (default: the config's)")
    parser.add_argument("--demo", action="store_true", help="start from the demo's config (small images)")
    parser.add_argument("--workers", type=int, default=0, help="processes drawing images (0: this one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any ShapesConfig field, e.g. --set num_train=500 --set image_size=128")


def _run_make_shapes(args: argparse.Namespace) -> int:
    from ddetr_edu.config import with_overrides
    from ddetr_edu.data.shapes import (ShapesConfig, dataset_conflict, files_not_made_by_make_shapes,
                                       make_shapes_dataset)
    from ddetr_edu.demo import DEMO_SHAPES

    overrides = {**_split_pairs(args.set), **_given(seed=args.seed)}
    if args.workers < 0:
        raise UsageError(f"--workers: expected >= 0, got {args.workers}")
    _require_folder("--out", args.out)
    with usage_errors():
        config = with_overrides(DEMO_SHAPES if args.demo else ShapesConfig(), overrides)
    foreign = files_not_made_by_make_shapes(args.out)
    if foreign:  # never replaced, --overwrite or not
        raise UsageError(f"--out {args.out} holds files that make-shapes did not write ({', '.join(foreign[:4])}"
                         f"{' ...' if len(foreign) > 4 else ''}); choose a new or empty folder (--overwrite "
                         f"replaces a shapes dataset only)")
    conflict = dataset_conflict(args.out, config)
    if conflict is not None and not args.overwrite:
        raise UsageError(f"--out {conflict}; choose another --out, or pass --overwrite to replace that dataset")
    paths = make_shapes_dataset(args.out, config, num_workers=args.workers)
    print(f"wrote {config.num_train} train and {config.num_val} val images to {paths.root}")
    return 0


# ----------------------------------------------------------------------------------------- train
def _add_train(parser: argparse.ArgumentParser) -> None:
    from ddetr_edu.config import PRESET_NAMES
    from ddetr_edu.training.config import TRAIN_PRESETS

    parser.add_argument("--preset", default=None, choices=PRESET_NAMES,
                        help="model preset (default: shapes_cpu; with --resume, the checkpoint's)")
    parser.add_argument("--train-preset", default=None, choices=sorted(TRAIN_PRESETS),
                        help="training preset (default: shapes_cpu for the shapes_cpu model, else coco)")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="dataset folder")
    parser.add_argument("--out", type=Path, default=Path("runs/train"),
                        help="run folder (checkpoints, log); one holding another run is refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (its checkpoints and log)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="number of epochs (default: the training preset's, or the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per process (default: the training preset's, or the checkpoint's)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue from this checkpoint (its model and training configs are used; a "
                             "--preset or --set that would change its model is refused)")
    parser.add_argument("--init-from", default=None, metavar="CKPT",
                        help="start a new run from trained weights: 'reference' (the shipped model), one of our "
                             "checkpoints, an official checkpoint or a bare state_dict; its model config unless "
                             "--preset/--set say otherwise; the class head starts afresh for other classes")
    parser.add_argument("--overfit-batch", action="store_true",
                        help="sanity check before a long run: train on the first batch alone until the loss is "
                             "below 5%% of its first value (or --overfit-steps pass), say whether it got there "
                             "(exit 0) or not (exit 1); writes nothing")
    parser.add_argument("--overfit-steps", type=int, default=None,
                        help="with --overfit-batch: the most steps (default: 400)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a ModelConfig or TrainConfig field (prefix model./train. if ambiguous)")


def _listed(changes: list[str], at_most: int = 6) -> str:
    return ", ".join(changes[:at_most]) + (f" and {len(changes) - at_most} more" if len(changes) > at_most else "")


def _refuse_contradictions(args: argparse.Namespace, checkpoint: dict, model_values: dict[str, str],
                           train_values: dict[str, Any], class_count: int) -> None:
    """``--resume`` continues the checkpoint's model: a ``--preset`` or model ``--set`` that would
    change it is a UsageError (``attention_backend``, how the same attention is computed, may
    change), and so is a ``--train-preset`` other than the checkpoint's training config after the
    same overrides. Training fields (``--set lr=...``, ``--epochs``) may change."""
    from ddetr_edu.checkpoints.training_state import config_changes
    from ddetr_edu.config import config_from_dict, config_to_dict, get_preset, with_overrides
    from ddetr_edu.training.config import TrainConfig, train_preset

    saved_model = config_from_dict(checkpoint["model_config"])
    asked = (with_overrides(get_preset(args.preset), {"num_classes": str(class_count), **model_values})
             if args.preset else with_overrides(saved_model, model_values))
    changes = [change for change in config_changes(config_to_dict(saved_model), config_to_dict(asked))
               if not change.startswith("attention_backend ")]
    if changes:
        given = f"--preset {args.preset}" if args.preset else "--set"
        raise UsageError(f"{given} would change the model that --resume {args.resume} continues ({_listed(changes)}); "
                         f"leave it out, or start a new run from its weights with --init-from {args.resume} "
                         f"instead of --resume")
    if args.train_preset:
        resumed = with_overrides(TrainConfig.from_dict(checkpoint["train_config"]), train_values)
        asked_train = with_overrides(train_preset(args.train_preset), train_values)
        changes = config_changes(resumed.to_dict(), asked_train.to_dict())
        if changes:
            raise UsageError(f"--train-preset {args.train_preset} would change the training configuration that "
                             f"--resume {args.resume} continues ({_listed(changes)}); leave it out (--set and "
                             f"--epochs change single fields)")


def train_configs(args: argparse.Namespace):
    """(ModelConfig, TrainConfig) from the presets / checkpoint and the overrides of ``args``.

    A new run's ``num_classes`` is the class count of the data in ``args.data`` unless ``--set
    num_classes`` gives it (the paper presets' 91 is the official checkpoints' convention, COCO's
    largest category id + 1, not the data's). Bad input (a --set value, a config that fails
    validation, an unreadable --resume checkpoint, a folder without a dataset, a model with fewer
    classes than the data, a checkpoint trained on other classes) is a :class:`UsageError`.
    """
    from ddetr_edu.checkpoints import load_checkpoint
    from ddetr_edu.config import config_from_dict, get_preset, with_overrides
    from ddetr_edu.data.coco import read_class_names
    from ddetr_edu.data.folders import find_data
    from ddetr_edu.training.config import TrainConfig, train_preset
    from ddetr_edu.training.fit import check_classes

    model_values, train_values = split_overrides(args.set)
    train_values |= _given(epochs=args.epochs, batch_size=args.batch_size)
    init_from = getattr(args, "init_from", None)
    if args.resume is not None and init_from is not None:
        raise UsageError("--init-from and --resume exclude each other: --resume continues a run from its checkpoint, "
                         "--init-from starts a new run from trained weights; give one")
    with usage_errors():
        trained_on, fix = None, None
        if args.resume is not None:
            checkpoint = _resume_checkpoint(args.resume)
            model_cfg = config_from_dict(checkpoint["model_config"])
            train_cfg = TrainConfig.from_dict(checkpoint["train_config"])
            trained_on = checkpoint.get("class_names")  # None in checkpoints older than the key
            fix = (f"--resume continues this model as it is; to train it on these classes start a new run with "
                   f"--init-from {args.resume} (the class head starts afresh)")
        else:
            preset = args.preset or "shapes_cpu"
            model_cfg = get_preset(preset)
            if init_from is not None and not args.preset:
                model_cfg = _init_weights(args).model_config or model_cfg  # a bare state_dict has none
            small = model_cfg.backbone.arch == "small_cnn" if init_from is not None else preset == "shapes_cpu"
            train_cfg = train_preset(args.train_preset or ("shapes_cpu" if small else "coco"))
        # both splits must exist, and have the same categories (build_datasets checks): read the smaller
        class_names = read_class_names(find_data(args.data).val_annotations)
        if args.resume is None:
            model_values.setdefault("num_classes", str(len(class_names)))
            if init_from is not None:  # every backbone weight comes from the source
                model_values.setdefault("pretrained_path", "none")
        else:  # a --preset, --train-preset or model --set that contradicts the checkpoint
            _refuse_contradictions(args, checkpoint, model_values, train_values, len(class_names))
        model_cfg, train_cfg = with_overrides(model_cfg, model_values), with_overrides(train_cfg, train_values)
        check_classes(model_cfg, class_names, trained_on, fix)
        if model_cfg.backbone.pretrained_path is not None:  # a whole detector given as backbone weights
            from ddetr_edu.models.resnet import read_backbone_weights

            read_backbone_weights(model_cfg.backbone.pretrained_path, model_cfg.backbone.arch)
        if init_from is not None:  # the architectures must fit before anything is written
            from ddetr_edu.checkpoints.init_weights import check_fits

            check_fits(model_cfg, _init_weights(args), class_names)
        return model_cfg, train_cfg


def _init_weights(args: argparse.Namespace):
    """The weights of ``--init-from``, read once per command (kept on ``args``)."""
    from ddetr_edu.checkpoints.init_weights import read_init_weights

    if getattr(args, "_init_weights", None) is None:
        args._init_weights = read_init_weights(args.init_from)
    return args._init_weights


def _resume_checkpoint(path: Path) -> dict:
    """Our training checkpoint at ``path``; a file of another kind is a ValueError saying what it
    is and that ``--init-from`` starts a new run from it."""
    import torch

    from ddetr_edu.checkpoints import kind_of, load_checkpoint
    from ddetr_edu.checkpoints.reference import WEIGHTS_FILE
    from ddetr_edu.checkpoints.safe_load import safe_torch_load

    try:
        return load_checkpoint(path)
    except ValueError as refused:
        content = safe_torch_load(path)  # read again, only to say what the file is
        if kind_of(content) == "official":
            what = "an official Deformable DETR checkpoint"
        elif isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
            what = (f"a bare state_dict ({len(content)} tensors, weights only)"
                    if path.resolve() != WEIGHTS_FILE.resolve() else
                    "the shipped reference model's weights (a bare state_dict)")
        else:
            raise refused
    source = "reference" if path.resolve() == WEIGHTS_FILE.resolve() else str(path)
    raise ValueError(f"--resume {path} is {what}, not a training checkpoint of a run to continue; to start a new "
                     f"run from its weights use --init-from {source}")


def _check_run_folder(args: argparse.Namespace) -> None:
    """``--out`` must be a folder without a run, unless ``--resume`` continues the run there or
    ``--overwrite`` replaces it: no run is replaced by accident; and no live run may hold it
    (``run.lock``), whatever the options."""
    from ddetr_edu.training.loop import INTERRUPTED, LAST, continues_run_in, run_files
    from ddetr_edu.training.run_lock import busy_message

    _require_folder("--out", args.out)
    busy = busy_message(args.out)  # a live run there: name it, whatever the options
    if busy is not None:
        raise UsageError(busy)
    held = run_files(args.out)
    if not held or args.overwrite or continues_run_in(args.out, args.resume):
        return
    latest = next((args.out / name for name in (INTERRUPTED, LAST) if name in held), None)
    resume = f"continue it with --resume {latest}, " if latest else ""
    raise UsageError(f"--out {args.out} already holds a run ({', '.join(held)}); {resume}choose a new --out, "
                     f"or pass --overwrite to replace it")


def continue_advice(args: argparse.Namespace, checkpoint: Path) -> str:
    """How to continue a run from ``checkpoint``: "the same command with --resume X", naming what
    to drop so that the advice never contradicts the command (an older --resume, --overwrite)."""
    drop = [f"--resume {args.resume}"] if args.resume is not None and Path(args.resume) != checkpoint else []
    drop += ["--overwrite"] if args.overwrite else []
    return f"the same command with --resume {checkpoint}" + (f" instead of {' and '.join(drop)}" if drop else "")


def _run_train(args: argparse.Namespace) -> int:
    from ddetr_edu.training.distributed import init_from_env, rank_zero_print, shutdown
    from ddetr_edu.training.loop import INTERRUPTED
    from ddetr_edu.training.engine import resolve_device
    from ddetr_edu.data.folders import find_data
    from ddetr_edu.training.fit import fit

    if args.overfit_batch:
        return _run_overfit_check(args)
    if args.overfit_steps is not None:
        raise UsageError("--overfit-steps goes with --overfit-batch")
    _check_run_folder(args)
    model_cfg, train_cfg = train_configs(args)
    with usage_errors():
        find_data(args.data)  # the data folder's layout, before any process group or model exists
        device = resolve_device(train_cfg.device)
    context = init_from_env(device.type)
    try:
        init_from = _init_weights(args) if args.init_from is not None else None
        result = fit(model_cfg, train_cfg, args.data, args.out, resume=args.resume, init_from=init_from)
    finally:
        shutdown(context)
    if result.interrupted:  # fit said where it stopped and what it saved
        rank_zero_print(context, f"to continue: {continue_advice(args, result.run_dir / INTERRUPTED)}")
        return 128 + result.stop_signal if result.stop_signal else 130
    if result.table:
        rank_zero_print(context, result.table)
    rank_zero_print(context, f"done: {result.epochs_completed} epochs, best AP {result.best_ap:.3f}; "
                             f"checkpoints in {result.run_dir}")
    return 0


def _run_overfit_check(args: argparse.Namespace) -> int:
    """``train --overfit-batch``: one line saying whether one batch is learnt; nothing is written."""
    from ddetr_edu.training.overfit import MAX_STEPS, overfit_check

    if args.resume is not None:
        raise UsageError("--overfit-batch starts from the model's initial weights or --init-from; leave out --resume")
    steps = MAX_STEPS if args.overfit_steps is None else args.overfit_steps
    if steps < 1:
        raise UsageError(f"--overfit-steps: expected >= 1, got {steps}")
    model_cfg, train_cfg = train_configs(args)  # checks the data folder, the configs and --init-from
    init_from = _init_weights(args) if args.init_from is not None else None
    print(f"overfit check: training on the first {train_cfg.batch_size} training images alone, at most {steps} "
          f"steps ...", flush=True)
    result = overfit_check(model_cfg, train_cfg, args.data, init_from=init_from, max_steps=steps)
    print(result.summary())
    return 0 if result.reached else 1


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
    from ddetr_edu.data.folders import build_val_dataset
    from ddetr_edu.models import build_detector
    from ddetr_edu.training.config import TrainConfig, train_preset
    from ddetr_edu.training.fit import check_classes, evaluate_model

    model_values, train_values = split_overrides(args.set)
    if model_values:
        raise UsageError(f"--set {', '.join(model_values)}: eval takes the model from --checkpoint; "
                         f"--set changes training fields only")
    train_values |= _given(batch_size=args.batch_size, max_eval_images=args.max_images)
    with usage_errors():  # the checkpoint file, the --set values, the data folder and its annotations
        kind, checkpoint = read_checkpoint(args.checkpoint)  # "ddetr_edu" or "official"
        if kind == "official":
            model, model_cfg, train_cfg = load_official_checkpoint(checkpoint), None, train_preset("coco")
        else:
            model_cfg = config_from_dict(checkpoint["model_config"])
            train_cfg = TrainConfig.from_dict(checkpoint["train_config"])
        train_cfg = with_overrides(train_cfg, train_values)
        val_set = build_val_dataset(args.data, train_cfg)  # the validation split alone is enough
        if model_cfg is not None:  # fewer logits than the data has classes, or other classes
            check_classes(model_cfg, val_set.class_names, checkpoint.get("class_names"))
    postprocess = None  # ours: evaluate_model ranks the data's classes only (labels 0..C-1)
    if model_cfg is None:
        postprocess = official_postprocess(val_set.category_id_to_label)
    else:
        model = build_detector(model_cfg)
        model.load_state_dict(checkpoint["model"])
    metrics, _ = evaluate_model(model, val_set, train_cfg, postprocess=postprocess)
    print(metrics.table)
    return 0


# ------------------------------------------------------------------------------------------ demo
def _add_demo(parser: argparse.ArgumentParser) -> None:  # the numbers: ddetr_edu.demo.demo_train_config
    parser.add_argument("--data", type=Path, default=Path("data/shapes"),
                        help="shapes dataset folder (one holding another dataset is refused)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder; run the demo again with the same options to continue an "
                             "interrupted run there (default: runs/demo, with --quick runs/demo_quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a few-minute version: the same data and model, 4 epochs instead of 21 "
                             "(the last at lr x0.1; a lower AP)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train this many epochs, the last fifth at lr x0.1 (default: 21, with --quick 4)")


def _run_demo(args: argparse.Namespace) -> int:
    import time

    from ddetr_edu.config import get_preset
    from ddetr_edu.demo import DEMO_SHAPES, check_demo_folders, demo_train_config, run_demo

    out = args.out or Path("runs/demo_quick" if args.quick else "runs/demo")
    _require_folder("--data", args.data)
    _require_folder("--out", out)
    with usage_errors():  # --epochs, and folders holding another dataset or another run
        model_cfg, train_cfg = get_preset("shapes_cpu"), demo_train_config(args.quick, args.epochs)
        check_demo_folders(args.data, out, DEMO_SHAPES, model_cfg, train_cfg)
    start = time.perf_counter()
    result = run_demo(args.data, out, shapes=DEMO_SHAPES, model_cfg=model_cfg, train_cfg=train_cfg,
                      report=lambda line: print(line, flush=True))
    if result.interrupted:  # the demo said where it stopped and how to continue
        return 128 + result.stop_signal if result.stop_signal else 130
    print(result.table)
    print(f"pictures: {', '.join(str(p) for p in result.figures)}")
    if result.visualizations:
        print(f"sampling points: {len(result.visualizations)} files in {result.visualizations[0].parent}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s; AP = {result.metrics['AP']:.3f}")
    return 0


# ------------------------------------------------------------------------------------- visualize
def _add_visualize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a ddetr_edu checkpoint, or an official Deformable DETR .pth (default: the "
                             "reference model shipped in the package, trained on shapes)")
    parser.add_argument("--image", required=True, type=Path, nargs="+", help="image file(s)")
    parser.add_argument("--out", type=Path, default=Path("runs/visualize"),
                        help="folder for <image-stem>_{decoder,encoder,refinement,summary}.png")
    parser.add_argument("--layer", type=int, default=-1, help="decoder layer, 0-based (-1: the last)")
    parser.add_argument("--head", default="all", help="attention head, 0-based, or 'all'")
    parser.add_argument("--top-k", type=int, default=5, help="detections shown, at most")
    parser.add_argument("--score-threshold", type=float, default=0.3,
                        help="minimum detection score (default 0.3); duplicates of a detection (same class, "
                             "IoU > 0.7) are dropped")
    parser.add_argument("--query-level", type=int, default=0, help="level of the encoder pixels shown")
    parser.add_argument("--size", type=int, default=None,
                        help="short side of the model input, 32 to 2048 pixels (long side <= 4096; "
                             "default: the checkpoint's evaluation size)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")


def _run_visualize(args: argparse.Namespace) -> int:
    from ddetr_edu.training.engine import resolve_device
    from ddetr_edu.viz.pipeline import VisualizeOptions, draw_visualization, prepare_visualization

    if args.head != "all" and not args.head.isdigit():
        raise UsageError(f"--head: expected 'all' or a head number (0, 1, ...), got {args.head!r}")
    _require_folder("--out", args.out)
    with usage_errors():  # the options, the device, the image files, the checkpoint
        options = VisualizeOptions(layer=args.layer, head=None if args.head == "all" else int(args.head),
                                   top_k=args.top_k, score_threshold=args.score_threshold,
                                   query_level=args.query_level)
        prepared = prepare_visualization(args.checkpoint, args.image, options, resolve_device(args.device),
                                         args.size)
    if args.checkpoint is None:
        from ddetr_edu.checkpoints.reference import reference_card

        card = reference_card()
        print(f"no --checkpoint: the shipped reference model (shapes, validation AP "
              f"{card['metrics']['AP']:.3f}; classes {', '.join(card['class_names'])})")
    why = f"--size {args.size}" if args.size else "the checkpoint's evaluation scale; --size to change"
    for path, picture, tensor in prepared.images:  # say when the model sees another size than the photo's
        (width, height), (new_height, new_width) = picture.size, tensor.shape[-2:]
        if (width, height) != (new_width, new_height):
            print(f"{path.name}: {width}x{height} -> {new_width}x{new_height} ({why})")
    written = draw_visualization(prepared, args.out)
    print("\n".join(f"wrote {path}" for path in written))
    return 0


# ---------------------------------------------------------------------------------------- export
def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="a ddetr_edu checkpoint, or an official Deformable DETR .pth")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="fix the input size (and the batch) in the graph (default: one graph for any "
                             "batch, height and width)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per call, fixed in the graph; with --size only (default: 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it holds an ONNX graph (never the checkpoint or another file)")


def _is_onnx_graph(path: Path) -> bool:
    """True when ``path`` parses as an ONNX model with a graph of at least one node."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any file onnx cannot parse is not an ONNX graph
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def _check_export_out(out: Path, checkpoint: Path, overwrite: bool) -> None:
    """``--out`` may replace an ONNX graph (with ``--overwrite``), never the checkpoint being read,
    a folder or any other file."""
    if not out.exists():
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; expected the .onnx file to write (e.g. {out / 'model.onnx'})")
    if checkpoint.exists() and out.samefile(checkpoint):
        raise UsageError(f"--out {out} is the checkpoint that --checkpoint reads; choose another file for the graph")
    if not _is_onnx_graph(out):
        raise UsageError(f"--out {out} exists and is not an ONNX graph; export never replaces it, with --overwrite "
                         f"or not: choose another file")
    if not overwrite:
        raise UsageError(f"--out {out} exists (an ONNX graph); choose another file or pass --overwrite to replace it")


def _run_export(args: argparse.Namespace) -> int:
    import time

    import torch

    from ddetr_edu.onnx_export import (OPSET, compare_with_onnxruntime, export_onnx, read_input_range,
                                       require_export_extra)
    from ddetr_edu.viz.loading import load_detector

    try:
        require_export_extra()
    except ImportError as error:
        raise UsageError(str(error)) from error

    _check_export_out(args.out, args.checkpoint, args.overwrite)
    if args.batch_size is not None and args.size is None:
        raise UsageError("--batch-size fixes the batch of a fixed-size graph: give --size HEIGHT WIDTH too "
                         "(without --size the graph takes any batch)")
    batch = args.batch_size or 1
    with usage_errors():
        detector = load_detector(args.checkpoint)
        size = tuple(args.size) if args.size else None
        args.out.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        path = export_onnx(detector.model, args.out, image_size=size, batch_size=batch)
        seconds = time.perf_counter() - start
    if size is not None:
        checks = [(batch, *size)]
        described = f"input images ({batch}, 3, {size[0]}, {size[1]})"
    else:  # square, landscape and portrait at the evaluation scale, batches of 1 and 2
        side, proven = detector.transforms.eval_scale, read_input_range(path)
        checks = [(1, side, side), (2, side, side * 5 // 4), (1, side * 5 // 4, side)]
        described = f"input images (N, 3, H, W), any batch N, H >= {proven.min_height}, W >= {proven.min_width}"
    errors = []
    for shape in checks:  # random batches: no image needed
        images = torch.randn(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(0))
        error = compare_with_onnxruntime(detector.model, path, images)
        errors.append(f"{shape[0]}x{shape[1]}x{shape[2]} scores {error['scores']:.1e}, boxes {error['boxes']:.1e}")
    print(f"wrote {path} in {seconds:.0f} s ({described}; outputs scores and boxes; opset {OPSET})")
    print(f"onnxruntime vs PyTorch on random input: {'; '.join(errors)}")
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


class _DefaultsInHelp(argparse.HelpFormatter):
    """``--help`` ends an option's text with "(default: X)" when it has a default value and its
    text names none ("(default: ..." in the text itself); flags and ``None`` defaults show nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "(default" in text or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or default == []):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddetr-edu", description="Deformable DETR: learn, run, train.",
                                     formatter_class=_DefaultsInHelp)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help,
                                  formatter_class=_DefaultsInHelp)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code: 2 for bad input (a UsageError,
    a DataFileError met while training or evaluating, an --out another run holds), 1 for a
    non-finite loss or a full disk, 130 for Ctrl-C, 143 for SIGTERM. Any other exception
    propagates with its traceback."""
    from ddetr_edu.data.errors import DataFileError
    from ddetr_edu.disk_full import DiskFullError
    from ddetr_edu.training.engine import NonFiniteLossError
    from ddetr_edu.training.run_lock import RunFolderBusy
    from ddetr_edu.training.stopping import Terminated, exit_code

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _sigterm_raises():
            return args.run(args)
    except (UsageError, DataFileError, RunFolderBusy) as error:  # bad input; any other exception (a bug) keeps
        print(f"error: {error}", file=sys.stderr)                # its traceback
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Terminated) outside the training epochs
        print("terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted", file=sys.stderr)
        return exit_code(stop)
    except (NonFiniteLossError, DiskFullError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`~ddetr_edu.training.stopping.Terminated` (a KeyboardInterrupt) while a
    command runs in the main thread, as Ctrl-C does; the training epochs handle both themselves."""
    import signal
    import threading

    from ddetr_edu.training.stopping import Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["UsageError", "usage_errors", "Command", "COMMANDS", "split_overrides", "train_configs",
           "official_postprocess", "build_parser", "main"]
