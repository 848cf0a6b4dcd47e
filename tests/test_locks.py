"""The lock-order checker: locks taken out of procsync.locks.ORDER raise, in order they work."""

from __future__ import annotations

import os
import threading

import pytest

from procsync import locks
from procsync.locks import ORDER, LockOrderError, ordered_lock


def test_the_suite_runs_with_the_checker_on():
    assert os.environ.get(locks.ENV_VAR) == "1" and locks.checking()
    assert type(ordered_lock("manager")).__name__ == "_CheckedLock"


def test_taking_locks_in_order_works_and_out_of_order_raises_naming_both():
    outer, inner = ordered_lock("orchestrator"), ordered_lock("manager")
    with outer, inner:
        pass
    with inner:
        with pytest.raises(LockOrderError, match="'orchestrator' taken while holding 'manager'"):
            outer.acquire()
    assert not outer.locked() and not inner.locked()


def test_two_locks_of_one_rank_never_nest():
    one, two = ordered_lock("store"), ordered_lock("store")
    with one, pytest.raises(LockOrderError):
        two.acquire()


def test_a_reentrant_lock_may_be_taken_again_by_its_holder():
    lock = ordered_lock("store", reentrant=True)
    with lock, lock:
        assert lock.locked()
    assert not lock.locked()


def test_a_condition_on_a_checked_lock_waits_and_wakes():
    lock = ordered_lock("orchestrator")
    changed = threading.Condition(lock)
    ready: list[int] = []

    def notify() -> None:
        with changed:
            ready.append(1)
            changed.notify_all()

    with changed:
        threading.Thread(target=notify, daemon=True).start()
        assert changed.wait_for(lambda: ready, timeout=10)


def test_the_order_is_per_thread():
    outer, inner = ordered_lock("orchestrator"), ordered_lock("manager")
    errors: list[BaseException] = []
    with inner:
        def other() -> None:
            try:
                with outer:
                    pass
            except BaseException as err:  # pragma: no cover - the failure is reported below
                errors.append(err)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
    assert errors == []


def test_unknown_names_are_refused_and_off_means_plain_locks(monkeypatch):
    with pytest.raises(ValueError, match="unknown lock name 'nope'"):
        ordered_lock("nope")
    monkeypatch.setenv(locks.ENV_VAR, "0")
    assert isinstance(ordered_lock("manager"), type(threading.Lock()))
    assert len(set(ORDER)) == len(ORDER)
