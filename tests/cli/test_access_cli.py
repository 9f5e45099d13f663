"""The access commands as an operator uses them: user, token and audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from biobank.access import AccessService, Role
from biobank.catalog import Catalog, sqlite_url
from biobank.catalog.access import AccessEvent, AccessRecords
from biobank.cli.main import app
from biobank.errors import AuthenticationFailed
from tests.access.test_records import drop_triggers, event
from tests.catalog.factories import execute

runner = CliRunner()


def said(result: Any) -> str:
    """The command's output (stdout and stderr) with rich's line wrapping undone."""
    return " ".join(result.output.split())


def ok(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.stdout


@pytest.fixture
def home(tmp_path: Path) -> Path:
    node = tmp_path / "node"
    ok(["init", "--home", str(node), "--site", "Hospital A", "--json"])
    return node


def open_catalog(home: Path) -> Catalog:
    return Catalog.open(sqlite_url(home / "catalog.sqlite"))


def test_users(home: Path) -> None:
    h = ["--home", str(home)]
    added = ok(["user", "add", "alice", "--role", "uploader", *h, "--json"])
    assert (added["username"], added["role"], added["active"]) == ("alice", "uploader", True)
    assert "added user bob" in ok(["user", "add", "bob", "--role", "admin", *h])
    again = runner.invoke(app, ["user", "add", "alice", "--role", "admin", *h])
    assert again.exit_code == 2 and "already exists" in said(again)
    bad = runner.invoke(app, ["user", "add", "carol", "--role", "root", *h])
    assert bad.exit_code == 2
    invalid = runner.invoke(app, ["user", "add", "no good", "--role", "admin", *h])
    assert invalid.exit_code == 2 and "not a valid username" in said(invalid)

    assert [u["username"] for u in ok(["user", "list", *h, "--json"])] == ["alice", "bob"]
    assert "alice" in ok(["user", "list", *h])
    assert ok(["user", "disable", "alice", *h, "--json"])["active"] is False
    assert "disabled" in ok(["user", "list", *h])
    assert ok(["user", "enable", "alice", *h, "--json"])["active"] is True
    assert ok(["user", "set-role", "alice", "--role", "curator", *h, "--json"])["role"] == (
        "curator"
    )
    missing = runner.invoke(app, ["user", "disable", "nobody", *h])
    assert missing.exit_code == 2 and "no user 'nobody'" in said(missing)


def test_tokens(home: Path) -> None:
    h = ["--home", str(home)]
    ok(["user", "add", "alice", "--role", "uploader", *h])
    created = runner.invoke(app, ["token", "create", "alice", "--name", "scanner 3", *h])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("bb_") and len(token) == 84
    assert "not stored" in said(created)
    token_id = token.split("_")[1]

    with open_catalog(home) as catalog:
        principal = AccessService(catalog).authenticate(f"Bearer {token}")
    assert (principal.username, principal.role) == ("alice", Role.UPLOADER)

    second = ok(["token", "create", "alice", "--expires-days", "7", *h, "--json"])
    assert second["token"].startswith(f"bb_{second['token_id']}_") and second["expires_at"]

    secret = token.split("_")[2]
    for args in (["token", "list", *h], ["token", "list", "alice", *h]):
        listing = ok(args)
        assert token_id in listing and "scanner 3" in listing and secret not in listing
    listed = ok(["token", "list", "alice", *h, "--json"])
    assert [t["token_id"] for t in listed] == [token_id, second["token_id"]]
    assert all("secret" not in json.dumps(t) and "token" not in t for t in listed)
    assert secret not in json.dumps(listed)

    revoked = ok(["token", "revoke", token_id, *h, "--json"])
    assert revoked["state"] == "revoked"
    assert "revoked token" in ok(["token", "revoke", token_id, *h])
    assert [t["state"] for t in ok(["token", "list", *h, "--json"])] == ["revoked", "active"]
    with open_catalog(home) as catalog, pytest.raises(AuthenticationFailed, match="revoked"):
        AccessService(catalog).authenticate(f"Bearer {token}")

    unknown = runner.invoke(app, ["token", "create", "nobody", *h])
    assert unknown.exit_code == 2 and "no user 'nobody'" in said(unknown)
    never = runner.invoke(app, ["token", "revoke", "0" * 16, *h])
    assert never.exit_code == 2 and "no token" in said(never)
    zero = runner.invoke(app, ["token", "create", "alice", "--expires-days", "0", *h])
    assert zero.exit_code == 2 and "expires_in_days" in said(zero)
    ok(["user", "add", "carol", "--role", "researcher", *h])
    assert "no tokens for carol" in ok(["token", "list", "carol", *h])


def test_audit_list_and_verify(home: Path) -> None:
    h = ["--home", str(home)]
    assert "intact: 0 entries" in ok(["audit", "verify", *h])
    with open_catalog(home) as catalog:
        records = AccessRecords(catalog)
        entries = records.append_access_entries(
            [event(0), event(1, username="bob", action="stow.store"), event(2)]
        )
        records.append_access_entries(
            [
                AccessEvent(
                    at=entries[-1].at,
                    username=None,
                    role=None,
                    action="qido.search",
                    resource="/studies",
                    status=401,
                )
            ]
        )
    listed = ok(["audit", "list", *h, "--json"])
    assert [e["id"] for e in listed] == [4, 3, 2, 1]
    assert [e["resource"] for e in ok(["audit", "list", "--user", "bob", *h, "--json"])] == [
        entries[1].resource
    ]
    since = entries[1].at.isoformat()
    assert len(ok(["audit", "list", "--since", since, *h, "--json"])) == 3
    assert len(ok(["audit", "list", "--since", "2026-03-01T12:01:00+00:00", *h, "--json"])) == 3
    assert len(ok(["audit", "list", "--limit", "1", *h, "--json"])) == 1
    assert ok(["audit", "list", "--action", "stow.store", *h, "--json"])[0]["username"] == "bob"
    table = ok(["audit", "list", *h])
    assert "stow.store" in table and "qido.search" in table
    bad = runner.invoke(app, ["audit", "list", "--since", "last week", *h])
    assert bad.exit_code == 2 and "ISO 8601" in said(bad)

    report = ok(["audit", "verify", *h, "--json"])
    assert report == {"intact": True, "entries": 4, "first_broken": None, "reason": ""}

    with open_catalog(home) as catalog:
        drop_triggers(catalog)
        execute(catalog, "UPDATE access_log SET resource = 'x' WHERE id = 2")
    broken = runner.invoke(app, ["audit", "verify", *h])
    assert broken.exit_code == 1
    assert "access log entry 2 does not verify" in said(broken)
    as_json = runner.invoke(app, ["audit", "verify", *h, "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["first_broken"] == 2


def test_commands_need_a_node_home(tmp_path: Path) -> None:
    result = runner.invoke(app, ["user", "list", "--home", str(tmp_path / "none")])
    assert result.exit_code == 2 and "not a node home" in said(result)
