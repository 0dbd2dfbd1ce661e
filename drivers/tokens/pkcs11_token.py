"""PKCS#11 tokens through python-pkcs11: a vendor's ``libpkcs11_iotsafe.so``, SoftHSM2, OpenSC.

Phases map to the paper's Table 1: ``open`` = C_OpenSession, ``login`` = C_Login, ``find`` =
C_FindObjects (with its Init/Final), ``sign_init`` = C_SignInit, ``sign`` = C_Sign. The login and
sign calls go through :mod:`drivers.tokens.pkcs11_calls` so each is timed on its own.

A wrong PIN is reported once with what the token says about the tries left
(CKF_USER_PIN_COUNT_LOW / FINAL_TRY / LOCKED) and is never retried: a SIM locks its PIN after
a few wrong tries, and only the user may decide to try again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pkcs11
from asn1crypto.core import OctetString
from asn1crypto.keys import ECDomainParameters
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11.exceptions import PKCS11Error

from drivers.errors import (
    KeyNotFoundError,
    KeyUsageError,
    ModuleLoadError,
    PinError,
    TokenError,
    TokenNotFoundError,
)
from drivers.tokens.base import HashOn, KeyInfo, Pin, Signature, Token, TokenInfo, TokenSession
from drivers.tokens.pkcs11_calls import CryptokiCallError, CryptokiCalls
from drivers.tokens.pkcs11_uri import Pkcs11Uri, parse_pkcs11_uri
from drivers.tokens.provenance import emulated_reader_for_slot

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Library  # what pkcs11.lib() returns

_OID_CURVES = {
    "1.2.840.10045.3.1.7": "secp256r1",
    "1.3.36.3.3.2.8.1.1.7": "brainpoolP256r1",
    "1.3.132.0.34": "secp384r1",
    "1.3.132.0.35": "secp521r1",
}

MODULE_DIRECTORIES = (
    "/usr/lib/softhsm",
    "/usr/lib/x86_64-linux-gnu/softhsm",
    "/usr/lib/x86_64-linux-gnu/pkcs11",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/pkcs11",
    "/usr/local/lib",
    "/usr/lib",
)
"""Where ``module-name=`` is looked up (RFC 7512: a name without path or suffix)."""


def resolve_module(uri: Pkcs11Uri) -> Path:
    """The module file the URI names (``module-path``, or ``module-name`` in known places)."""
    if "module-path" in uri.query:
        return Path(uri.query["module-path"]).expanduser()
    name = uri.query.get("module-name")
    if name:
        for directory in MODULE_DIRECTORIES:
            for candidate in (f"{name}.so", name):
                path = Path(directory) / candidate
                if path.exists():
                    return path
        raise ModuleLoadError(
            f"PKCS#11 module {name!r} not found in {', '.join(MODULE_DIRECTORIES)}",
            "give its full path with ?module-path=/path/to/module.so",
        )
    raise ModuleLoadError(
        "the PKCS#11 URI names no module",
        "add ?module-path=/path/to/module.so (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)",
    )


def load_module(path: Path) -> Pkcs11Library:
    """Load a PKCS#11 module with errors that say which file is wrong and why."""
    if not path.exists():
        raise ModuleLoadError(
            f"PKCS#11 module {path} does not exist",
            "check the module path (`safelab tokens` lists the modules it finds)",
        )
    if not os.access(path, os.R_OK):
        raise ModuleLoadError(f"PKCS#11 module {path} is not readable", "check its permissions")
    try:
        return pkcs11.lib(str(path))
    except PKCS11Error as exc:
        text = str(exc)
        if "C_GetFunctionList" in text:
            why = "it has no C_GetFunctionList, so it is not a PKCS#11 module"
        elif "invalid ELF header" in text or "file too short" in text:
            why = "it is not a shared library"
        else:
            why = text or type(exc).__name__
        raise ModuleLoadError(
            f"cannot load {path} as a PKCS#11 module: {why}",
            "give the path of the vendor's PKCS#11 library (a .so exporting C_GetFunctionList)",
        ) from None


