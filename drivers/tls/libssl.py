"""ctypes access to the very libssl/libcrypto that CPython's ``ssl`` module uses.

Why ctypes: CPython's ``ssl`` can only load a private key from a file (python/cpython#116971),
and no maintained binding lets OpenSSL's own handshake call back into Python to sign (see
``../shared/research/protocols.md`` §2). OpenSSL itself can: an ``EC_KEY`` whose method's sign
function is ours. So we reach the ``SSL_CTX`` behind an ``ssl.SSLContext`` and install such a
key. That relies on facts that must hold, checked by :func:`load` and
:func:`ssl_ctx_pointer`, which refuse with a clear message when they do not:

- ``_ssl`` is dynamically linked to a ``libssl.so.3`` we can load (the one in this process's
  memory map, so ``dlopen`` returns the same library and the same global state), and that
  file is still the one on disk (not replaced by an OpenSSL upgrade since start-up);
- its version string equals ``ssl.OPENSSL_VERSION``;
- the ``SSL_CTX*`` read from the ``SSLContext`` object (CPython's ``PySSLContext`` layout:
  the pointer right after the object header) reads back the context's options and verify
  mode exactly, so it is the right object. Never sign through a pointer that fails this.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from drivers.errors import SafeLabError

c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_long = ctypes.c_long
c_char_p = ctypes.c_char_p
c_size_t = ctypes.c_size_t

# Callbacks of EC_KEY_METHOD (OpenSSL 3.0 include/openssl/ec.h).
SIGN_FN = ctypes.CFUNCTYPE(
    c_int,
    c_int,
    c_void_p,
    c_int,
    c_void_p,
    ctypes.POINTER(ctypes.c_uint),
    c_void_p,
    c_void_p,
    c_void_p,
)
SIGN_SIG_FN = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_int, c_void_p, c_void_p, c_void_p)

SSL_CTRL_SET_CLIENT_SIGALGS_LIST = 102
DTLS_CTRL_GET_TIMEOUT = 73
DTLS_CTRL_HANDLE_TIMEOUT = 74
BIO_CTRL_DGRAM_SET_CONNECTED = 32
BIO_NOCLOSE = 0
SSL_VERIFY_PEER = 1
SSL_ERROR_WANT_READ = 2
SSL_ERROR_WANT_WRITE = 3
NID_BY_CURVE = {"secp256r1": 415, "brainpoolP256r1": 927, "secp384r1": 715}


class BridgeUnavailable(SafeLabError):
    """The interpreter's ``ssl`` is not an OpenSSL this bridge can reach safely."""


@dataclass(frozen=True)
class OpenSSL:
    ssl: ctypes.CDLL
    crypto: ctypes.CDLL
    path: str
    version: str


DELETED = " (deleted)"
"""What the kernel appends in ``/proc/PID/maps`` to a mapped file that was since removed or
replaced (a package upgrade installs a new ``libssl.so.3`` under the same name)."""


@dataclass(frozen=True)
class MappedLibrary:
    path: str
    deleted: bool
    """The file on disk is no longer the one in memory: ``dlopen(path)`` would load another."""


def find_mapped_library(maps: str, name: str) -> MappedLibrary | None:
    """The first mapping of a file whose name starts with ``name`` in a ``/proc/PID/maps``
    text. Pure, so the upgrade case can be tested with a maps text.

    A line is ``address perms offset dev inode [path]``; the path may contain spaces and ends
    in `` (deleted)`` once the file was replaced on disk.
    """
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            continue
        path = fields[5].strip()
        deleted = path.endswith(DELETED)
        if deleted:
            path = path[: -len(DELETED)]
        if Path(path).name.startswith(name):
            return MappedLibrary(path, deleted)
    return None


