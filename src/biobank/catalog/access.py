"""The access tables: users, API tokens, the append-only access log and study owners.

:class:`AccessRecords` wraps a :class:`~biobank.catalog.repository.Catalog` and stores what
:mod:`biobank.access` decides; the rules (roles, token format, OIDC) live there, not here.
Rows come back as the frozen dataclasses of :mod:`biobank.catalog.access_models` (re-exported
here), never ORM objects.

The access log is a hash chain: each entry's ``entry_hash`` is the SHA-256 (hex) of the
previous entry's hash followed by the canonical JSON of the entry's fields
(:func:`access_entry_hash`); the first entry follows :data:`GENESIS_HASH` (64 zeros). The
last hash is read inside the write transaction that appends (``BEGIN IMMEDIATE`` on SQLite,
an advisory transaction lock on PostgreSQL), so writers in several processes still make one
chain. Triggers refuse ``UPDATE`` and ``DELETE`` on the table (and ``TRUNCATE`` on
PostgreSQL); :meth:`AccessRecords.check_access_chain` finds an entry changed or removed by
someone who dropped them. Removing entries from the *end* of the log leaves a valid, shorter
chain: keep copies of the log (or of its last hash) elsewhere to detect that.

:func:`owned_studies_condition` is the clause the study search uses to keep an uploader to the
studies it uploaded.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Generator, Iterable, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from biobank.catalog.access_models import (
    GENESIS_HASH,
    AccessEntry,
    AccessEvent,
    ChainReport,
    TokenRecord,
    UserRecord,
    access_entry_hash,
)
from biobank.catalog.recording import chunked
from biobank.catalog.repository import Catalog
from biobank.catalog.schema import ACCESS_LOG, API_TOKEN, APP_USER, STUDY, STUDY_OWNER
from biobank.catalog.search import owned_studies_condition
from biobank.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from biobank.catalog.queries import AnySelect

logger = logging.getLogger(__name__)

ACCESS_LOG_LOCK = 0x62625F6C6F67  # "bb_log": PostgreSQL advisory lock of the chain's tail
"""The PostgreSQL advisory lock key serialising appends to the access log."""

STREAM_ROWS = 1000
"""Rows fetched at a time when streaming the access log."""

_LIMITS = {"username": 64, "role": 16, "action": 64, "client": 64}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# -- checks ------------------------------------------------------------------------------


def _check_event(n: int, event: AccessEvent) -> None:
    if event.at.tzinfo is None:
        raise InvalidInput(
            f"access log entry {n}: 'at' is a naive datetime; give a timezone-aware one (UTC)"
        )
    for name, limit in _LIMITS.items():
        value = getattr(event, name)
        if value is not None and len(value) > limit:
            raise InvalidInput(
                f"access log entry {n}: {name} is longer than {limit} characters; shorten it"
            )
    for name in ("username", "role", "action", "resource", "client", "detail"):
        value = getattr(event, name)
        if value is not None and "\x00" in value:
            raise InvalidInput(
                f"access log entry {n}: {name} holds a NUL character, which the database "
                "cannot store; remove it"
            )


# -- conversions ---------------------------------------------------------------------------

_TOKEN_COLUMNS = (
    API_TOKEN.c.token_id,
    API_TOKEN.c.user_id,
    APP_USER.c.username,
    APP_USER.c.role,
    APP_USER.c.active.label("user_active"),
    API_TOKEN.c.name,
    API_TOKEN.c.secret_hash,
    API_TOKEN.c.created_at,
    API_TOKEN.c.expires_at,
    API_TOKEN.c.revoked_at,
    API_TOKEN.c.last_used_at,
)


def _to_user(row: RowMapping) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        role=row["role"],
        oidc_subject=row["oidc_subject"],
        active=bool(row["active"]),
        created_at=row["created_at"],
    )


def _to_token(row: RowMapping) -> TokenRecord:
    return TokenRecord(
        token_id=row["token_id"],
        user_id=row["user_id"],
        username=row["username"],
        role=row["role"],
        user_active=bool(row["user_active"]),
        name=row["name"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _to_entry(row: RowMapping) -> AccessEntry:
    return AccessEntry(
        id=row["id"],
        at=row["at"],
        username=row["username"],
        role=row["role"],
        action=row["action"],
        resource=row["resource"],
        status=row["status"],
        client=row["client"],
        detail=row["detail"],
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


def _check_text(what: str, name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise InvalidInput(f"{what}: {name} is longer than {limit} characters; shorten it")


class AccessRecords:
    """Users, tokens, the access log and study owners, stored in a :class:`Catalog`.

    Parameters
    ----------
    catalog
        The opened (migrated) catalogue; it stays owned by the caller.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        """The catalogue the records are stored in."""
        return self._catalog

    # -- users -----------------------------------------------------------------------------

    def add_user(self, username: str, role: str, oidc_subject: str | None = None) -> UserRecord:
        """Add an active user.

        Raises
        ------
        Conflict
            If the username (or the OIDC subject) is already taken.
        InvalidInput
            If a value is longer than its column.
        """
        what = f"adding user {username!r}"
        _check_text(what, "username", username, 64)
        _check_text(what, "role", role, 16)
        _check_text(what, "oidc_subject", oidc_subject, 255)
        users = APP_USER.c
        with self._catalog._writing(what) as conn:
            if conn.execute(select(users.id).where(users.username == username)).first():
                raise Conflict(
                    f"user {username!r} already exists; choose another name or change that "
                    "user (biobank user set-role / enable / disable)"
                )
            if (
                oidc_subject is not None
                and conn.execute(select(users.id).where(users.oidc_subject == oidc_subject)).first()
            ):
                raise Conflict(
                    f"adding user {username!r}: another user already has this OIDC subject"
                )
            row = {
                "username": username,
                "role": role,
                "oidc_subject": oidc_subject,
                "active": True,
                "created_at": _now(),
            }
            try:
                with conn.begin_nested():
                    conn.execute(insert(APP_USER), row)
            except IntegrityError:
                raise Conflict(
                    f"user {username!r} (or its OIDC subject) was added concurrently; it exists now"
                ) from None
            found = conn.execute(select(APP_USER).where(users.username == username)).mappings()
            return _to_user(found.one())

    def _user(self, condition: ColumnElement[bool], what: str) -> UserRecord | None:
        with self._catalog._reading(what) as conn:
            row = conn.execute(select(APP_USER).where(condition)).mappings().first()
        return None if row is None else _to_user(row)

    def get_user(self, username: str) -> UserRecord:
        """The user called ``username``.

        Raises
        ------
        NotFound
            If there is no such user.
        """
        user = self._user(APP_USER.c.username == username, f"reading user {username!r}")
        if user is None:
            raise NotFound(f"no user {username!r}; list them with 'biobank user list'")
        return user

    def user_by_id(self, user_id: int) -> UserRecord | None:
        """The user with key ``user_id``, or None."""
        return self._user(APP_USER.c.id == user_id, f"reading user #{user_id}")

    def user_by_subject(self, oidc_subject: str) -> UserRecord | None:
        """The user provisioned for the OIDC subject ``"<issuer>|<sub>"``, or None."""
        return self._user(APP_USER.c.oidc_subject == oidc_subject, "reading an OIDC user")

    def list_users(self) -> list[UserRecord]:
        """Every user, by username."""
        with self._catalog._reading("listing users") as conn:
            rows = conn.execute(select(APP_USER).order_by(APP_USER.c.username)).mappings()
            return [_to_user(row) for row in rows]

    def _update_user(self, username: str, values: dict[str, Any], doing: str) -> UserRecord:
        users = APP_USER.c
        with self._catalog._writing(f"{doing} user {username!r}") as conn:
            changed = conn.execute(
                update(APP_USER).where(users.username == username).values(values)
            )
            if changed.rowcount == 0:
                raise NotFound(f"no user {username!r}; list them with 'biobank user list'")
            found = conn.execute(select(APP_USER).where(users.username == username)).mappings()
            return _to_user(found.one())

    def set_active(self, username: str, active: bool) -> UserRecord:
        """Enable or disable a user; return the updated user.

        Raises
        ------
        NotFound
            If there is no such user.
        """
        return self._update_user(username, {"active": active}, "enabling/disabling")

    def set_role(self, username: str, role: str) -> UserRecord:
        """Change a user's role; return the updated user.

        Raises
        ------
        NotFound
            If there is no such user.
        """
        _check_text(f"changing the role of user {username!r}", "role", role, 16)
        return self._update_user(username, {"role": role}, "changing the role of")

    # -- tokens ----------------------------------------------------------------------------

    def add_token(
        self,
        user_id: int,
        token_id: str,
        name: str,
        secret_hash: str,
        expires_at: datetime.datetime | None,
    ) -> TokenRecord:
        """Store a token (its public id and the SHA-256 hex of its secret).

        Raises
        ------
        NotFound
            If there is no user ``user_id``.
        Conflict
            If ``token_id`` is taken.
        InvalidInput
            If a value does not fit its column, or ``secret_hash`` is not 64 hex digits.
        """
        what = f"adding token {token_id}"
        _check_text(what, "token_id", token_id, 32)
        _check_text(what, "name", name, 128)
        if len(secret_hash) != 64 or not all(c in "0123456789abcdef" for c in secret_hash):
            raise InvalidInput(f"{what}: secret_hash must be 64 lowercase hex digits (SHA-256)")
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidInput(f"{what}: expires_at must be timezone-aware (UTC)")
        row = {
            "token_id": token_id,
            "user_id": user_id,
            "name": name,
            "secret_hash": secret_hash,
            "created_at": _now(),
            "expires_at": expires_at,
            "revoked_at": None,
            "last_used_at": None,
        }
        with self._catalog._writing(what) as conn:
            if conn.execute(select(APP_USER.c.id).where(APP_USER.c.id == user_id)).first() is None:
                raise NotFound(f"{what}: no user #{user_id}")
            if conn.execute(select(API_TOKEN.c.id).where(API_TOKEN.c.token_id == token_id)).first():
                raise Conflict(f"{what}: a token with this id exists; generate another id")
            conn.execute(insert(API_TOKEN), row)
            return self._token(conn, token_id, what)

    def _token(self, conn: Connection, token_id: str, what: str) -> TokenRecord:
        stmt = self._tokens_query().where(API_TOKEN.c.token_id == token_id)
        row = conn.execute(stmt).mappings().first()
        if row is None:
            raise NotFound(f"{what}: no token {token_id}; list them with 'biobank token list'")
        return _to_token(row)

    @staticmethod
    def _tokens_query() -> AnySelect:
        return select(*_TOKEN_COLUMNS).join_from(
            API_TOKEN, APP_USER, API_TOKEN.c.user_id == APP_USER.c.id
        )

    def token_by_id(self, token_id: str) -> TokenRecord | None:
        """The token ``token_id`` with its user, or None."""
        stmt = self._tokens_query().where(API_TOKEN.c.token_id == token_id)
        with self._catalog._reading("reading an API token") as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else _to_token(row)

    def list_tokens(self, username: str | None = None) -> list[TokenRecord]:
        """The tokens (of ``username`` if given), oldest first.

        Raises
        ------
        NotFound
            If ``username`` names no user.
        """
        stmt = self._tokens_query().order_by(API_TOKEN.c.created_at, API_TOKEN.c.id)
        if username is not None:
            self.get_user(username)
            stmt = stmt.where(APP_USER.c.username == username)
        with self._catalog._reading("listing API tokens") as conn:
            return [_to_token(row) for row in conn.execute(stmt).mappings()]

    def revoke_token(self, token_id: str) -> TokenRecord:
        """Revoke a token (idempotent: a revoked token keeps its first revocation time).

        Raises
        ------
        NotFound
            If there is no such token.
        """
        what = f"revoking token {token_id}"
        tokens = API_TOKEN.c
        with self._catalog._writing(what) as conn:
            conn.execute(
                update(API_TOKEN)
                .where(tokens.token_id == token_id, tokens.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            return self._token(conn, token_id, what)

    def touch_token(self, token_id: str, when: datetime.datetime) -> None:
        """Set the token's ``last_used_at`` to ``when`` unless it is already later (one UPDATE)."""
        tokens = API_TOKEN.c
        stmt = (
            update(API_TOKEN)
            .where(
                tokens.token_id == token_id,
                (tokens.last_used_at.is_(None)) | (tokens.last_used_at < when),
            )
            .values(last_used_at=when)
        )
        with self._catalog._writing(f"noting the use of token {token_id}") as conn:
            conn.execute(stmt)

    # -- the access log --------------------------------------------------------------------

    def append_access_entries(self, events: Sequence[AccessEvent]) -> list[AccessEntry]:
        """Append ``events`` to the access log, in order, continuing the hash chain.

        One transaction; the tail of the chain is read inside it, after taking the append
        lock, so concurrent writers (threads or processes) never fork the chain.

        Returns
        -------
        list[AccessEntry]
            The stored entries, in input order.

        Raises
        ------
        InvalidInput
            If an event has a naive time, a value longer than its column, or a NUL
            character (nothing is appended then).
        """
        if not events:
            return []
        for n, event in enumerate(events):
            _check_event(n, event)
        log = ACCESS_LOG.c
        with self._catalog._writing(f"appending {len(events)} access log entries") as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ACCESS_LOG_LOCK})
            last = conn.execute(
                select(log.entry_hash).order_by(log.id.desc()).limit(1)
            ).scalar_one_or_none()
            prev = GENESIS_HASH if last is None else last
            rows: list[dict[str, Any]] = []
            for event in events:
                entry_hash = access_entry_hash(prev, event)
                rows.append(
                    {
                        "at": event.at,
                        "username": event.username,
                        "role": event.role,
                        "action": event.action,
                        "resource": event.resource,
                        "status": event.status,
                        "client": event.client,
                        "detail": event.detail,
                        "prev_hash": prev,
                        "entry_hash": entry_hash,
                    }
                )
                prev = entry_hash
            stmt = insert(ACCESS_LOG).returning(log.id, sort_by_parameter_order=True)
            ids = list(conn.execute(stmt, rows).scalars())
        return [
            AccessEntry(
                id=entry_id,
                at=event.at,
                username=event.username,
                role=event.role,
                action=event.action,
                resource=event.resource,
                status=event.status,
                client=event.client,
                detail=event.detail,
                prev_hash=row["prev_hash"],
                entry_hash=row["entry_hash"],
            )
            for entry_id, event, row in zip(ids, events, rows, strict=True)
        ]

    @staticmethod
    def _entries_query(
        username: str | None,
        since: datetime.datetime | None,
        until: datetime.datetime | None,
        action: str | None,
    ) -> AnySelect:
        log = ACCESS_LOG.c
        stmt = select(ACCESS_LOG)
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise InvalidInput(
                    f"access log filter {name}: give a timezone-aware datetime (UTC)"
                )
        if username is not None:
            stmt = stmt.where(log.username == username)
        if since is not None:
            stmt = stmt.where(log.at >= since)
        if until is not None:
            stmt = stmt.where(log.at < until)
        if action is not None:
            stmt = stmt.where(log.action == action)
        return stmt

    def iter_access_entries(
        self,
        *,
        username: str | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> Generator[AccessEntry, None, None]:
        """The entries matching every filter given, oldest first, streamed.

        ``since`` is inclusive, ``until`` exclusive; ``limit`` caps the count (None: all).
        A caller that stops early should close the iterator (:func:`contextlib.closing`),
        which ends the read at once.
        """
        stmt = self._entries_query(username, since, until, action).order_by(ACCESS_LOG.c.id)
        if limit is not None:
            stmt = stmt.limit(max(limit, 0))
        with self._catalog._reading("reading the access log") as conn:
            streaming = conn.execution_options(stream_results=True, yield_per=STREAM_ROWS)
            result = streaming.execute(stmt)
            try:
                for row in result.mappings():
                    yield _to_entry(row)
            finally:
                result.close()

    def list_access_entries(
        self,
        *,
        username: str | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[AccessEntry]:
        """The newest ``limit`` entries matching every filter given, newest first.

        ``since`` is inclusive, ``until`` exclusive.

        Raises
        ------
        InvalidInput
            If ``limit`` is negative or a time is naive.
        """
        if limit < 0:
            raise InvalidInput(f"limit={limit}: listing the access log needs a limit >= 0")
        stmt = self._entries_query(username, since, until, action)
        stmt = stmt.order_by(ACCESS_LOG.c.id.desc()).limit(limit)
        with self._catalog._reading("listing the access log") as conn:
            return [_to_entry(row) for row in conn.execute(stmt).mappings()]

    def count_access_entries(self) -> int:
        """How many entries the access log holds."""
        with self._catalog._reading("counting the access log") as conn:
            return int(conn.execute(select(func.count()).select_from(ACCESS_LOG)).scalar_one())

    def check_access_chain(self) -> ChainReport:
        """Recompute the hash chain from the first entry; stop at the first broken entry.

        An entry is broken when its ``prev_hash`` is not the previous entry's ``entry_hash``
        (an entry before it was removed or changed) or when its ``entry_hash`` does not match
        its fields (the entry itself was changed).
        """
        prev = GENESIS_HASH
        checked = 0
        with closing(self.iter_access_entries()) as entries:
            for entry in entries:
                checked += 1
                if entry.prev_hash != prev:
                    return ChainReport(
                        checked,
                        entry.id,
                        "its prev_hash is not the hash of the entry before it: an entry before "
                        "it was removed or changed",
                    )
                if access_entry_hash(prev, entry) != entry.entry_hash:
                    return ChainReport(
                        checked,
                        entry.id,
                        "its entry_hash does not match its fields: it was changed",
                    )
                prev = entry.entry_hash
        return ChainReport(checked)

    def verify_access_chain(self) -> int | None:
        """The id of the first entry breaking the hash chain, or None if it is intact."""
        return self.check_access_chain().first_broken

    # -- study owners ----------------------------------------------------------------------

    def add_study_owners(self, user_id: int, study_instance_uids: Iterable[str]) -> int:
        """Record ``user_id`` as an owner of the catalogued studies among the UIDs.

        Existing ownerships are kept as they are; UIDs of studies not in the catalogue are
        ignored. Returns how many ownerships were added.

        Raises
        ------
        NotFound
            If there is no user ``user_id``.
        """
        uids = sorted(set(study_instance_uids))
        if not uids:
            return 0
        now = _now()
        added = 0
        with self._catalog._writing(f"recording the owner of {len(uids)} studies") as conn:
            if conn.execute(select(APP_USER.c.id).where(APP_USER.c.id == user_id)).first() is None:
                raise NotFound(f"recording study owners: no user #{user_id}")
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            for chunk in chunked(uids):
                rows = select(
                    STUDY.c.id,
                    literal(user_id, STUDY_OWNER.c.user_id.type),
                    literal(now, STUDY_OWNER.c.created_at.type),
                ).where(STUDY.c.study_instance_uid.in_(chunk))
                stmt = (
                    dialect.insert(STUDY_OWNER)
                    .from_select(["study_id", "user_id", "created_at"], rows)
                    .on_conflict_do_nothing()
                    .returning(STUDY_OWNER.c.study_id)
                )
                added += len(conn.execute(stmt).all())
        return added

    def owned_study_uids(self, user_id: int) -> list[str]:
        """The Study Instance UIDs of the studies ``user_id`` owns, sorted."""
        stmt = (
            select(STUDY.c.study_instance_uid)
            .where(owned_studies_condition(user_id))
            .order_by(STUDY.c.study_instance_uid)
        )
        with self._catalog._reading("listing owned studies") as conn:
            return list(conn.execute(stmt).scalars())

    def owns_study(self, user_id: int, study_instance_uid: str) -> bool:
        """Whether ``user_id`` owns the study ``study_instance_uid`` (False if not catalogued)."""
        stmt = (
            select(STUDY_OWNER.c.study_id)
            .join_from(STUDY_OWNER, STUDY, STUDY_OWNER.c.study_id == STUDY.c.id)
            .where(
                STUDY_OWNER.c.user_id == user_id,
                STUDY.c.study_instance_uid == study_instance_uid,
            )
        )
        with self._catalog._reading("checking a study's owner") as conn:
            return conn.execute(stmt).first() is not None


__all__ = [
    "ACCESS_LOG_LOCK",
    "GENESIS_HASH",
    "AccessEntry",
    "AccessEvent",
    "AccessRecords",
    "ChainReport",
    "TokenRecord",
    "UserRecord",
    "access_entry_hash",
    "owned_studies_condition",
]
