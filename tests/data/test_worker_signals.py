"""DataLoader workers and SIGTERM, with real processes: the program exits with a loader iterator
still alive, a SIGTERM from another process leaves a worker running, one from the main process
ends it (exit code 0)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
WAIT_S = 120  # a loaded 2-core machine starts a torch process slowly

LOADER = """
import os, sys, torch
from torch.utils.data import Dataset
from ddetr_edu.data.loader import build_dataloader

class WorkerPids(Dataset):
    def __len__(self):
        return 100
    def __getitem__(self, index):
        return os.getpid()

loader = build_dataloader(WorkerPids(), 1, shuffle=False, seed=0, num_workers=2, collate_fn=lambda b: b[0])
alive = iter(loader)
print(sorted({next(alive) for _ in range(6)}), flush=True)
"""

pytestmark = pytest.mark.skipif(not hasattr(signal, "sigwaitinfo"), reason="no sigwaitinfo (macOS, Windows)")


def _run(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT, **kwargs)


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return None


def test_a_program_exits_with_a_loader_iterator_still_alive():
    # multiprocessing ends the workers it still has with SIGTERM at exit: a worker that ignored it
    # hung the program for ever (the test suite's own exit, in CI)
    process = _run(LOADER)
    try:
        stdout, stderr = process.communicate(timeout=WAIT_S)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stdout.startswith("[") and stderr == "", (stdout, stderr)


def test_a_sigterm_from_another_process_is_ignored_one_from_the_main_process_ends_the_worker():
    code = LOADER + """
for line in sys.stdin:
    workers = alive._workers
    workers[0].terminate()  # SIGTERM from the parent, as multiprocessing and the DataLoader send it
    workers[0].join(timeout=60)
    print(workers[0].exitcode, workers[1].is_alive(), flush=True)
"""
    process = _run(code)
    try:
        pids = [int(pid) for pid in process.stdout.readline().strip("[]\n").split(",")]
        assert len(pids) == 2, pids
        for pid in pids:
            os.kill(pid, signal.SIGTERM)  # from this process: not the workers' parent
        time.sleep(1.0)
        assert all(_state(pid) not in (None, "Z") for pid in pids), [_state(pid) for pid in pids]
        process.stdin.write("terminate one\n")
        process.stdin.flush()
        assert process.stdout.readline() == "0 True\n"
        stdout, stderr = process.communicate(timeout=WAIT_S)  # stdin closed: the program ends
    finally:
        process.kill()
    assert process.returncode == 0 and stderr == "", stderr
