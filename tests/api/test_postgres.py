"""The service on a PostgreSQL catalogue: STOW-RS, QIDO-RS, WADO-RS metadata and owners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.ingest.node import NodeRole, init_node
from tests.api.conftest import Served, dicom_bytes, serve_node, stow_body
from tests.catalog.conftest import new_database_url

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def served_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("api-pg")
    for url in new_database_url("postgresql", tmp):
        node = init_node(tmp / "home", site="pg", role=NodeRole.SITE, database_url=url)
        thread, tokens = serve_node(node, jobs=1)
        with thread as port:
            yield Served(f"http://127.0.0.1:{port}", tokens, node)


def _value(element: dict[str, Any], tag: str) -> Any:
    return element.get(tag, {}).get("Value", [None])[0]


def test_store_search_and_read_on_postgresql(served_pg: Served) -> None:
    phi = make_patient_phi(41, seed=3)
    body, content_type = stow_body([dicom_bytes(ds) for ds in make_ct_series(phi, 4, 32, 32)])
    with served_pg.client("up1") as uploader, served_pg.client("up2") as other:
        stored = uploader.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        )
        assert stored.status_code == 200, stored.text
        (study,) = uploader.get("/dicomweb/studies").json()
        assert _value(study, "00201208") == 4
        name = _value(study, "00100010")["Alphabetic"]
        assert phi.family_name not in stored.text + name
        found = uploader.get(
            "/dicomweb/studies",
            params={"PatientName": name[:4].lower(), "fuzzymatching": "true"},
        ).json()
        assert [_value(s, "0020000D") for s in found] == [_value(study, "0020000D")]
        uid = _value(study, "0020000D")
        (series,) = uploader.get(f"/dicomweb/studies/{uid}/series").json()
        metadata = uploader.get(
            f"/dicomweb/studies/{uid}/series/{_value(series, '0020000E')}/metadata"
        ).json()
        assert len(metadata) == 4
        assert other.get("/dicomweb/studies").json() == []  # owners, on PostgreSQL too
