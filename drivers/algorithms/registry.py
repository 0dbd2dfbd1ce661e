"""The signature algorithms SAFE Lab knows: sizes from their standards, where each runs here.

Sizes are the standards' (FIPS 186-5 / SEC 2 for ECDSA, RFC 8032, RFC 8017, FIPS 204 ML-DSA,
FIPS 206 draft FN-DSA = Falcon, FIPS 205 SLH-DSA); :mod:`drivers.algorithms.software` checks
them against what the libraries really produce (``tests/algorithms``).

Each algorithm also carries what an IoT SAFE card would need to sign with it, the inputs of
:mod:`drivers.algorithms.card_model`, each with its source in :attr:`CardCost.source`:

- ``mcycles``: signing cost in millions of cycles on a Cortex-M4-class core without a PQC
  accelerator (the pqm4 project's benchmarks are the reference for PQC on microcontrollers);
- ``work_ram``: RAM the signing needs besides the signature it returns (the card must also
  hold the signature until the host has fetched it, so the RAM check adds the signature).

Where a figure was read from a stored source it says so (``checked``); where it is an estimate
it is labelled an assumption, so nobody quotes it as a measurement. A card profile can override
every one of them (``[card.pqc]``, see ``profiles/cards/pqc-sim.toml``).

ECDSA on the card is not modelled here: the card profiles already time it from the paper's
Table 3 (``[card.crypto] ecdsa_sign``). Ed25519 is no IoT SAFE key type and RSA-2048 (key type
``03`` in IoT.05) has no timing source for a SIM here, so the emulated card refuses both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from drivers.errors import SafeLabError

PQM4 = "mupq/pqm4 benchmarks.md"
PQM4_STORED = "mupq/pqm4 benchmarks.md @03153eab (stored copy, read here)"


@dataclass(frozen=True)
class CardCost:
    """What signing costs a card without an accelerator for this algorithm."""

    mcycles: float | None
    """Millions of cycles per signature on a Cortex-M4-class core (``None``: not modelled)."""
    work_ram: int | None
    """Bytes of RAM the signing needs besides the signature (``None``: not modelled)."""
    source: str
    checked: bool = False
    """True when the figure was read from the named source here; False: an assumption."""


@dataclass(frozen=True)
class Algorithm:
    """One signature algorithm: its sizes, its standard, its software implementation."""

    name: str
    title: str
    family: str
    """``ecc``, ``rsa``, ``lattice`` or ``hash``."""
    standard: str
    nist_level: int | None
    public_key_bytes: int
    private_key_bytes: int
    signature_bytes: int
    """The largest signature (ECDSA DER can be a few bytes shorter; Falcon is padded here)."""
    signature_note: str
    library: str
    """Which installed library signs in software (``cryptography``, ``pqcrypto``, ...)."""
    card: CardCost
    iotsafe_code: int | None = None
    """Tag ``92`` (signature algorithm) value on the emulated card; ``None``: not on a card.
    ECDSA's ``04`` is IoT.05's; the PQC values are SAFE Lab's own (IoT.05 predates PQC)."""
    key_type: int | None = None
    """Tag ``4B`` key type on the emulated card (``13`` P-256 is IoT.05's; PQC: SAFE Lab's)."""

    @property
    def post_quantum(self) -> bool:
        return self.family in ("lattice", "hash")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["post_quantum"] = self.post_quantum
        return out


