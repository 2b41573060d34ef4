"""Keyed pseudonyms: stable patient/study keys, replacement UIDs and per-patient date shifts from one secret.

Everything is an HMAC-SHA256 of the original identifier under the caller's secret, so the same input always gives
the same output (files de-identified on different days still link up) while nobody without the secret can
recompute or reverse the mapping. Inputs are length-prefixed before hashing so that ("ab", "c") and ("a", "bc")
never collide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

MIN_SECRET_BYTES = 16
MAX_SHIFT_DAYS = 3650
SECRET_ENV_VAR = "BREASTGPT_DEID_SECRET"
_SECRET_HINT = (
    "generate one with `python -c \"import secrets; print(secrets.token_hex(32))\"`, keep it outside the "
    f"data folders, and pass it as bytes or through the {SECRET_ENV_VAR} environment variable"
)


class Pseudonymizer:
    """Derives every pseudonymous value used by de-identification from one secret key.

    Keys are namespaced by source (dataset name), so patient "001" of two datasets gets two different keys.
    UIDs are not namespaced: an original UID is globally unique already, and the same UID seen through two
    sources must map to the same replacement to keep references intact.
    """

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise TypeError(f"Pseudonymizer secret must be bytes, got {type(secret).__name__}; {_SECRET_HINT}")
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"Pseudonymizer secret is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are "
                             f"required — {_SECRET_HINT}")
        self._secret = bytes(secret)

    @classmethod
    def from_env(cls, variable: str = SECRET_ENV_VAR) -> Pseudonymizer:
        """Read the secret (text, used as UTF-8 bytes) from an environment variable."""
        value = os.environ.get(variable, "")
        if not value:
            raise ValueError(f"environment variable {variable} is not set or empty — {_SECRET_HINT}")
        return cls(value.encode("utf-8"))

    @classmethod
    def from_file(cls, path: str | Path) -> Pseudonymizer:
        """Read the secret from a file (surrounding whitespace stripped)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: secret file not found — {_SECRET_HINT}")
        return cls(path.read_bytes().strip())

    def __repr__(self) -> str:  # never show the secret
        return f"Pseudonymizer(fingerprint={self.fingerprint()})"

    def fingerprint(self) -> str:
        """A short, non-reversible id of the secret, for manifests (tells which key produced an output)."""
        return self._digest("fingerprint")[:6].hex()

    def patient_key(self, source: str, patient_id: str) -> str:
        """`P` + 16 base32 characters (80 bits): stable for (source, patient id) under this secret."""
        return "P" + _base32(self._digest("patient", source, _required(patient_id, "patient_id")))[:16]

    def study_key(self, source: str, study_id: str) -> str:
        """`S` + 16 base32 characters: stable for (source, study id) under this secret."""
        return "S" + _base32(self._digest("study", source, _required(study_id, "study_id")))[:16]

    def instance_key(self, original_uid: str) -> str:
        """`I` + 16 base32 characters, for output file names of single instances."""
        return "I" + _base32(self._digest("instance", _required(original_uid, "original_uid")))[:16]

    def input_key(self, source: str, reference: str) -> str:
        """`Q` + 16 base32 characters naming one input of a source (a relative path or a table row) without
        revealing it: quarantine lists carry it, and the data holder recomputes it for their own files."""
        return "Q" + _base32(self._digest("input", source, _required(reference, "reference")))[:16]

    def uid(self, original_uid: str) -> str:
        """A replacement UID `2.25.<decimal of 128 bits>` (PS3.5 B.2 UUID-derived form), stable per original UID."""
        digest = self._digest("uid", _required(original_uid.strip().rstrip("\x00"), "original_uid"))
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def date_shift_days(self, source: str, patient_id: str) -> int:
        """One shift per patient, in −MAX_SHIFT_DAYS..−1 days; applied to every date of that patient."""
        digest = self._digest("date-shift", source, _required(patient_id, "patient_id"))
        return -(1 + int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS)

    def _digest(self, kind: str, *parts: str) -> bytes:
        message = bytearray()
        for part in (kind, *parts):
            encoded = part.encode("utf-8")
            message += len(encoded).to_bytes(4, "big") + encoded
        return hmac.new(self._secret, bytes(message), hashlib.sha256).digest()


def _required(value: str, name: str) -> str:
    value = str(value).strip()
    if not value:
        raise ValueError(f"{name} is empty; a pseudonym needs a non-empty original identifier")
    return value


def _base32(digest: bytes) -> str:
    return base64.b32encode(digest).decode("ascii").rstrip("=")
