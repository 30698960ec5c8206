"""How long the full run will take, measured before it starts.

Every configuration trains a few steps on a small dataset of the full image size, in as many
processes at a time as the real run (so that the two processes' competition for the cores and
memory is in the numbers), for two short epochs: the second epoch gives the warm cost of a step
and of evaluating one validation image. Then, per run,

    seconds = epochs * (ceil(num_train / batch) * step + num_val * eval_per_image)

and the runs are dealt to the processes longest first (the greedy schedule ``train_many``
follows); the estimate is the busiest process's total, plus writing the dataset.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
import time
from pathlib import Path

from ddetr_edu.data.shapes import ShapesConfig, make_shapes_dataset
from experiments.claims_setup import train_config
from experiments.claims_training import train_many

MEASURE_STEPS = 10  # steps per measuring epoch
MEASURE_IMAGES = 8  # validation images scored per measuring epoch


@dataclasses.dataclass(frozen=True)
class Cost:
    """The measured cost of one configuration, in seconds."""

    step: float  # one training step (batch of the recipe)
    eval_per_image: float  # evaluating one validation image (inference, COCO scoring, checkpoint)


def measure_costs(names: list[str], shapes: ShapesConfig, work_dir: Path, jobs: int, threads: int
                  ) -> tuple[dict[str, Cost], float]:
    """{name: Cost} measured as the module docstring says, and the seconds per image of writing data."""
    batch = train_config(0).batch_size
    small = dataclasses.replace(shapes, num_train=MEASURE_STEPS * batch, num_val=MEASURE_IMAGES)
    data_dir = work_dir / "measure_data"
    start = time.perf_counter()
    make_shapes_dataset(data_dir, small, num_workers=0)
    per_image = (time.perf_counter() - start) / (small.num_train + small.num_val)
    costs = {}

    def keep(record: dict) -> None:
        warm = record["epochs"][-1]
        costs[record["name"]] = Cost(warm["train_seconds"] / MEASURE_STEPS,
                                     (warm["wall_seconds"] - warm["train_seconds"]) / MEASURE_IMAGES)

    train_many([(name, 0) for name in names], jobs, keep, data_dir=data_dir, work_dir=work_dir / "measure_runs",
               shapes=small, epochs=2, max_steps=MEASURE_STEPS, max_eval_images=MEASURE_IMAGES, threads=threads)
    return costs, per_image


def run_seconds(cost: Cost, shapes: ShapesConfig, epochs: int) -> float:
    """Estimated seconds of one run (see the module docstring)."""
    steps = math.ceil(shapes.num_train / train_config(0).batch_size)
    return epochs * (steps * cost.step + shapes.num_val * cost.eval_per_image)


def longest_first(runs: list[tuple[str, int]], seconds: dict[str, float]) -> list[tuple[str, int]]:
    """The runs ordered longest first (by their configuration's estimate)."""
    return sorted(runs, key=lambda run: -seconds[run[0]])


def makespan(durations: list[float], jobs: int) -> float:
    """Seconds until the last of ``durations`` ends, each started in order on the first free process."""
    free_at = [0.0] * jobs
    for duration in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + duration)
    return max(free_at)
