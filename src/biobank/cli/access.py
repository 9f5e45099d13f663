"""Access commands: ``user …``, ``token …`` and ``audit …``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from biobank.access import AccessService, Role, UserRecord
from biobank.cli.common import HomeOption, JsonOption, console, fail, load_node, out, print_table
from biobank.errors import BiobankError

T = TypeVar("T")

user_app = typer.Typer(help="Manage the users of the node's services.", no_args_is_help=True)
token_app = typer.Typer(
    help="Create, list and revoke API tokens (the secret is shown once).", no_args_is_help=True
)
audit_app = typer.Typer(help="Read and verify the append-only access log.", no_args_is_help=True)

UsernameArgument = Annotated[str, typer.Argument(help="The user's name.", show_default=False)]
RoleOption = Annotated[
    Role,
    typer.Option(
        "--role",
        help="admin, curator (read all), uploader (store, read own) or researcher.",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``user``, ``token`` and ``audit`` commands to ``app``."""
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
    app.add_typer(audit_app, name="audit")


@contextmanager
def _service(home: Path | None) -> Iterator[AccessService]:
    node = load_node(home)
    try:
        with node.open_catalog() as catalog:
            yield AccessService(catalog, cache_ttl=0)
    except BiobankError as exc:
        raise fail(str(exc)) from None


def _run(home: Path | None, call: Callable[[AccessService], T]) -> T:
    with _service(home) as service:
        return call(service)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, ensure_ascii=False))


# -- users -----------------------------------------------------------------------------------


def _show_user(user: UserRecord, verb: str, as_json: bool) -> None:
    if as_json:
        _print_json(user.to_json())
        return
    state = "active" if user.active else "disabled"
    out.print(f"{verb} user {user.username} (role {user.role}, {state})", highlight=False)


