"""Users, API tokens and authentication: :class:`AccessService`.

API tokens look like ``bb_<token id>_<secret>``: ``bb_``, 16 hex digits of public id, ``_``,
64 hex digits (256 bits from :mod:`secrets`) of secret. Only the SHA-256 of the secret is
stored; the token is shown once, when it is created. Checking compares hashes in constant
time (:func:`hmac.compare_digest`).

Authentication runs on every request, so successful checks are cached in memory for
``cache_ttl`` seconds (default :data:`CACHE_TTL`, at most :data:`CACHE_SIZE` entries): a hit
costs a few microseconds and no database access. The price: a token revoked, or a user
disabled or given another role, by *another process* (e.g. the CLI) is honoured by this one
within ``cache_ttl`` seconds; changes made through this service take effect at once. A
token's expiry is checked on every hit.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass

from biobank.access.models import USERNAME_PATTERN, Permission, Principal, Role, Via
from biobank.access.oidc import OidcIdentity, OidcSettings, OidcVerifier
from biobank.catalog.access import (
    AccessEntry,
    AccessRecords,
    ChainReport,
    TokenRecord,
    UserRecord,
)
from biobank.catalog.repository import Catalog
from biobank.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    PermissionDenied,
    StorageError,
)

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "bb"
"""The first part of every API token of this node."""
TOKEN_ID_BYTES = 8
"""Random bytes of a token's public id (16 hex digits)."""
SECRET_BYTES = 32
"""Random bytes of a token's secret (256 bits, 64 hex digits)."""
CACHE_TTL = 5.0
"""Seconds a successful authentication is reused without asking the database."""
CACHE_SIZE = 4096
"""At most this many authentications are cached (the oldest is dropped first)."""
TOUCH_INTERVAL = datetime.timedelta(minutes=1)
"""A token's ``last_used_at`` is written at most this often."""
MAX_EXPIRY_DAYS = 36_500
"""The longest lifetime a token can be given."""

