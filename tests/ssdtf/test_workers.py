"""The roles' PRE worker pool (drivers/ssdtf/workers.py) with real worker processes: every
task is answered exactly once, a refused input comes back as text (the worker survives it),
a deep backlog does not dead-lock the pool, and a worker that dies fails its pending tasks
instead of leaving the role waiting forever."""

from __future__ import annotations

import threading

import pytest

from drivers.ssdtf.workers import Done, OpenWorkers

TASKS = 3000
"""Enough queued tasks to fill both directions of the pipes (the old pool hung here)."""


@pytest.fixture
def pool():
    workers = OpenWorkers(2)
    yield workers
    workers.close()


def test_backlog_answered_exactly_once(pool: OpenWorkers) -> None:
    answers: dict[int, list[Done]] = {}
    lock = threading.Lock()
    all_in = threading.Event()

    def then_for(index: int):
        def then(done: Done) -> None:
            with lock:
                answers.setdefault(index, []).append(done)
                if len(answers) == TASKS:
                    all_in.set()

        return then

    for index in range(TASKS):
        # a capsule and kfrag PRE refuses: the answer is the reason, not a dead worker
        pool.reencrypt(then_for(index), b"not a capsule %d" % index, [(b"x", b"y", b"z", b"w")])
    assert all_in.wait(120), f"only {len(answers)} of {TASKS} tasks answered"
    assert all(len(got) == 1 for got in answers.values())
    for got in answers.values():
        ok, cfrags, problem = got[0].result()
        assert ok is False and cfrags == [] and problem
    # the workers survived every refused input and still answer
    assert pool.cpu_seconds() > 0


def test_dead_worker_fails_its_tasks(pool: OpenWorkers) -> None:
    failed: list[BaseException] = []
    done_event = threading.Event()

    def then(done: Done) -> None:
        try:
            done.result()
        except RuntimeError as error:
            failed.append(error)
        done_event.set()

    for proc in pool._procs:
        proc.kill()
        proc.join(10)
    pool.reencrypt(then, b"capsule", [(b"x", b"y", b"z", b"w")])
    assert done_event.wait(30), "a task for a dead pool was never answered"
    assert failed and "ended" in str(failed[0])
