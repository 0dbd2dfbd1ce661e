"""Several protocol clients against one peer, taking turns trial by trial (ABAB…).

Why: Table 6's figure is a *difference* (token minus software). Measured as two blocks, one
after the other, anything that drifts between the blocks (another process waking up, the
peer's caches, CPU frequency) lands in the difference. Taking turns puts both under the same
machine: trial ``i`` of the software key and trial ``i`` of the token are adjacent in time.
Each client still gets its own stored run (a run is one key under one condition); each run's
metadata names the runs it was interleaved with and the order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

from drivers.bench.store import ResultsStore
from drivers.errors import SafeLabError
from drivers.protocols.base import (
    Condition,
    ProtocolClient,
    ProtocolResult,
    ProtocolTrial,
    RunRecorder,
)

if TYPE_CHECKING:
    from drivers.peers.base import Peer, PeerIdentity
    from drivers.peers.pki import LabPki
    from drivers.tokens.base import Pin, Token

TrialListener = Callable[[int, int, ProtocolTrial], None]
"""``(client index, trial index, trial)`` after every measured trial."""


def run_interleaved(
    clients: Sequence[ProtocolClient],
    store: ResultsStore,
    *,
    n: int = 30,
    warmup: int = 1,
    peer: PeerIdentity | None = None,
    stop: Callable[[], bool] | None = None,
    on_trial: TrialListener | None = None,
    on_created: Callable[[int], None] | None = None,
) -> list[ProtocolResult]:
    """Warm up each client in turn, then ``n`` rounds of one trial per client, in order.

    ``stop`` is asked before each round; a stop or an error closes every run ``incomplete``
    with the rounds measured so far (an error names the run it happened in).
    """
    if not clients:
        raise SafeLabError("nothing to interleave", "give at least one client")
    for _ in range(warmup):
        for client in clients:
            client.trial()
    recorders: list[RunRecorder] = []
    order = "".join(chr(ord("A") + i) for i in range(len(clients)))
    for index, client in enumerate(clients):
        recorder = RunRecorder(
            client,
            store,
            n=n,
            warmup=warmup,
            peer=peer,
            extra={"interleaved": {"order": order * 2 + "…", "position": order[index]}},
        )
        recorders.append(recorder)
        if on_created is not None:
            on_created(recorder.run_id)
    ids = [r.run_id for r in recorders]
    for recorder in recorders:
        recorder.store.add_extra(
            recorder.run_id, {"interleaved_with": [i for i in ids if i != recorder.run_id]}
        )
    status, reason = "complete", None
    current: RunRecorder | None = None
    try:
        for idx in range(n):
            if stop is not None and stop():
                status, reason = "incomplete", f"stopped by the user after {idx} rounds"
                break
            for index, recorder in enumerate(recorders):
                current = recorder
                trial = recorder.trial()
                if on_trial is not None:
                    on_trial(index, idx, trial)
    except KeyboardInterrupt:
        for recorder in recorders:
            error = recorder.interrupted()
        raise error from None
    except SafeLabError as exc:
        for recorder in recorders:
            if recorder is current:
                recorder.failed(exc)
            else:
                recorder.finish("incomplete", f"stopped: run {current.run_id} failed")  # type: ignore[union-attr]
        raise
    return [recorder.finish(status, reason) for recorder in recorders]


def run_pair(
    protocol: str,
    condition: Condition,
    software: Token,
    token: Token,
    store: ResultsStore,
    *,
    pin: Pin | None,
    peer: Peer,
    pki: LabPki,
    n: int,
    warmup: int = 1,
    stop: Callable[[], bool] | None = None,
    on_trial: TrialListener | None = None,
    on_created: Callable[[int], None] | None = None,
) -> tuple[ProtocolResult, ProtocolResult]:
    """Table 6's unit: the software key (A) and the token (B) interleaved on one running peer
    under ``condition``; signers and clients made here and always released. A kept token
    session (``reuse_token_session``) is opened before the warm-up, so even ``warmup=0``
    measures sign_only handshakes, never the session's opening."""
    from drivers.protocols.experiment import make_client
    from drivers.tls.signer import TokenSigner

    with ExitStack() as stack:
        clients = []
        for which, which_pin in ((software, None), (token, pin)):
            signer = TokenSigner(which, pin=which_pin, reuse_session=condition.reuse_token_session)
            stack.callback(signer.close)
            signer.warm_up()  # a kept session is opened before any trial (untimed)
            client = make_client(protocol, signer, condition, peer, pki)
            stack.callback(client.close)
            clients.append(client)
        results = run_interleaved(
            clients,
            store,
            n=n,
            warmup=warmup,
            peer=peer.identity,
            stop=stop,
            on_trial=on_trial,
            on_created=on_created,
        )
    return results[0], results[1]
