"""OIDC sign-in: validate a bearer JWT from the identity provider and map its roles.

:class:`OidcSettings` is the ``oidc:`` section of ``node.yaml``
(:meth:`OidcSettings.from_mapping`); :class:`OidcVerifier` checks a token's signature against
the provider's published keys (JWKS, fetched with :class:`jwt.PyJWKClient` and cached for
five minutes; an unknown key id refetches them at most every 30 s), its algorithm (RS256 or
ES256 only), issuer, audience, expiry and not-before (with a small leeway), and turns it into
an :class:`OidcIdentity`: subject ``"<iss>|<sub>"``, username and the highest-privilege role
its role claim maps to. The defaults fit Keycloak (``realm_access.roles``,
``preferred_username``, ``<issuer>/protocol/openid-connect/certs``).

Messages name what is wrong with the token and what to do; they never quote the token.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from biobank.access.models import USERNAME_PATTERN, Role
from biobank.errors import AuthenticationFailed, InvalidInput, PermissionDenied

logger = logging.getLogger(__name__)

KEYCLOAK_JWKS_PATH = "/protocol/openid-connect/certs"
"""Where Keycloak publishes a realm's keys, relative to the issuer (the realm's URL)."""

ALLOWED_ALGORITHMS = ("RS256", "ES256")
"""The signature algorithms a token may use (never ``none``, never HMAC)."""

JWKS_LIFESPAN = 300.0
"""Seconds the provider's key set is cached."""

DEFAULT_LEEWAY = 10.0
"""Seconds of clock skew tolerated on ``exp`` and ``nbf``."""

_KEYS = (
    "issuer",
    "audience",
    "jwks_url",
    "username_claim",
    "roles_claim",
    "role_map",
    "leeway",
)


def _default_role_map() -> dict[str, Role]:
    return {role.value: role for role in Role}


