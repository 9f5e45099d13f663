"""``biobank verify``: every blob still matches its hash and every catalogue row has its blob.

Fixity has two sides. The store's own: each blob is re-hashed and must match its name. The
catalogue's: each instance row (and each recorded conflict) names a blob that must exist, and
each blob should be named by some row — a blob that none names is an *orphan*, left by an
ingest killed between writing blobs and committing their rows (harmless; the next run of the
same input names it again). ``--repair`` removes orphans, moves corrupt or misplaced files to
``blobs/corrupt/`` (so the next ingest of the source writes a good copy), and reports what it
cannot fix: rows whose blob is missing or corrupt must be restored by ingesting their source
again.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biobank.catalog import Catalog
from biobank.errors import Conflict
from biobank.ingest.node import Node
from biobank.ingest.pipeline import close_stale_batches
from biobank.store.blobs import FileBlobStore

_SHOWN = 50


@dataclass
class VerifyReport:
    """The findings (digests and SOP Instance UIDs only: no PHI)."""

    blobs_checked: int = 0
    rows_checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)  # digest → SOP UIDs
    corrupt_referenced: dict[str, list[str]] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)
    repaired: bool = False
    orphans_removed: int = 0
    moved_aside: int = 0
    stale_temporaries_removed: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (orphans alone are not an error once repaired)."""
        unfixed_orphans = self.orphans and not self.repaired
        return not (self.corrupt or self.misplaced or self.missing or unfixed_orphans)

    @property
    def unfixable(self) -> int:
        """Catalogue rows whose content is lost from the store until re-ingested."""
        rows = {u for uids in self.missing.values() for u in uids}
        rows |= {u for uids in self.corrupt_referenced.values() for u in uids}
        return len(rows)

    def to_json(self) -> dict[str, Any]:
        """JSON for ``--json`` (long lists cut to their first entries)."""
        return {
            "ok": self.ok,
            "blobs_checked": self.blobs_checked,
            "rows_checked": self.rows_checked,
            "corrupt": self.corrupt[:_SHOWN],
            "corrupt_count": len(self.corrupt),
            "misplaced": self.misplaced[:_SHOWN],
            "missing_blobs": dict(list(self.missing.items())[:_SHOWN]),
            "missing_count": len(self.missing),
            "orphans": self.orphans[:_SHOWN],
            "orphan_count": len(self.orphans),
            "repaired": self.repaired,
            "orphans_removed": self.orphans_removed,
            "moved_aside": self.moved_aside,
            "stale_temporaries_removed": self.stale_temporaries_removed,
            "rows_to_reingest": self.unfixable,
        }


def verify_node(node: Node, *, repair: bool = False) -> VerifyReport:
    """Check the node's store against itself and its catalogue; optionally repair."""
    store = node.open_store()
    catalog = node.open_catalog()
    try:
        if repair:
            close_stale_batches(catalog)
            if catalog.running_batches():
                raise Conflict(
                    "an ingest is running on this node; run verify --repair after it ends "
                    "(its blobs are not in the catalogue yet and would look like orphans)"
                )
        return _verify(store, catalog, node.blob_root, repair)
    finally:
        catalog.close()


def _verify(store: FileBlobStore, catalog: Catalog, root: Path, repair: bool) -> VerifyReport:
    report = VerifyReport(repaired=repair)
    fixity = store.check_fixity()
    report.blobs_checked = fixity.checked
    report.corrupt = fixity.corrupt
    report.misplaced = fixity.misplaced
    report.stale_temporaries_removed = fixity.stale_temporaries_removed
    referenced: dict[str, list[str]] = defaultdict(list)
    for ref in catalog.blob_references():
        report.rows_checked += 1
        referenced[ref.digest].append(ref.sop_instance_uid or f"({ref.kind})")
    stored = set(store.digests())
    report.missing = {d: uids for d, uids in referenced.items() if d not in stored}
    report.corrupt_referenced = {d: referenced[d] for d in report.corrupt if d in referenced}
    report.orphans = sorted(d for d in stored if d not in referenced and d not in fixity.corrupt)
    if repair:
        for digest in report.orphans:
            report.orphans_removed += store.delete(digest)
        aside = root / "corrupt"
        for digest in report.corrupt:
            report.moved_aside += _move_aside(store.path(digest), aside)
        for relative in report.misplaced:
            report.moved_aside += _move_aside(root / relative, aside)
    return report


def _move_aside(path: Path, folder: Path) -> int:
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{path.name}.{n}"
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return 0
    return 1


__all__ = ["VerifyReport", "verify_node"]
