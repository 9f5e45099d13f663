"""The node home: where a node keeps its catalogue, blobs, keys, logs and configuration.

``biobank init`` creates it; every other node command opens it. Layout::

    <home>/
      node.yaml                      node id, site name, role, profile, database URL (optional)
      catalog.sqlite                 the catalogue (SQLite, WAL) unless a database URL is set
      blobs/sha256/ab/cd/<digest>    stored instances, content-addressed (see biobank.store)
      keys/site.key                  the site secret, mode 0600 (site nodes only)
      keys/site.key.pseudonyms.sqlite  the encrypted pseudonym map (site nodes only)
      logs/node.log                  the node's log (no PHI)

A **site** node de-identifies everything it ingests and keeps the pseudonym map; only it can
map a pseudonym back to a patient. A **central** node holds no key: it accepts only data that
arrive de-identified and rejects the rest with the reason.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from biobank.catalog import Catalog
from biobank.catalog.database import sqlite_url
from biobank.deid import DEFAULT_PROFILE, Profile, builtin_profile, builtin_profile_names
from biobank.deid.keys import SiteKey
from biobank.deid.profiles import parse_profile
from biobank.errors import Conflict, InvalidInput, InvalidKey, InvalidProfile, NotFound
from biobank.store.blobs import FileBlobStore
from biobank.store.keyring import (
    PseudonymMap,
    create_key_file,
    pseudonym_map_path,
    read_key_file,
)

CONFIG_NAME = "node.yaml"
CONFIG_VERSION = 1
_KNOWN_KEYS = frozenset(
    {"version", "node_id", "site", "role", "created", "profile", "database_url"}
)


class NodeRole(enum.StrEnum):
    """What a node does with the data it ingests."""

    SITE = "site"
    CENTRAL = "central"


@dataclass(frozen=True)
class NodeConfig:
    """The content of ``node.yaml``."""

    node_id: str
    site: str
    role: NodeRole
    created: str
    profile: str = DEFAULT_PROFILE
    database_url: str | None = None
    sections: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Service settings kept as written (``http:``, ``dimse:``, ``oidc:``, ...)."""

    def to_yaml(self) -> str:
        """The file's text."""
        data: dict[str, Any] = {
            "version": CONFIG_VERSION,
            "node_id": self.node_id,
            "site": self.site,
            "role": self.role.value,
            "created": self.created,
            "profile": self.profile,
        }
        if self.database_url:
            data["database_url"] = self.database_url
        data.update(self.sections)
        return "# Imaging Biobank node (biobank init)\n" + yaml.safe_dump(data, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str) -> NodeConfig:
        """Parse ``node.yaml``; errors name the file and the field."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{source}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{source}: expected a mapping of settings")
        missing = [k for k in ("node_id", "site", "role") if not data.get(k)]
        if missing:
            raise InvalidInput(f"{source}: missing {', '.join(missing)}; re-run biobank init")
        try:
            role = NodeRole(str(data["role"]))
        except ValueError:
            raise InvalidInput(
                f"{source}: role must be 'site' or 'central', not {str(data['role'])[:20]!r}"
            ) from None
        url = data.get("database_url")
        return cls(
            node_id=str(data["node_id"]),
            site=str(data["site"]),
            role=role,
            created=str(data.get("created", "")),
            profile=str(data.get("profile") or DEFAULT_PROFILE),
            database_url=str(url) if url else None,
            sections={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        )


@dataclass(frozen=True)
class Node:
    """An opened node home. ``database_url`` overrides the configured catalogue."""

    home: Path
    config: NodeConfig
    database_url: str | None = None

    @property
    def config_path(self) -> Path:
        """``<home>/node.yaml``."""
        return self.home / CONFIG_NAME

    @property
    def catalog_url(self) -> str:
        """The environment's URL, else node.yaml's, else the home's SQLite file."""
        return (
            self.database_url
            or self.config.database_url
            or sqlite_url(self.home / "catalog.sqlite")
        )

    @property
    def blob_root(self) -> Path:
        """Where the blob store lives."""
        return self.home / "blobs"

    @property
    def key_path(self) -> Path:
        """The site key (site nodes)."""
        return self.home / "keys" / "site.key"

    @property
    def map_path(self) -> Path:
        """The pseudonym map next to the key."""
        return pseudonym_map_path(self.key_path)

    @property
    def log_path(self) -> Path:
        """The node's log file."""
        return self.home / "logs" / "node.log"

    @property
    def role(self) -> NodeRole:
        """Site or central."""
        return self.config.role

    def open_catalog(self) -> Catalog:
        """Open the catalogue, bringing its schema up to date."""
        return Catalog.open(self.catalog_url)

    def open_store(self, *, fsync: bool = True) -> FileBlobStore:
        """Open the blob store."""
        return FileBlobStore(self.blob_root, fsync=fsync)

    def site_key(self) -> SiteKey:
        """The site key; a central node has none."""
        if self.role is not NodeRole.SITE:
            raise InvalidKey("a central node holds no site key: it never de-identifies")
        return read_key_file(self.key_path)

    def section(self, name: str) -> dict[str, Any]:
        """The settings under ``name:`` in ``node.yaml`` (empty when absent).

        Raises
        ------
        InvalidInput
            If ``name`` is present but not a mapping.
        """
        value = self.config.sections.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InvalidInput(
                f"{self.config_path}: '{name}' must be a mapping of settings, not "
                f"{type(value).__name__}; see docs/service.md"
            )
        return dict(value)

    def profile(self) -> Profile:
        """The de-identification profile of a site node (a packaged name or a YAML file)."""
        spec = self.config.profile
        if spec in builtin_profile_names():
            return builtin_profile(spec)
        path = Path(spec) if Path(spec).is_absolute() else self.home / spec
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise InvalidProfile(
                f"{self.config_path}: profile file {path} cannot be read ({exc.strerror}); "
                "fix 'profile' in node.yaml"
            ) from None
        return parse_profile(text, source=str(path))


