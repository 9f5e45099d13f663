"""The node home: init, roles, keys, node.yaml, and clear errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from biobank.errors import Conflict, InvalidInput, InvalidKey, InvalidProfile, NotFound
from biobank.ingest.node import CONFIG_NAME, NodeRole, init_node, open_node
from biobank.store.keyring import create_key_file


def test_site_home_layout(tmp_path: Path) -> None:
    node = init_node(tmp_path / "n", site="Hospital A", role=NodeRole.SITE)
    assert stat.S_IMODE(node.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(node.key_path.stat().st_mode) == 0o600
    assert node.map_path.exists() and node.blob_root.is_dir()
    assert node.catalog_url.endswith("/n/catalog.sqlite")
    opened = open_node(tmp_path / "n")
    assert opened.config == node.config
    assert opened.profile().name == "research"
    with pytest.raises(Conflict, match="already a node home"):
        init_node(tmp_path / "n", site="again", role=NodeRole.SITE)


def test_central_home_has_no_key(tmp_path: Path) -> None:
    node = init_node(tmp_path / "c", site="Central", role=NodeRole.CENTRAL)
    assert not node.key_path.exists()
    with pytest.raises(InvalidKey, match="central node"):
        node.site_key()
    with pytest.raises(InvalidInput, match="--key-file"):
        init_node(tmp_path / "c2", site="C", role=NodeRole.CENTRAL, key_file=node.key_path)


def test_imported_key_and_half_created_home(tmp_path: Path) -> None:
    shared = tmp_path / "project.key"
    key = create_key_file(shared)
    home = tmp_path / "n"
    node = init_node(home, site="B", role=NodeRole.SITE, key_file=shared)
    assert node.site_key().key_id == key.key_id
    # A home whose init was interrupted before node.yaml was written is completed, not refused.
    (home / CONFIG_NAME).unlink()
    again = init_node(home, site="B", role=NodeRole.SITE, key_file=shared)
    assert again.site_key().key_id == key.key_id
    other = tmp_path / "other.key"
    create_key_file(other)
    (home / CONFIG_NAME).unlink()
    with pytest.raises(InvalidKey, match="another key"):
        init_node(home, site="B", role=NodeRole.SITE, key_file=other)


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="biobank init"):
        open_node(tmp_path / "nowhere")
    with pytest.raises(InvalidProfile, match="unknown profile"):
        init_node(tmp_path / "p", site="A", role=NodeRole.SITE, profile="strictest")
    with pytest.raises(InvalidInput, match="--site"):
        init_node(tmp_path / "s", site="  ", role=NodeRole.SITE)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CONFIG_NAME).write_text("node_id: x\nsite: A\nrole: hub\n")
    with pytest.raises(InvalidInput, match="role must be"):
        open_node(broken)
    (broken / CONFIG_NAME).write_text("site: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        open_node(broken)


def test_environment_database_url_wins(tmp_path: Path) -> None:
    configured = f"sqlite:///{tmp_path / 'x.sqlite'}"
    init_node(tmp_path / "n", site="A", role=NodeRole.SITE, database_url=configured)
    assert (tmp_path / "x.sqlite").exists()  # init created the catalogue there
    assert open_node(tmp_path / "n").catalog_url == configured
    override = f"sqlite:///{tmp_path / 'y.sqlite'}"
    assert open_node(tmp_path / "n", database_url=override).catalog_url == override
