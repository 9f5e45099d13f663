"""AccessService: tokens, authentication, roles, the append-only log and OIDC sign-in."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy.exc import DBAPIError

from biobank.access import (
    AccessService,
    OidcSettings,
    Permission,
    Principal,
    Role,
    require,
)
from biobank.catalog import Catalog
from biobank.catalog.access import AccessEvent, AccessRecords
from biobank.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from tests.access.test_records import catalogue_studies, drop_triggers, event
from tests.catalog.factories import execute, uid

UTC = datetime.UTC
TOKEN = re.compile(r"bb_([0-9a-f]{16})_([0-9a-f]{64})")


def service_with_user(
    catalog: Catalog, role: Role = Role.UPLOADER, **kwargs: Any
) -> tuple[AccessService, str, str]:
    service = AccessService(catalog, **kwargs)
    service.create_user("alice", role)
    token_id, token = service.create_token("alice", "scanner 3")
    return service, token_id, token


def refused(service: AccessService, header: str | None) -> str:
    with pytest.raises(AuthenticationFailed) as caught:
        service.authenticate(header)
    return str(caught.value)


class TestTokens:
    def test_a_token_authenticates_its_user(self, catalog: Catalog) -> None:
        service, token_id, token = service_with_user(catalog)
        match = TOKEN.fullmatch(token)
        assert match is not None and match.group(1) == token_id
        principal = service.authenticate(f"Bearer {token}")
        user = service.get_user("alice")
        assert principal == Principal(user.id, "alice", Role.UPLOADER, "token")
        assert service.authenticate(f"bearer   {token}  ") == principal
        listed = service.list_tokens("alice")
        assert [(t.token_id, t.name, t.state()) for t in listed] == [
            (token_id, "scanner 3", "active")
        ]
        assert listed[0].last_used_at is not None

    def test_only_the_hash_of_the_secret_is_stored(self, catalog: Catalog) -> None:
        _, token_id, token = service_with_user(catalog)
        secret = token.rsplit("_", 1)[1]
        rows = execute(catalog, "SELECT * FROM api_token")
        assert len(rows) == 1
        cells = [str(cell) for cell in rows[0]]
        assert hashlib.sha256(secret.encode()).hexdigest() in cells
        assert token_id in cells
        assert not any(secret in cell or token in cell for cell in cells)

    def test_tokens_are_unique_and_long(self, catalog: Catalog) -> None:
        service, _, token = service_with_user(catalog)
        other = service.create_token("alice")[1]
        assert other != token
        assert len(token.rsplit("_", 1)[1]) * 4 >= 256

    def test_revoked_token_is_refused_at_once(self, catalog: Catalog) -> None:
        service, token_id, token = service_with_user(catalog)
        service.authenticate(f"Bearer {token}")  # cached
        assert service.revoke_token(token_id).state() == "revoked"
        assert "revoked" in refused(service, f"Bearer {token}")

    def test_revocation_elsewhere_is_honoured_within_the_ttl(self, catalog: Catalog) -> None:
        service, token_id, token = service_with_user(catalog, cache_ttl=0.2)
        service.authenticate(f"Bearer {token}")
        AccessService(catalog).revoke_token(token_id)  # another process, e.g. the CLI
        service.authenticate(f"Bearer {token}")  # still cached
        time.sleep(0.25)
        assert "revoked" in refused(service, f"Bearer {token}")

    def test_expired_token_is_refused(self, catalog: Catalog) -> None:
        service = AccessService(catalog)
        user = service.create_user("alice", Role.CURATOR)
        secret = "ab" * 32
        past = datetime.datetime.now(UTC) - datetime.timedelta(minutes=1)
        service.records.add_token(
            user.id, "0" * 16, "old", hashlib.sha256(secret.encode()).hexdigest(), past
        )
        message = refused(service, f"Bearer bb_{'0' * 16}_{secret}")
        assert "expired" in message and secret not in message

    def test_expiry_is_set_in_days(self, catalog: Catalog) -> None:
        service, _, _ = service_with_user(catalog)
        token_id, _ = service.create_token("alice", "short", expires_in_days=2)
        token = service.records.token_by_id(token_id)
        assert token is not None and token.expires_at is not None
        left = token.expires_at - datetime.datetime.now(UTC)
        assert datetime.timedelta(days=1, hours=23) < left <= datetime.timedelta(days=2)
        for days in (0, -1, 100_000):
            with pytest.raises(InvalidInput, match="expires_in_days"):
                service.create_token("alice", expires_in_days=days)
        with pytest.raises(NotFound):
            service.create_token("nobody")

    def test_disabled_user_is_refused_and_enabled_again(self, catalog: Catalog) -> None:
        service, _, token = service_with_user(catalog)
        service.authenticate(f"Bearer {token}")
        service.set_active("alice", False)
        assert "disabled" in refused(service, f"Bearer {token}")
        service.set_active("alice", True)
        assert service.authenticate(f"Bearer {token}").username == "alice"

    def test_a_new_role_applies_at_once(self, catalog: Catalog) -> None:
        service, _, token = service_with_user(catalog)
        assert service.authenticate(f"Bearer {token}").role is Role.UPLOADER
        service.set_role("alice", Role.CURATOR)
        assert service.authenticate(f"Bearer {token}").role is Role.CURATOR

    def test_malformed_credentials_are_refused_without_echo(self, catalog: Catalog) -> None:
        service, token_id, token = service_with_user(catalog)
        secret = token.rsplit("_", 1)[1]
        wrong = "f" * 64 if secret != "f" * 64 else "e" * 64
        cases = {
            None: "no credentials",
            "": "no credentials",
            "   ": "no credentials",
            f"Basic {token}": "Bearer",
            "Bearer": "Bearer",
            "Bearer ": "Bearer",
            "Bearer bb_short": "malformed API token",
            f"Bearer {token}x": "malformed API token",
            f"Bearer {token.upper()}": "neither",
            f"Bearer bb_{'1' * 16}_{secret}": "unknown API token",
            f"Bearer bb_{token_id}_{wrong}": "unknown API token",
            "Bearer some-opaque-token": "neither",
            "Bearer a.b.c": "does not accept OIDC",
        }
        for header, expected in cases.items():
            message = refused(service, header)
            assert expected in message, (header, message)
            assert secret not in message and wrong not in message

    def test_a_wrong_secret_does_not_hit_the_cache(self, catalog: Catalog) -> None:
        service, token_id, token = service_with_user(catalog)
        service.authenticate(f"Bearer {token}")
        assert "unknown" in refused(service, f"Bearer bb_{token_id}_{'0' * 64}")
        assert service.authenticate(f"Bearer {token}").username == "alice"

    def test_a_cached_check_reads_nothing(
        self, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        service, token_id, token = service_with_user(catalog)
        header = f"Bearer {token}"
        assert service.authenticate_cached(header) is None  # not seen yet
        principal = service.authenticate(header)

        def no_io(*args: object) -> None:
            raise AssertionError("the catalogue was read for a cached token")

        monkeypatch.setattr(service.records, "token_by_id", no_io)
        assert service.authenticate_cached(header) == principal
        assert service.authenticate(header) == principal
        assert service.authenticate_cached(f"Bearer bb_{token_id}_{'0' * 64}") is None
        assert service.authenticate_cached("Bearer not-a-token") is None
        assert service.authenticate_cached(None) is None
        monkeypatch.undo()
        service.revoke_token(token_id)
        assert service.authenticate_cached(header) is None


class TestUsersAndRoles:
    def test_create_user_checks_name_and_role(self, catalog: Catalog) -> None:
        service = AccessService(catalog)
        assert service.create_user("bob.smith@example.org", "curator").role == "curator"
        for bad in ("", " bob", "bob smith", "-bob", "b" * 65, "bob/1"):
            with pytest.raises(InvalidInput, match="username"):
                service.create_user(bad, Role.ADMIN)
        with pytest.raises(InvalidInput, match="not a role"):
            service.create_user("carol", "superuser")
        with pytest.raises(Conflict):
            service.create_user("bob.smith@example.org", Role.ADMIN)
        with pytest.raises(InvalidInput, match="not a role"):
            service.set_role("bob.smith@example.org", "root")

    @pytest.mark.parametrize(
        ("role", "read_all", "store", "own_only", "read_any", "admin"),
        [
            (Role.ADMIN, True, True, False, True, True),
            (Role.CURATOR, True, True, False, True, False),
            (Role.UPLOADER, False, True, True, True, False),
            (Role.RESEARCHER, False, False, False, False, False),
        ],
    )
    def test_what_each_role_may_do(
        self,
        role: Role,
        read_all: bool,
        store: bool,
        own_only: bool,
        read_any: bool,
        admin: bool,
    ) -> None:
        principal = Principal(1, "someone", role, "local")
        assert (
            principal.can_read_all,
            principal.can_store,
            principal.reads_only_own,
            principal.can_read_any,
            principal.is_admin,
        ) == (read_all, store, own_only, read_any, admin)
        expected = {
            Permission.READ_ALL: read_all,
            Permission.STORE: store,
            Permission.READ: read_any,
            Permission.ADMIN: admin,
        }
        for permission, allowed in expected.items():
            if allowed:
                require(principal, permission)
                AccessService.require(principal, permission)
            else:
                with pytest.raises(PermissionDenied, match=f"role {role.value}") as caught:
                    require(principal, permission)
                assert not isinstance(caught.value, AuthenticationFailed)

    def test_uploaders_read_what_they_stored(self, catalog: Catalog) -> None:
        service = AccessService(catalog)
        catalogue_studies(catalog, 1, 2)
        uploader = service.principal_for(service.create_user("up", Role.UPLOADER).username)
        curator = service.principal_for(service.create_user("cur", Role.CURATOR).username)
        researcher = service.principal_for(service.create_user("res", Role.RESEARCHER).username)
        assert service.record_upload(uploader, [uid(1)]) == 1
        assert service.may_read_study(uploader, uid(1))
        assert not service.may_read_study(uploader, uid(2))
        assert service.may_read_study(curator, uid(2))
        assert not service.may_read_study(researcher, uid(1))

    def test_principal_for_a_local_user(self, catalog: Catalog) -> None:
        service = AccessService(catalog)
        service.create_user("op", Role.ADMIN)
        assert service.principal_for("op").via == "local"
        service.set_active("op", False)
        with pytest.raises(PermissionDenied, match="disabled"):
            service.principal_for("op")
        with pytest.raises(NotFound):
            service.principal_for("nobody")


class TestAppendOnlyLog:
    def test_update_and_delete_are_refused(self, log_catalog: Catalog) -> None:
        records = AccessRecords(log_catalog)
        records.append_access_entries([event(0), event(1)])
        for sql in (
            "UPDATE access_log SET status = 500",
            "DELETE FROM access_log",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                execute(log_catalog, sql)
        if log_catalog.backend == "postgresql":
            with pytest.raises(DBAPIError, match="append-only"):
                execute(log_catalog, "TRUNCATE access_log")
        assert records.count_access_entries() == 2
        assert AccessService(log_catalog).check_access_log().intact

    def test_a_tampered_entry_breaks_the_chain(self, log_catalog: Catalog) -> None:
        service = AccessService(log_catalog)
        entries = service.records.append_access_entries([event(n) for n in range(4)])
        assert [e.id for e in service.access_entries(limit=2)] == [entries[3].id, entries[2].id]
        drop_triggers(log_catalog)
        execute(
            log_catalog,
            "UPDATE access_log SET username = 'mallory' WHERE id = :id",
            id=entries[2].id,
        )
        report = service.check_access_log()
        assert not report.intact and report.first_broken == entries[2].id
        assert report.entries == 3


# -- OIDC ------------------------------------------------------------------------------------

AUDIENCE = "biobank-node"


class Provider:
    """An OIDC provider: signing keys, and their JWKS served over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keys = [
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())),
                "kid": "rsa1",
            },
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())), "kid": "ec1"},
        ]
        body = json.dumps({"keys": [{**key, "use": "sig"} for key in keys]}).encode()
        self.requests = 0
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                provider.requests += 1
                if self.path != "/realms/test/protocol/openid-connect/certs":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/realms/test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def token(
        self,
        *,
        key: Any = None,
        algorithm: str = "RS256",
        kid: str | None = "rsa1",
        roles: list[str] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "0b6c6a3e-subject",
            "iat": now,
            "exp": now + 300,
            "preferred_username": "olivia",
            "realm_access": {"roles": roles if roles is not None else ["bb-uploader"]},
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(payload, key or self.rsa, algorithm=algorithm, headers=headers)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    served = Provider()
    yield served
    served.close()


def settings_for(provider: Provider, **overrides: Any) -> OidcSettings:
    data: dict[str, Any] = {
        "issuer": provider.issuer,
        "audience": AUDIENCE,
        "role_map": {
            "bb-admin": "admin",
            "bb-curator": "curator",
            "bb-uploader": "uploader",
            "bb-researcher": "researcher",
        },
    }
    data.update(overrides)
    return OidcSettings.from_mapping(data)


class TestOidc:
    def test_a_valid_token_provisions_the_user(self, catalog: Catalog, provider: Provider) -> None:
        service = AccessService(catalog, oidc=settings_for(provider))
        principal = service.authenticate(f"Bearer {provider.token()}")
        assert (principal.username, principal.role, principal.via) == (
            "olivia",
            Role.UPLOADER,
            "oidc",
        )
        user = service.get_user("olivia")
        assert user.id == principal.user_id
        assert user.oidc_subject == f"{provider.issuer}|0b6c6a3e-subject"
        assert user.role == "uploader"

        promoted = service.authenticate(
            f"Bearer {provider.token(roles=['bb-uploader', 'bb-admin', 'other'], jti='2')}"
        )
        assert promoted.role is Role.ADMIN and promoted.user_id == user.id
        assert service.get_user("olivia").role == "admin"
        assert len(service.list_users()) == 1

    def test_es256_and_space_separated_roles(self, catalog: Catalog, provider: Provider) -> None:
        service = AccessService(
            catalog, oidc=settings_for(provider, roles_claim="scope", username_claim="email")
        )
        token = provider.token(
            key=provider.ec,
            algorithm="ES256",
            kid="ec1",
            scope="openid bb-curator",
            email="olivia@example.org",
        )
        principal = service.authenticate(f"Bearer {token}")
        assert (principal.username, principal.role) == ("olivia@example.org", Role.CURATOR)

    @pytest.mark.parametrize(
        ("token_args", "message"),
        [
            ({"iss": "https://elsewhere/realms/test"}, "another identity provider"),
            ({"aud": "another-client"}, "not issued for this node"),
            ({"exp": int(time.time()) - 600}, "expired"),
            ({"nbf": int(time.time()) + 600}, "not valid yet"),
            ({"kid": "nope"}, "unknown kid"),
            ({"kid": None}, "no signing key"),
            ({"sub": None}, "'sub'"),
            ({"preferred_username": None}, "username claim"),
            ({"preferred_username": "not a name"}, "not a usable username"),
        ],
    )
    def test_invalid_tokens_are_refused(
        self,
        catalog: Catalog,
        provider: Provider,
        token_args: dict[str, Any],
        message: str,
    ) -> None:
        service = AccessService(catalog, oidc=settings_for(provider))
        token = provider.token(**token_args)
        assert message in refused(service, f"Bearer {token}")
        assert service.list_users() == []

    def test_a_forged_signature_is_refused(self, catalog: Catalog, provider: Provider) -> None:
        service = AccessService(catalog, oidc=settings_for(provider))
        assert "signature" in refused(service, f"Bearer {provider.token(key=provider.other)}")
        good = provider.token().split(".")
        tampered = jwt.encode({"sub": "x"}, provider.other, algorithm="RS256").split(".")
        spliced = ".".join([good[0], tampered[1], good[2]])
        assert "signature" in refused(service, f"Bearer {spliced}")

    def test_other_algorithms_are_refused(self, catalog: Catalog, provider: Provider) -> None:
        service = AccessService(catalog, oidc=settings_for(provider))
        hs256 = provider.token(key="a-shared-secret-of-32-bytes-long!", algorithm="HS256")
        assert "RS256 and ES256 only" in refused(service, f"Bearer {hs256}")
        claims = jwt.decode(provider.token(), options={"verify_signature": False})
        unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa1"})
        assert "RS256 and ES256 only" in refused(service, f"Bearer {unsigned}")
        assert "well-formed" in refused(service, "Bearer not.a.jwt")

    def test_no_mapped_role_is_permission_denied(
        self, catalog: Catalog, provider: Provider
    ) -> None:
        service = AccessService(catalog, oidc=settings_for(provider))
        with pytest.raises(PermissionDenied, match="none of the roles") as caught:
            service.authenticate(f"Bearer {provider.token(roles=['offline_access'])}")
        assert not isinstance(caught.value, AuthenticationFailed)
        assert service.list_users() == []

    def test_a_taken_username_or_disabled_user_is_refused(
        self, catalog: Catalog, provider: Provider
    ) -> None:
        service = AccessService(catalog, oidc=settings_for(provider), cache_ttl=0)
        service.create_user("olivia", Role.RESEARCHER)
        assert "another account" in refused(service, f"Bearer {provider.token()}")
        bob = provider.token(sub="bob-subject", preferred_username="bob")
        assert service.authenticate(f"Bearer {bob}").username == "bob"
        service.set_active("bob", False)
        assert "disabled" in refused(service, f"Bearer {bob}")

    def test_valid_tokens_are_cached(self, catalog: Catalog, provider: Provider) -> None:
        service = AccessService(catalog, oidc=settings_for(provider))
        header = f"Bearer {provider.token()}"
        first = service.authenticate(header)
        before = provider.requests
        for _ in range(50):
            assert service.authenticate(header) == first
        assert provider.requests == before  # the keys were not fetched again

    def test_unreachable_keys_are_an_authentication_failure(self, catalog: Catalog) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        settings = OidcSettings(issuer=f"http://127.0.0.1:{port}/realms/x", audience=AUDIENCE)
        service = AccessService(catalog, oidc=settings)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode({"sub": "x"}, key, algorithm="RS256", headers={"kid": "k"})
        assert "cannot fetch" in refused(service, f"Bearer {token}")


class TestOidcSettings:
    def test_defaults_fit_keycloak(self) -> None:
        settings = OidcSettings.from_mapping(
            {"issuer": "https://id.example/realms/bb", "audience": "node"}
        )
        assert settings.resolved_jwks_url == (
            "https://id.example/realms/bb/protocol/openid-connect/certs"
        )
        assert settings.username_claim == "preferred_username"
        assert settings.roles_claim == "realm_access.roles"
        assert dict(settings.role_map) == {role.value: role for role in Role}
        explicit = OidcSettings.from_mapping(
            {
                "issuer": "https://id.example",
                "audience": "node",
                "jwks_url": "https://id.example/keys",
                "leeway": 5,
            }
        )
        assert explicit.resolved_jwks_url == "https://id.example/keys" and explicit.leeway == 5

    @pytest.mark.parametrize(
        ("data", "key"),
        [
            ({"audience": "node"}, "oidc.issuer"),
            ({"issuer": "https://id.example"}, "oidc.audience"),
            ({"issuer": "id.example", "audience": "node"}, "oidc.issuer"),
            ({"issuer": "https://i", "audience": "n", "jwks_url": "file:///x"}, "oidc.jwks_url"),
            ({"issuer": "https://i", "audience": "n", "role_map": {"x": "root"}}, "role_map.x"),
            ({"issuer": "https://i", "audience": "n", "role_map": []}, "oidc.role_map"),
            ({"issuer": "https://i", "audience": "n", "leeway": "10"}, "oidc.leeway"),
            ({"issuer": "https://i", "audience": "n", "leeway": 3600}, "oidc.leeway"),
            ({"issuer": "https://i", "audience": "n", "roles_claim": 3}, "oidc.roles_claim"),
            ({"issuer": "https://i", "audience": "n", "client_secret": "x"}, "oidc.client_secret"),
        ],
    )
    def test_errors_name_the_key(self, data: dict[str, Any], key: str) -> None:
        with pytest.raises(InvalidInput, match=re.escape(key)) as caught:
            OidcSettings.from_mapping(data, source="/srv/node.yaml")
        assert str(caught.value).startswith("/srv/node.yaml: ")

    def test_not_a_mapping(self) -> None:
        with pytest.raises(InvalidInput, match="mapping"):
            OidcSettings.from_mapping(["issuer"])  # type: ignore[arg-type]


def test_access_event_times_are_kept_to_the_microsecond(log_catalog: Catalog) -> None:
    records = AccessRecords(log_catalog)
    at = datetime.datetime(
        2026, 5, 4, 3, 2, 1, 999999, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    records.append_access_entries(
        [AccessEvent(at=at, username=None, role=None, action="a", resource="r", status=401)]
    )
    (entry,) = records.list_access_entries()
    assert entry.at == at and entry.at.tzinfo == UTC
    assert records.verify_access_chain() is None
