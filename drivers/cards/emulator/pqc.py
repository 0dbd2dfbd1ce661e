"""Post-quantum signing on the emulated card: its cost model, its RAM limit, its keys.

A card profile's ``[card.pqc]`` section says how the card would sign with a PQC algorithm it
has no accelerator for::

    [card.pqc]
    cpu_mhz = 30.0        # the card core's clock (assumption, with its reason in a comment)
    core_factor = 2.5     # cycles on this core per Cortex-M4 cycle (pqm4's reference core)
    ram_bytes = 16384     # RAM free for a signature: working memory + the signature itself
    sigma = 0.1           # relative spread of the signing time
    sign = { "ml-dsa-44" = { dist = "normal", mean_ms = 300.0, sigma_ms = 30.0 } }  # override

The signing time of algorithm A is ``mcycles(A) x core_factor / cpu_mhz`` ms (the
``mcycles`` of :mod:`drivers.algorithms.registry`, each with its source), unless ``sign``
gives A's distribution. An algorithm fits when ``work_ram(A) + signature_bytes(A)`` is at most
``ram_bytes``: the card must keep the whole signature until the host has fetched it with GET
RESPONSE. A profile without ``[card.pqc]`` signs no PQC at all.

The applet answers a refused algorithm at COMPUTE SIGNATURE INIT with ``6A84`` (insufficient
memory, IoT.05's status word) or ``6A80`` (no model / not a card algorithm); the host side
(:mod:`drivers.algorithms.card_sign`) turns it into the reason :meth:`PqcModel.refusal` gives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.algorithms.registry import ALGORITHMS, Algorithm, card_algorithms

if TYPE_CHECKING:
    from drivers.algorithms.software import SoftwareKey
    from drivers.cards.emulator.profile import Dist

PQC_KEY_BASE = 0x10
"""PQC private/public key IDs are ``10`` + the algorithm's index among the card algorithms."""


@dataclass(frozen=True)
class PqcModel:
    """How one card profile signs with PQC algorithms (``[card.pqc]``)."""

    cpu_mhz: float
    core_factor: float
    ram_bytes: int
    sigma: float = 0.1
    sign: dict[str, Dist] = field(default_factory=dict)

    def need_bytes(self, algorithm: Algorithm) -> int | None:
        """RAM the card needs to sign: working memory plus the signature it holds."""
        if algorithm.card.work_ram is None:
            return None
        return algorithm.card.work_ram + algorithm.signature_bytes

    def refusal(self, algorithm: Algorithm) -> str | None:
        """Why this card cannot sign with ``algorithm``, or ``None`` if it can."""
        if not algorithm.post_quantum:
            return None if algorithm.iotsafe_code is not None else (algorithm.card.source)
        need = self.need_bytes(algorithm)
        if need is None or (algorithm.card.mcycles is None and algorithm.name not in self.sign):
            return f"{algorithm.title} has no on-card model ({algorithm.card.source})"
        if need > self.ram_bytes:
            return (
                f"{algorithm.title} needs {need:,} B of card RAM ({algorithm.card.work_ram:,} B "
                f"working memory + the {algorithm.signature_bytes:,} B signature held for GET "
                f"RESPONSE) but the card has {self.ram_bytes:,} B"
            )
        return None

    def mean_sign_ms(self, algorithm: Algorithm) -> float:
        """Expected on-card signing time in ms."""
        if algorithm.name in self.sign:
            return self.sign[algorithm.name].mean_ms
        assert algorithm.card.mcycles is not None
        return algorithm.card.mcycles * self.core_factor / self.cpu_mhz * 1000.0

    def sample_sign_ms(self, algorithm: Algorithm, rng: random.Random) -> float:
        """One on-card signing time (normal around the mean, never below half of it)."""
        if algorithm.name in self.sign:
            return self.sign[algorithm.name].sample(rng)
        mean = self.mean_sign_ms(algorithm)
        return max(mean / 2, rng.gauss(mean, mean * self.sigma))

    def as_table(self) -> dict[str, Any]:
        return {
            "cpu_mhz": self.cpu_mhz,
            "core_factor": self.core_factor,
            "ram_bytes": self.ram_bytes,
            "sigma": self.sigma,
        }


def algorithm_for_code(code: int) -> Algorithm | None:
    """The card algorithm whose tag ``92`` value is ``code`` (PQC ones only)."""
    for algorithm in card_algorithms():
        if algorithm.iotsafe_code == code and algorithm.post_quantum:
            return algorithm
    return None


def pqc_key_id(name: str) -> bytes:
    """The key ID the emulated card gives the PQC key of algorithm ``name``."""
    names = [a.name for a in card_algorithms() if a.post_quantum]
    return bytes([PQC_KEY_BASE + names.index(ALGORITHMS[name].name)])


@dataclass
class PqcKeyObject:
    """A PQC key pair on the emulated card (private and public halves share the ID)."""

    id: bytes
    label: str
    algorithm: Algorithm
    key: SoftwareKey


def add_pqc_key(store: Any, name: str) -> PqcKeyObject:
    """Provision a fresh ``name`` key on ``store`` (kept in memory only, never saved)."""
    from drivers.algorithms.software import generate

    algorithm = ALGORITHMS[name]
    ident = pqc_key_id(name)
    found: PqcKeyObject | None = store.pqc_keys.get(ident)
    if found is None:
        found = PqcKeyObject(ident, f"client-{name}", algorithm, generate(name))
        store.pqc_keys[ident] = found
    return found
