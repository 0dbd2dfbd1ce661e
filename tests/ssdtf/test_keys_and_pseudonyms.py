"""Each role holds exactly the keys of the key table (docs/ssdtf.md) in each service model;
external IDs are keyed, rotatable, and resolvable only by the operator, with an audit log."""

from __future__ import annotations

import pytest

from drivers.ssdtf.pseudonyms import (
    MappingStore,
    Pseudonymizer,
    TraceDenied,
    operator_credential,
)
from tests.ssdtf.conftest import run

OWNER = {1: "MS", 2: "U[user-1]", 3: "MS"}


def expected(model: int) -> dict[str, set[str]]:
    owner = OWNER[model]
    reg = "MS" if model in (1, 3) else "U[user-1]"
    dest_reg = {1: "MS", 2: "U[user-1]", 3: "U[user-1]"}[model]
    proxies = {
        "pk_MS",  # the registry: it signs the PROV messages that carry registrations
        f"pk_{reg}",
        f"pk_{dest_reg}",
        f"pk_{owner}.pre",
        f"vk_{owner}.kfrag",
        "pk_U[user-1].pre",
    }
    user = {"sk_U[user-1]", "sk_U[user-1].pre", "sk_U[user-1].wrap", "pk_DS", f"vk_{owner}.kfrag"}
    if owner != "U[user-1]":
        user.add(f"pk_{owner}.pre")
    ms = {"sk_MS", "pk_D[sensor-1]", "pk_U[user-1]"}  # pk_U: verifies the user's reports
    ms |= {"sk_MS.pre", "sk_MS.kfrag"} if model != 2 else set()
    return {
        "sensor-1": {"sk_D[sensor-1]", "pk_B", f"pk_{reg}", f"pk_{owner}.pre", "sid[sensor-1]"},
        "gateway": {"sk_B", "pk_D[sensor-1]", "kfrag#1[user-1]"} | proxies,
        "ds": {"sk_DS", "pk_B", "K_ps", "kfrag#2[user-1]", "pk_U[user-1]", "pk_U[user-1].wrap"}
        | proxies,
        "ms": ms,
        "user-1": user,
    }


@pytest.mark.parametrize("model", [1, 2, 3])
def test_key_table(model: int) -> None:
    dep = run(model=model, sensors=1, messages=1)
    at = next(p.index for p in dep.trace.packets if (p.ssdtf or {}).get("type") == "DELIVER")
    held = {role: {k.name for k in keys} for role, keys in dep.trace.keys_at(at).items()}
    assert held == expected(model)


def test_external_ids_keyed_scoped_rotatable() -> None:
    p = Pseudonymizer()
    a = p.external_id("sensor-1", "user-1")
    assert a == p.external_id("sensor-1", "user-1") and len(a) == 24
    assert a != p.external_id("sensor-1", "user-2") != p.external_id("sensor-2", "user-1")
    assert Pseudonymizer().external_id("sensor-1", "user-1") != a  # keyed, not a plain hash
    p.rotate()
    assert p.external_id("sensor-1", "user-1") != a


def test_only_the_operator_traces_and_every_lookup_is_audited() -> None:
    store = MappingStore()
    store.record("abc123", 1, "user-1", "sensor-7")
    with pytest.raises(TraceDenied):
        store.lookup("abc123", None, who="user-1")
    with pytest.raises(TraceDenied):
        store.lookup("abc123", b"x" * 32, who="user-1")
    rows = store.lookup("abc123", operator_credential(), who="operator")
    assert rows[0]["internal_id"] == "sensor-7"
    audit = store.audit()
    assert [a["outcome"] for a in audit] == ["denied", "denied", "found"]
    # "who" is what the store established, never just the caller's word
    assert all(str(a["who"]).startswith("no operator credential") for a in audit[:2])
    assert str(audit[2]["who"]).startswith("operator (account ")
    assert "claims 'user-1'" in str(audit[0]["who"])
