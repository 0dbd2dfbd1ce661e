"""The three Cryptoki calls python-pkcs11 does not expose one by one: C_Login, C_SignInit, C_Sign.

Why this exists: the paper times C_OpenSession, C_Login, C_FindObjects, C_SignInit and C_Sign
separately (its Table 1). python-pkcs11 fuses C_OpenSession with C_Login (``Token.open``) and
C_SignInit with C_Sign (``Key.sign``), so those phases cannot be timed apart through it. We keep
python-pkcs11 for everything else (loading, discovery, sessions, object search, attributes) and
call these three through the module's own ``CK_FUNCTION_LIST``, found with ctypes from the very
same shared object python-pkcs11 loaded (``dlopen`` returns the already-loaded library, so the
session and object handles python-pkcs11 holds are valid here). ctypes drops the GIL during
each call, like python-pkcs11 does.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

CK_ULONG = ctypes.c_ulong
CK_RV = CK_ULONG

CKU_USER = 1
CKR_OK = 0x00
CKR_BUFFER_TOO_SMALL = 0x150

# Return values SAFE Lab turns into specific messages.
CKR_NAMES = {
    0x05: "CKR_GENERAL_ERROR",
    0x06: "CKR_FUNCTION_FAILED",
    0x30: "CKR_DEVICE_ERROR",
    0x31: "CKR_DEVICE_MEMORY",
    0x32: "CKR_DEVICE_REMOVED",
    0x60: "CKR_KEY_HANDLE_INVALID",
    0x63: "CKR_KEY_TYPE_INCONSISTENT",
    0x68: "CKR_KEY_FUNCTION_NOT_PERMITTED",
    0x70: "CKR_MECHANISM_INVALID",
    0x71: "CKR_MECHANISM_PARAM_INVALID",
    0x90: "CKR_OPERATION_ACTIVE",
    0x91: "CKR_OPERATION_NOT_INITIALIZED",
    0xA0: "CKR_PIN_INCORRECT",
    0xA1: "CKR_PIN_INVALID",
    0xA2: "CKR_PIN_LEN_RANGE",
    0xA3: "CKR_PIN_EXPIRED",
    0xA4: "CKR_PIN_LOCKED",
    0xB0: "CKR_SESSION_CLOSED",
    0xB3: "CKR_SESSION_HANDLE_INVALID",
    0xE0: "CKR_TOKEN_NOT_PRESENT",
    0x100: "CKR_USER_ALREADY_LOGGED_IN",
    0x101: "CKR_USER_NOT_LOGGED_IN",
    0x102: "CKR_USER_PIN_NOT_INITIALIZED",
    0x190: "CKR_CRYPTOKI_NOT_INITIALIZED",
}

# Index of each function pointer in CK_FUNCTION_LIST (PKCS#11 v2.40, section 5.16), after the
# CK_VERSION header, up to the last one used here (C_Sign).
_FUNCTION_ORDER = (
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_GetObjectSize",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_SignInit",
    "C_Sign",
)


class CK_VERSION(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class CK_FUNCTION_LIST(ctypes.Structure):
    _fields_ = (("version", CK_VERSION), *((name, ctypes.c_void_p) for name in _FUNCTION_ORDER))


class CK_MECHANISM(ctypes.Structure):
    _fields_ = (
        ("mechanism", CK_ULONG),
        ("pParameter", ctypes.c_void_p),
        ("ulParameterLen", CK_ULONG),
    )


_LOGIN = ctypes.CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG, ctypes.c_char_p, CK_ULONG)
_SIGN_INIT = ctypes.CFUNCTYPE(CK_RV, CK_ULONG, ctypes.POINTER(CK_MECHANISM), CK_ULONG)
_SIGN = ctypes.CFUNCTYPE(
    CK_RV, CK_ULONG, ctypes.c_char_p, CK_ULONG, ctypes.c_char_p, ctypes.POINTER(CK_ULONG)
)


class CryptokiCallError(Exception):
    """A Cryptoki call returned something other than CKR_OK."""

    def __init__(self, function: str, rv: int) -> None:
        self.function = function
        self.rv = rv
        self.name = CKR_NAMES.get(rv, f"CKR_0x{rv:08X}")
        super().__init__(f"{function} returned {self.name}")


@dataclass
class CryptokiCalls:
    """Bound C_Login / C_SignInit / C_Sign of one loaded module."""

    module_path: str

    def __post_init__(self) -> None:
        library = ctypes.CDLL(self.module_path)
        get_function_list = library.C_GetFunctionList
        get_function_list.restype = CK_RV
        get_function_list.argtypes = (ctypes.POINTER(ctypes.POINTER(CK_FUNCTION_LIST)),)
        table = ctypes.POINTER(CK_FUNCTION_LIST)()
        rv = get_function_list(ctypes.byref(table))
        if rv != CKR_OK:
            raise CryptokiCallError("C_GetFunctionList", rv)
        functions = table.contents
        self._library = library  # keep the handle alive as long as the pointers
        self._login = _LOGIN(functions.C_Login)
        self._sign_init = _SIGN_INIT(functions.C_SignInit)
        self._sign = _SIGN(functions.C_Sign)

    def login(self, session: int, pin: bytes) -> None:
        rv = self._login(session, CKU_USER, pin, len(pin))
        if rv != CKR_OK:
            raise CryptokiCallError("C_Login", rv)

    def sign_init(self, session: int, mechanism: int, key: int) -> None:
        mech = CK_MECHANISM(mechanism, None, 0)
        rv = self._sign_init(session, ctypes.byref(mech), key)
        if rv != CKR_OK:
            raise CryptokiCallError("C_SignInit", rv)

    def sign(self, session: int, data: bytes, max_length: int = 512) -> bytes:
        """C_Sign with a buffer large enough for any ECDSA signature (one call, no size probe).

        One call matters: a size probe would be a second C_Sign, which on a card-backed module
        may cost a second trip to the card and distort the timing.
        """
        out = ctypes.create_string_buffer(max_length)
        length = CK_ULONG(max_length)
        rv = self._sign(session, data, len(data), out, ctypes.byref(length))
        if rv != CKR_OK:
            raise CryptokiCallError("C_Sign", rv)
        return out.raw[: length.value]
