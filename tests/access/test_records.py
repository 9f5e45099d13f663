"""The access tables (users, tokens, study owners, access log), run on SQLite and PostgreSQL."""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import hashlib
import multiprocessing
import threading

import pytest
from sqlalchemy import select

from biobank.catalog import Catalog
from biobank.catalog.access import (
    GENESIS_HASH,
    AccessEvent,
    AccessRecords,
    access_entry_hash,
    owned_studies_condition,
)
from biobank.catalog.schema import STUDY
from biobank.errors import Conflict, InvalidInput, NotFound
from tests.catalog.factories import execute, record, stored, uid

UTC = datetime.UTC
T0 = datetime.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
HASH = hashlib.sha256(b"secret").hexdigest()


def event(n: int = 0, **fields: object) -> AccessEvent:
    values: dict[str, object] = {
        "at": T0 + datetime.timedelta(minutes=n),
        "username": "alice",
        "role": "uploader",
        "action": "wado.retrieve",
        "resource": uid(n),
        "status": 200,
        "client": "10.0.0.7",
        "detail": "",
    }
    values.update(fields)
    return AccessEvent(**values)  # type: ignore[arg-type]


def catalogue_studies(catalog: Catalog, *studies: int) -> None:
    batch = catalog.start_batch(role="site", sources=["in"], profile=None, key_id=None)
    items = [stored(record(uid(s, 1, 1), series=uid(s, 1), study=uid(s))) for s in studies]
    catalog.record_items(batch, items)


