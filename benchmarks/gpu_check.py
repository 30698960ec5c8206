"""One prepared command for a machine with an NVIDIA GPU: ``make gpu-check``.

In order, each step guarded (a failure is written into the report and the next step runs):

1. environment: torch, CUDA, the device, and ``cuda_kernel_status()``, which builds the kernel
   on first use (timed);
2. the GPU tests (those of ``GPU_TESTS`` that exist), run by pytest in a subprocess;
3. the attention core: backends cuda / triton / grid_sample / einops at the paper's encoder and
   decoder sizes, float32 and bfloat16 values (float32 locations and weights), forward and
   forward+backward, each kernel's time as a ratio to grid_sample's (a call that runs out of
   memory shows "OOM");
4. the full detector (``multiscale_refine_twostage``, ResNet-50, random weights): a training
   step (forward, loss, backward, AdamW) in float32 and under bf16 autocast, with the C++ kernel,
   the Triton kernels and grid_sample; batch-1 inference, eager and ``torch.compile``d;
5. one short bf16-AMP training epoch of the shapes preset on a fresh tiny dataset.

The issue's targets are printed beside the numbers (met / not met) and gathered at the end. The
markdown report goes to stdout and to ``--out``; progress goes to stderr. Exit code 1 when a
step or a measurement raised (a target not met is not an error).

    python benchmarks/gpu_check.py            # within 6 minutes on an H100 (compiling dominates)
    python benchmarks/gpu_check.py --quick    # fewer repeats, one compiled variant
    python benchmarks/gpu_check.py --smoke    # the same code paths at tiny sizes on the CPU

Uses the installed torch only: no internet, nothing is installed.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # ddetr_edu without installing it; msda_cuda
from msda_cuda import LEVELS, time_call  # noqa: E402

from ddetr_edu.ops import cuda_kernel_status, ms_deform_attn, triton_status  # noqa: E402
from ddetr_edu.ops.triton_backend import triton_cuda_status  # noqa: E402

GPU_TESTS = ("tests/kernels/test_cuda_gpu.py", "tests/kernels/test_triton_gpu.py", "tests/models/test_detector_gpu.py",
             "tests/test_gpu_models.py")
KERNELS = ("cuda", "triton")  # the C++ kernel and the Triton kernels, each judged against grid_sample
CORE_BACKENDS = (*KERNELS, "grid_sample", "einops")
PASSES = ("fwd", "fwd+bwd")
# kernel / grid_sample time at most, for each of KERNELS (the targets, float32)
CORE_TARGETS = {("encoder", "fwd"): 0.12, ("encoder", "fwd+bwd"): 0.11,
                ("decoder", "fwd"): 0.056, ("decoder", "fwd+bwd"): 0.12}
BF16_KERNEL_TARGET = 0.7  # bf16 kernel time / float32 kernel time at encoder size, at most
TRAIN_BF16_TARGET = 0.45  # bf16 train step with the kernel / float32 grid_sample step, at most
COMPILED_FPS_TARGET = 60.0  # compiled bf16 inference, batch 1, at least
Cell = float | str  # a time in ms, or why there is none ("OOM", "n/a", "error: ...")


@dataclass
class Kernel:
    """Whether a kernel backend ("cuda" or "triton") can run here (step 1 fills it in), and why not."""

    usable: bool = False
    reason: str = "not checked (step 1 failed)"


@dataclass(frozen=True)
class Plan:
    """What one run measures: sizes and repeat counts (full, ``--quick`` or ``--smoke``)."""

    device: torch.device
    core_levels: tuple[tuple[int, int], ...]  # (H_l, W_l) of the value maps
    decoder_queries: int  # Lq of the decoder size (the encoder's Lq is S)
    core_warmup: int
    core_reps: int
    preset: str  # detector preset
    image_hw: tuple[int, int]  # detector input (H, W)
    det_warmup: int
    det_reps: int
    compile_backend: str  # torch.compile backend
    compile_cases: tuple[tuple[str | None, str | None], ...]  # (mode, amp) of compiled inference
    shapes_images: tuple[int, int]  # (train, val) images of the training-epoch dataset
    train_steps: int  # optimiser steps of the training epoch
    train_amp: str | None  # "bf16" runs on CUDA and, in the smoke run, on the CPU


def make_plan(smoke: bool, quick: bool) -> Plan:
    """The full GPU plan, its ``--quick`` variant, or the tiny CPU ``--smoke`` plan."""
    if smoke:
        return Plan(device=torch.device("cpu"), core_levels=((8, 12), (4, 6), (2, 3), (1, 2)), decoder_queries=30,
                    core_warmup=1, core_reps=3, preset="shapes_cpu", image_hw=(96, 96), det_warmup=1, det_reps=3,
                    compile_backend="aot_eager", compile_cases=((None, "bf16"),), shapes_images=(8, 4),
                    train_steps=2, train_amp="bf16")
    compiled = ((None, "bf16"),) if quick else ((None, None), (None, "bf16"), ("reduce-overhead", "bf16"))
    return Plan(device=torch.device("cuda"), core_levels=LEVELS, decoder_queries=300,
                core_warmup=2 if quick else 5, core_reps=5 if quick else 20, preset="multiscale_refine_twostage",
                image_hw=(800, 1066), det_warmup=2 if quick else 3, det_reps=5 if quick else 10,
                compile_backend="inductor", compile_cases=compiled, shapes_images=(200, 20), train_steps=25,
                train_amp="bf16")


class Report:
    """The markdown report: sections in order, each guarded; targets gathered for the summary."""

    def __init__(self, header: list[str], judged: bool) -> None:
        self.lines = header
        self.judged = judged  # False: a smoke run, whose numbers say nothing about the targets
        self.targets: list[str] = []  # summary table rows
        self.errors = 0

    def section(self, title: str, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(lines, *args)``; lines it appended stay even if it raises."""
        print(f"[gpu_check] {title} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        lines: list[str] = []
        try:
            fn(lines, *args)
        except Exception:
            self.errors += 1
            lines += ["", "**This step failed:**", "```", *traceback.format_exc().strip().splitlines()[-15:], "```"]
        seconds = time.perf_counter() - start
        self.lines += ["", f"## {title}", "", *lines, "", f"_({seconds:.1f} s)_"]
        print(f"[gpu_check] {title}: {seconds:.1f} s", file=sys.stderr, flush=True)

    def guarded(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, or "OOM", or "error: ..." (one failed measurement keeps its table going)."""
        try:
            return fn()
        except torch.OutOfMemoryError:
            empty_cache()
            return "OOM"
        except Exception as err:
            self.errors += 1
            traceback.print_exc()
            empty_cache()
            text = " ".join(str(err).split())[:160].replace("|", "/")
            return f"error: {type(err).__name__}: {text}"

    def target(self, what: str, value: Cell, limit: float, at_most: bool) -> str:
        """"met" / "not met" / "n/a" of ``value`` against ``limit``, also kept for the summary."""
        if not isinstance(value, float):
            verdict = "n/a"
        elif not self.judged:
            verdict = "not judged (smoke run)"
        else:
            verdict = "met" if (value <= limit if at_most else value >= limit) else "not met"
        self.targets.append(f"| {what} | {fmt(value)} | {'<=' if at_most else '>='} {limit} | {verdict} |")
        return verdict


def empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], Any], warmup: int, reps: int, device: torch.device) -> float:
    """Median milliseconds of ``fn()``: CUDA events on a GPU, ``time.perf_counter`` on the CPU."""
    if device.type == "cuda":
        return time_call(fn, warmup, reps)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: torch.device) -> str:
    """Peak allocated GPU memory since ``reset_peak`` ("-" on the CPU, where torch does not count)."""
    return f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if device.type == "cuda" else "-"


def fmt(value: Cell, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else value


def ratio(a: Cell, b: Cell) -> Cell:
    return a / b if isinstance(a, float) and isinstance(b, float) else "n/a"


# ---------------------------------------------------------------------------------- 1. environment
def environment(lines: list[str], plan: Plan, kernel: Kernel, triton: Kernel) -> None:
    """Versions, the device, and whether the kernels are usable (building the C++ one the first time)."""
    lines.append(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, python {sys.version.split()[0]}, "
                 f"float32 matmul precision {torch.get_float32_matmul_precision()!r}")
    if plan.device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        lines.append(f"- device: {props.name}, compute capability {props.major}.{props.minor}, "
                     f"{props.total_memory / 2**30:.0f} GiB")
    else:
        lines.append("- device: CPU (smoke run: tiny sizes, perf_counter timing)")
    start = time.perf_counter()
    usable, reason = cuda_kernel_status()
    lines.append(f"- cuda_kernel_status(): {usable}, {reason!r} "
                 f"({time.perf_counter() - start:.1f} s; on a GPU the first call builds the kernel)")
    kernel.usable = usable and plan.device.type == "cuda"  # a smoke run times CPU tensors only
    kernel.reason = reason if not usable else "smoke run on the CPU"
    start = time.perf_counter()
    usable, reason = triton_cuda_status() if plan.device.type == "cuda" else triton_status()
    lines.append(f"- triton status: {usable}, {reason!r} ({time.perf_counter() - start:.1f} s; "
                 "each kernel compiles on its first call, in the warm-up)")
    triton.usable = usable and plan.device.type == "cuda"  # on the CPU only the interpreter runs it (tests)
    triton.reason = reason if not usable else "smoke run on the CPU (the interpreter tests cover it)"


# ---------------------------------------------------------------------------------- 2. GPU tests
def gpu_tests(lines: list[str], report: Report) -> None:
    """pytest on the GPU test files that exist, in a subprocess; its summary line. Failures count
    as errors; exit code 5 (every module skipped: no GPU) does not."""
    paths = [p for p in GPU_TESTS if (ROOT / p).exists()]
    lines.append(f"`python -m pytest -q {' '.join(paths)}`")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", *paths], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    output = [line for line in done.stdout.splitlines() if line.strip()]
    lines += ["", f"- exit code {done.returncode}: {output[-1] if output else done.stderr.strip()[-300:]}"]
    report.errors += done.returncode not in (0, 5)
    failed = [line for line in output if line.startswith(("FAILED", "ERROR"))]
    if failed:
        lines += ["", "```", *failed[:20], "```"]


# ---------------------------------------------------------------------------------- 3. attention core
def core_inputs(levels, queries: int | None, dtype: torch.dtype, device: torch.device,
                batch: int = 2, heads: int = 8, channels: int = 32, points: int = 4):
    """value (N, S, M, D) in dtype; locations (N, Lq, M, L, K, 2) and weights (N, Lq, M, L, K) in
    float32. Locations are a random reference point per query plus N(0, 0.02) offsets, as a
    trained model's; Lq = S (every token a query) when ``queries`` is None."""
    gen = torch.Generator(device=device).manual_seed(0)
    s = sum(h * w for h, w in levels)
    lq, n_levels = queries or s, len(levels)
    value = torch.randn(batch, s, heads, channels, device=device, generator=gen).to(dtype)
    reference = torch.rand(batch, lq, 1, 1, 1, 2, device=device, generator=gen)
    loc = reference + 0.02 * torch.randn(batch, lq, heads, n_levels, points, 2, device=device, generator=gen)
    logits = torch.randn(batch, lq, heads, n_levels * points, device=device, generator=gen)
    weights = logits.softmax(-1).view(batch, lq, heads, n_levels, points)
    return value, loc, weights


def time_core(backend: str, inputs, levels, backward: bool, plan: Plan) -> float:
    """Median ms of one core call (and its backward against a ones gradient)."""
    value, loc, weights = (t.detach().requires_grad_(backward) for t in inputs)

    def call():
        for t in (value, loc, weights):
            t.grad = None
        out = ms_deform_attn(value, levels, loc, weights, backend=backend)  # (N, Lq, M*D)
        if backward:
            out.backward(torch.ones_like(out))

    return median_ms(call, plan.core_warmup, plan.core_reps, plan.device)


def core_benchmark(lines: list[str], report: Report, plan: Plan, kernels: dict[str, Kernel]) -> None:
    """The table of section 3, both kernels' targets and their bf16 / float32 ratios."""
    levels = [tuple(hw) for hw in plan.core_levels]
    s = sum(h * w for h, w in levels)
    sizes = {"encoder": None, "decoder": plan.decoder_queries}
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    lines.append(f"Batch 2, levels {levels} (S = {s:,}), M=8, D=32, K=4; encoder Lq = S, decoder Lq = "
                 f"{plan.decoder_queries}. bfloat16 = bf16 value, float32 locations and weights. Median of "
                 f"{plan.core_reps} after {plan.core_warmup} warm-ups.")
    for name, kernel in kernels.items():
        if not kernel.usable:
            lines.append(f"\n{name}: unavailable: {kernel.reason}")
    lines += ["", "| size | pass | dtype | " + " | ".join(f"{b} ms" for b in CORE_BACKENDS) + " | "
              + " | ".join(f"{k}/grid_sample" for k in KERNELS) + " |",
              "|---|---|---|" + "---|" * (len(CORE_BACKENDS) + len(KERNELS))]
    times: dict[tuple[str, str, str], dict[str, Cell]] = {}
    for size, queries in sizes.items():
        for dtype_name, dtype in dtypes.items():
            inputs = core_inputs(levels, queries, dtype, plan.device)
            for pass_name in PASSES:
                row = {b: "n/a" if b in kernels and not kernels[b].usable else report.guarded(
                    lambda b=b: time_core(b, inputs, levels, pass_name == "fwd+bwd", plan)) for b in CORE_BACKENDS}
                times[size, pass_name, dtype_name] = row
                shown = ", ".join(f"{b} {fmt(t)}" for b, t in row.items())
                print(f"[gpu_check]   {size} {pass_name} {dtype_name}: {shown}", file=sys.stderr, flush=True)
            del inputs
            empty_cache()
    for size in sizes:
        for pass_name in PASSES:
            for dtype_name in dtypes:
                row = times[size, pass_name, dtype_name]
                lines.append(f"| {size} | {pass_name} | {dtype_name} | "
                             + " | ".join(fmt(row[b]) for b in CORE_BACKENDS) + " | "
                             + " | ".join(fmt(ratio(row[k], row["grid_sample"])) for k in KERNELS) + " |")
    lines += ["", "| target | value | limit | verdict |", "|---|---|---|---|"]
    for name in KERNELS:
        for (size, pass_name), limit in CORE_TARGETS.items():
            row = times[size, pass_name, "float32"]
            what = f"{name}/grid_sample, {size} {pass_name}, float32"
            value = ratio(row[name], row["grid_sample"])
            lines.append(f"| {what} | {fmt(value)} | <= {limit} | {report.target(what, value, limit, True)} |")
        for pass_name in PASSES:
            what = f"bf16 {name} / float32 {name}, encoder {pass_name}"
            value = ratio(times["encoder", pass_name, "bfloat16"][name], times["encoder", pass_name, "float32"][name])
            lines.append(f"| {what} | {fmt(value)} | <= {BF16_KERNEL_TARGET} | "
                         f"{report.target(what, value, BF16_KERNEL_TARGET, True)} |")


# ---------------------------------------------------------------------------------- 4. detector
def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``amp="bf16"`` (CPU or CUDA), nothing for None."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


def build_model(plan: Plan, backend: str) -> torch.nn.Module:
    from ddetr_edu.config import get_preset
    from ddetr_edu.models import build_detector

    torch.manual_seed(0)
    return build_detector(get_preset(plan.preset, attention_backend=backend)).to(plan.device)


def detector_batch(plan: Plan, batch: int):
    """images (N, 3, H, W); masks (N, H, W), the second image padded to 7/8 x 27/32 of the
    batch's size; targets: 4 random boxes per image (labels (4,), boxes (4, 4) cxcywh)."""
    from ddetr_edu.training.engine import move_targets

    h, w = plan.image_hw
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, h, w, generator=gen)
    masks = torch.zeros(batch, h, w, dtype=torch.bool)
    if batch > 1:
        masks[1, h * 7 // 8:, :] = masks[1, :, w * 27 // 32:] = True
    targets = [{"labels": torch.randint(0, 5, (4,), generator=gen),
                "boxes": torch.cat([0.2 + 0.6 * torch.rand(4, 2, generator=gen),
                                    0.05 + 0.25 * torch.rand(4, 2, generator=gen)], -1)} for _ in range(batch)]
    return images.to(plan.device), masks.to(plan.device), move_targets(targets, plan.device)


def time_train_step(plan: Plan, backend: str, amp: str | None) -> tuple[float, str]:
    """(median ms, peak MiB) of forward + loss + backward + clip + AdamW step, batch 2."""
    from ddetr_edu.config import get_preset
    from ddetr_edu.training.config import train_preset
    from ddetr_edu.training.engine import to_float32
    from ddetr_edu.training.fit import build_criterion
    from ddetr_edu.training.optim import build_optimizer

    model = build_model(plan, backend).train()
    criterion = build_criterion(get_preset(plan.preset))
    cfg = train_preset("coco")
    optimizer = build_optimizer(model, cfg)
    images, masks, targets = detector_batch(plan, 2)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(plan.device, amp):
            outputs = model(images, masks)
        loss = criterion(to_float32(outputs), targets)["loss"]  # the losses run in float32
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_max_norm)
        optimizer.step()

    reset_peak(plan.device)
    ms = median_ms(step, plan.det_warmup, plan.det_reps, plan.device)
    return ms, peak_mib(plan.device)


def time_inference(plan: Plan, model: torch.nn.Module, image: torch.Tensor, amp: str | None) -> tuple:
    """(first-call s, median ms, peak MiB) of batch-1 inference; the first call compiles."""
    def call():
        with torch.no_grad(), autocast(plan.device, amp):
            model(image)

    reset_peak(plan.device)
    start = time.perf_counter()
    call()
    synchronize(plan.device)
    first = time.perf_counter() - start
    return first, median_ms(call, plan.det_warmup, plan.det_reps, plan.device), peak_mib(plan.device)


def detector(lines: list[str], report: Report, plan: Plan, kernels: dict[str, Kernel]) -> None:
    """Train-step and inference tables of section 4, with their targets."""
    h, w = plan.image_hw
    lines += [f"Preset `{plan.preset}` (random weights), {h}x{w}. Median of {plan.det_reps} after "
              f"{plan.det_warmup} warm-ups; peak = torch.cuda.max_memory_allocated.", "",
              "Train step (forward + loss + backward + clip + AdamW), batch 2:", "",
              "| backend | precision | ms | peak MiB |", "|---|---|---|---|"]
    steps: dict[tuple[str, str | None], Cell] = {}
    for amp in (None, "bf16"):
        for backend in (*KERNELS, "grid_sample"):
            if backend in kernels and not kernels[backend].usable:
                steps[backend, amp], peak = f"unavailable: {kernels[backend].reason}", "-"
            else:
                got = report.guarded(lambda b=backend, a=amp: time_train_step(plan, b, a))
                steps[backend, amp], peak = got if isinstance(got, tuple) else (got, "-")
            lines.append(f"| {backend} | {amp or 'fp32'} | {fmt(steps[backend, amp], 1)} | {peak} |")
            empty_cache()
    for name in KERNELS:
        value = ratio(steps[name, "bf16"], steps["grid_sample", None])
        what = f"train step: bf16 + {name} / fp32 grid_sample"
        lines.append(f"\n{what}: {fmt(value)} (target <= {TRAIN_BF16_TARGET}: "
                     f"{report.target(what, value, TRAIN_BF16_TARGET, True)})")

    backend = next((name for name in KERNELS if kernels[name].usable), "grid_sample")
    lines += ["", f"Inference, batch 1, backend {backend}; compiled with backend `{plan.compile_backend}` "
              "(first call = compile time):", "",
              "| model | precision | first call s | ms | FPS | peak MiB |", "|---|---|---|---|---|---|"]
    model = build_model(plan, backend).eval()
    image = detector_batch(plan, 1)[0]
    compiled_bf16_fps = []
    for mode, amp in [("eager", None), ("eager", "bf16"), *plan.compile_cases]:  # mode None: compile's default
        name = "eager" if mode == "eager" else f"compiled ({mode or 'default'})"
        got = report.guarded(lambda m=mode, a=amp: time_inference(
            plan, model if m == "eager" else torch.compile(model, backend=plan.compile_backend, mode=m), image, a))
        if isinstance(got, tuple):
            first, ms, peak = got
            lines.append(f"| {name} | {amp or 'fp32'} | {first:.1f} | {ms:.1f} | {1e3 / ms:.1f} | {peak} |")
            if mode != "eager" and amp == "bf16":
                compiled_bf16_fps.append(1e3 / ms)
        else:
            lines.append(f"| {name} | {amp or 'fp32'} | {got} | | | |")
        empty_cache()
    what = "compiled bf16 inference FPS (best mode)"
    value = max(compiled_bf16_fps) if compiled_bf16_fps else "n/a"
    lines.append(f"\n{what}: {fmt(value, 1)} (target >= {COMPILED_FPS_TARGET:.0f}: "
                 f"{report.target(what, value, COMPILED_FPS_TARGET, False)})")


# ---------------------------------------------------------------------------------- 5. training epoch
def training_epoch(lines: list[str], plan: Plan) -> None:
    """A tiny shapes dataset in a temp folder, then ``fit`` for one short epoch and its evaluation."""
    from ddetr_edu.config import get_preset
    from ddetr_edu.data.shapes import make_shapes_dataset
    from ddetr_edu.demo import DEMO_SHAPES
    from ddetr_edu.training.config import train_preset
    from ddetr_edu.training.engine import timed
    from ddetr_edu.training.fit import fit
    from ddetr_edu.training.logbook import read_log

    n_train, n_val = plan.shapes_images
    train_cfg = dataclasses.replace(train_preset("shapes_cpu"), epochs=1, device=plan.device.type,
                                    amp=plan.train_amp, max_steps_per_epoch=plan.train_steps, log_every=1)
    model_cfg = get_preset("shapes_cpu", attention_backend="auto")  # the kernel on a GPU that has it
    lines.append(f"`shapes_cpu` model (attention backend auto), {n_train} train / {n_val} val images of "
                 f"96 px, batch {train_cfg.batch_size}, {plan.train_steps} steps, device {plan.device.type}, "
                 f"amp {plan.train_amp}, then the COCO evaluation.")
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        make_shapes_dataset(data, dataclasses.replace(DEMO_SHAPES, num_train=n_train, num_val=n_val))
        result, seconds = timed(lambda: fit(model_cfg, train_cfg, data, run, verbose=False))
        epoch = read_log(run / "log.jsonl", "epoch")[-1]
    loss = epoch["train_loss"]  # the logbook writes a non-finite loss as null (fit raises first)
    lines += ["", f"- mean training loss: {'NOT finite' if loss is None else f'{loss:.4f}, finite'}",
              f"- epoch {epoch['seconds']:.1f} s; with the evaluation {seconds:.1f} s; "
              f"AP {result.metrics.get('AP', float('nan')):.3f} (untrained: expect about 0)"]


# ---------------------------------------------------------------------------------- report
def header(plan: Plan) -> list[str]:
    name = torch.cuda.get_device_name(0) if plan.device.type == "cuda" else "CPU (smoke run)"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:  # no git on the machine
        commit = ""
    return [f"# GPU check: {name}", "",
            f"{datetime.datetime.now().isoformat(timespec='minutes')}; commit {commit or 'unknown'}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu_check.md", help="report file")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and one compiled variant")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (tests the script)")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check needs a CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda}); "
              "--smoke runs it on the CPU.", file=sys.stderr)
        return 2
    plan = make_plan(args.smoke, args.quick)
    report = Report(header(plan), judged=not args.smoke)
    kernels = {name: Kernel() for name in KERNELS}
    report.section("1. Environment", environment, plan, kernels["cuda"], kernels["triton"])
    report.section("2. GPU tests", gpu_tests, report)
    report.section("3. Attention core", core_benchmark, report, plan, kernels)
    report.section("4. Detector", detector, report, plan, kernels)
    report.section("5. AMP training epoch", training_epoch, plan)
    report.lines += ["", "## Targets", "", "| target | value | limit | verdict |", "|---|---|---|---|",
                     *report.targets, "", f"Errors: {report.errors}."]
    text = "\n".join(report.lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"[gpu_check] report written to {args.out}", file=sys.stderr)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
