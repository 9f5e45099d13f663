"""Builders of catalogue inputs and a raw view of the tables, for the catalogue tests."""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any

from sqlalchemy import text

from biobank.catalog import (
    Catalog,
    InstanceRecord,
    ItemInput,
    ItemOutcome,
    create_catalog_engine,
)

ROOT = "1.2.826.0.1.3680043.10.543"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def uid(*parts: int | str) -> str:
    """A synthetic UID under the test root."""
    return ".".join([ROOT, *(str(part) for part in parts)])


def digest(content: str) -> str:
    """The SHA-256 of ``content``: a well-formed blob digest."""
    return hashlib.sha256(content.encode()).hexdigest()


def header(sop_instance_uid: str, instance_number: int | None) -> str:
    """A small DICOM JSON header naming the instance."""
    data: dict[str, Any] = {
        "00080016": {"vr": "UI", "Value": [CT_IMAGE]},
        "00080018": {"vr": "UI", "Value": [sop_instance_uid]},
    }
    if instance_number is not None:
        data["00200013"] = {"vr": "IS", "Value": [instance_number]}
    return json.dumps(data)


def record(
    sop_instance_uid: str,
    *,
    series: str = uid(1, 1),
    study: str = uid(1),
    patient: str = "PSN-A",
    content: str = "",
    **fields: Any,
) -> InstanceRecord:
    """An instance; its digest depends on its UID and ``content``."""
    fields.setdefault("modality", "CT")
    return InstanceRecord(
        patient_pseudonym=patient,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=CT_IMAGE,
        blob_digest=digest(sop_instance_uid + content),
        blob_size=1000 + len(content),
        header_json=header(sop_instance_uid, fields.get("instance_number")),
        **fields,
    )


def stored(instance: InstanceRecord, source_path: str | None = None) -> ItemInput:
    """A candidate item for ``instance``."""
    return ItemInput(
        source_path=source_path or f"in/{instance.sop_instance_uid}.dcm",
        outcome=ItemOutcome.STORED,
        instance=instance,
        bytes_in=instance.blob_size,
    )


def problem(outcome: ItemOutcome, source_path: str, reason: str, bytes_in: int = 0) -> ItemInput:
    """A rejected or quarantined item."""
    return ItemInput(source_path=source_path, outcome=outcome, reason=reason, bytes_in=bytes_in)


def series_of(study: int, series: int, count: int, **fields: Any) -> list[InstanceRecord]:
    """``count`` instances of series ``uid(study, series)`` in study ``uid(study)``."""
    return [
        record(
            uid(study, series, n),
            series=uid(study, series),
            study=uid(study),
            instance_number=n,
            **fields,
        )
        for n in range(1, count + 1)
    ]


TABLES = ("patient", "study", "series", "instance")


def dump(catalog: Catalog, tables: tuple[str, ...] = TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables``, in id order (read directly, bypassing the repository)."""
    engine = create_catalog_engine(catalog.url)
    try:
        with engine.connect() as conn:
            return {
                table: [
                    tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))
                ]
                for table in tables
            }
    finally:
        engine.dispose()


def execute(catalog: Catalog, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run raw SQL on the catalogue's database (to inspect or to break things on purpose)."""
    engine = create_catalog_engine(catalog.url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def day(n: int) -> datetime.date:
    """2020-01-01 plus ``n`` days."""
    return datetime.date(2020, 1, 1) + datetime.timedelta(days=n)