def init_node(
    home: Path,
    *,
    site: str,
    role: NodeRole,
    profile: str = DEFAULT_PROFILE,
    key_file: Path | None = None,
    database_url: str | None = None,
) -> Node:
    """Create a node home (see the module docstring) and return it opened.

    ``key_file`` imports an existing site key (a project's shared secret, so that pseudonyms
    match across the project's nodes) instead of generating one. ``database_url`` is written
    into node.yaml. A home that already holds a node is refused; a half-created one (no
    node.yaml yet) is completed.
    """
    home = home.resolve()
    config_path = home / CONFIG_NAME
    if config_path.exists():
        raise Conflict(f"{home} is already a node home; use it, or choose another --home")
    if not site.strip():
        raise InvalidInput("--site must not be empty: name the site (e.g. the hospital)")
    if role is NodeRole.CENTRAL and key_file is not None:
        raise InvalidInput("a central node holds no site key: drop --key-file")
    if profile not in builtin_profile_names() and not Path(profile).is_file():
        raise InvalidProfile(
            f"unknown profile {profile[:64]!r}: use one of {', '.join(builtin_profile_names())} "
            "or the path of a YAML profile"
        )
    for folder in (home, home / "blobs", home / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)  # the catalogue and logs are the hospital's business
    config = NodeConfig(
        node_id=uuid.uuid4().hex,
        site=site.strip(),
        role=role,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        profile=str(Path(profile).resolve()) if Path(profile).is_file() else profile,
        database_url=database_url,
    )
    node = Node(home, config, database_url=None)
    if role is NodeRole.SITE:
        node.key_path.parent.mkdir(mode=0o700, exist_ok=True)
        key = _install_key(node.key_path, key_file)
        PseudonymMap(node.map_path, key).close()
    node.open_store()
    node.open_catalog().close()
    tmp = config_path.with_name(CONFIG_NAME + ".tmp")
    tmp.write_text(config.to_yaml(), "utf-8")
    os.replace(tmp, config_path)  # last: a home without node.yaml is not a node yet
    return node


def _install_key(target: Path, source: Path | None) -> SiteKey:
    if source is None:
        if target.exists():  # a half-created home: keep the key it already has
            return read_key_file(target)
        return create_key_file(target)
    key = read_key_file(source)
    if target.exists():
        if read_key_file(target).key_id != key.key_id:
            raise InvalidKey(f"{target} holds another key; remove the half-created home first")
        return key
    shutil.copyfile(source, target)
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    return key


def open_node(home: Path, *, database_url: str | None = None) -> Node:
    """Open the node home at ``home``; ``database_url`` overrides the configured catalogue."""
    home = home.resolve()
    config_path = home / CONFIG_NAME
    try:
        text = config_path.read_text("utf-8")
    except FileNotFoundError:
        raise NotFound(
            f"{home} is not a node home (no {CONFIG_NAME}); create one with "
            f"'biobank init --home {home}' or set BIOBANK_HOME"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"{config_path}: cannot be read ({exc.strerror})") from None
    return Node(home, NodeConfig.from_yaml(text, str(config_path)), database_url=database_url)


__all__ = ["CONFIG_NAME", "Node", "NodeConfig", "NodeRole", "init_node", "open_node"]
