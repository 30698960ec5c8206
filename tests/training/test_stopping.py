"""StopSignals on its own: a stop swallowed where it landed is raised again, and a batch is never
cut while it is received (the training loop's use is tested in test_stop_anywhere and, with real
processes, in test_real_faults)."""
from __future__ import annotations

import signal
import time

import pytest

from ddetr_edu.training.stopping import StopSignals, Terminated


def _send_sigterm_and_let_it_land() -> None:
    signal.raise_signal(signal.SIGTERM)
    time.sleep(0.01)  # the Python handler runs between two bytecodes, here at the latest


def test_a_stop_swallowed_where_it_landed_is_raised_again_until_the_loop_catches_it():
    with StopSignals() as signals:
        try:
            _send_sigterm_and_let_it_land()
        except Terminated:
            pass  # what an exception in os.fork's handlers suffers: printed and dropped
        else:
            pytest.fail("the handler did not raise")
        with pytest.raises(Terminated):
            signals.check()
        with pytest.raises(Terminated):
            with signals.deferred():
                pass
        signals.acted = True  # the training loop caught it and is saving
        signals.check()
        _send_sigterm_and_let_it_land()  # a second signal while saving is ignored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


class SignalledLoader:
    """Three batches; SIGTERM arrives while ``at`` ("start" or batch 1) is being received."""

    def __init__(self, at: str):
        self.at, self.received = at, []

    def __iter__(self):  # a DataLoader starts its worker processes here
        if self.at == "start":
            _send_sigterm_and_let_it_land()
        self.received.append("start")
        return self._batches()

    def _batches(self):
        for index in range(3):
            if self.at == index:
                _send_sigterm_and_let_it_land()
            self.received.append(index)  # the whole batch was received
            yield index


@pytest.mark.parametrize("at", ["start", 1])
def test_guarded_receives_the_whole_batch_then_stops_before_using_it(at):
    loader = SignalledLoader(at)
    used = []
    with StopSignals() as signals:
        with pytest.raises(Terminated):
            for batch in signals.guarded(loader):
                used.append(batch)
    assert loader.received == (["start"] if at == "start" else ["start", 0, 1])
    assert used == ([] if at == "start" else [0])


def test_guarded_under_torchrun_only_records_the_signal():
    loader = SignalledLoader(1)
    with StopSignals(collective=True) as signals:
        assert list(signals.guarded(loader)) == [0, 1, 2]  # the ranks stop together, at a step
    assert signals.flag == 1.0


def test_workers_start_with_sigterm_blocked_and_it_is_delivered_afterwards():
    """The mask a DataLoader's forked workers inherit: SIGTERM blocked while ``iter(loader)`` runs."""
    masks = []

    class Loader:
        def __iter__(self):
            masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
            signal.raise_signal(signal.SIGTERM)  # held by the mask, not lost
            return iter([0, 1])

    with StopSignals() as signals:
        with pytest.raises(Terminated):
            next(signals.guarded(Loader()))
    assert signal.SIGTERM in masks[0]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