@user_app.command("add")
def user_add(
    username: UsernameArgument,
    role: RoleOption,
    oidc_subject: Annotated[
        str | None,
        typer.Option(
            help="Link an OIDC identity ('<issuer>|<sub>') instead of waiting for its first "
            "sign-in.",
        ),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a user with a role."""
    user = _run(home, lambda s: s.create_user(username, role, oidc_subject=oidc_subject))
    _show_user(user, "added", as_json)
    if not as_json:
        out.print(f"give it an API token: biobank token create {user.username}", highlight=False)


@user_app.command("list")
def user_list(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """List the users, their roles and states."""
    users = _run(home, lambda s: s.list_users())
    if as_json:
        _print_json([user.to_json() for user in users])
        return
    if not users:
        out.print("no users yet: biobank user add NAME --role admin")
        return
    table = Table(title=f"{len(users)} users")
    table.add_column("user", no_wrap=True)
    for column in ("role", "state", "created", "oidc subject"):
        table.add_column(column, overflow="fold")
    for user in users:
        table.add_row(
            user.username,
            user.role,
            "active" if user.active else "disabled",
            _when(user.created_at),
            user.oidc_subject or "",
        )
    print_table(table)


@user_app.command("disable")
def user_disable(
    username: UsernameArgument, home: HomeOption = None, as_json: JsonOption = False
) -> None:
    """Disable a user: its tokens and sign-ins are refused (running servers: within seconds)."""
    _show_user(_run(home, lambda s: s.set_active(username, False)), "disabled", as_json)


@user_app.command("enable")
def user_enable(
    username: UsernameArgument, home: HomeOption = None, as_json: JsonOption = False
) -> None:
    """Enable a disabled user again."""
    _show_user(_run(home, lambda s: s.set_active(username, True)), "enabled", as_json)


@user_app.command("set-role")
def user_set_role(
    username: UsernameArgument,
    role: RoleOption,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give a user another role (an OIDC user's role follows its tokens instead)."""
    _show_user(_run(home, lambda s: s.set_role(username, role)), "updated", as_json)


# -- tokens ----------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    username: UsernameArgument,
    name: Annotated[
        str, typer.Option(help="What the token is for (e.g. 'scanner 3 upload').")
    ] = "",
    expires_days: Annotated[
        float | None,
        typer.Option(min=0.0, help="Expire after this many days (default: never)."),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API token; it is printed once and cannot be shown again."""

    def create(service: AccessService) -> tuple[str, str, dt.datetime | None]:
        token_id, token = service.create_token(username, name, expires_days)
        record = service.records.token_by_id(token_id)
        return token_id, token, record.expires_at if record else None

    token_id, token, expires_at = _run(home, create)
    if as_json:
        _print_json(
            {
                "token_id": token_id,
                "token": token,
                "username": username,
                "name": name,
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
        )
    else:
        expiry = f"expires {_when(expires_at)}" if expires_at else "does not expire"
        console.print(
            f"token {token_id} for {username} ({expiry}). [bold yellow]Copy it now:[/] it is "
            "not stored and cannot be shown again. Send it as 'Authorization: Bearer <token>'.",
            highlight=False,
        )
        out.print(token, highlight=False, soft_wrap=True)


@token_app.command("list")
def token_list(
    username: Annotated[
        str | None, typer.Argument(help="Only this user's tokens.", show_default=False)
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tokens: ids, names, dates and states (never their secrets)."""
    tokens = _run(home, lambda s: s.list_tokens(username))
    if as_json:
        _print_json([token.to_json() for token in tokens])
        return
    if not tokens:
        out.print("no tokens" + (f" for {username}" if username else ""), highlight=False)
        return
    table = Table(title=f"{len(tokens)} tokens")
    table.add_column("token id", no_wrap=True, min_width=16)
    for column in ("user", "name", "state", "created", "expires", "last used"):
        table.add_column(column, overflow="fold")
    for token in tokens:
        table.add_row(
            token.token_id,
            token.username,
            token.name,
            token.state(),
            _when(token.created_at),
            _when(token.expires_at) or "never",
            _when(token.last_used_at),
        )
    print_table(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[
        str, typer.Argument(help="The token id (biobank token list).", show_default=False)
    ],
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a token (running servers refuse it within seconds)."""
    token = _run(home, lambda s: s.revoke_token(token_id))
    if as_json:
        _print_json(token.to_json())
        return
    out.print(
        f"revoked token {token.token_id} of {token.username} ({_when(token.revoked_at)})",
        highlight=False,
    )


# -- the access log --------------------------------------------------------------------------


def _parse_time(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            f"{option} {value[:40]!r} is not an ISO 8601 date or time (e.g. 2026-01-31 or "
            "2026-01-31T14:00)"
        ) from None
    return parsed.astimezone() if parsed.tzinfo is None else parsed


_ENTRY_COLUMNS = (
    "at",
    "user",
    "role",
    "action",
    "resource",
    "status",
    "client",
    "detail",
)


@audit_app.command("list")
def audit_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's entries.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="From this time on (ISO 8601; without a zone: local time)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Before this time (ISO 8601; without a zone: local).")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action (e.g. wado.retrieve).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 100,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the newest access log entries, newest first."""
    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    entries = _run(
        home,
        lambda s: s.access_entries(
            username=user, since=start, until=end, action=action, limit=limit
        ),
    )
    if as_json:
        _print_json([entry.to_json() for entry in entries])
        return
    if not entries:
        out.print("no access log entries")
        return
    table = Table(title=f"{len(entries)} access log entries (newest first)")
    table.add_column("id", no_wrap=True, justify="right")
    for column in _ENTRY_COLUMNS:
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(
            str(entry.id),
            _when(entry.at),
            entry.username or "",
            entry.role or "",
            entry.action,
            entry.resource,
            str(entry.status),
            entry.client or "",
            entry.detail,
        )
    print_table(table)


@audit_app.command("verify")
def audit_verify(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Check the access log's hash chain; exit 1 naming the first broken entry."""
    report = _run(home, lambda s: s.check_access_log())
    if as_json:
        _print_json(report.to_json())
    elif report.intact:
        out.print(f"access log intact: {report.entries} entries verified")
    if not report.intact:
        raise fail(
            f"access log entry {report.first_broken} does not verify: {report.reason}; "
            f"{report.entries - 1} entries before it are intact. Keep the database as it is "
            "and investigate (who had write access to it?)",
            code=1,
        )


__all__ = ["audit_app", "register", "token_app", "user_app"]
