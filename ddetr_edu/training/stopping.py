"""Ctrl-C (SIGINT) and SIGTERM during training: stop between two steps, never inside one.

A cluster scheduler pre-empting a job sends SIGTERM (torchrun passes it on to every rank); a
person at the terminal presses Ctrl-C. :class:`StopSignals` treats both alike: the training loop
saves ``checkpoint_interrupted.pth`` and returns, and the command line exits with 130 (Ctrl-C) or
143 (SIGTERM, 128 + 15, what a killed process reports).

Where the stop lands decides whether resuming is exact. An optimiser step half applied, or a
step applied but not yet counted, would make the checkpoint lie. So a training step (forward,
backward, optimiser step, the counters, the loss sums and the log line) runs inside
:meth:`StopSignals.deferred`: a signal arriving there is held until the step is complete.

One process: the stop is :class:`Terminated` (a ``KeyboardInterrupt``, so every
``except KeyboardInterrupt`` treats it as Ctrl-C) raised at once (or at the end of the step).
Receiving a batch from the DataLoader is held too (:meth:`StopSignals.guarded`), and a stop that
some code swallowed is raised again (:meth:`StopSignals.check`) until the loop has caught it.
Several processes (torchrun): each rank may get the signal at a slightly different moment, and a
rank that leaves while the others wait in a collective call would hang them. So the handler only
records the signal; every training step all-reduces "has any rank been signalled?" together with
its loss values (:func:`ddetr_edu.training.engine.forward_losses`), and so does the end of every
epoch (:meth:`StopSignals.stop_if_any_rank_was_signalled`): all ranks stop after the same step
and rank 0 alone saves. A second signal while stopping is ignored (the save is not cut short).

The handlers are process-wide (signals are), installed by ``with StopSignals(...)`` around the
epochs only and restored on exit; outside the main thread (where Python cannot install signal
handlers) nothing is installed and the defaults apply.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import TypeVar

import torch
import torch.distributed as dist

HANDLED = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")
_END = object()  # the end of a loader, in guarded()


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as after Ctrl-C (``signum`` is the signal's number)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def stop_exception(signum: int) -> KeyboardInterrupt:
    """KeyboardInterrupt for Ctrl-C, :class:`Terminated` for SIGTERM."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def exit_code(error: BaseException) -> int:
    """130 after Ctrl-C, 128 + signal number after :class:`Terminated` (143 for SIGTERM)."""
    return 128 + error.signum if isinstance(error, Terminated) else 130


@contextlib.contextmanager
def _sigterm_blocked() -> Iterator[None]:
    """SIGTERM blocked in this thread: DataLoader workers forked meanwhile start with it blocked and
    only their init function lets it in, by its sender (:mod:`ddetr_edu.data.worker_signals`);
    PyTorch's own worker handler, installed before that function runs, would let a scheduler's
    SIGTERM kill a worker that is just starting. Here the signal is delivered on leaving."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StopSignals:
    """SIGINT/SIGTERM handling for one training run; ``collective``: several processes (torchrun)."""

    def __init__(self, collective: bool = False) -> None:
        self.collective = collective
        self.signum: int | None = None  # the first signal received
        self.acted = False  # the training loop caught the stop: later signals are ignored
        self._deferring = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.collective or self._deferring or self.acted:
            return  # recorded: the next step (collective) or the end of this step acts on it
        # raised wherever the program is; some places swallow it (an exception in os.fork's
        # handlers, while a DataLoader starts its workers, is printed and dropped): check() raises
        # it again at the next step, batch or epoch end, until the training loop has caught it
        raise stop_exception(signum)

    def check(self) -> None:
        """Raise the stop if a signal arrived and the training loop has not caught its stop yet
        (one process; under torchrun the ranks decide together, :meth:`stop`)."""
        if self.signum is not None and not self.collective and not self.acted:
            raise stop_exception(self.signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a signal must not cut (one training step): one arriving inside acts at its end."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring:
            self.check()

    def guarded(self, loader: Iterable[T]) -> Iterator[T]:
        """The batches of ``loader``, each received inside :meth:`deferred` (and the start of its
        worker processes too): a signal then never cuts a batch half read from a worker (whose end
        of the connection would print a traceback) nor the fork that starts a worker."""
        with self.deferred(), _sigterm_blocked():
            batches = iter(loader)
        while True:
            with self.deferred():
                batch = next(batches, _END)
            if batch is _END:
                return
            yield batch  # type: ignore[misc]

    @property
    def flag(self) -> float:
        """1.0 when this process was signalled (what the ranks all-reduce), else 0.0."""
        return 0.0 if self.signum is None else 1.0

    def stop(self, any_rank_signalled: float) -> None:
        """Raise the stop when the all-reduced :attr:`flag` says some rank was signalled."""
        if any_rank_signalled > 0 and not self.acted:
            raise stop_exception(self.signum if self.signum is not None else signal.SIGTERM)

    def stop_if_any_rank_was_signalled(self) -> None:
        """Between epochs, under torch.distributed: every rank all-reduces its flag (a collective
        call: every rank must make it; it is also a barrier) and all stop together if any was
        signalled."""
        if not (self.collective and dist.is_available() and dist.is_initialized()):
            return
        flag = torch.tensor([self.flag], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.stop(float(flag.item()))


__all__ = ["HANDLED", "Terminated", "stop_exception", "exit_code", "StopSignals"]
