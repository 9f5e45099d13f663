"""Federation: moving de-identified studies between nodes (``biobank push``).

:func:`push` sends the studies of a node to another node's DICOMweb STOW-RS service in
batches, resumably, with retries and a final reconciliation of the counts; see
:mod:`biobank.federation.push`.
"""

from biobank.federation.journal import JournalEntry, PushJournal
from biobank.federation.models import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_INSTANCES,
    Destination,
    FailedInstance,
    PushOptions,
    PushProgress,
    PushReport,
    StudyPush,
    StudyState,
)
from biobank.federation.push import push

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_INSTANCES",
    "Destination",
    "FailedInstance",
    "JournalEntry",
    "PushJournal",
    "PushOptions",
    "PushProgress",
    "PushReport",
    "StudyPush",
    "StudyState",
    "push",
]
