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


def test_continuations_run_in_submission_order(pool: OpenWorkers) -> None:
    """A slow task on one process and fast ones on the other: the fast answers arrive first,
    but every continuation waits for the tasks submitted before it (a role commits its
    sequence window there; out of order, readings fell behind the window and were lost)."""
    from drivers.ssdtf.pre import UmbralBackend

    pre = UmbralBackend()
    owner, receiver = pre.keygen("MS"), pre.keygen("U")
    kfrag = pre.conversion_keys(owner, receiver.public)[0]
    capsule, _ = pre.encrypt(owner.public, b"reading")
    real = [(kfrag, owner.public, owner.verifying, receiver.public)] * 40  # ~40 cfrags: slow
    order: list[int] = []
    answers: dict[int, tuple[bool, list[bytes], str]] = {}
    finished = threading.Event()
    count = 41

    def then_for(index: int):
        def then(done: Done) -> None:
            order.append(index)
            answers[index] = done.result()
            if len(order) == count:
                finished.set()

        return then

    pool._call(then_for(0), "reencrypt", capsule, real, index=0)  # slow, first
    for index in range(1, count):  # fast refusals on the other process
        pool._call(then_for(index), "reencrypt", b"bad %d" % index, real[:1], index=1)
    assert finished.wait(60)
    assert order == list(range(count))
    ok, cfrags, _ = answers[0]
    assert ok and len(cfrags) == 40
    assert all(answers[i][0] is False for i in range(1, count))


def test_a_worker_paused_mid_run_loses_no_reading(mosquitto_available: None) -> None:
    """One of the data user's two processes stops for 1.5 s (as a VM deschedules one) while
    the other opens hundreds of DELIVERs: every reading still arrives, none "too old"."""
    import os
    import signal
    import time

    from drivers.ssdtf.config import FlowConfig
    from drivers.ssdtf.deployment import Deployment

    count = 400
    dep = Deployment(
        FlowConfig(broker="mosquitto", sensors=1, messages=count, capture=False, workers=2)
    )
    try:
        dep.start()
        dep.connect_sensors()
        user = dep.users["user-1"]
        assert user.workers is not None
        paused = user.workers._procs[0].pid
        sender = threading.Thread(target=dep.send_readings)
        sender.start()
        deadline = time.monotonic() + 30
        while len(user.readings) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(paused, signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            os.kill(paused, signal.SIGCONT)
        sender.join(60)
        assert dep.wait_delivered(count, 60)
        values = [r.value for r in user.readings]
        assert sorted(values) == sorted(dep.reading("sensor-1", i) for i in range(count))
        refused = [v.reason for v in dep.trace.verdicts if not v.ok]
        assert refused == []
    finally:
        dep.stop()
