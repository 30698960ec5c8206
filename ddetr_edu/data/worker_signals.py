"""SIGTERM in DataLoader worker processes: the main process's to handle, unless it sends it.

Two kinds of SIGTERM reach a worker, and they need opposite answers:

* **From the scheduler** (Slurm pre-empting a job, ``kill -TERM -<process group>``): every process
  of the job gets it at once. Were the worker to die, the main process would be told "DataLoader
  worker exited unexpectedly" in the middle of the training step it is finishing, and could not
  save ``checkpoint_interrupted.pth`` (:mod:`ddetr_edu.training.stopping`). The worker must go on
  until the main process has stopped and ends its workers itself.
* **From the main process**: ``multiprocessing`` ends the workers it still has with SIGTERM when
  the program exits (a loader iterator still referenced at exit: a notebook variable, an error's
  traceback), and the DataLoader does so when a worker does not stop by itself. Were the worker to
  ignore it, the main process would wait for it forever: the program would never exit.

So the worker tells them apart by the sender: it blocks SIGTERM and a thread waits for it with
``sigwaitinfo``, which says who sent it (``si_pid``). A SIGTERM from the parent ends the worker
(exit code 0); any other is ignored (the main process, which got it too, decides). PyTorch's own
worker handler, which this replaces, ends the worker on the parent's SIGTERM too but dies of any
other; it is installed before ``worker_init_fn`` runs, so the training loop starts its workers with
SIGTERM blocked (:meth:`ddetr_edu.training.stopping.StopSignals.guarded`) and a signal sent in
between waits for the thread. Where ``sigwaitinfo`` does not exist (macOS, Windows) the worker
keeps the default: SIGTERM ends it.
"""
from __future__ import annotations

import os
import signal
import threading


def _end_on_sigterm_from(parent: int) -> None:
    """Runs in a daemon thread of the worker; SIGTERM is blocked in every thread of the worker."""
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == parent:
            # exit code 0, an orderly stop: one killed by a signal is an error to torch's SIGCHLD
            # handler in the main process, printed as a traceback while the program exits
            os._exit(0)


def leave_sigterm_to_the_main_process(worker_id: int) -> None:
    """``worker_init_fn``: a SIGTERM from the main process ends the worker, any other is ignored."""
    if not (hasattr(signal, "sigwaitinfo") and hasattr(signal, "pthread_sigmask")):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a fork copies the main process's training handler
        return
    # blocked first: a SIGTERM arriving from here on waits for the thread below, never the default
    # action (which one arriving between the two lines would get, the other way round)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit the mask
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a fork copies the main process's training handler
    threading.Thread(target=_end_on_sigterm_from, args=(os.getppid(),), daemon=True,
                     name="sigterm-from-main-process").start()


__all__ = ["leave_sigterm_to_the_main_process"]