@dataclass(frozen=True)
class OidcSettings:
    """How this node accepts OIDC bearer tokens (the ``oidc:`` section of ``node.yaml``).

    Parameters
    ----------
    issuer
        The provider's issuer URL, exactly as in the tokens' ``iss`` claim (for Keycloak,
        ``https://host/realms/<realm>``).
    audience
        The ``aud`` the tokens must carry (the client id of this node at the provider).
    jwks_url
        Where the provider publishes its keys; default: Keycloak's
        ``<issuer>/protocol/openid-connect/certs``. For another provider use the
        ``jwks_uri`` of its ``<issuer>/.well-known/openid-configuration``.
    username_claim
        The claim holding the username (default ``preferred_username``).
    roles_claim
        The dotted path of the claim listing the user's roles (default
        ``realm_access.roles``); a list of strings or one space-separated string.
    role_map
        Claim value → role of this node. The highest-privilege match wins; a token with no
        mapped value is refused. Default: the role names themselves (``admin``, ``curator``,
        ``uploader``, ``researcher``).
    leeway
        Seconds of clock skew tolerated (0 to 300).

    Raises
    ------
    InvalidInput
        If a value is unusable; the message names the key.
    """

    issuer: str
    audience: str
    jwks_url: str | None = None
    username_claim: str = "preferred_username"
    roles_claim: str = "realm_access.roles"
    role_map: Mapping[str, Role] = field(default_factory=_default_role_map)
    leeway: float = DEFAULT_LEEWAY

    def __post_init__(self) -> None:
        for name in ("issuer", "jwks_url"):
            value = getattr(self, name)
            if value is None and name == "jwks_url":
                continue
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise InvalidInput(f"oidc.{name}: give the provider's http(s) URL")
        for name in ("audience", "username_claim", "roles_claim"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"oidc.{name}: must be a non-empty string")
        if not self.role_map:
            raise InvalidInput("oidc.role_map: map at least one claim value to a role")
        for claim, role in self.role_map.items():
            if not isinstance(claim, str) or not isinstance(role, Role):
                raise InvalidInput(
                    "oidc.role_map: map strings to roles (admin, curator, uploader, researcher)"
                )
        if isinstance(self.leeway, bool) or not (
            isinstance(self.leeway, int | float) and math.isfinite(self.leeway)
        ):
            raise InvalidInput("oidc.leeway: must be a number of seconds")
        if not 0 <= self.leeway <= 300:
            raise InvalidInput("oidc.leeway: must be between 0 and 300 seconds")

    @property
    def resolved_jwks_url(self) -> str:
        """``jwks_url``, else Keycloak's key URL under the issuer."""
        return self.jwks_url or self.issuer.rstrip("/") + KEYCLOAK_JWKS_PATH

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "node.yaml") -> OidcSettings:
        """Build the settings from the ``oidc:`` mapping of ``node.yaml``.

        Parameters
        ----------
        data
            ``issuer`` and ``audience`` (required), ``jwks_url``, ``username_claim``,
            ``roles_claim``, ``role_map`` (claim value → role name), ``leeway``.
        source
            Where the mapping comes from, for messages.

        Raises
        ------
        InvalidInput
            If a key is unknown, missing or unusable; the message names the file and the key.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{source}: 'oidc' must be a mapping of settings")
        unknown = sorted(str(key) for key in data if key not in _KEYS)
        if unknown:
            raise InvalidInput(
                f"{source}: unknown key oidc.{unknown[0]}; the keys are {', '.join(_KEYS)}"
            )
        for key in ("issuer", "audience"):
            if not data.get(key):
                raise InvalidInput(f"{source}: oidc.{key} is missing; set it")
        kwargs: dict[str, Any] = {}
        for key in ("issuer", "audience", "jwks_url", "username_claim", "roles_claim"):
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidInput(f"{source}: oidc.{key} must be a string")
            kwargs[key] = value
        if data.get("role_map") is not None:
            kwargs["role_map"] = _role_map(data["role_map"], source)
        if data.get("leeway") is not None:
            kwargs["leeway"] = data["leeway"]
        try:
            return cls(**kwargs)
        except InvalidInput as exc:
            raise InvalidInput(f"{source}: {exc}") from None


def _role_map(value: Any, source: str) -> dict[str, Role]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidInput(
            f"{source}: oidc.role_map must map claim values to roles, e.g. "
            "{biobank-admin: admin, biobank-curator: curator}"
        )
    roles = ", ".join(role.value for role in Role)
    mapped: dict[str, Role] = {}
    for claim, role in value.items():
        try:
            mapped[str(claim)] = Role(str(role))
        except ValueError:
            raise InvalidInput(
                f"{source}: oidc.role_map.{claim}: {str(role)[:32]!r} is not a role; "
                f"use one of {roles}"
            ) from None
    return mapped


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who a valid token names.

    Parameters
    ----------
    subject
        ``"<iss>|<sub>"``: stable across username changes, unique across providers.
    username
        From the username claim.
    role
        The highest-privilege role the token's role claim maps to.
    expires_at
        The token's ``exp`` (seconds since the epoch).
    """

    subject: str
    username: str
    role: Role
    expires_at: float


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "has expired; sign in again"),
    (jwt.ImmatureSignatureError, "is not valid yet (nbf); check the clocks"),
    (
        jwt.InvalidIssuerError,
        "was issued by another identity provider than this node's oidc.issuer",
    ),
    (jwt.InvalidAudienceError, "was not issued for this node (aud is not oidc.audience)"),
    (jwt.InvalidSignatureError, "has a signature that does not verify"),
    (jwt.InvalidAlgorithmError, "is signed with an algorithm this node does not accept"),
)


