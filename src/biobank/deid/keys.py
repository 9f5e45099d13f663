"""Keyed, deterministic transforms derived from a site's secret key.

Every identifier the engine replaces goes through HMAC-SHA256 under a sub-key derived from the
site secret, so that:

- the same patient gets the same pseudonym on every upload and in clinical data;
- the same source UID always maps to the same ``2.25.<int>`` UID, so references between
  instances (SEG, RTSTRUCT, presentation states, source images) stay consistent across files
  and runs;
- without the key nobody can recompute the mapping from the original identifiers (an unkeyed
  hash of an MRN or of a UID is re-identifiable by brute force or by anyone holding the
  originals, see ``research/deid.md`` §0.4).

This module is pure: parsing a key's text and computing HMACs. Reading and writing key files
is done by :mod:`biobank.store.keyring`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from biobank.errors import InvalidKey

KEY_HEADER = "biobank-site-key v1"
KEY_BYTES = 32
#: UIDs are 2.25.<integer of 128 bits> (PS3.5 B.2): at most 44 characters.
UID_BITS = 128


@dataclass(frozen=True)
class SiteKey:
    """A site's secret (32 random bytes). Its :attr:`key_id` is public and names it."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < KEY_BYTES:
            raise InvalidKey(f"a site key must hold at least {KEY_BYTES} bytes of secret")

    @classmethod
    def generate(cls) -> SiteKey:
        """Return a new random key."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str, source: str = "key file") -> SiteKey:
        """Parse the text of a key file (header line, then base64 secret)."""
        lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
        if len(lines) != 2 or lines[0] != KEY_HEADER:
            raise InvalidKey(
                f"{source}: not a biobank site key (expected '{KEY_HEADER}' and one base64 line);"
                " create one with 'biobank keygen FILE'"
            )
        try:
            secret = base64.b64decode(lines[1], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidKey(f"{source}: the secret line is not valid base64") from None
        return cls(secret)

    def to_text(self) -> str:
        """Return the key file text."""
        return (
            f"{KEY_HEADER}\n"
            "# Site secret for pseudonyms, UIDs and date offsets. Keep it private (mode 0600);\n"
            "# whoever holds it can link pseudonyms to source identifiers.\n"
            f"{base64.b64encode(self.secret).decode('ascii')}\n"
        )

    @property
    def key_id(self) -> str:
        """Public fingerprint of the key (first 16 hex digits of an HMAC of a constant)."""
        return self.derive("key-id").hex()[:16]

    def derive(self, purpose: str) -> bytes:
        """Return the 32-byte sub-key for ``purpose`` (HMAC-SHA256 of the purpose label)."""
        return hmac.new(self.secret, b"biobank/" + purpose.encode("ascii"), hashlib.sha256).digest()


_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def _crockford(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(length):
        number, rem = divmod(number, 32)
        chars.append(_B32[rem])
    return "".join(reversed(chars))


class Pseudonymizer:
    """Keyed transforms of one site key: patient pseudonyms, UIDs and date offsets.

    Instances are cheap to share; UID results are memoised (a series repeats the same study,
    series and frame-of-reference UIDs in every file).
    """

    def __init__(self, key: SiteKey, *, pseudonym_prefix: str = "P") -> None:
        self._patient_key = key.derive("patient-pseudonym")
        self._uid_key = key.derive("uid")
        self._date_key = key.derive("date-offset")
        self._text_key = key.derive("dummy-text")
        self._prefix = pseudonym_prefix
        self._uid_cache: dict[str, str] = {}
        self.key_id = key.key_id

    @staticmethod
    def _identity(issuer: str, patient_id: str) -> bytes:
        return f"{issuer.strip()}\x1f{patient_id.strip()}".encode()

    def patient_pseudonym(self, issuer: str, patient_id: str) -> str:
        """Return the pseudonym of (issuer, patient ID): ``P`` + 16 Crockford base32 digits."""
        mac = hmac.new(self._patient_key, self._identity(issuer, patient_id), hashlib.sha256)
        return self._prefix + _crockford(mac.digest()[:10], 16)

    def date_offset_days(self, issuer: str, patient_id: str, max_days: int) -> int:
        """Return the patient's date shift: a negative whole number of days in [-max_days, -1]."""
        mac = hmac.new(self._date_key, self._identity(issuer, patient_id), hashlib.sha256)
        return -(int.from_bytes(mac.digest()[:8], "big") % max_days + 1)

    def uid(self, original: str) -> str:
        """Return the keyed replacement of an instance UID: ``2.25.<int>`` (at most 44 chars)."""
        original = original.strip().rstrip("\x00")
        cached = self._uid_cache.get(original)
        if cached is not None:
            return cached
        digest = hmac.new(self._uid_key, original.encode("ascii", "replace"), hashlib.sha256)
        value = int.from_bytes(digest.digest()[: UID_BITS // 8], "big")
        new = f"2.25.{value}"
        if len(self._uid_cache) > 200_000:
            self._uid_cache.clear()
        self._uid_cache[original] = new
        return new

    def dummy_token(self, value: str, length: int = 8) -> str:
        """Return a keyed, consistent token standing for ``value`` (e.g. a StudyID)."""
        mac = hmac.new(self._text_key, value.strip().encode("utf-8", "replace"), hashlib.sha256)
        return _crockford(mac.digest()[:10], length)


__all__ = ["KEY_HEADER", "Pseudonymizer", "SiteKey"]
