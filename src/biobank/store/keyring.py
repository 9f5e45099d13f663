"""Site key files and the site-local pseudonym map.

The key file holds the site secret (:class:`biobank.deid.keys.SiteKey`); it is created with
mode 0600 and refused when group or others can read it. The pseudonym map lives next to it
(``<key file>.pseudonyms.sqlite``) and lets the data provider — and only the holder of the
key — go back from a pseudonym to the source (issuer, Patient ID). Source identifiers are
stored encrypted (AES-256-GCM under a sub-key of the site secret), so the map file alone
reveals nothing; it is never written to an output folder.

The map is a small SQLite file written with the standard library's ``sqlite3`` (WAL, one
short transaction per batch): it belongs to the key, not to the node's catalogue.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from biobank.deid.keys import SiteKey
from biobank.deid.models import PatientIdentity
from biobank.errors import Conflict, InvalidKey, NotFound, StorageError


def create_key_file(path: Path, *, overwrite: bool = False) -> SiteKey:
    """Create a new site key at ``path`` with mode 0600 and return it."""
    if path.exists() and not overwrite:
        raise InvalidKey(
            f"{path}: a key file already exists; replacing it would orphan every pseudonym "
            "made with it (pass --force only if you mean that)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SiteKey.generate()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.to_text().encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


def read_key_file(path: Path) -> SiteKey:
    """Read a site key, refusing files that others can read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidKey(
            f"{path}: no such key file; create one with 'biobank keygen {path}'"
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidKey(
            f"{path}: the key file is readable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run 'chmod 600 {path}'"
        )
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidKey(f"{path}: cannot read the key file ({exc.__class__.__name__})") from None
    return SiteKey.from_text(text, source=str(path))


def pseudonym_map_path(key_path: Path) -> Path:
    """The pseudonym map that belongs to the key at ``key_path``."""
    return key_path.with_name(key_path.name + ".pseudonyms.sqlite")


@dataclass(frozen=True)
class MapEntry:
    """A decrypted row of the map: PHI, for the provider's eyes only."""

    pseudonym: str
    issuer: str
    patient_id: str
    first_seen: float


class PseudonymMap:
    """The encrypted pseudonym → source identity map of one site key."""

    def __init__(self, path: Path, key: SiteKey) -> None:
        self.path = path
        self._aead = AESGCM(key.derive("pseudonym-map"))
        self._key_id = key.key_id
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        if new:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._db = sqlite3.connect(path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS pseudonym ("
                " pseudonym TEXT PRIMARY KEY, identity BLOB NOT NULL, first_seen REAL NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('key_id', ?)", (self._key_id,))
            self._db.commit()
            row = self._db.execute("SELECT v FROM meta WHERE k='key_id'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"{path}: the pseudonym map cannot be opened ({exc.__class__.__name__})"
            ) from None
        if row and row[0] != self._key_id:
            raise InvalidKey(
                f"{path}: this pseudonym map belongs to another key (key id {row[0]}, "
                f"given {self._key_id})"
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> PseudonymMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _seal(self, pseudonym: str, identity: PatientIdentity) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps({"issuer": identity.issuer, "patient_id": identity.patient_id})
        return nonce + self._aead.encrypt(nonce, plain.encode("utf-8"), pseudonym.encode())

    def _open(self, pseudonym: str, blob: bytes) -> dict[str, str]:
        plain = self._aead.decrypt(blob[:12], blob[12:], pseudonym.encode())
        data: dict[str, str] = json.loads(plain)
        return data

    def record(self, identities: Iterable[PatientIdentity]) -> int:
        """Store identities not yet in the map (one transaction); return how many were new.

        A pseudonym already mapped to a *different* identity raises
        :class:`~biobank.errors.Conflict` (an HMAC collision: never expected, always checked).
        """
        unique = {i.pseudonym: i for i in identities}
        if not unique:
            return 0
        added = 0
        with self._db:
            for pseudonym, identity in unique.items():
                row = self._db.execute(
                    "SELECT identity FROM pseudonym WHERE pseudonym=?", (pseudonym,)
                ).fetchone()
                if row is not None:
                    known = self._open(pseudonym, row[0])
                    if (known["issuer"], known["patient_id"]) != (
                        identity.issuer.strip(),
                        identity.patient_id.strip(),
                    ) and (known["issuer"], known["patient_id"]) != (
                        identity.issuer,
                        identity.patient_id,
                    ):
                        raise Conflict(
                            f"pseudonym {pseudonym} already stands for another patient; "
                            "stop and contact the biobank team"
                        )
                    continue
                self._db.execute(
                    "INSERT INTO pseudonym VALUES (?, ?, ?)",
                    (pseudonym, self._seal(pseudonym, identity), time.time()),
                )
                added += 1
        return added

    def lookup(self, pseudonym: str) -> MapEntry:
        """Return the source identity behind ``pseudonym`` (re-identification)."""
        row = self._db.execute(
            "SELECT identity, first_seen FROM pseudonym WHERE pseudonym=?", (pseudonym.strip(),)
        ).fetchone()
        if row is None:
            raise NotFound(f"pseudonym {pseudonym.strip()} is not in the map {self.path}")
        data = self._open(pseudonym.strip(), row[0])
        return MapEntry(pseudonym.strip(), data["issuer"], data["patient_id"], float(row[1]))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pseudonym").fetchone()[0])


__all__ = ["MapEntry", "PseudonymMap", "create_key_file", "pseudonym_map_path", "read_key_file"]