def _mapped_library(name: str) -> MappedLibrary | None:
    """``name`` as mapped into this process (after ``import _ssl``)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    return find_mapped_library(maps, name)


def check_mapped(
    libssl: MappedLibrary | None, libcrypto: MappedLibrary | None
) -> tuple[MappedLibrary, MappedLibrary]:
    """Refuse, with the reason, unless both libraries are mapped and still the files on disk.

    Why the upgrade gets its own message: after ``apt upgrade`` replaced OpenSSL under a
    running console, the old library stays mapped (marked deleted) and loading the path
    would give a *different* OpenSSL with its own global state, so the only fix is a restart.
    """
    if (libssl is not None and libssl.deleted) or (libcrypto is not None and libcrypto.deleted):
        raise BridgeUnavailable(
            "OpenSSL was upgraded while SAFE Lab was running: restart it",
            "the OpenSSL in memory is no longer the file on disk, and signing inside a "
            "handshake through the new one would mix two OpenSSLs; quit and start SAFE Lab again",
        )
    if libssl is None or libcrypto is None:
        raise BridgeUnavailable(
            f"Python's ssl module ({ssl.OPENSSL_VERSION}) is not linked to a shared "
            "libssl.so.3 that SAFE Lab can reach, so a token cannot sign inside its handshakes",
            "use a Python linked to the system OpenSSL 3 (Debian's python3, or pyenv built "
            "against libssl-dev)",
        )
    return libssl, libcrypto


@cache
def load() -> OpenSSL:
    """The libssl/libcrypto of CPython's ``_ssl``, with prototypes; or BridgeUnavailable."""
    import _ssl  # noqa: F401 - maps libssl into the process

    libssl, libcrypto = check_mapped(
        _mapped_library("libssl.so.3"), _mapped_library("libcrypto.so.3")
    )
    crypto = ctypes.CDLL(libcrypto.path)
    library = ctypes.CDLL(libssl.path)
    crypto.OpenSSL_version.restype = c_char_p
    crypto.OpenSSL_version.argtypes = (c_int,)
    version = crypto.OpenSSL_version(0).decode()
    if version != ssl.OPENSSL_VERSION:
        raise BridgeUnavailable(
            f"the libssl in memory says {version!r} but Python's ssl says {ssl.OPENSSL_VERSION!r}",
            "refusing to sign through a different OpenSSL; use a Python built against it",
        )
    _prototypes(library, crypto)
    return OpenSSL(library, crypto, libssl.path, version)


def _proto(function: Any, restype: object, *argtypes: object) -> None:
    """Set a ctypes foreign function's types (``ctypes._CFuncPtr`` is private, so ``Any``)."""
    function.restype = restype
    function.argtypes = argtypes


