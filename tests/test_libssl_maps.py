"""Which libssl the TLS bridge signs through: the one mapped into this process, and only while
it is still the file on disk (an OpenSSL upgrade under a running console is named as such)."""

from __future__ import annotations

import ssl

import pytest

from drivers.tls.libssl import (
    BridgeUnavailable,
    MappedLibrary,
    check_mapped,
    find_mapped_library,
    load,
)

LIB = "/usr/lib/x86_64-linux-gnu"
LIVE = f"""\
7f1c2a000000-7f1c2a0b0000 r--p 00000000 08:01 1835012   {LIB}/libcrypto.so.3
7f1c2a400000-7f1c2a41f000 r--p 00000000 08:01 1835020   {LIB}/libssl.so.3
7f1c2a600000-7f1c2a601000 rw-p 00000000 00:00 0
7ffd1b2e0000-7ffd1b301000 rw-p 00000000 00:00 0         [stack]
"""
UPGRADED = f"""\
7f1c2a000000-7f1c2a0b0000 r--p 00000000 08:01 1835012   {LIB}/libcrypto.so.3 (deleted)
7f1c2a400000-7f1c2a41f000 r--p 00000000 08:01 1835020   {LIB}/libssl.so.3 (deleted)
7f1c2a600000-7f1c2a601000 rw-p 00000000 00:00 0
"""


def test_parses_paths_and_ignores_anonymous_mappings() -> None:
    found = find_mapped_library(LIVE, "libssl.so.3")
    assert found == MappedLibrary("/usr/lib/x86_64-linux-gnu/libssl.so.3", deleted=False)
    assert find_mapped_library(LIVE, "libz.so") is None


def test_a_replaced_library_is_found_and_marked_deleted() -> None:
    """Before the fix the `` (deleted)`` suffix hid the library entirely."""
    found = find_mapped_library(UPGRADED, "libssl.so.3")
    assert found == MappedLibrary("/usr/lib/x86_64-linux-gnu/libssl.so.3", deleted=True)


def test_path_with_spaces_keeps_its_spaces() -> None:
    maps = "7f00-7f01 r--p 00000000 08:01 42   /opt/my ssl/libssl.so.3 (deleted)\n"
    assert find_mapped_library(maps, "libssl.so.3") == MappedLibrary(
        "/opt/my ssl/libssl.so.3", deleted=True
    )


def test_upgrade_under_a_running_console_says_restart() -> None:
    libssl = find_mapped_library(UPGRADED, "libssl.so.3")
    libcrypto = find_mapped_library(UPGRADED, "libcrypto.so.3")
    with pytest.raises(BridgeUnavailable) as info:
        check_mapped(libssl, libcrypto)
    line = info.value.one_line()
    assert line.startswith("OpenSSL was upgraded while SAFE Lab was running: restart it")
    assert "not linked to a shared" not in line


def test_only_libcrypto_replaced_is_an_upgrade_too() -> None:
    libssl = find_mapped_library(LIVE, "libssl.so.3")
    libcrypto = find_mapped_library(UPGRADED, "libcrypto.so.3")
    with pytest.raises(BridgeUnavailable, match="OpenSSL was upgraded"):
        check_mapped(libssl, libcrypto)


def test_no_shared_libssl_keeps_its_own_message() -> None:
    with pytest.raises(BridgeUnavailable, match=r"not linked to a shared libssl\.so\.3"):
        check_mapped(None, None)


def test_this_process_loads_the_mapped_openssl() -> None:
    """The real path: this interpreter's libssl is mapped, current, and the same version."""
    opened = load()
    assert opened.version == ssl.OPENSSL_VERSION
    assert opened.path.endswith("libssl.so.3")
    with open("/proc/self/maps") as maps:
        assert find_mapped_library(maps.read(), "libssl.so.3") == MappedLibrary(
            opened.path, deleted=False
        )
