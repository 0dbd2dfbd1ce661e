"""What every packet of an SSDTF run means: teaching text for the packet stepper and its lesson.

The stepper shows fields and hex; a student needs the meaning. For each SSDTF message type and
each MQTT control packet this module says what it is for, which SSDTF goal it serves (device
authenticity, data integrity, confidentiality, anonymity with traceability), who checks it,
with which key, and what happens when the check fails, worded for the service model of the run
(the model decides whose PRE key the data is encrypted to and who registers sensors and
destinations: ``docs/ssdtf.md`` "Service models and the key table").

It is data, not UI: the screen only lays it out, and a front end other than the console (the
CLI, a web page) can say the same. The texts follow the roles' code (``roles/*.py``) and
``docs/ssdtf.md``; a message type added later and not described here gets a fallback that
says so instead of a wrong explanation (:func:`explain`).

The lesson (:data:`LESSON`) is a guided walk through one flow: registration, hello,
challenge, response, session, data, re-encryption, delivery, acknowledgement and the
operator's trace-back, each step tied to the first packet of its type that the receiver judged.
"""

from __future__ import annotations

from dataclasses import dataclass

AUTHENTICITY = "device authenticity"
INTEGRITY = "data integrity"
CONFIDENTIALITY = "confidentiality"
ANONYMITY = "anonymity with traceability"
GOALS = (AUTHENTICITY, INTEGRITY, CONFIDENTIALITY, ANONYMITY)
"""The four goals of SSDTF, in the order the lesson meets them."""

ROLE_NAMES: tuple[tuple[str, str], ...] = (
    ("sensor-N", "the device; its key is in its token"),
    ("B", "the MQTT broker"),
    ("gateway", "SSDTF beside the broker, signs as B"),
    ("ds", "distribution server"),
    ("ms", "management server"),
    ("user-N", "data user (subscriber)"),
)
"""Role abbreviations as the stepper shows them (lanes, hops, keys), with what each is."""


@dataclass(frozen=True)
class ModelRoles:
    """Who does what in one service model (the words the explanations are filled with)."""

    model: int
    name: str
    owner: str
    """Whose PRE key the sensors encrypt to, and who issues the conversion keys."""
    owner_key: str
    registrar: str
    """Who signs the sensors' registrations (their public keys the gateway pins)."""
    destinations: str
    """Who registers the destinations (data users) and their conversion keys."""


MODELS: dict[int, ModelRoles] = {
    1: ModelRoles(1, "model 1 (platform operator)", "the management server (ms)", "pk_MS.pre",
                  "the ms", "the ms"),
    2: ModelRoles(2, "model 2 (MQTT as a service)", "the data user user-1", "pk_U[user-1].pre",
                  "user-1", "user-1"),
    3: ModelRoles(3, "model 3 (device operator)", "the ms, run by the device operator",
                  "pk_MS.pre", "the ms", "user-1 (conversion keys issued by the ms)"),
}  # fmt: skip


@dataclass(frozen=True)
class Explanation:
    """One packet type explained; every text is a sentence or two, already for the model."""

    title: str
    purpose: str
    goals: tuple[str, ...]
    receiver: str
    checks: str
    key: str
    failure: str
    known: bool = True
    """False for the fallback of a type this module does not describe."""

    def lines(self) -> list[tuple[str, str]]:
        """``(label, text)`` in reading order, for any front end."""
        return [
            ("for", self.purpose),
            ("goal", ", ".join(self.goals) if self.goals else "transport only (no SSDTF goal)"),
            ("checked by", self.receiver),
            ("checks", self.checks),
            ("key", self.key),
            ("if it fails", self.failure),
        ]