def pin_status_of(flags: int) -> str:
    """What the token flags say about the user PIN, in words."""
    if flags & TokenFlag.USER_PIN_LOCKED:
        return "locked"
    if flags & TokenFlag.USER_PIN_FINAL_TRY:
        return "final try"
    if flags & TokenFlag.USER_PIN_COUNT_LOW:
        return "count low (a wrong PIN was entered since the last good one)"
    return "ok (the module reports no failed tries)"


def curve_of(ec_params: bytes | None) -> str:
    """Curve name from DER EC parameters (CKA_EC_PARAMS)."""
    if not ec_params:
        return "unknown"
    try:
        chosen = ECDomainParameters.load(ec_params).chosen
        dotted = chosen.dotted if hasattr(chosen, "dotted") else str(chosen.native)
    except ValueError:
        return "unknown"
    return _OID_CURVES.get(dotted, dotted)


def _attr(obj: pkcs11.Object, attribute: Attribute, default: object = None) -> Any:
    """An attribute's value (its type depends on the attribute: Any), or ``default``."""
    try:
        return obj[attribute]
    except (PKCS11Error, KeyError, NotImplementedError):
        return default


def _token_label(token: pkcs11.Token) -> str:
    return str(token.label).strip()


def _handle(session: pkcs11.Session) -> int:
    """The session's Cryptoki handle, for the calls made through :class:`CryptokiCalls`."""
    return int(session.handle)  # type: ignore[attr-defined]  # python-pkcs11's stub omits it


class Pkcs11Session(TokenSession):
    token: Pkcs11Token

    def __init__(self, token: Pkcs11Token, session: pkcs11.Session) -> None:
        super().__init__(token)
        self.session = session

    def _login(self, pin: Pin | None) -> None:
        if not self.token.needs_login:
            return
        if pin is None:
            raise PinError(
                f"token {self.token.info.label!r} needs a user PIN",
                "give it with --pin-env VAR, --pin-fd N, or type it at the prompt",
            )
        try:
            self.token.calls.login(_handle(self.session), pin.reveal().encode())
        except CryptokiCallError as exc:
            if exc.name == "CKR_USER_ALREADY_LOGGED_IN":
                return  # another session of this process is logged in: the token is unlocked
            raise self.token.pin_error(exc) from None

    def _find_key(self, selector: str | None) -> KeyInfo:
        return self.token.find_signing_key(self.session, selector)

    def _read_certificate(self, selector: str | None) -> bytes | None:
        """C_FindObjects for the key's certificate object (its label, or the URI's id) and
        C_GetAttributeValue of its CKA_VALUE, in this session and before C_Login: what
        OpenVPN's pkcs11-helper does at every client start."""
        token = self.token
        label = selector if selector is not None else token.key_selector
        template: dict[Attribute, object] = {Attribute.CLASS: ObjectClass.CERTIFICATE}
        if label is not None:
            template[Attribute.LABEL] = label
        if token.key_id is not None and selector is None:
            template[Attribute.ID] = token.key_id
        certs = list(self.session.get_objects(template))
        if len(certs) != 1:
            return None
        value = _attr(certs[0], Attribute.VALUE)
        return bytes(value) if value else None

    def _sign_init(self, key: KeyInfo, hash_on: HashOn) -> None:
        if key.curve not in _OID_CURVES.values():
            raise KeyUsageError(
                f"key {key.label!r} on {self.token.info.label!r} is not an EC key ({key.curve}):"
                " SAFE Lab signs with ECDSA",
                "choose an EC key (P-256 or brainpoolP256r1) with ;object=LABEL in the URI",
            )
        if not key.can_sign:
            raise KeyUsageError(
                f"key {key.label!r} on {self.token.info.label!r} is not allowed to sign "
                "(CKA_SIGN is false)",
                "choose a signing key (see `safelab tokens`) with ;object=LABEL in the URI",
            )
        mechanism = Mechanism.ECDSA if hash_on is HashOn.HOST else Mechanism.ECDSA_SHA256
        try:
            self.token.calls.sign_init(_handle(self.session), int(mechanism), key.ref)
        except CryptokiCallError as exc:
            raise self.token.call_error(exc, key) from None

    def _sign(self, data: bytes, hash_on: HashOn) -> Signature:
        message = hashlib.sha256(data).digest() if hash_on is HashOn.HOST else data
        return self._sign_digest(message)

    def _sign_digest(self, digest: bytes) -> Signature:
        """C_Sign over the digest with CKM_ECDSA (set up by sign_init with HashOn.HOST)."""
        try:
            raw = self.token.calls.sign(_handle(self.session), digest)
        except CryptokiCallError as exc:
            raise self.token.call_error(exc, None) from None
        return Signature.from_raw(raw)

    def _close(self) -> None:
        with contextlib.suppress(PKCS11Error):  # the token may be gone: best effort
            self.session.close()