def _prototypes(lib: ctypes.CDLL, crypto: ctypes.CDLL) -> None:
    _proto(crypto.EC_KEY_OpenSSL, c_void_p)
    _proto(crypto.EC_KEY_METHOD_new, c_void_p, c_void_p)
    _proto(crypto.EC_KEY_METHOD_free, None, c_void_p)
    _proto(
        crypto.EC_KEY_METHOD_get_sign,
        None,
        c_void_p,
        ctypes.POINTER(c_void_p),
        ctypes.POINTER(c_void_p),
        ctypes.POINTER(c_void_p),
    )
    _proto(crypto.EC_KEY_METHOD_set_sign, None, c_void_p, c_void_p, c_void_p, c_void_p)
    _proto(crypto.EC_KEY_new_by_curve_name, c_void_p, c_int)
    _proto(crypto.EC_KEY_oct2key, c_int, c_void_p, c_char_p, c_size_t, c_void_p)
    _proto(crypto.EC_KEY_set_method, c_int, c_void_p, c_void_p)
    _proto(crypto.EC_KEY_free, None, c_void_p)
    _proto(crypto.EVP_PKEY_new, c_void_p)
    _proto(crypto.EVP_PKEY_set1_EC_KEY, c_int, c_void_p, c_void_p)
    _proto(crypto.EVP_PKEY_free, None, c_void_p)
    _proto(crypto.ECDSA_SIG_new, c_void_p)
    _proto(crypto.ECDSA_SIG_set0, c_int, c_void_p, c_void_p, c_void_p)
    _proto(crypto.BN_bin2bn, c_void_p, c_char_p, c_int, c_void_p)
    _proto(crypto.ERR_get_error, ctypes.c_ulong)
    _proto(crypto.ERR_error_string_n, None, ctypes.c_ulong, c_char_p, c_size_t)
    _proto(crypto.BIO_new_dgram, c_void_p, c_int, c_int)
    _proto(crypto.BIO_ctrl, c_long, c_void_p, c_int, c_long, c_void_p)
    _proto(lib.SSL_CTX_get_options, ctypes.c_uint64, c_void_p)
    _proto(lib.SSL_CTX_get_verify_mode, c_int, c_void_p)
    _proto(lib.SSL_CTX_use_certificate_chain_file, c_int, c_void_p, c_char_p)
    _proto(lib.SSL_CTX_use_PrivateKey, c_int, c_void_p, c_void_p)
    _proto(lib.SSL_CTX_check_private_key, c_int, c_void_p)
    _proto(lib.SSL_CTX_ctrl, c_long, c_void_p, c_int, c_long, c_void_p)
    _proto(lib.SSL_CTX_new, c_void_p, c_void_p)
    _proto(lib.SSL_CTX_free, None, c_void_p)
    _proto(lib.SSL_CTX_load_verify_locations, c_int, c_void_p, c_char_p, c_char_p)
    _proto(lib.SSL_CTX_set_verify, None, c_void_p, c_int, c_void_p)
    _proto(lib.DTLS_client_method, c_void_p)
    _proto(lib.SSL_new, c_void_p, c_void_p)
    _proto(lib.SSL_free, None, c_void_p)
    _proto(lib.SSL_set_bio, None, c_void_p, c_void_p, c_void_p)
    _proto(lib.SSL_connect, c_int, c_void_p)
    _proto(lib.SSL_get_error, c_int, c_void_p, c_int)
    _proto(lib.SSL_read, c_int, c_void_p, c_void_p, c_int)
    _proto(lib.SSL_write, c_int, c_void_p, c_char_p, c_int)
    _proto(lib.SSL_shutdown, c_int, c_void_p)
    _proto(lib.SSL_ctrl, c_long, c_void_p, c_int, c_long, c_void_p)
    _proto(lib.SSL_session_reused, c_int, c_void_p)


def openssl_errors(lib: OpenSSL) -> str:
    """Drain OpenSSL's error queue into one readable line."""
    messages = []
    while code := lib.crypto.ERR_get_error():
        buffer = ctypes.create_string_buffer(256)
        lib.crypto.ERR_error_string_n(code, buffer, len(buffer))
        messages.append(buffer.value.decode(errors="replace"))
    return "; ".join(messages) or "no OpenSSL error queued"


_VERIFY_MODES = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}


def ssl_ctx_pointer(context: ssl.SSLContext) -> int:
    """The ``SSL_CTX*`` behind ``context``, checked by reading settings back through it."""
    lib = load()
    if sys.implementation.name != "cpython":
        raise BridgeUnavailable(
            f"{sys.implementation.name} is not CPython",
            "the TLS bridge needs CPython's ssl object layout",
        )
    header = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(c_void_p)  # refcount + type
    pointer = ctypes.c_void_p.from_address(id(context) + header).value
    if not pointer:
        raise BridgeUnavailable(
            "no SSL_CTX pointer where CPython keeps it",
            "this Python's ssl layout differs; the bridge refuses to guess",
        )
    options = lib.ssl.SSL_CTX_get_options(pointer)
    verify = lib.ssl.SSL_CTX_get_verify_mode(pointer)
    expected_verify = _VERIFY_MODES.get(context.verify_mode, -1)
    if options != int(context.options) or (verify & 3) != (expected_verify & 3):
        raise BridgeUnavailable(
            "the SSL_CTX found in the SSLContext does not read back its options and verify "
            "mode, so it is not the right object",
            "this Python's ssl layout differs from CPython 3.11's; the bridge refuses to sign",
        )
    return pointer
