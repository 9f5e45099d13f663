"""Property: identifying values planted anywhere never reach an output byte or path.

Hypothesis draws random identifying strings (each marked ``QZ…`` so that it cannot occur by
chance) and plants them in a random choice of places — the patient's identity attributes,
staff and institution, free-text descriptors and comments, private elements under random
creators, nested items of Referenced Study / Request Attributes / private sequences, and SR
TEXT and PNAME content items — at depth 0 to 3, in a CT image or a Comprehensive SR. The
instance goes through ``deidentify_bytes`` under a random packaged profile. Either the output
(file bytes and the path built from the record's UIDs) holds none of the values, or the engine
held the instance back itself (:class:`~biobank.errors.QuarantineRequired`); the latter is
counted and must not be the rule.

Free text can only be cleaned of what the engine knows identifies the patient: a value echoed
in a descriptor is therefore also planted in one of the top-level identity attributes (as a
name in a description is the patient's or a physician's name). Values in structural places
(private elements, person names, identity attributes at any depth) stand alone.
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.sequence import Sequence

from biobank.deid import Profile, Pseudonymizer
from biobank.deid.private import load_safe_private
from biobank.deid.profiles import builtin_profile
from biobank.errors import QuarantineRequired
from tests.conftest import NoText, run_deid
from tests.deid.adversarial_helpers import code_item, leaks, make_image, uid

SAFE = load_safe_private()

#: Top-level identity attributes (keyword, VR): always removed, emptied or replaced.
TOP_FIELDS = (
    ("PatientName", "PN"),
    ("PatientID", "LO"),
    ("OtherPatientIDs", "LO"),
    ("InstitutionName", "LO"),
    ("InstitutionAddress", "ST"),
    ("ReferringPhysicianName", "PN"),
    ("PerformingPhysicianName", "PN"),
    ("OperatorsName", "PN"),
    ("NameOfPhysiciansReadingStudy", "PN"),
    ("PhysiciansOfRecord", "PN"),
    ("AccessionNumber", "SH"),
    ("StudyID", "SH"),
)
#: Free-text places: the value is echoed inside clinical words.
FREE_TEXT = (
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "RequestedProcedureDescription",
    "ImageComments",
    "PatientComments",
    "AdditionalPatientHistory",
    "sr_text",
)
#: Structural places that need no link to the patient's identity.
STRUCTURAL = (
    "private",
    "sr_pname",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "InstitutionName",
    "OtherPatientIDs",
)
CONTAINERS = ("RequestAttributesSequence", "ReferencedStudySequence", "private_sq", "content")
CREATORS = ("QZ RANDOM VENDOR", "ACME RIS", "GEMS_PETD_01", "SIEMENS MR HEADER", "SECTRA_Ident_01")
PRIVATE_GROUPS = (0x0009, 0x0011, 0x0019, 0x0029, 0x0033, 0x0043)

phi_text = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=6, max_size=14)


@dataclass(frozen=True)
class Planting:
    """One value and where it goes."""

    value: str
    place: str  # a TOP_FIELDS keyword (depth 0), a FREE_TEXT or a STRUCTURAL place
    path: tuple[str, ...]  # containers from the top level down (depth = len(path))
    home: str | None  # top-level identity attribute that also holds a free-text value
    private: tuple[int, str, int, int] | None  # group, creator, slot, offset


@dataclass(frozen=True)
class Case:
    sr: bool
    profile: str
    plantings: tuple[Planting, ...]


@st.composite
def private_places(draw: st.DrawFn) -> tuple[int, str, int, int]:
    group = draw(st.sampled_from(PRIVATE_GROUPS))
    creator = draw(st.sampled_from(CREATORS))
    slot = draw(st.integers(0x10, 0xFF))
    offset = draw(st.integers(0x00, 0xFF).filter(lambda o: SAFE.lookup(group, creator, o) is None))
    return group, creator, slot, offset


@st.composite
def cases(draw: st.DrawFn, nested_identity: bool = False) -> Case:
    n = draw(st.integers(1, 4))
    raw = draw(st.lists(phi_text, min_size=n, max_size=n, unique=True))
    values = [f"QZ{v}" for v in raw]
    fields = list(draw(st.permutations([k for k, _ in TOP_FIELDS])))
    plantings = []
    # Each (path, attribute) holds one planted value: a later planting must not overwrite an
    # earlier one (a free-text value whose home was overwritten is not identifying any more
    # as far as the header tells, so no cleaner could know to remove it).
    taken: set[tuple[tuple[str, ...], str]] = set()
    for value in values:
        depth = draw(st.integers(0, 3))
        path = tuple(draw(st.lists(st.sampled_from(CONTAINERS), min_size=depth, max_size=depth)))
        fields = [f for f in fields if ((), f) not in taken]
        if nested_identity:
            place = draw(st.sampled_from(("PatientID", "PatientName")))
            path = path or (CONTAINERS[0],)
        elif depth == 0 and fields and draw(st.booleans()):
            place = fields.pop()
        else:
            free = [p for p in FREE_TEXT + STRUCTURAL if (path, p) not in taken]
            place = draw(st.sampled_from(free))
        home = fields.pop() if place in FREE_TEXT and fields else None
        if place in FREE_TEXT and home is None:
            continue  # no identity attribute left to hold the echoed value
        taken.add((path, place))
        if home is not None:
            taken.add(((), home))
        private = draw(private_places()) if "private" in (place, *path) else None
        plantings.append(Planting(value, place, path, home, private))
    profile = draw(st.sampled_from(("research", "basic")))
    return Case(sr=draw(st.booleans()), profile=profile, plantings=tuple(plantings))


def _base(sr: bool) -> Dataset:
    ds = make_image(name="QZBASE^PATIENT", patient_id="QZBASEID01")
    if sr:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
        ds.Modality = "SR"
        for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation"):
            delattr(ds, keyword)
        for keyword in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
            delattr(ds, keyword)
        del ds.PixelData
        ds.ValueType = "CONTAINER"
        ds.ConceptNameCodeSequence = Sequence([code_item("18748-4", "LN", "Diagnostic report")])
        ds.ContinuityOfContent = "SEPARATE"
    return ds


def _content_item(kind: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = kind
    item.ConceptNameCodeSequence = Sequence([code_item("121071", "DCM", "Finding")])
    return item


def _child(parent: Dataset, container: str, planting: Planting, level: int) -> Dataset:
    """Append a new item to ``container`` in ``parent`` and return it."""
    item = Dataset()
    if container == "content":
        item = _content_item("CONTAINER")
        item.ContinuityOfContent = "SEPARATE"
        keyword = "ContentSequence"
    elif container == "ReferencedStudySequence":
        item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        item.ReferencedSOPInstanceUID = uid("ref-study", planting.value, level)
        keyword = container
    elif container == "RequestAttributesSequence":
        item.RequestedProcedureDescription = "CT THORAX"
        keyword = container
    else:
        block = parent.private_block(0x0077, "QZ PRIVATE SEQUENCES", create=True)
        tag = block.get_tag(0x01)
        if tag not in parent:
            block.add_new(0x01, "SQ", Sequence())
        parent[tag].value.append(item)
        return item
    if keyword not in parent:
        setattr(parent, keyword, Sequence())
    parent[keyword].value.append(item)
    return item


def _plant(ds: Dataset, planting: Planting) -> None:
    value = planting.value
    target = ds
    for level, container in enumerate(planting.path):
        target = _child(target, container, planting, level)
    place = planting.place
    vr = dict(TOP_FIELDS).get(place)
    if place == "private":
        assert planting.private is not None
        group, creator, slot, offset = planting.private
        target.add_new(group << 16 | slot, "LO", creator)
        target.add_new(group << 16 | slot << 8 | offset, "LO", value)
    elif place in ("sr_text", "sr_pname"):
        item = _content_item("TEXT" if place == "sr_text" else "PNAME")
        if place == "sr_text":
            item.TextValue = f"Nodule stable. Discussed with {value} today."
        else:
            item.PersonName = f"{value}^OBSERVER"
        if "ContentSequence" not in target:
            target.ContentSequence = Sequence()
        target.ContentSequence.append(item)
    elif place in FREE_TEXT:
        target.add_new(_tag(place), _vr(place), f"CT THORAX {value} FOLLOW UP")
    elif vr == "PN" or place in ("ReferringPhysicianName", "PerformingPhysicianName"):
        target.add_new(_tag(place), "PN", f"{value}^JOHANNA")
    else:
        target.add_new(_tag(place), vr or _vr(place), value)
    if planting.home is not None:
        home_vr = dict(TOP_FIELDS)[planting.home]
        ds.add_new(_tag(planting.home), home_vr, value if home_vr != "PN" else f"{value}^ANNA")


def _tag(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag


def _vr(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR

    return dictionary_VR(_tag(keyword))


def _check(case: Case, pseudonymizer: Pseudonymizer, stats: Counter[str]) -> None:
    ds = _base(case.sr)
    for planting in case.plantings:
        _plant(ds, planting)
    profile: Profile = builtin_profile(case.profile)
    try:
        result = run_deid(ds, profile, pseudonymizer, text_detector=NoText())
    except QuarantineRequired as exc:
        stats["quarantined"] += 1
        assert not leaks(str(exc).encode(), [p.value for p in case.plantings])
        return
    stats["written"] += 1
    values = [p.value for p in case.plantings]
    record = result.record
    path = f"{record.study_instance_uid}/{record.series_instance_uid}/{record.sop_instance_uid}.dcm"
    assert not leaks(result.data, values), f"leaked: {leaks(result.data, values)} from {case}"
    assert not leaks(path.encode(), values)
    assert not leaks(str(record.to_json()).encode(), values)


def test_planted_phi_never_reaches_output(pseudonymizer: Pseudonymizer) -> None:
    stats: Counter[str] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,  # CI must not fail at random; widen locally with a seed to explore
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=cases())
    def run(case: Case) -> None:
        _check(case, pseudonymizer, stats)

    run()
    assert stats["written"] > 0, f"every example was quarantined: {dict(stats)}"
    assert stats["written"] >= stats["quarantined"], f"quarantine is the rule: {dict(stats)}"


def test_nested_patient_identity_never_reaches_output(pseudonymizer: Pseudonymizer) -> None:
    stats: Counter[str] = Counter()

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=cases(nested_identity=True))
    def run(case: Case) -> None:
        _check(case, pseudonymizer, stats)

    run()
