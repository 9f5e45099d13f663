"""Data queries on clinical records: raise, answer, correct, close, reopen — both backends."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import insert, update

from biobank.catalog import Catalog
from biobank.catalog.data_queries import DataQueries, QueryAction, QueryState, mark_corrected
from biobank.catalog.omop import CLINICAL_RECORD, PERSON
from biobank.errors import Conflict, InvalidInput, NotFound

VARIABLES = {"prostate": ["psa", "gleason_score", "isup_grade"], "followup": ["psa"]}


def add_record(
    catalog: Catalog, pseudonym: str, *, site: str = "site-a", form: str = "prostate"
) -> int:
    now = dt.datetime.now(dt.UTC)
    with catalog._writing("test record") as conn:
        person_id = conn.execute(
            insert(PERSON)
            .values(
                gender_concept_id=8507,
                year_of_birth=1950,
                race_concept_id=0,
                ethnicity_concept_id=0,
                person_source_value=pseudonym,
            )
            .returning(PERSON.c.person_id)
        ).scalar_one()
        return int(
            conn.execute(
                insert(CLINICAL_RECORD)
                .values(
                    form=form,
                    form_version=1,
                    patient_pseudonym=pseudonym,
                    record_key="",
                    person_id=person_id,
                    site=site,
                    version=1,
                    raw_digest="0" * 64,
                    submitter="uploader",
                    created_at=now,
                    updated_at=now,
                    record_values=json.dumps({"psa": 4100.0}),
                )
                .returning(CLINICAL_RECORD.c.id)
            ).scalar_one()
        )


def bump_version(catalog: Catalog, record_id: int, version: int) -> None:
    with catalog._writing("test version") as conn:
        conn.execute(
            update(CLINICAL_RECORD).where(CLINICAL_RECORD.c.id == record_id).values(version=version)
        )


class TestDataQueries:
    def queries(self, catalog: Catalog) -> DataQueries:
        return DataQueries(catalog, variables=lambda form: VARIABLES[form])

    def test_raise_answer_close_with_history(self, catalog: Catalog) -> None:
        record = add_record(catalog, "PAAAA")
        queries = self.queries(catalog)
        raised = queries.raise_query(record, "psa", "PSA 4100 ng/mL: a typo?", "cur")
        assert raised.state is QueryState.OPEN
        assert (raised.record_id, raised.field, raised.site) == (record, "psa", "site-a")
        assert (raised.form, raised.patient_pseudonym, raised.raised_by) == (
            "prostate",
            "PAAAA",
            "cur",
        )
        answered = queries.answer(raised.id, "Yes: 4.1 ng/mL", "up1")
        assert answered.state is QueryState.ANSWERED
        closed = queries.close(raised.id, "cur", "thanks")
        assert closed.state is QueryState.CLOSED
        history = [(e.action, e.actor, e.text, e.record_version) for e in closed.history]
        assert history == [
            (QueryAction.RAISE, "cur", "PSA 4100 ng/mL: a typo?", 1),
            (QueryAction.ANSWER, "up1", "Yes: 4.1 ng/mL", 1),
            (QueryAction.CLOSE, "cur", "thanks", 1),
        ]
        assert closed.updated_at >= closed.created_at
        body = closed.to_json()
        assert body["state"] == "closed" and len(body["history"]) == 3

    def test_closed_queries_take_no_answer_until_reopened(self, catalog: Catalog) -> None:
        record = add_record(catalog, "PBBBB")
        queries = self.queries(catalog)
        query = queries.raise_query(record, None, "whole record looks shifted", "cur")
        assert query.field is None
        queries.close(query.id, "cur")
        with pytest.raises(Conflict, match="closed.*reopen"):
            queries.answer(query.id, "late answer", "up1")
        with pytest.raises(Conflict, match="already closed"):
            queries.close(query.id, "cur")
        reopened = queries.reopen(query.id, "cur", "the dates are still off")
        assert reopened.state is QueryState.OPEN
        with pytest.raises(Conflict, match="not closed"):
            queries.reopen(query.id, "cur", "again")
        assert queries.answer(query.id, "fixed now", "up1").state is QueryState.ANSWERED
        actions = [e.action.value for e in queries.get(query.id).history]
        assert actions == ["raise", "close", "reopen", "answer"]

    def test_a_corrected_record_answers_its_open_queries(self, catalog: Catalog) -> None:
        record = add_record(catalog, "PCCCC")
        other = add_record(catalog, "PDDDD")
        queries = self.queries(catalog)
        on_psa = queries.raise_query(record, "psa", "typo?", "cur")
        on_gleason = queries.raise_query(record, "gleason_score", "3+4 is 7", "cur")
        on_record = queries.raise_query(record, None, "check all", "cur")
        closed = queries.raise_query(record, "psa", "old", "cur")
        queries.close(closed.id, "cur")
        elsewhere = queries.raise_query(other, "psa", "typo?", "cur")
        bump_version(catalog, record, 2)
        moved = queries.on_record_corrected(record, 2, "up1", changed_fields=["psa"])
        assert moved == [on_psa.id, on_record.id]
        assert queries.get(on_psa.id).state is QueryState.ANSWERED
        assert queries.get(on_gleason.id).state is QueryState.OPEN
        assert queries.get(closed.id).state is QueryState.CLOSED
        assert queries.get(elsewhere.id).state is QueryState.OPEN
        last = queries.get(on_psa.id).history[-1]
        assert (last.action, last.actor, last.record_version) == (QueryAction.CORRECT, "up1", 2)
        # without changed fields every open or answered query of the record moves
        with catalog._writing("test") as conn:
            assert mark_corrected(conn, record, 3, "up1") == [
                on_psa.id,
                on_gleason.id,
                on_record.id,
            ]
        assert queries.get(on_gleason.id).state is QueryState.ANSWERED
        assert queries.on_record_corrected(other + 100, 2, "up1") == []

    def test_list_filters_by_site_state_form_and_record(self, catalog: Catalog) -> None:
        a = add_record(catalog, "PEEEE", site="site-a")
        b = add_record(catalog, "PFFFF", site="site-b", form="followup")
        queries = self.queries(catalog)
        qa = queries.raise_query(a, "psa", "m1", "cur")
        qb = queries.raise_query(b, "psa", "m2", "cur")
        qa2 = queries.raise_query(a, "isup_grade", "m3", "cur")
        queries.answer(qa2.id, "ok", "up1")
        assert [q.id for q in queries.list()] == [qa.id, qb.id, qa2.id]
        assert [q.id for q in queries.list(site="site-b")] == [qb.id]
        assert [q.id for q in queries.list(state=QueryState.ANSWERED)] == [qa2.id]
        assert [q.id for q in queries.list(form="prostate")] == [qa.id, qa2.id]
        assert [q.id for q in queries.list(record_id=b)] == [qb.id]
        assert [q.id for q in queries.list(limit=1, offset=1)] == [qb.id]
        assert queries.list()[0].history == ()
        assert queries.counts() == {
            "site-a": {"open": 1, "answered": 1, "closed": 0},
            "site-b": {"open": 1, "answered": 0, "closed": 0},
        }
        assert queries.counts(form="followup") == {
            "site-b": {"open": 1, "answered": 0, "closed": 0}
        }

    def test_errors_say_what_to_do(self, catalog: Catalog) -> None:
        record = add_record(catalog, "PGGGG")
        queries = self.queries(catalog)
        with pytest.raises(NotFound, match="no clinical record 9999"):
            queries.raise_query(9999, "psa", "m", "cur")
        with pytest.raises(InvalidInput, match="'pas' is not a variable of form prostate"):
            queries.raise_query(record, "pas", "m", "cur")
        with pytest.raises(InvalidInput, match="message is empty"):
            queries.raise_query(record, "psa", "   ", "cur")
        with pytest.raises(NotFound, match="no data query 42"):
            queries.get(42)
        with pytest.raises(NotFound, match="no data query 42"):
            queries.answer(42, "x", "up1")
        query = queries.raise_query(record, "psa", "m", "cur")
        with pytest.raises(InvalidInput, match="answer is empty"):
            queries.answer(query.id, "", "up1")
        with pytest.raises(InvalidInput, match="characters"):
            queries.answer(query.id, "x" * 5000, "up1")
        assert queries.get(query.id).state is QueryState.OPEN

    def test_without_a_form_registry_the_record_fields_are_accepted(self, catalog: Catalog) -> None:
        record = add_record(catalog, "PHHHH")
        queries = DataQueries(catalog)
        assert queries.raise_query(record, "psa", "m", "cur").field == "psa"
        with pytest.raises(InvalidInput, match="not a variable"):
            queries.raise_query(record, "isup_grade", "m", "cur")
