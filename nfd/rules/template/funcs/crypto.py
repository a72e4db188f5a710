"""Encodings, hashes, ciphers and random values: Sprig's b64*/b32*, *sum, derivePassword,
encryptAES/decryptAES (AES-256-CBC through the ``cryptography`` package) and rand*.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
import string
import uuid
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs.common import MAX_OUTPUT, strval, to_int


def _b64dec(s: str) -> str:
    try:
        return base64.b64decode(s, validate=True).decode("utf-8", "replace")
    except ValueError as err:
        return str(err)


_MP_SEED = b"com.lyndir.masterpassword"
_MP_TEMPLATES = {
    "maximum": ["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
    "long": [
        a + b + c
        for a, b, c in (
            ("Cvcvno", "Cvcv", "Cvcv"), ("Cvcv", "Cvcvno", "Cvcv"), ("Cvcv", "Cvcv", "Cvcvno"),
            ("Cvccno", "Cvcv", "Cvcv"), ("Cvcc", "Cvcvno", "Cvcv"), ("Cvcc", "Cvcv", "Cvcvno"),
            ("Cvcvno", "Cvcc", "Cvcv"), ("Cvcv", "Cvccno", "Cvcv"), ("Cvcv", "Cvcc", "Cvcvno"),
            ("Cvcvno", "Cvcv", "Cvcc"), ("Cvcv", "Cvcvno", "Cvcc"), ("Cvcv", "Cvcv", "Cvccno"),
            ("Cvccno", "Cvcc", "Cvcv"), ("Cvcc", "Cvccno", "Cvcv"), ("Cvcc", "Cvcc", "Cvcvno"),
            ("Cvcvno", "Cvcc", "Cvcc"), ("Cvcv", "Cvccno", "Cvcc"), ("Cvcv", "Cvcc", "Cvccno"),
            ("Cvccno", "Cvcv", "Cvcc"), ("Cvcc", "Cvcvno", "Cvcc"), ("Cvcc", "Cvcv", "Cvccno"),
        )
    ],
    "medium": ["CvcnoCvc", "CvcCvcno"],
    "short": ["Cvcn"],
    "basic": ["aaanaaan", "aannaaan", "aaannaaa"],
    "pin": ["nnnn"],
}  # fmt: skip
_MP_CHARS = {
    "V": "AEIOU",
    "C": "BCDFGHJKLMNPQRSTVWXYZ",
    "v": "aeiou",
    "c": "bcdfghjklmnpqrstvwxyz",
    "A": "AEIOUBCDFGHJKLMNPQRSTVWXYZ",
    "a": "AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
    "n": "0123456789",
    "o": "@&%?,=[]_:-+*$#!'^~;()/.",
    "x": "AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
}


@lru_cache(maxsize=16)
def _master_key(password: str, user: str) -> bytes:
    # ~0.25 s of scrypt: cached so a template deriving many site passwords pays it once.

    user_b = user.encode()
    salt = _MP_SEED + len(user_b).to_bytes(4, "big") + user_b
    # scrypt N=32768, r=8, p=2 needs 32 MiB; OpenSSL's default cap is exactly that.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=32768, r=8, p=2, maxmem=64 << 20, dklen=64
    )


def _derive_password(counter: Any, kind: Any, password: Any, user: Any, site: Any) -> str:

    templates = _MP_TEMPLATES.get(strval(kind))
    if templates is None:
        return f"cannot find password template {strval(kind)}"
    site_b = strval(site).encode()
    key = _master_key(strval(password), strval(user))
    message = _MP_SEED + len(site_b).to_bytes(4, "big") + site_b
    message += (to_int(counter) & 0xFFFFFFFF).to_bytes(4, "big")
    seed = hmac.new(key, message, hashlib.sha256).digest()
    template = templates[seed[0] % len(templates)]
    return "".join(_MP_CHARS[ch][seed[i + 1] % len(_MP_CHARS[ch])] for i, ch in enumerate(template))


# -- encryptAES / decryptAES (AES-256-CBC, PKCS#7 padding, IV first; as Sprig) ------------------

# Sprig takes any size; templates are at most 64 KiB, and so is what AES works on here.
_MAX_AES_INPUT = 64 * 1024


def _check_aes_size(n: int) -> None:
    if n > _MAX_AES_INPUT:
        raise TemplateError(f"AES input of {n} bytes exceeds the limit ({_MAX_AES_INPUT})")


def _aes_cbc(password: Any, iv: bytes) -> Cipher[modes.CBC]:
    # Sprig copies the password into a zeroed 32-byte key (AES-256), truncating longer ones.
    key = strval(password).encode()[:32].ljust(32, b"\0")
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def encrypt_aes(password: Any, plaintext: Any) -> str:
    text = strval(plaintext).encode()
    if not text:
        return ""
    _check_aes_size(len(text))
    pad = 16 - len(text) % 16
    iv = secrets.token_bytes(16)
    encryptor = _aes_cbc(password, iv).encryptor()
    crypt = encryptor.update(text + bytes([pad]) * pad) + encryptor.finalize()
    return base64.b64encode(iv + crypt).decode()


def decrypt_aes(password: Any, crypt64: Any) -> str:
    text = strval(crypt64)
    if not text:
        return ""
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError as err:
        raise TemplateError(f"illegal base64 data: {err}") from None
    _check_aes_size(len(data))
    if len(data) < 32 or len(data) % 16:
        raise TemplateError("crypto/cipher: input not full blocks")
    decryptor = _aes_cbc(password, data[:16]).decryptor()
    out = decryptor.update(data[16:]) + decryptor.finalize()
    # Sprig strips as many bytes as the last one says, without checking the padding.
    pad = out[-1]
    if pad > len(out):
        raise TemplateError("slice bounds out of range")  # Go panics here
    return out[: len(out) - pad].decode("utf-8", "replace")


def _rand_chars(alphabet: str) -> Callable[[Any], str]:
    def rand(count: Any) -> str:

        n = to_int(count)
        if n < 0:
            raise TemplateError(f"Requested random string length {n} is less than 0.")
        _check_random_size(n)
        return "".join(secrets.choice(alphabet) for _ in range(n))

    return rand


def _rand_int(low: Any, high: Any) -> int:

    lo, hi = to_int(low), to_int(high)
    if hi <= lo:
        raise TemplateError("invalid argument to Intn")  # Go's rand.Intn panics on n <= 0
    return lo + secrets.randbelow(hi - lo)


def _rand_bytes(count: Any) -> str:

    n = to_int(count)
    if n < 0:
        raise TemplateError(f"Requested random bytes length {n} is less than 0.")
    _check_random_size(n)
    return base64.b64encode(secrets.token_bytes(n)).decode()


def _check_random_size(n: int) -> None:
    # Nothing bigger than the template output limit can be used, so refuse to build it.

    if n > MAX_OUTPUT:
        raise TemplateError(f"random length {n} exceeds the template output limit ({MAX_OUTPUT})")


def _shuffle(text: Any) -> str:
    chars = list(strval(text))
    random.SystemRandom().shuffle(chars)
    return "".join(chars)


CRYPTO: dict[str, Callable[..., Any]] = {
    "b64enc": lambda s: base64.b64encode(strval(s).encode()).decode(),
    "b64dec": lambda s: _b64dec(strval(s)),
    "b32enc": lambda s: base64.b32encode(strval(s).encode()).decode(),
    "b32dec": lambda s: base64.b32decode(strval(s)).decode("utf-8", "replace"),
    "sha1sum": lambda s: hashlib.sha1(strval(s).encode()).hexdigest(),
    "sha256sum": lambda s: hashlib.sha256(strval(s).encode()).hexdigest(),
    "sha512sum": lambda s: hashlib.sha512(strval(s).encode()).hexdigest(),
    "adler32sum": lambda s: str(zlib.adler32(strval(s).encode())),
    "derivePassword": _derive_password,
    "encryptAES": encrypt_aes,
    "decryptAES": decrypt_aes,
    "randAlpha": _rand_chars(string.ascii_letters),
    "randAlphaNum": _rand_chars(string.ascii_letters + string.digits),
    "randAscii": _rand_chars("".join(chr(c) for c in range(32, 127))),
    "randNumeric": _rand_chars(string.digits),
    "randInt": _rand_int,
    "randBytes": _rand_bytes,
    "shuffle": _shuffle,
    "uuidv4": lambda: str(uuid.uuid4()),
}