_FN_DSA_RAM = (
    "Falcon reference implementation (falcon.h): FALCON_TMPSIZE_SIGNDYN(9) = (78 << 9) + 7 "
    "bytes of temporary buffer for a logn=9 signature [figure recalled, not re-read here]"
)

ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm(
            "p256",
            "ECDSA P-256 (secp256r1), SHA-256",
            "ecc",
            "FIPS 186-5, SEC 2",
            1,
            65,
            32,
            72,
            "DER, 70-72 B; the card returns raw r||s, 64 B",
            "cryptography",
            CardCost(None, 1024, "card profile [card.crypto] ecdsa_sign (paper Table 3 fit)"),
            iotsafe_code=0x04,
            key_type=0x13,
        ),
        Algorithm(
            "bp256",
            "ECDSA brainpoolP256r1, SHA-256",
            "ecc",
            "RFC 5639",
            1,
            65,
            32,
            72,
            "DER, 70-72 B; the card returns raw r||s, 64 B",
            "cryptography",
            CardCost(None, 1024, "card profile ecdsa_sign x curve_factor brainpoolP256r1"),
            iotsafe_code=0x04,
            key_type=0x23,
        ),
        Algorithm(
            "ed25519",
            "Ed25519",
            "ecc",
            "RFC 8032",
            1,
            32,
            32,
            64,
            "R||S, always 64 B",
            "cryptography",
            CardCost(None, None, "not an IoT SAFE key type: the emulated card refuses it"),
        ),
        Algorithm(
            "rsa2048",
            "RSA-2048 PKCS#1 v1.5, SHA-256",
            "rsa",
            "RFC 8017",
            None,
            294,
            1190,
            256,
            "always 256 B; public key as SubjectPublicKeyInfo DER",
            "cryptography",
            CardCost(None, None, "IoT.05 key type 03, but no SIM timing source here: refused"),
        ),
        Algorithm(
            "ml-dsa-44",
            "ML-DSA-44 (Dilithium2)",
            "lattice",
            "FIPS 204",
            2,
            1312,
            2560,
            2420,
            "always 2420 B",
            "cryptography",
            CardCost(
                4.0,
                5 * 1024,
                f"{PQM4} (ml-dsa-44 m4f sign, average ~4 Mcycles) [assumption: recalled, not "
                "re-read here]; RAM: a memory-optimised signer (streamed matrix, one "
                "polynomial vector at a time) [assumption]",
            ),
            iotsafe_code=0x20,
            key_type=0xD1,
        ),
        Algorithm(
            "ml-dsa-65",
            "ML-DSA-65 (Dilithium3)",
            "lattice",
            "FIPS 204",
            3,
            1952,
            4032,
            3309,
            "always 3309 B",
            "cryptography",
            CardCost(
                6.6,
                7 * 1024,
                f"{PQM4} (ml-dsa-65 m4f sign, average ~6.6 Mcycles) [assumption: recalled, not "
                "re-read here]; RAM as ML-DSA-44, larger vectors [assumption]",
            ),
            iotsafe_code=0x21,
            key_type=0xD2,
        ),
        Algorithm(
            "fn-dsa-512",
            "FN-DSA-512 (Falcon-512)",
            "lattice",
            "FIPS 206 (draft), Falcon round 3",
            1,
            897,
            1281,
            666,
            "padded to 666 B (unpadded: variable, up to 752 B)",
            "py-fn-dsa",
            CardCost(
                18.0,
                39_943,
                f"{PQM4} (falcon-512 m4-ct sign, ~18 Mcycles) [assumption: recalled]; "
                f"RAM: {_FN_DSA_RAM}",
            ),
            iotsafe_code=0x30,
            key_type=0xD5,
        ),
        Algorithm(
            "slh-dsa-128s",
            "SLH-DSA-SHA2-128s (SPHINCS+-128s)",
            "hash",
            "FIPS 205 (software here: SPHINCS+ round 3, same sizes)",
            1,
            32,
            64,
            7856,
            "always 7856 B",
            "pqcrypto",
            CardCost(
                32_700.0,
                2_368,
                f"{PQM4_STORED}: sphincs 128f stack 2,368 B (checked); time: 128f's 2,069 "
                "Mcycles x 15.8, the 128s/128f sign-time ratio measured here with pqcrypto "
                "(1120 / 70.8 ms, 2026-12-03) [derived]",
            ),
            iotsafe_code=0x40,
            key_type=0xD8,
        ),
        Algorithm(
            "slh-dsa-128f",
            "SLH-DSA-SHA2-128f (SPHINCS+-128f)",
            "hash",
            "FIPS 205 (software here: SPHINCS+ round 3, same sizes)",
            1,
            32,
            64,
            17088,
            "always 17088 B",
            "pqcrypto",
            CardCost(
                2069.4,
                2_368,
                f"{PQM4_STORED}: sphincs-shake256-128f-simple clean sign 2,069,365,694 cycles, "
                "stack 2,368 B",
                checked=True,
            ),
            iotsafe_code=0x41,
            key_type=0xD9,
        ),
    )
}
"""Every algorithm by its CLI name, in the order tables show them."""

ALIASES = {
    "p-256": "p256",
    "secp256r1": "p256",
    "ecdsa": "p256",
    "bp256": "bp256",
    "brainpoolp256r1": "bp256",
    "rsa": "rsa2048",
    "rsa-2048": "rsa2048",
    "mldsa44": "ml-dsa-44",
    "dilithium2": "ml-dsa-44",
    "mldsa65": "ml-dsa-65",
    "dilithium3": "ml-dsa-65",
    "falcon-512": "fn-dsa-512",
    "falcon512": "fn-dsa-512",
    "fn-dsa": "fn-dsa-512",
    "slh-dsa-128s": "slh-dsa-128s",
    "sphincs-128s": "slh-dsa-128s",
    "sphincs-128f": "slh-dsa-128f",
}


def get_algorithm(name: str) -> Algorithm:
    """The algorithm called ``name`` (or an alias such as ``falcon-512``), or a clear error."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    found = ALGORITHMS.get(key)
    if found is None:
        raise SafeLabError(
            f"unknown signature algorithm {name!r}",
            f"use one of {', '.join(ALGORITHMS)} (see `safelab algs`)",
        )
    return found


def card_algorithms() -> list[Algorithm]:
    """The algorithms an emulated card can be asked to sign with (tag ``92`` defined)."""
    return [a for a in ALGORITHMS.values() if a.iotsafe_code is not None]