def _ssdtf(roles: ModelRoles) -> dict[str, Explanation]:
    owner, owner_key = roles.owner, roles.owner_key
    return {
        "HELLO": Explanation(
            "HELLO: the sensor asks for a challenge",
            "Starts the handshake: repeats the device nonce Nd of its CONNECT so the gateway, "
            "an ordinary MQTT client beside the broker, learns it.",
            (AUTHENTICITY,),
            "gateway",
            "Nd equals the CONNECT user name (embedded broker), Nd not used before, no "
            "challenge pending for this client ID, rate limits.",
            "none: HELLO is unsigned on purpose; the CHAL that answers it signs Nd, and the "
            "sensor checks the echo.",
            "dropped with a verdict; a forged or replayed HELLO can only make a handshake "
            "fail, never break a READY session.",
        ),
        "CHAL": Explanation(
            "CHAL: the broker's signed challenge",
            "The broker (its gateway) proves who it is and sends its own nonce Nb for the "
            "device to sign.",
            (AUTHENTICITY,),
            "sensor",
            "broker signature over Nd, Nb, TS and BROKER_ID; Nd is its own; TS within ±30 s; "
            "first CHAL of a pending handshake only.",
            f"pk_B, pinned in the sensor at enrolment (registration signed by {roles.registrar}).",
            "the sensor disconnects and sends a signed REPORT to the ms; it never sends data "
            "to a broker it could not authenticate (attack broker-impersonation).",
        ),
        "RESP": Explanation(
            "RESP: the device signs the challenge",
            "The device proves it holds sk_D: it signs Nd, Nb, BROKER_ID and a hash of the "
            "CHAL it answers, inside its token.",
            (AUTHENTICITY,),
            "gateway",
            "Nb is the pending one (single use, before the deadline), the device signature, "
            "the ALG pinned for this device, H(CHAL) and Nd.",
            f"pk_D[cid], registered by {roles.registrar}; the private key never leaves the token.",
            "verdict and the connection is closed (take-over); no session, so no DATA is "
            "accepted (attacks wrong-device-key, replay-resp, slow-loris).",
        ),
        "OK": Explanation(
            "OK: the session is ready",
            "The gateway confirms the handshake and gives the session id sid = "
            "H(Nd‖Nb‖cid), which every DATA must carry.",
            (AUTHENTICITY, INTEGRITY),
            "sensor",
            "broker signature, the sid it computes itself, TS window, a handshake pending.",
            "pk_B (pinned).",
            "dropped with a verdict; the sensor stays without a session and sends nothing.",
        ),
        "DATA": Explanation(
            "DATA: one reading, encrypted and signed by the device",
            f"The reading is encrypted to {owner} ({owner_key}, proxy re-encryption) and "
            "signed with sk_D over the envelope and the topic, QoS and RETAIN as published.",
            (AUTHENTICITY, INTEGRITY, CONFIDENTIALITY),
            "gateway",
            "device signature first, then cid = topic, session READY and same sid, no "
            "plaintext downgrade, TS ±30 s, sequence window (no replay).",
            "pk_D[cid] (the gateway cannot read the reading: it has no PRE private key).",
            "a signed ACK with a status (BAD_SIGNATURE, STALE, …) or a DUPLICATE re-ACK; "
            "nothing is forwarded (attacks tampered-payload, replay, stale-timestamp).",
        ),
        "FWD": Explanation(
            "FWD: the gateway's first re-encryption, towards the ds",
            "The gateway re-encrypts the capsule with its share kfrag#1 of the conversion key "
            f"for the destination (issued by {owner}) and signs the forward.",
            (CONFIDENTIALITY, INTEGRITY),
            "ds",
            "broker signature, SUB = the topic's destination, TS window, the inner DATA "
            "decodes strictly; then the ds adds its own share kfrag#2.",
            "pk_B (the ds trusts the gateway's check of the device; it holds no device keys).",
            "dropped with a verdict: nothing is delivered (attack revoked-subscriber: no "
            "conversion key, nothing delivered).",
        ),
        "DELIVER": Explanation(
            "DELIVER: re-encrypted data under a pseudonym",
            "The ds wraps capsule, ciphertext and both cfrags for this destination's own key "
            "and publishes them under ext_id, a per-destination pseudonym of the device.",
            (CONFIDENTIALITY, INTEGRITY, ANONYMITY),
            "the data user",
            "ds signature, TS window, sequence window, unwrap with its PRE key, each cfrag's "
            "proof, decrypt, then the sender binding (the device that signed made it).",
            f"pk_DS (pinned) to verify; sk_U.pre to unwrap and decrypt; the cfrags verify "
            f"against {owner_key}.",
            "refused with a verdict, the reading is not used (attacks wrong-subscriber, "
            "resigned-ciphertext, held-back-deliver).",
        ),
        "ACK": Explanation(
            "ACK: the gateway's signed receipt",
            "Tells the sensor the gateway took exactly this DATA (its hash) and with which "
            "status; an MQTT PUBACK only means the broker got a packet.",
            (INTEGRITY,),
            "sensor",
            "broker signature, sid, seq of a kept DATA, HASH of the bytes it sent, TS window.",
            "pk_B (pinned).",
            "the sensor keeps the DATA and re-sends the identical bytes with back-off, then "
            "REPORTs to the ms (attack forged-ack).",
        ),
        "RESEND": Explanation(
            "RESEND: a data user asks for a lost DELIVER",
            "A gap in the ds's sequence numbers means a DELIVER was lost; the user asks for it "
            "again, signed.",
            (INTEGRITY,),
            "ds",
            "user signature, SUB = its own topic, TS window, a DELIVER kept for that seq.",
            "pk_U[user] (registered with the destination).",
            "dropped with a verdict; the user eventually REPORTs to the ms.",
        ),
        "REG": Explanation(
            "REG: a signed registration to the management server",
            f"Before any handshake the registrar ({roles.registrar} for sensors and their "
            f"topics, {roles.destinations} for destinations) registers a device's public key, "
            "its uplink topic, a destination with the hash of its conversion-key shares, or a "
            "revocation, as a signed message on its own reg/ topic.",
            (AUTHENTICITY, ANONYMITY),
            "ms",
            "strict decode, the sender is this model's registrar for this kind, its signature "
            "over the topic too, TS ±30 s, nonce ND unused, newer than the subject's last "
            "registration, and ownership (no take-over of a client ID, destination or topic).",
            "the registrar's pinned public key; the broker's ACL lets it write only its own "
            "reg/ topic.",
            "dropped with the ms's verdict and the registry unchanged: the device never gets a "
            "session (attacks forged-registration, replayed-registration, topic-hijack).",
        ),
        "PROV": Explanation(
            "PROV: the management server hands a registration to a proxy",
            "The ms forwards a REG it accepted, signed by itself, to the gateway (every kind) "
            "and the ds (destinations and revocations), so the proxies learn device keys and "
            "destinations over the broker.",
            (AUTHENTICITY, INTEGRITY),
            "gateway or ds",
            "the ms signature, TS, and again the registrar's own signature and nonce inside: "
            "the ms alone cannot register a device where it is not the registrar.",
            "pk_MS (pinned) for the outer signature, the registrar's pinned key for the inner REG.",
            "dropped with the proxy's verdict; the proxy keeps its previous registry "
            "(attack replayed-provisioning).",
        ),
        "REPORT": Explanation(
            "REPORT: a signed complaint to the management server",
            "A sensor or data user tells the ms that something failed (broker not "
            "authenticated, no ACK, lost DELIVER).",
            (AUTHENTICITY, INTEGRITY),
            "ms",
            "signature of the reporter, TS within ±300 s, not a duplicate report.",
            "pk_D[cid] for a sensor, pk_U[user] for a data user.",
            "refused with a verdict; a replayed report is counted once (attack replayed-report).",
        ),
    }