class TestUsers:
    def test_add_get_list(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        bob = records.add_user("bob", "curator")
        alice = records.add_user("alice", "uploader", oidc_subject="https://idp|42")
        assert (bob.username, bob.role, bob.active, bob.oidc_subject) == (
            "bob",
            "curator",
            True,
            None,
        )
        assert bob.created_at.tzinfo is not None
        assert records.get_user("alice") == alice
        assert records.user_by_id(bob.id) == bob
        assert records.user_by_id(9999) is None
        assert records.user_by_subject("https://idp|42") == alice
        assert records.user_by_subject("https://idp|43") is None
        assert [u.username for u in records.list_users()] == ["alice", "bob"]

    def test_duplicates_are_conflicts(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        records.add_user("bob", "curator", oidc_subject="iss|1")
        with pytest.raises(Conflict, match="already exists"):
            records.add_user("bob", "admin")
        with pytest.raises(Conflict, match="OIDC subject"):
            records.add_user("carol", "admin", oidc_subject="iss|1")
        assert len(records.list_users()) == 1

    def test_unknown_user_is_not_found(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        with pytest.raises(NotFound, match="biobank user list"):
            records.get_user("nobody")
        with pytest.raises(NotFound):
            records.set_active("nobody", False)
        with pytest.raises(NotFound):
            records.set_role("nobody", "admin")

    def test_set_active_and_role(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        records.add_user("bob", "uploader")
        assert records.set_active("bob", False).active is False
        assert records.get_user("bob").active is False
        assert records.set_active("bob", True).active is True
        assert records.set_role("bob", "admin").role == "admin"

    def test_values_too_long_are_refused(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        with pytest.raises(InvalidInput, match="username"):
            records.add_user("x" * 65, "admin")
        with pytest.raises(InvalidInput, match="role"):
            records.add_user("bob", "r" * 17)


class TestTokens:
    def test_add_read_list_revoke_touch(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        bob = records.add_user("bob", "uploader")
        later = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
        added = records.add_token(bob.id, "a" * 16, "scanner", HASH, later)
        assert (added.username, added.role, added.user_active, added.name) == (
            "bob",
            "uploader",
            True,
            "scanner",
        )
        assert added.secret_hash == HASH and added.state() == "active"
        assert "secret_hash" not in added.to_json()
        records.add_token(bob.id, "b" * 16, "laptop", HASH, None)
        assert records.token_by_id("a" * 16) == added
        assert records.token_by_id("c" * 16) is None
        assert [t.token_id for t in records.list_tokens()] == ["a" * 16, "b" * 16]
        assert [t.token_id for t in records.list_tokens("bob")] == ["a" * 16, "b" * 16]
        with pytest.raises(NotFound):
            records.list_tokens("nobody")

        revoked = records.revoke_token("a" * 16)
        assert revoked.revoked_at is not None and revoked.state() == "revoked"
        again = records.revoke_token("a" * 16)
        assert again.revoked_at == revoked.revoked_at
        with pytest.raises(NotFound):
            records.revoke_token("c" * 16)

        when = datetime.datetime.now(UTC)
        records.touch_token("b" * 16, when)
        records.touch_token("b" * 16, when - datetime.timedelta(hours=1))  # never goes back
        touched = records.token_by_id("b" * 16)
        assert touched is not None and touched.last_used_at == when

    def test_expired_state(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        bob = records.add_user("bob", "uploader")
        past = datetime.datetime.now(UTC) - datetime.timedelta(seconds=1)
        assert records.add_token(bob.id, "a" * 16, "", HASH, past).state() == "expired"

    def test_bad_tokens_are_refused(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        bob = records.add_user("bob", "uploader")
        with pytest.raises(NotFound):
            records.add_token(bob.id + 1, "a" * 16, "", HASH, None)
        with pytest.raises(InvalidInput, match="64 lowercase hex"):
            records.add_token(bob.id, "a" * 16, "", "secret", None)
        with pytest.raises(InvalidInput, match="timezone-aware"):
            records.add_token(bob.id, "a" * 16, "", HASH, datetime.datetime(2030, 1, 1))
        records.add_token(bob.id, "a" * 16, "", HASH, None)
        with pytest.raises(Conflict):
            records.add_token(bob.id, "a" * 16, "", HASH, None)


class TestStudyOwners:
    def test_owners_are_added_once_and_unknown_uids_ignored(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        catalogue_studies(catalog, 1, 2, 3)
        alice = records.add_user("alice", "uploader")
        bob = records.add_user("bob", "uploader")
        assert records.add_study_owners(alice.id, [uid(1), uid(2), uid(99)]) == 2
        assert records.add_study_owners(alice.id, [uid(2), uid(1)]) == 0
        assert records.add_study_owners(bob.id, [uid(2)]) == 1
        assert records.add_study_owners(bob.id, []) == 0
        assert records.owned_study_uids(alice.id) == [uid(1), uid(2)]
        assert records.owned_study_uids(bob.id) == [uid(2)]
        assert records.owns_study(alice.id, uid(1))
        assert not records.owns_study(bob.id, uid(1))
        assert not records.owns_study(alice.id, uid(99))
        with pytest.raises(NotFound):
            records.add_study_owners(bob.id + 100, [uid(1)])

    def test_owned_studies_condition_filters_a_study_query(self, catalog: Catalog) -> None:
        records = AccessRecords(catalog)
        catalogue_studies(catalog, 1, 2, 3)
        alice = records.add_user("alice", "uploader")
        records.add_study_owners(alice.id, [uid(3), uid(1)])
        stmt = (
            select(STUDY.c.study_instance_uid)
            .where(owned_studies_condition(alice.id))
            .order_by(STUDY.c.study_instance_uid)
        )
        with catalog._reading("test") as conn:
            assert list(conn.execute(stmt).scalars()) == [uid(1), uid(3)]


def append_batches(url: str, writer: int, batches: int, size: int) -> int:
    """Append ``batches`` batches from a process of its own (module level: picklable)."""
    with Catalog(url) as catalog:
        records = AccessRecords(catalog)
        for b in range(batches):
            records.append_access_entries(
                [event(n, detail=f"writer {writer} batch {b}") for n in range(size)]
            )
    return batches * size


class TestAccessLog:
    def test_entries_chain_from_genesis(self, log_catalog: Catalog) -> None:
        records = AccessRecords(log_catalog)
        assert records.append_access_entries([]) == []
        first = records.append_access_entries([event(0), event(1, username=None, role=None)])
        second = records.append_access_entries([event(2, client=None, detail="ünïcode")])
        entries = [*first, *second]
        assert entries[0].prev_hash == GENESIS_HASH
        for before, after in zip(entries, entries[1:], strict=False):
            assert after.prev_hash == before.entry_hash
            assert after.id > before.id
        for entry in entries:
            assert entry.entry_hash == access_entry_hash(entry.prev_hash, entry)
        stored_entries = list(records.iter_access_entries())
        assert stored_entries == entries
        assert stored_entries[0].at == T0
        assert records.count_access_entries() == 3
        assert records.verify_access_chain() is None
        report = records.check_access_chain()
        assert report.intact and report.entries == 3

    def test_filters_and_order(self, log_catalog: Catalog) -> None:
        records = AccessRecords(log_catalog)
        records.append_access_entries(
            [
                event(0),
                event(1, username="bob", action="stow.store"),
                event(2),
                event(3, username="bob"),
            ]
        )
        newest = records.list_access_entries()
        assert [e.at for e in newest] == [T0 + datetime.timedelta(minutes=n) for n in (3, 2, 1, 0)]
        assert [e.resource for e in records.list_access_entries(username="bob")] == [
            uid(3),
            uid(1),
        ]
        assert [e.resource for e in records.list_access_entries(action="stow.store")] == [uid(1)]
        window = records.list_access_entries(
            since=T0 + datetime.timedelta(minutes=1), until=T0 + datetime.timedelta(minutes=3)
        )
        assert [e.resource for e in window] == [uid(2), uid(1)]
        assert len(records.list_access_entries(limit=1)) == 1
        oldest = list(records.iter_access_entries(username="alice", limit=1))
        assert [e.resource for e in oldest] == [uid(0)]
        with pytest.raises(InvalidInput, match="timezone-aware"):
            records.list_access_entries(since=datetime.datetime(2026, 1, 1))
        with pytest.raises(InvalidInput, match="limit"):
            records.list_access_entries(limit=-1)

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"at": datetime.datetime(2026, 1, 1)}, "naive"),
            ({"action": "a" * 65}, "action is longer than 64"),
            ({"client": "c" * 65}, "client is longer than 64"),
            ({"detail": "nul\x00"}, "NUL"),
        ],
    )
    def test_unstorable_entries_are_refused_whole(
        self, log_catalog: Catalog, fields: dict[str, object], message: str
    ) -> None:
        records = AccessRecords(log_catalog)
        with pytest.raises(InvalidInput, match=message):
            records.append_access_entries([event(0), event(1, **fields)])
        assert records.count_access_entries() == 0

    def test_tampering_is_found(self, log_catalog: Catalog) -> None:
        records = AccessRecords(log_catalog)
        entries = records.append_access_entries([event(n) for n in range(5)])
        drop_triggers(log_catalog)
        execute(log_catalog, f"UPDATE access_log SET status = 500 WHERE id = {entries[3].id}")
        report = records.check_access_chain()
        assert report.first_broken == entries[3].id and "changed" in report.reason
        execute(log_catalog, f"DELETE FROM access_log WHERE id = {entries[1].id}")
        assert records.verify_access_chain() == entries[2].id
        assert "removed" in records.check_access_chain().reason

    def test_concurrent_threads_keep_one_chain(self, log_catalog: Catalog) -> None:
        records = AccessRecords(log_catalog)
        errors: list[BaseException] = []

        def write(writer: int) -> None:
            try:
                for b in range(15):
                    records.append_access_entries(
                        [event(n, detail=f"{writer}/{b}") for n in range(4)]
                    )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert records.count_access_entries() == 4 * 15 * 4
        assert records.verify_access_chain() is None

    def test_concurrent_processes_keep_one_chain(self, log_catalog: Catalog) -> None:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            futures = [pool.submit(append_batches, log_catalog.url, w, 20, 5) for w in range(2)]
            assert sum(f.result(timeout=120) for f in futures) == 200
        records = AccessRecords(log_catalog)
        assert records.count_access_entries() == 200
        assert records.verify_access_chain() is None


def drop_triggers(catalog: Catalog) -> None:
    """Drop the append-only triggers (to tamper on purpose)."""
    for name in ("access_log_no_update", "access_log_no_delete"):
        suffix = " ON access_log" if catalog.backend == "postgresql" else ""
        execute(catalog, f"DROP TRIGGER {name}{suffix}")