class Pkcs11Token(Token):
    """One token in one slot of one PKCS#11 module, selected by an RFC 7512 URI."""

    def __init__(self, uri: Pkcs11Uri) -> None:
        self.uri = uri
        self.module_path = resolve_module(uri)
        self.lib = load_module(self.module_path)
        self.p11_token = self._select_token()
        self.calls = CryptokiCalls(str(self.module_path))
        self.key_selector = uri.path.get("object")
        self.key_id = uri.key_id
        label = _token_label(self.p11_token)
        serial = self.p11_token.serial
        serial_text = serial.decode(errors="replace") if isinstance(serial, bytes) else str(serial)
        public = Pkcs11Uri(
            path={"token": label, **{k: v for k, v in uri.path.items() if k in ("object",)}},
            query={"module-path": str(self.module_path)},
            key_id=uri.key_id,
        )
        flags = tuple(flag.name or hex(flag) for flag in TokenFlag if self.p11_token.flags & flag)
        emulated_in = emulated_reader_for_slot(str(self.p11_token.slot.slot_description))
        if emulated_in is not None:
            flags += (f"emulated card in PC/SC reader {emulated_in!r} (ATR mark)",)
        info = TokenInfo(
            kind="pkcs11",
            uri=public.public_text(),
            label=label,
            manufacturer=str(self.p11_token.manufacturer_id).strip(),
            model=str(self.p11_token.model).strip(),
            serial=serial_text.strip(),
            module=f"{self.module_path} ({self.lib.library_description.strip()} "
            f"{'.'.join(map(str, self.lib.library_version))})",
            emulated=emulated_in is not None,
            flags=flags,
        )
        super().__init__(info, device_identity=f"pkcs11:{self.module_path}:{serial_text}")

    @classmethod
    def from_uri(cls, text: str) -> Pkcs11Token:
        return cls(parse_pkcs11_uri(text))

    def _select_token(self) -> pkcs11.Token:
        wanted = {
            k: v
            for k, v in self.uri.path.items()
            if k in ("token", "serial", "model", "manufacturer", "slot-id")
        }
        candidates = []
        for slot in self.lib.get_slots(token_present=True):
            try:
                token = slot.get_token()
            except PKCS11Error:
                continue
            serial = token.serial
            values = {
                "token": _token_label(token),
                "serial": (
                    serial.decode(errors="replace") if isinstance(serial, bytes) else str(serial)
                ).strip(),
                "model": str(token.model).strip(),
                "manufacturer": str(token.manufacturer_id).strip(),
                "slot-id": str(slot.slot_id),
            }
            if all(values[name] == value for name, value in wanted.items()):
                candidates.append((token, values))
        if len(candidates) == 1:
            return candidates[0][0]
        present = self._present_labels()
        if not candidates:
            raise TokenNotFoundError(
                f"no token matching {self._describe(wanted)} in {self.module_path} "
                f"(present: {present or 'none'})",
                "fix token=... in the URI; `safelab tokens` lists the tokens",
            )
        raise TokenNotFoundError(
            f"{len(candidates)} tokens match {self._describe(wanted)} in {self.module_path}",
            "add token=LABEL or serial=... to the URI to pick one",
        )

    def _present_labels(self) -> str:
        labels = []
        for slot in self.lib.get_slots(token_present=True):
            try:
                labels.append(repr(_token_label(slot.get_token())))
            except PKCS11Error:
                continue
        return ", ".join(labels)

    @staticmethod
    def _describe(wanted: dict[str, str]) -> str:
        return ";".join(f"{k}={v}" for k, v in wanted.items()) or "the URI"

    def refreshed_flags(self) -> int:
        """Token flags read now (C_GetTokenInfo), not when the token was opened."""
        for slot in self.lib.get_slots(token_present=True):
            try:
                token = slot.get_token()
            except PKCS11Error:
                continue
            if token.serial == self.p11_token.serial and _token_label(token) == self.info.label:
                return int(token.flags)
        return int(self.p11_token.flags)

    @property
    def needs_login(self) -> bool:
        return bool(self.p11_token.flags & TokenFlag.LOGIN_REQUIRED)

    def pin_status(self) -> str:
        return pin_status_of(self.refreshed_flags())

    def pin_error(self, exc: CryptokiCallError) -> PinError:
        tries = self.pin_status()
        label = self.info.label
        if exc.name == "CKR_PIN_LOCKED" or "locked" in tries:
            return PinError(
                f"the user PIN of {label!r} is locked",
                "unblock it with the SO PIN/PUK using the vendor's tool; SAFE Lab will not retry",
                tries_left="0 (locked)",
            )
        if exc.name in ("CKR_PIN_INCORRECT", "CKR_PIN_INVALID", "CKR_PIN_LEN_RANGE"):
            return PinError(
                f"wrong PIN for {label!r} ({exc.name}); tries left: {tries}",
                "check the PIN before running again; SAFE Lab never retries a PIN by itself",
                tries_left=tries,
            )
        return PinError(f"login to {label!r} failed: {exc.name}", "check the token and PIN")

    def call_error(self, exc: CryptokiCallError, key: KeyInfo | None) -> TokenError:
        name = key.label if key else "the key"
        if exc.name == "CKR_KEY_FUNCTION_NOT_PERMITTED":
            return KeyUsageError(
                f"{name!r} is not allowed to sign ({exc.name})",
                "choose a key with CKA_SIGN true (see `safelab tokens`)",
            )
        if exc.name in ("CKR_KEY_TYPE_INCONSISTENT", "CKR_MECHANISM_INVALID"):
            return KeyUsageError(
                f"{self.info.label!r} cannot do this ECDSA signature with {name!r} ({exc.name})",
                "use an EC key, and --hash-on host if the token cannot hash (CKM_ECDSA_SHA256)",
            )
        if exc.name in (
            "CKR_DEVICE_REMOVED",
            "CKR_TOKEN_NOT_PRESENT",
            "CKR_SESSION_CLOSED",
            "CKR_SESSION_HANDLE_INVALID",
        ):
            return TokenError(
                f"token {self.info.label!r} went away during the run ({exc.name})",
                "re-insert it and run again; the trials measured so far are kept",
            )
        if exc.name == "CKR_USER_NOT_LOGGED_IN":
            return PinError(f"{self.info.label!r} wants a login first", "give a PIN")
        return TokenError(f"{exc} on {self.info.label!r}", "see the module's own log")

    def _open(self) -> Pkcs11Session:
        try:
            session = self.p11_token.open()
        except PKCS11Error as exc:
            raise TokenError(
                f"cannot open a session on {self.info.label!r} ({type(exc).__name__})",
                "check that the token is present and not in use by another program",
            ) from None
        return Pkcs11Session(self, session)

    def _key_template(self, selector: str | None) -> dict[Attribute, object]:
        template: dict[Attribute, object] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        label = selector if selector is not None else self.key_selector
        if label is not None:
            template[Attribute.LABEL] = label
        if self.key_id is not None and selector is None:
            template[Attribute.ID] = self.key_id
        return template

    def find_signing_key(self, session: pkcs11.Session, selector: str | None) -> KeyInfo:
        """C_FindObjects for the private key; the session must be logged in if keys are private."""
        template = self._key_template(selector)
        found = list(session.get_objects(template))
        if len(found) != 1:
            what = (
                ", ".join(
                    f"{a.name.lower()}={v!r}"
                    for a, v in template.items()
                    if a is not Attribute.CLASS
                )
                or "any label"
            )
            if not found:
                raise KeyNotFoundError(
                    f"no private key with {what} on {self.info.label!r}",
                    "fix object=... (or id=...) in the URI; `safelab tokens` lists the keys",
                )
            labels = ", ".join(repr(_attr(k, Attribute.LABEL, "?")) for k in found)
            raise KeyNotFoundError(
                f"{len(found)} private keys match {what} on {self.info.label!r} ({labels})",
                "add ;object=LABEL or ;id=... to the URI to pick one",
            )
        key = found[0]
        return self._key_info(key, private=True)

    def _key_info(self, obj: pkcs11.Object, private: bool) -> KeyInfo:
        key_type = _attr(obj, Attribute.KEY_TYPE)
        key_id = _attr(obj, Attribute.ID, b"") or b""
        if key_type == KeyType.EC:
            curve = curve_of(_attr(obj, Attribute.EC_PARAMS))
        else:
            curve = getattr(key_type, "name", str(key_type))
        can = bool(_attr(obj, Attribute.SIGN, False)) if private else False
        return KeyInfo(
            label=str(_attr(obj, Attribute.LABEL, "")),
            key_id=bytes(key_id).hex(),
            curve=curve,
            can_sign=can,
            ref=obj.handle,
        )

    def keys(self) -> list[KeyInfo]:
        """Keys visible without a PIN: private keys marked public, else their public halves."""
        with self.device_lock:
            session = self.p11_token.open()
            try:
                return self._visible_keys(session)
            finally:
                session.close()

    def _visible_keys(self, session: pkcs11.Session) -> list[KeyInfo]:
        certs = {
            bytes(_attr(c, Attribute.ID, b"") or b"")
            for c in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
        }
        by_id: dict[bytes, KeyInfo] = {}
        for cls, private in ((ObjectClass.PRIVATE_KEY, True), (ObjectClass.PUBLIC_KEY, False)):
            for obj in session.get_objects({Attribute.CLASS: cls}):
                info = self._key_info(obj, private)
                key_id = bytes.fromhex(info.key_id)
                if key_id in by_id and by_id[key_id].can_sign:
                    continue
                by_id[key_id] = KeyInfo(
                    label=info.label,
                    key_id=info.key_id,
                    curve=info.curve,
                    can_sign=info.can_sign if private else bool(_attr(obj, Attribute.VERIFY)),
                    has_certificate=key_id in certs,
                    ref=None,
                )
        return sorted(by_id.values(), key=lambda k: (not k.can_sign, k.label))

    def _find_public(
        self, session: pkcs11.Session, selector: str | None
    ) -> tuple[ec.EllipticCurvePublicKey | None, x509.Certificate | None]:
        label = selector if selector is not None else self.key_selector
        template: dict[Attribute, object] = {}
        if label is not None:
            template[Attribute.LABEL] = label
        if self.key_id is not None and selector is None:
            template[Attribute.ID] = self.key_id
        cert = None
        certs = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, **template}))
        if len(certs) == 1:
            cert = x509.load_der_x509_certificate(bytes(certs[0][Attribute.VALUE]))
        publics = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, **template}))
        public = None
        if len(publics) == 1:
            public = self._ec_public(publics[0])
        elif cert is not None and isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
            public = cert.public_key()  # type: ignore[assignment]
        return public, cert

    @staticmethod
    def _ec_public(obj: pkcs11.Object) -> ec.EllipticCurvePublicKey | None:
        point = _attr(obj, Attribute.EC_POINT)
        params = _attr(obj, Attribute.EC_PARAMS)
        if not point or not params:
            return None
        point = bytes(point)
        if not (point[0] == 0x04 and point[1] != len(point) - 2):
            point = OctetString.load(point).native  # DER-wrapped, as PKCS#11 v2.40 says
        name = curve_of(bytes(params))
        curve = {
            "secp256r1": ec.SECP256R1(),
            "brainpoolP256r1": ec.BrainpoolP256R1(),
            "secp384r1": ec.SECP384R1(),
            "secp521r1": ec.SECP521R1(),
        }.get(name)
        if curve is None:
            return None
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)

    def _public_and_cert(
        self, selector: str | None
    ) -> tuple[ec.EllipticCurvePublicKey | None, x509.Certificate | None]:
        with self.device_lock:
            session = self.p11_token.open()
            try:
                return self._find_public(session, selector)
            finally:
                session.close()

    def public_key(self, selector: str | None = None) -> ec.EllipticCurvePublicKey:
        public, _ = self._public_and_cert(selector)
        if public is None:
            raise KeyNotFoundError(
                f"no public key or certificate for the key on {self.info.label!r}",
                "store the public key (CKO_PUBLIC_KEY) or certificate with the same label/id",
            )
        return public

    def certificate(self, selector: str | None = None) -> x509.Certificate | None:
        return self._public_and_cert(selector)[1]
