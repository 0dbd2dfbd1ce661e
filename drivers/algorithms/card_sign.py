"""A real PQC signature from the emulated IoT SAFE card, over the APDUs a host would send.

The card (a fresh in-process emulator on a card profile, or one behind pcscd + vpcd given as a
transport) signs the SHA-256 digest of the message with its PQC key (pure ML-DSA / FN-DSA /
SLH-DSA over the 32-byte digest); the host opens a channel, selects the applet, sends COMPUTE
SIGNATURE INIT with the algorithm's tag-``92`` value and UPDATE with the digest, and fetches
the signature: by ``61xx`` + GET RESPONSE chaining, or in one extended-length response
(``extended=True``; the card needs the ``extended_length`` quirk). The signature is then
verified with the same software library, and every APDU is counted.

``safelab algs sign --alg ml-dsa-44`` runs it. A refused algorithm raises
:class:`~drivers.errors.SafeLabError` with the card's status word and the model's reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from drivers.algorithms.card_model import refusal as model_refusal
from drivers.algorithms.registry import get_algorithm
from drivers.cards import apdu
from drivers.cards.apdu import Command, Ins, Mode, ObjectRef
from drivers.cards.client import IoTSafeClient
from drivers.cards.emulator import InProcessTransport, IoTSafeApplet, RecordingDelay, load_profile
from drivers.cards.emulator.pqc import add_pqc_key, pqc_key_id
from drivers.cards.emulator.store import CardStore
from drivers.cards.status import SW
from drivers.cards.transport import Transport
from drivers.errors import SafeLabError

MESSAGE = b"12345678901234567890123456789012"


@dataclass(frozen=True)
class CardSignature:
    """One signature made by the card, with what it took to get it out."""

    algorithm: str
    profile: str
    signature_bytes: int
    verified: bool
    """The signature verified with the software library (and a changed message did not)."""
    extended: bool
    sign_apdus: int
    """INIT + UPDATE + GET RESPONSEs, as exchanged."""
    get_responses: int
    bytes_from_card: int
    bytes_to_card: int
    modelled_card_ms: float | None
    """The emulator's modelled card time of the sign APDUs (``None``: a card over a link)."""
    modelled_link_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _signature_body(data: bytes) -> bytes:
    """The signature inside ``33``: 2-byte length (``33 LL LL``) or BER (``33 82 LL LL``)."""
    if len(data) < 3 or data[0] != 0x33:
        raise SafeLabError("the card's answer is not a signature (tag 33)", "check the trace")
    if data[1] in (0x81, 0x82):
        width = data[1] & 0x7F
        return data[2 + width :]
    if len(data) == 3 + int.from_bytes(data[1:3], "big"):
        return data[3:]
    return data[2:]


def sign_on_card(
    algorithm: str,
    profile: str = "pqc-sim",
    *,
    extended: bool = False,
    message: bytes = MESSAGE,
    transport: Transport | None = None,
    store: CardStore | None = None,
) -> CardSignature:
    """Have the emulated card sign ``message`` with ``algorithm``; raise if it refuses.

    Without ``transport`` a fresh in-process card on ``profile`` is made (delays recorded,
    not waited for). With one (e.g. pcscd + vpcd to ``card serve``), ``store`` must be that
    card's store so the signature can be checked against its key.
    """
    alg = get_algorithm(algorithm)
    if not alg.post_quantum:
        raise SafeLabError(
            f"{alg.title} is signed by the existing IoT SAFE token path, not this one",
            "use `safelab sign --token iotsafe:emulated` for ECDSA",
        )
    card = load_profile(profile)
    applet = None
    delay = RecordingDelay()
    if transport is None:
        if extended:
            card = card.with_quirks(extended_length=True)
        store = store or CardStore()
        applet = IoTSafeApplet(store, card, speed=0.0, seed=1, delay=delay)
        transport = InProcessTransport(applet)
    if store is None:
        raise SafeLabError("a card over a link needs its store to check the signature", "")
    key = add_pqc_key(store, alg.name)
    client = IoTSafeClient(transport)
    client.open()
    try:
        mark = client.trace.mark()
        samples_before = len(applet.samples) if applet is not None else 0
        session = client.sign_session
        ref = ObjectRef(id=pqc_key_id(alg.name))
        code = alg.iotsafe_code or 0
        init = client.command(
            lambda cla: apdu.compute_signature_init(
                cla, session, ref, Mode.FINAL_HASH, signature_algorithm=code
            )
        )
        if init.sw != SW.OK:
            reason = model_refusal(card, alg) or "the card refused the algorithm"
            raise SafeLabError(
                f"card {card.name!r} refused {alg.title} (SW {init.sw:04X}): {reason}",
                "choose an algorithm that fits (see `safelab algs --profile "
                f"{card.name}`) or a card profile whose [card.pqc] ram_bytes is large enough",
            )
        digest = hashlib.sha256(message).digest()
        if extended:
            cla = apdu.cla_for(client.channel or 0, client.cla_class)
            update = Command(
                cla,
                Ins.COMPUTE_SIGNATURE_UPDATE,
                0x80,
                session,
                b"\x9e\x20" + digest,
                le=0,
                extended=True,
            )
            response = client.transmit(update)
        else:
            response = client.command(
                lambda cla: apdu.compute_signature_update_final_hash(cla, session, digest)
            )
        if response.sw != SW.OK:
            raise SafeLabError(
                f"card {card.name!r}: COMPUTE SIGNATURE UPDATE answered {response.sw:04X}",
                "check the APDU trace (`safelab card trace`)",
            )
        signature = _signature_body(response.data)
        entries = client.trace.since(mark)
    finally:
        client.close()
    verified = key.key.verify(digest, signature) and not key.key.verify(digest[::-1], signature)
    card_ms = link_ms = None
    if applet is not None:
        sampled = list(applet.samples)[samples_before : samples_before + len(entries)]
        card_ms = sum(s.card_ms for s in sampled)
        link_ms = sum(s.transport_ms for s in sampled)
    return CardSignature(
        algorithm=alg.name,
        profile=card.name,
        signature_bytes=len(signature),
        verified=verified,
        extended=extended,
        sign_apdus=len(entries),
        get_responses=sum(1 for e in entries if e.command[1] == Ins.GET_RESPONSE),
        bytes_from_card=sum(len(e.response) for e in entries),
        bytes_to_card=sum(len(e.command) for e in entries),
        modelled_card_ms=card_ms,
        modelled_link_ms=link_ms,
    )