MQTT: dict[str, tuple[str, str]] = {
    "CONNECT": (
        "opens an MQTT connection; a sensor's carries user name hex(Nd) and the password "
        "`SSDTF/1 <device secret>` (redacted in the capture)",
        "the broker admits only a registered client ID with its own secret; refused: "
        "CONNACK with an error (attack plain-client)",
    ),
    "CONNACK": ("the broker's answer to CONNECT (0 = accepted)", "the client has no connection"),
    "SUBSCRIBE": (
        "asks the broker for messages on topics",
        "the broker's ACL refuses topics beyond the role's rule (attack uplink-snoop)",
    ),
    "SUBACK": ("the broker grants (or refuses) each subscription", "nothing is delivered"),
    "UNSUBSCRIBE": ("stops a subscription", "—"),
    "UNSUBACK": ("confirms UNSUBSCRIBE", "—"),
    "PUBLISH": (
        "carries a payload on a topic; here not an SSDTF message",
        "an SSDTF receiver drops a payload it cannot decode",
    ),
    "PUBACK": (
        "QoS 1: the broker or client got the PUBLISH (not that SSDTF accepted it)",
        "the sender re-sends with DUP",
    ),
    "PUBREC": ("QoS 2, step 1", "re-sent"),
    "PUBREL": ("QoS 2, step 2", "re-sent"),
    "PUBCOMP": ("QoS 2, step 3", "re-sent"),
    "PINGREQ": ("keep-alive", "the broker closes an idle connection"),
    "PINGRESP": ("keep-alive answer", "the client reconnects"),
    "DISCONNECT": ("the client closes the connection", "—"),
}
"""MQTT packet types: ``(what it is for, what happens if it fails)``."""

NOISE = frozenset(
    {"CONNACK", "SUBACK", "UNSUBACK", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "PINGREQ",
     "PINGRESP", "SUBSCRIBE", "UNSUBSCRIBE"}
)  # fmt: skip
"""MQTT control packets the teaching filter hides: transport bookkeeping, no SSDTF meaning.
CONNECT, DISCONNECT and every PUBLISH (SSDTF or not) stay visible."""