_TOKEN = re.compile(
    rf"{TOKEN_PREFIX}_([0-9a-f]{{{2 * TOKEN_ID_BYTES}}})_([0-9a-f]{{{2 * SECRET_BYTES}}})"
)
_HOW_TO_SEND = (
    "send 'Authorization: Bearer <token>' with an API token (biobank token create) or an "
    "OIDC access token"
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def require(principal: Principal, permission: Permission) -> None:
    """Raise unless ``principal`` has ``permission``.

    Raises
    ------
    PermissionDenied
        Naming the user, the role and what it may not do.
    """
    if not principal.allows(permission):
        raise PermissionDenied(
            f"user {principal.username!r} (role {principal.role.value}) may not "
            f"{permission.description}; ask an administrator for a role that may"
        )


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        raise InvalidInput(f"{str(value)[:32]!r} is not a role; use one of {roles}") from None


def _check_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput(
            f"{username[:64]!r} is not a valid username: use 1 to 64 letters, digits and "
            ". _ @ + -, starting with a letter or digit"
        )


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    check: str  # the secret's hash (tokens) or the token's hash (JWTs)
    fresh_until: float  # time.monotonic()
    expires_at: float  # time.time(); math.inf if never


class _AuthCache:
    """A small, bounded, thread-safe cache of successful authentications."""

    def __init__(self, ttl: float, size: int) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> _Cached | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found.fresh_until <= time.monotonic():
                del self._entries[key]
                return None
            return found

    def put(self, key: str, principal: Principal, check: str, expires_at: float) -> None:
        if self._ttl <= 0 or self._size <= 0:
            return
        entry = _Cached(principal, check, time.monotonic() + self._ttl, expires_at)
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = entry

    def forget(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def forget_user(self, user_id: int) -> None:
        with self._lock:
            for key in [k for k, v in self._entries.items() if v.principal.user_id == user_id]:
                del self._entries[key]


class AccessService:
    """Users, API tokens, authentication and the access log of a node.

    Parameters
    ----------
    catalog
        The node's opened catalogue (it stays owned by the caller).
    oidc
        The ``oidc:`` settings of ``node.yaml``; None: OIDC tokens are refused.
    cache_ttl
        Seconds a successful authentication is reused (0 disables the cache); see the
        module docstring for what it means for revocation.
    cache_size
        At most this many cached authentications.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        oidc: OidcSettings | None = None,
        cache_ttl: float = CACHE_TTL,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.records = AccessRecords(catalog)
        self._oidc = OidcVerifier(oidc) if oidc is not None else None
        self._cache = _AuthCache(cache_ttl, cache_size)

    # -- users -----------------------------------------------------------------------------

    def create_user(
        self, username: str, role: Role | str, *, oidc_subject: str | None = None
    ) -> UserRecord:
        """Add an active user.

        Raises
        ------
        InvalidInput
            If the username or role is not valid.
        Conflict
            If the username is taken.
        """
        _check_username(username)
        return self.records.add_user(username, _role(role).value, oidc_subject)

    def get_user(self, username: str) -> UserRecord:
        """The user ``username`` (:class:`NotFound` if none)."""
        return self.records.get_user(username)

    def list_users(self) -> list[UserRecord]:
        """Every user, by username."""
        return self.records.list_users()

    def set_active(self, username: str, active: bool) -> UserRecord:
        """Enable or disable a user; a disabled user's tokens and sign-ins are refused."""
        user = self.records.set_active(username, active)
        self._cache.forget_user(user.id)
        return user

    def set_role(self, username: str, role: Role | str) -> UserRecord:
        """Give a user another role (an OIDC user's role follows its tokens instead)."""
        user = self.records.set_role(username, _role(role).value)
        self._cache.forget_user(user.id)
        return user

    def principal_for(self, username: str, *, via: Via = "local") -> Principal:
        """The principal of an active local user (e.g. an operator at the CLI).

        Raises
        ------
        NotFound
            If there is no such user.
        PermissionDenied
            If the user is disabled.
        """
        user = self.records.get_user(username)
        if not user.active:
            raise PermissionDenied(f"user {username!r} is disabled; ask an administrator")
        return Principal(user.id, user.username, _role(user.role), via)

    # -- tokens ----------------------------------------------------------------------------

    def create_token(
        self, username: str, name: str = "", expires_in_days: float | None = None
    ) -> tuple[str, str]:
        """Create an API token for ``username``.

        Returns
        -------
        tuple[str, str]
            The token id (public, for listing and revoking) and the full token
            ``bb_<id>_<secret>``: show it once; it cannot be recovered.

        Raises
        ------
        NotFound
            If there is no such user.
        InvalidInput
            If ``expires_in_days`` is not positive, or the name is too long.
        """
        user = self.records.get_user(username)
        expires_at = None
        if expires_in_days is not None:
            if not 0 < expires_in_days <= MAX_EXPIRY_DAYS:
                raise InvalidInput(
                    f"expires_in_days={expires_in_days}: give a number of days above 0 and at "
                    f"most {MAX_EXPIRY_DAYS}, or none for a token that does not expire"
                )
            expires_at = _now() + datetime.timedelta(days=expires_in_days)
        for attempt in (1, 2, 3):
            token_id = secrets.token_hex(TOKEN_ID_BYTES)
            secret = secrets.token_hex(SECRET_BYTES)
            try:
                self.records.add_token(user.id, token_id, name, _sha256(secret), expires_at)
            except Conflict:  # a 64-bit id collision: astronomically rare
                if attempt == 3:
                    raise
                continue
            return token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}"
        raise AssertionError("unreachable")  # pragma: no cover

    def list_tokens(self, username: str | None = None) -> list[TokenRecord]:
        """The tokens (of ``username`` if given), oldest first; secrets are never stored."""
        return self.records.list_tokens(username)

    def revoke_token(self, token_id: str) -> TokenRecord:
        """Revoke a token (at once in this process; see the module docstring for others)."""
        token = self.records.revoke_token(token_id)
        self._cache.forget(f"token:{token_id}")
        return token

    # -- authentication --------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind an ``Authorization`` header value.

        ``Bearer bb_…`` is an API token of this node; ``Bearer <JWT>`` an OIDC access token
        (when OIDC is configured; the user is provisioned on first sight, with the role the
        token maps to each time).

        Raises
        ------
        AuthenticationFailed
            If the header is missing or not ``Bearer``, or the token is malformed, unknown,
            revoked or expired, its user is disabled, or a JWT does not verify.
        PermissionDenied
            If a valid OIDC token maps to no role of this node.
        StorageError
            If the catalogue cannot be read.
        """
        if authorization is None or not authorization.strip():
            raise AuthenticationFailed(f"no credentials: {_HOW_TO_SEND}")
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise AuthenticationFailed(
                f"the Authorization header is not 'Bearer <token>': {_HOW_TO_SEND}"
            )
        if credentials.startswith(TOKEN_PREFIX + "_"):
            return self._authenticate_token(credentials)
        if credentials.count(".") == 2:
            return self._authenticate_jwt(credentials)
        raise AuthenticationFailed(
            "the bearer token is neither an API token of this node (bb_…) nor a JWT; "
            "check that it was copied whole"
        )

    def authenticate_cached(self, authorization: str | None) -> Principal | None:
        """The principal of an API token authenticated moments ago, without any I/O.

        None when the answer is not in the cache (then call :meth:`authenticate`, which may
        read the catalogue): an async server answers most requests without a thread hop.
        """
        if not authorization:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        match = _TOKEN.fullmatch(credentials.strip()) if scheme.lower() == "bearer" else None
        if match is None:
            return None
        token_id, secret = match.groups()
        cached = self._cache.get(f"token:{token_id}")
        if cached is None or time.time() >= cached.expires_at:
            return None
        if not hmac.compare_digest(_sha256(secret), cached.check):
            return None
        return cached.principal

    def _authenticate_token(self, credentials: str) -> Principal:
        match = _TOKEN.fullmatch(credentials)
        if match is None:
            raise AuthenticationFailed(
                "malformed API token: expected bb_<16 hex digits>_<64 hex digits> as printed "
                "by 'biobank token create'; check that it was copied whole"
            )
        token_id, secret = match.groups()
        digest = _sha256(secret)
        key = f"token:{token_id}"
        cached = self._cache.get(key)
        if cached is not None and hmac.compare_digest(digest, cached.check):
            if time.time() < cached.expires_at:
                return cached.principal
            self._cache.forget(key)
        token = self.records.token_by_id(token_id)
        if token is None or not hmac.compare_digest(digest, token.secret_hash):
            raise AuthenticationFailed(
                "unknown API token, or its secret is wrong; check the token or create a new "
                "one (biobank token create)"
            )
        now = _now()
        state = token.state(now)
        if state == "revoked":
            raise AuthenticationFailed(
                f"API token {token_id} was revoked; create a new one (biobank token create)"
            )
        if state == "expired":
            raise AuthenticationFailed(
                f"API token {token_id} expired; create a new one (biobank token create)"
            )
        if not token.user_active:
            raise AuthenticationFailed(
                f"the account of API token {token_id} is disabled; ask an administrator"
            )
        try:
            role = Role(token.role)
        except ValueError:
            raise AuthenticationFailed(
                f"the account of API token {token_id} has no valid role; ask an administrator "
                "to set one (biobank user set-role)"
            ) from None
        principal = Principal(token.user_id, token.username, role, "token")
        expires = token.expires_at.timestamp() if token.expires_at else float("inf")
        self._cache.put(key, principal, token.secret_hash, expires)
        self._touch(token, now)
        return principal

    def _touch(self, token: TokenRecord, now: datetime.datetime) -> None:
        if token.last_used_at is not None and now - token.last_used_at < TOUCH_INTERVAL:
            return
        try:
            self.records.touch_token(token.token_id, now)
        except StorageError as exc:  # a bookkeeping write must not refuse the request
            logger.warning("could not note the use of token %s: %s", token.token_id, exc)

    def _authenticate_jwt(self, credentials: str) -> Principal:
        if self._oidc is None:
            raise AuthenticationFailed(
                "this node does not accept OIDC tokens (no 'oidc' section in node.yaml); "
                "use an API token (biobank token create)"
            )
        key = f"jwt:{_sha256(credentials)}"
        cached = self._cache.get(key)
        if cached is not None and time.time() < cached.expires_at:
            return cached.principal
        identity = self._oidc.verify(credentials)
        principal = self._provision(identity)
        self._cache.put(key, principal, key, identity.expires_at)
        return principal

    def _provision(self, identity: OidcIdentity) -> Principal:
        """The app_user of an OIDC identity, created on first sight; its role kept in step."""
        user = self.records.user_by_subject(identity.subject)
        if user is None:
            try:
                user = self.records.add_user(
                    identity.username, identity.role.value, identity.subject
                )
            except Conflict:
                user = self.records.user_by_subject(identity.subject)
                if user is None:  # the username belongs to another account
                    raise AuthenticationFailed(
                        f"OIDC user {identity.username!r}: this username already belongs to "
                        "another account of this node; ask an administrator"
                    ) from None
        if not user.active:
            raise AuthenticationFailed(
                f"user {user.username!r} is disabled on this node; ask an administrator"
            )
        if user.role != identity.role.value:
            user = self.records.set_role(user.username, identity.role.value)
        return Principal(user.id, user.username, identity.role, "oidc")

    @staticmethod
    def require(principal: Principal, permission: Permission) -> None:
        """Raise :class:`PermissionDenied` unless ``principal`` has ``permission``."""
        require(principal, permission)

    # -- ownership and the access log ------------------------------------------------------

    def record_upload(self, principal: Principal, study_instance_uids: list[str]) -> int:
        """Record ``principal`` as an owner of the (catalogued) studies it stored."""
        return self.records.add_study_owners(principal.user_id, study_instance_uids)

    def may_read_study(self, principal: Principal, study_instance_uid: str) -> bool:
        """Whether ``principal`` may read the study (uploaders: only the ones they stored)."""
        if principal.can_read_all:
            return True
        if principal.reads_only_own:
            return self.records.owns_study(principal.user_id, study_instance_uid)
        return False

    def access_entries(
        self,
        *,
        username: str | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[AccessEntry]:
        """The newest entries of the access log matching the filters, newest first."""
        return self.records.list_access_entries(
            username=username, since=since, until=until, action=action, limit=limit
        )

    def check_access_log(self) -> ChainReport:
        """Recompute the access log's hash chain (see :mod:`biobank.catalog.access`)."""
        return self.records.check_access_chain()


__all__ = [
    "CACHE_SIZE",
    "CACHE_TTL",
    "SECRET_BYTES",
    "TOKEN_ID_BYTES",
    "TOKEN_PREFIX",
    "AccessService",
    "require",
]