class OidcVerifier:
    """Validate OIDC bearer JWTs against :class:`OidcSettings`.

    Parameters
    ----------
    settings
        The node's OIDC settings.
    timeout
        Seconds to wait for the provider's key set.
    """

    def __init__(self, settings: OidcSettings, *, timeout: float = 5.0) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(
            settings.resolved_jwks_url,
            cache_jwk_set=True,
            lifespan=JWKS_LIFESPAN,
            timeout=timeout,
        )

    def verify(self, token: str) -> OidcIdentity:
        """Check ``token`` and return the identity it names.

        Raises
        ------
        AuthenticationFailed
            If the token is malformed, signed with an unknown key or algorithm, has a bad
            signature, another issuer or audience, has expired or is not valid yet, lacks the
            subject or username, or the provider's keys cannot be fetched.
        PermissionDenied
            If the token is valid but none of its roles maps to a role of this node.
        """
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationFailed(
                "the bearer token is not a well-formed JWT; send the access token the "
                "identity provider issued, or an API token of this node"
            ) from None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise AuthenticationFailed(
                f"the OIDC token is signed with {str(algorithm)[:16]!r}; this node accepts "
                f"{' and '.join(ALLOWED_ALGORITHMS)} only: configure the identity provider"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationFailed(
                "the OIDC token names no signing key (kid); this node cannot verify it"
            )
        key = self._signing_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(
                f"the OIDC token lacks the {exc.claim!r} claim; configure the identity "
                "provider to include it"
            ) from None
        except jwt.PyJWTError as exc:
            for kind, problem in _ERRORS:
                if isinstance(exc, kind):
                    raise AuthenticationFailed(f"the OIDC token {problem}") from None
            raise AuthenticationFailed(
                f"the OIDC token is not valid ({type(exc).__name__}); sign in again"
            ) from None
        return self._identity(claims)

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        try:
            return self._jwks.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            logger.warning(
                "OIDC: cannot fetch the signing keys from %s", self.settings.resolved_jwks_url
            )
            raise AuthenticationFailed(
                "cannot fetch the identity provider's signing keys to verify the OIDC token; "
                "try again later (operators: check oidc.jwks_url and the provider)"
            ) from None
        except jwt.PyJWTError:
            raise AuthenticationFailed(
                "the OIDC token is signed with a key the identity provider does not publish "
                "(unknown kid); sign in again"
            ) from None

    def _identity(self, claims: Mapping[str, Any]) -> OidcIdentity:
        settings = self.settings
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthenticationFailed("the OIDC token's 'sub' claim is not a string")
        subject = f"{claims['iss']}|{sub}"
        if len(subject) > 255:
            raise AuthenticationFailed(
                "the OIDC token's issuer and subject are longer than 255 characters together"
            )
        username = _claim(claims, settings.username_claim)
        if not isinstance(username, str) or not username:
            raise AuthenticationFailed(
                f"the OIDC token lacks the username claim {settings.username_claim!r}; "
                "configure the provider or oidc.username_claim"
            )
        if not USERNAME_PATTERN.fullmatch(username):
            raise AuthenticationFailed(
                f"the OIDC token's {settings.username_claim!r} is not a usable username "
                "(1-64 letters, digits and . _ @ + -); configure the provider or "
                "oidc.username_claim"
            )
        values = _claim(claims, settings.roles_claim)
        if isinstance(values, str):
            values = values.split()
        if not isinstance(values, list):
            values = []
        roles = [
            settings.role_map[v] for v in values if isinstance(v, str) and v in settings.role_map
        ]
        if not roles:
            raise PermissionDenied(
                f"user {username!r} signed in, but the token's {settings.roles_claim!r} "
                "holds none of the roles mapped in oidc.role_map; ask an administrator to "
                "grant one"
            )
        exp = claims["exp"]
        return OidcIdentity(
            subject=subject,
            username=username,
            role=max(roles, key=lambda role: role.rank),
            expires_at=float(exp) if isinstance(exp, int | float) else 0.0,
        )


__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_LEEWAY",
    "JWKS_LIFESPAN",
    "KEYCLOAK_JWKS_PATH",
    "OidcIdentity",
    "OidcSettings",
    "OidcVerifier",
]