def is_noise(mqtt_type: str, ssdtf_type: str = "") -> bool:
    """True for a packet the noise filter hides (never one carrying an SSDTF message)."""
    return not ssdtf_type and mqtt_type in NOISE


def model_line(model: int) -> str:
    """One sentence on who owns and registers what in ``model`` (under every explanation)."""
    roles = model_roles(model)
    return (
        f"{roles.name}: readings are encrypted to {roles.owner} ({roles.owner_key}); "
        f"{roles.registrar} registers the sensors, {roles.destinations} the destinations."
    )


def model_roles(model: int) -> ModelRoles:
    """The roles of ``model``; an unknown model gets model 1's words (the default)."""
    return MODELS.get(model, MODELS[1])


def explain(mqtt_type: str, ssdtf_type: str = "", model: int = 1) -> Explanation:
    """The explanation of a packet: its SSDTF message, else its MQTT type, else a fallback."""
    roles = model_roles(model)
    if ssdtf_type:
        known = _ssdtf(roles).get(ssdtf_type.upper())
        if known is not None:
            return known
        return Explanation(
            f"{ssdtf_type}: an SSDTF message this lesson does not describe yet",
            "A message type newer than this explanation table; its decoded fields are below.",
            (),
            "the role it is published to",
            "the strict decoder's rules and, for a signed type, the sender's signature; the "
            "verdicts below say what the receiver decided.",
            "the sender's pinned public key (see the keys panel).",
            "dropped with a verdict, as every SSDTF message.",
            known=False,
        )
    purpose, failure = MQTT.get(mqtt_type, ("an MQTT packet", "—"))
    authenticates = mqtt_type == "CONNECT"
    return Explanation(
        f"{mqtt_type}: MQTT transport",
        purpose[0].upper() + purpose[1:] + ".",
        (AUTHENTICITY,) if authenticates else (),
        "the broker" if authenticates else "the MQTT peer",
        "client ID, user name and password (SSDTF's first gate)"
        if authenticates
        else "MQTT framing only; SSDTF signs PUBLISH payloads, not MQTT headers",
        "the role's broker credential" if authenticates else "none",
        failure[0].upper() + failure[1:] + ("." if failure != "—" else ""),
    )


@dataclass(frozen=True)
class LessonStep:
    """One step of the guided walk: the packet it shows and what to say before the details."""

    name: str
    ssdtf_type: str
    """The message whose first judged copy (to its receiver) is shown; empty: no packet."""
    lead: str


LESSON: tuple[LessonStep, ...] = (
    LessonStep(
        "register",
        "REG",
        "Before anything else the registrar tells the management server which device keys, "
        "topics and destinations exist, each registration signed. The proxies learn them "
        "from the ms (PROV), never from the device itself.",
    ),
    LessonStep(
        "hello",
        "HELLO",
        "The sensor has connected to the broker (CONNECT, password checked) and asks for a "
        "challenge. Nothing is trusted yet.",
    ),
    LessonStep(
        "challenge",
        "CHAL",
        "The broker side answers first, signed: the device must know it talks to the real "
        "broker before it signs anything.",
    ),
    LessonStep(
        "response",
        "RESP",
        "The device signs the challenge inside its token. This is device authenticity: only "
        "the holder of sk_D can produce this signature.",
    ),
    LessonStep(
        "session",
        "OK",
        "Both sides are authenticated; the session id binds every later DATA to this handshake.",
    ),
    LessonStep(
        "data",
        "DATA",
        "A reading, encrypted for the key owner and signed by the device. The gateway checks "
        "it but cannot read it.",
    ),
    LessonStep(
        "re-encrypt",
        "FWD",
        "Proxy re-encryption, first half: the gateway converts the capsule with its share; "
        "the ds adds the second share. Neither proxy alone can decrypt.",
    ),
    LessonStep(
        "deliver",
        "DELIVER",
        "The data user gets the reading under a pseudonym (ext_id), wrapped for its own key, "
        "and decrypts it.",
    ),
    LessonStep(
        "ack",
        "ACK",
        "The gateway's signed receipt: only now does the sensor forget the DATA. A PUBACK "
        "would prove nothing.",
    ),
    LessonStep(
        "trace-back",
        "",
        "Anonymity with traceability: subscribers see only ext_id. The operator, and only "
        "with the operator credential, maps it back to the device: `safelab ssdtf trace "
        "EXT_ID`; every lookup, granted or refused, is written to an audit table.",
    ),
)
"""The lesson's steps in flow order."""

TRY_ATTACK = (
    "Now try an attack: pick one from the menu and see which role rejects it, at which "
    "packet, and why."
)
