"""The SHA-256 intermediate state used by last-block mode agrees with hashlib."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cards import sha256_state
from drivers.cards.errors import CommandFormatError


@given(st.binary(max_size=700))
def test_split_and_finish_equal_hashlib(message: bytes) -> None:
    state, hashed, tail = sha256_state.split_for_last_block(message)
    assert hashed % 64 == 0 and len(tail) <= 64
    assert sha256_state.finish(state, hashed, tail) == hashlib.sha256(message).digest()


def test_bad_inputs_are_named() -> None:
    with pytest.raises(CommandFormatError):
        sha256_state.midstate(b"x")
    with pytest.raises(CommandFormatError):
        sha256_state.finish(bytes(31), 0, b"")
    with pytest.raises(CommandFormatError):
        sha256_state.finish(bytes(32), 10, b"")
