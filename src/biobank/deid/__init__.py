"""PS3.15 de-identification: profiles, keyed pseudonyms, the engine and its evidence.

The engine is pure — a Dataset (or file bytes) in, a de-identified Dataset (or bytes) and a
:class:`DeidRecord` out — so the file runner, the ingest pipeline and the network services all
call the very same functions.
"""

from biobank.deid.check import check_deidentified
from biobank.deid.keys import Pseudonymizer, SiteKey
from biobank.deid.models import (
    Action,
    DeidRecord,
    Option,
    Outcome,
    PatientIdentity,
    PixelAction,
    PixelRecord,
    Profile,
)
from biobank.deid.profiles import (
    DEFAULT_PROFILE,
    builtin_profile,
    builtin_profile_names,
    parse_profile,
)
from biobank.deid.service import (
    DeidOutput,
    DeidResult,
    apply_profile,
    deidentify_bytes,
    encode_dataset,
    read_dataset,
    table_edition,
)

__all__ = [
    "DEFAULT_PROFILE",
    "Action",
    "DeidOutput",
    "DeidRecord",
    "DeidResult",
    "Option",
    "Outcome",
    "PatientIdentity",
    "PixelAction",
    "PixelRecord",
    "Profile",
    "Pseudonymizer",
    "SiteKey",
    "apply_profile",
    "builtin_profile",
    "builtin_profile_names",
    "check_deidentified",
    "deidentify_bytes",
    "encode_dataset",
    "parse_profile",
    "read_dataset",
    "table_edition",
]
