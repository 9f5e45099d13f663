"""Deterministic synthetic CT and MR DICOM with planted PHI.

The generator makes realistic instances of CT Image Storage and MR Image Storage (explicit VR
little endian, 16-bit pixels, full geometry, a cheap ellipse phantom with noise) and plants
identifying values everywhere a de-identifier must look: the Patient, Study and Equipment
attributes, free text, sequences (Other Patient IDs, Request Attributes, Referenced Patient and
Study), dates and times with timezone offsets, UIDs with the MRN embedded in them, a private
``ACME RIS`` block with a private sequence, Siemens-style CSA blobs (MR) and GE-style private
groups (CT).

Every value comes from ``(index, seed)``: the same arguments give the same bytes. The data are
fake; names, IDs, addresses and institutions are made up. The corpus is used by the benchmark,
the tests and the demo.

Examples
--------
>>> phi = make_patient_phi(0)
>>> series = make_ct_series(phi, n_slices=2, rows=64, cols=64)
>>> str(series[0].PatientName) == phi.patient_name
True
"""

from __future__ import annotations

import copy
import logging
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "1.2.826.0.1.3680043.8.498"
"""Root of every generated UID (pydicom's organisation root, meant for generated UIDs)."""
IMPLEMENTATION_CLASS_UID = f"{UID_ROOT}.1"
IMPLEMENTATION_VERSION_NAME = "BIOBANK_SYNTH"
TIMEZONE = "+0100"

ACME_CREATOR = "ACME RIS"
CSA_CREATOR = "SIEMENS CSA HEADER"
GE_IDEN_CREATOR = "GEMS_IDEN_01"
GE_PARM_CREATOR = "GEMS_PARM_01"

_DETACHED_PATIENT_SOP_CLASS = "1.2.840.10008.3.1.2.1.1"
_DETACHED_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


# Made-up people. Some carry Latin-1 letters; none is a substring of dicognito's replacement
# names, so a residue check on dicognito's output has no false positives.
_FAMILY_NAMES = _split(
    "MÜLLER|GARCÍA LÓPEZ|LEFÈVRE|NUÑEZ|SØRENSEN|O'BRIEN|VAN DEN BERGH|KOWALCZYK|BÄCKSTRÖM"
    "|FAGERLUND|D'ANGELO|ÞORSTEINSSON|OYELARAN|NAKAMURA-WEISS|ZIMMERMANN|PAPADOPOULOU"
    "|ÇELIK|HÄKKINEN|MACGREGOR|SZABÓ"
)
_GIVEN_NAMES_F = _split(
    "CÉLINE|INÉS|ÅSLAUG|SIOBHÁN|LINNÉA|GIUSEPPINA|GUÐRÚN|ADEBOLA|FRAUKE|ELENI|ZSÓFIA"
)
_GIVEN_NAMES_M = _split("JÖRG|JOSÉ|MAARTEN|TOMASZ|HENRIK|KENJI|MEHMET|VEIKKO|EWAN")
_PHYSICIANS = _split(
    "HOFSTÄTTER^ULRIKE^^DR.|BRANDÃO^RUI^^DR.|KEANE^NIAMH^^DR.|ØSTERGAARD^MADS^^DR."
    "|VILLENEUVE^AURÉLIEN^^DR.|MBEKI^THANDIWE^^DR.|ROSSETTI^LUDOVICA^^DR."
    "|LINDQVIST^TORBJÖRN^^DR."
)
_OPERATORS = _split("ÅBERG^SIGRUN|NWOSU^CHIDIEBERE|KRÜGER^SVENJA|LEROUX^ODILE|QUISPE^WAYRA")
_STREETS = (
    ("Lindenstraße", "50674 Köln", "Germany", "+49 221"),
    ("Rue de l'Église", "34090 Montpellier", "France", "+33 467"),
    ("Calle de Alcalá", "28014 Madrid", "Spain", "+34 91"),
    ("Kungsgatan", "721 89 Västerås", "Sweden", "+46 21"),
    ("Via dei Mille", "80121 Napoli", "Italy", "+39 081"),
    ("Rathgar Road", "Dublin 6", "Ireland", "+353 1"),
)
_INSTITUTIONS = (
    (
        "Klinikum Köln-Süd",
        "Severinswall 41, 50678 Köln, Germany",
        "Abteilung für Radiologie Süd",
        "KLINIKUM-KOELN-SUED-MRN",
        "KKS",
    ),
    (
        "Hôpital Saint-Éloi de Montpellier",
        "80 Avenue Augustin Fliche, 34090 Montpellier, France",
        "Service d'Imagerie Médicale Éloi",
        "CHU-MTP-ELOI-IPP",
        "HSE",
    ),
    (
        "St. Brigid's University Hospital",
        "12 Orwell Park, Rathgar, Dublin 6, Ireland",
        "Brigid Diagnostic Imaging Unit",
        "SBUH-HEALTH-RECORD",
        "SBU",
    ),
    (
        "Sjukhuset Västerås Norra",
        "Regementsgatan 3, 721 89 Västerås, Sweden",
        "Röntgenkliniken Norra",
        "VASTERAS-NORRA-PNR",
        "SVN",
    ),
)
_INSURERS = ("AOK RHEINLAND", "MUTUELLE HÉRAULT", "VHI HEALTHCARE", "FOLKSAM VÅRD")


@dataclass(frozen=True)
class PlantedStudy:
    """Identifying values planted in one study (CT or MR) of a patient.

    Attributes
    ----------
    modality : str
        ``"CT"`` or ``"MR"`` (not identifying).
    accession_number : str
        Accession Number (0008,0050), also in the Request Attributes Sequence and the
        ``ACME RIS`` private block.
    study_id : str
        Study ID (0020,0010), a date-based number such as ``"20240315-01"``.
    study_date : str
        Study, series, acquisition, content and instance creation date (DA).
    study_time : str
        Study time (TM, not listed in :meth:`PlantedPHI.values`: six digits are too short to be
        searched for without false positives).
    date_text : str
        The study date as written in free text (``"15.03.2024"``).
    acquisition_datetime : str
        Acquisition DateTime (DT) with a timezone offset.
    requested_procedure_id : str
        Requested Procedure ID in the Request Attributes Sequence.
    scheduled_procedure_step_id : str
        Scheduled Procedure Step ID in the Request Attributes Sequence.
    performed_procedure_step_id : str
        Performed Procedure Step ID (0040,0253).
    station_name : str
        Station Name (0008,1010).
    device_serial_number : str
        Device Serial Number (0018,1000).
    study_description : str
        Study Description with the patient's name in it.
    series_description : str
        Series Description with the study date in it.
    image_comments : str
        Image Comments with the name, MRN and birth date in it.
    """

    modality: str
    accession_number: str
    study_id: str
    study_date: str
    study_time: str
    date_text: str
    acquisition_datetime: str
    requested_procedure_id: str
    scheduled_procedure_step_id: str
    performed_procedure_step_id: str
    station_name: str
    device_serial_number: str
    study_description: str
    series_description: str
    image_comments: str


@dataclass(frozen=True)
class PlantedPHI:
    """The identifying values planted for one synthetic patient.

    Attributes
    ----------
    index, seed : int
        The arguments of :func:`make_patient_phi` that made these values.
    patient_name : str
        Patient's Name (PN, ``FAMILY^GIVEN^MIDDLE``); some carry Latin-1 letters.
    family_name, given_name : str
        The name's components, as they also appear in free text.
    other_patient_names : str
        Other Patient Names (an ASCII transliteration).
    sex : str
        Patient's Sex (not identifying, not in :meth:`values`).
    patient_id : str
        The MRN: Patient ID, ``ACME RIS`` private block, and embedded in every UID.
    issuer_of_patient_id : str
        Issuer of Patient ID.
    other_patient_ids : tuple of str
        IDs in the Other Patient IDs Sequence (insurance number, national number).
    birth_date : str
        Patient's Birth Date (DA).
    birth_date_text : str
        The birth date as written in free text.
    address, phone : str
        Patient's Address and Patient's Telephone Numbers.
    referring_physician, performing_physician, reading_physician, operator : str
        Staff names (PN).
    institution_name, institution_address, department_name : str
        Institution attributes; the name is also in the GE private group.
    patient_comments, additional_patient_history : str
        Free text mentioning the patient's name, phone or a date.
    ct, mr : PlantedStudy
        The values of the CT and the MR study.
    """

    index: int
    seed: int
    patient_name: str
    family_name: str
    given_name: str
    other_patient_names: str
    sex: str
    patient_id: str
    issuer_of_patient_id: str
    other_patient_ids: tuple[str, ...]
    birth_date: str
    birth_date_text: str
    address: str
    phone: str
    referring_physician: str
    performing_physician: str
    reading_physician: str
    operator: str
    institution_name: str
    institution_address: str
    department_name: str
    patient_comments: str
    additional_patient_history: str
    ct: PlantedStudy
    mr: PlantedStudy

    def categories(self) -> dict[str, tuple[str, ...]]:
        """Return the planted values grouped by kind of identifier.

        Returns
        -------
        dict of str to tuple of str
            Keys ``name``, ``patient_id``, ``birth_date``, ``address_phone``, ``accession``,
            ``dates``, ``staff``, ``institution``, ``equipment``, ``free_text``.
        """
        studies = (self.ct, self.mr)
        return {
            "name": (
                self.patient_name,
                self.family_name,
                self.given_name,
                self.other_patient_names,
            ),
            "patient_id": (self.patient_id, self.issuer_of_patient_id, *self.other_patient_ids),
            "birth_date": (self.birth_date, self.birth_date_text),
            "address_phone": (self.address, self.phone),
            "accession": tuple(
                v
                for s in studies
                for v in (
                    s.accession_number,
                    s.study_id,
                    s.requested_procedure_id,
                    s.scheduled_procedure_step_id,
                    s.performed_procedure_step_id,
                )
            ),
            "dates": tuple(
                v for s in studies for v in (s.study_date, s.date_text, s.acquisition_datetime)
            ),
            "staff": (
                self.referring_physician,
                self.performing_physician,
                self.reading_physician,
                self.operator,
            ),
            "institution": (self.institution_name, self.institution_address, self.department_name),
            "equipment": tuple(
                v for s in studies for v in (s.station_name, s.device_serial_number)
            ),
            "free_text": (
                self.patient_comments,
                self.additional_patient_history,
                *(
                    v
                    for s in studies
                    for v in (s.study_description, s.series_description, s.image_comments)
                ),
            ),
        }

    def values(self) -> list[str]:
        """Return every planted identifying string, without duplicates.

        Returns
        -------
        list of str
            The values in :meth:`categories` order. Encode them as ISO 8859-1 (the corpus's
            Specific Character Set ``ISO_IR 100``) to search file bytes.
        """
        seen: dict[str, None] = {}
        for group in self.categories().values():
            for value in group:
                seen.setdefault(value, None)
        return list(seen)


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`write_corpus` wrote.

    Attributes
    ----------
    root : Path
        The output folder.
    files : int
        Number of DICOM files written.
    total_bytes : int
        Their total size in bytes.
    patients : tuple of PlantedPHI
        The planted values, one entry per patient, in index order.
    paths : tuple of Path
        Every file written, in writing order.
    """

    root: Path
    files: int
    total_bytes: int
    patients: tuple[PlantedPHI, ...]
    paths: tuple[Path, ...]


def _pick(rng: random.Random, items: tuple[str, ...]) -> str:
    return items[rng.randrange(len(items))]


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randrange(10 ** (n - 1), 10**n))


def _date(year: int, day_of_year: int) -> tuple[str, str]:
    """Return ``(YYYYMMDD, DD.MM.YYYY)`` for a day of a year (1-based, up to 365)."""
    days = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    month = 0
    while day_of_year > days[month]:
        day_of_year -= days[month]
        month += 1
    return (
        f"{year:04d}{month + 1:02d}{day_of_year:02d}",
        f"{day_of_year:02d}.{month + 1:02d}.{year:04d}",
    )


def _study(
    rng: random.Random,
    modality: str,
    number: int,
    day: int,
    family: str,
    given: str,
    mrn: str,
    birth_text: str,
    station_prefix: str,
) -> PlantedStudy:
    date, date_text = _date(2024, day)
    hour, minute, second = rng.randrange(7, 19), rng.randrange(60), rng.randrange(60)
    time = f"{hour:02d}{minute:02d}{second:02d}"
    millis = rng.randrange(1000)
    if modality == "CT":
        description = f"CT THORAX ABDOMEN {family}, {given}"
        series = f"AX 2.5 STD {date_text}"
        serial = f"GEV{_digits(rng, 5)}CT"
    else:
        description = f"MRT SCHAEDEL {family} {given}"
        series = f"t1_tse_tra {date_text}"
        serial = f"SKY{_digits(rng, 5)}MR"
    return PlantedStudy(
        modality=modality,
        accession_number=f"RA{date[2:4]}{_digits(rng, 7)}",
        study_id=f"{date}-{number:02d}",
        study_date=date,
        study_time=time,
        date_text=date_text,
        acquisition_datetime=f"{date}{time}.{millis:03d}{TIMEZONE}",
        requested_procedure_id=f"RP{_digits(rng, 8)}",
        scheduled_procedure_step_id=f"SPS{_digits(rng, 8)}",
        performed_procedure_step_id=f"PPS{_digits(rng, 8)}",
        station_name=f"{station_prefix}-{modality}-ROOM{rng.randrange(1, 5)}",
        device_serial_number=serial,
        study_description=description,
        series_description=series,
        image_comments=f"Pt {given} {family} (MRN {mrn}) tolerated exam well, DOB {birth_text}",
    )


_ASCII_FOLD = str.maketrans(
    {
        "Ü": "UE",
        "Ö": "OE",
        "Ä": "AE",
        "Å": "AA",
        "Ø": "OE",
        "Þ": "TH",
        "Ð": "D",
        "Ç": "C",
        "Ñ": "N",
        "É": "E",
        "È": "E",
        "Í": "I",
        "Ó": "O",
        "Ú": "U",
        "Á": "A",
    }
)


def make_patient_phi(index: int, seed: int = 0) -> PlantedPHI:
    """Make the identifying values of synthetic patient ``index``.

    Parameters
    ----------
    index : int
        Patient number (0-based). MRNs are unique across indices for one seed.
    seed : int
        Corpus seed; another seed gives other values.

    Returns
    -------
    PlantedPHI
        Deterministic in ``(index, seed)``.

    Raises
    ------
    ValueError
        If ``index`` or ``seed`` is negative.
    """
    if index < 0 or seed < 0:
        raise ValueError("make_patient_phi: index and seed must be >= 0")
    rng = random.Random(f"biobank-synthetic:{seed}:{index}")
    family = _FAMILY_NAMES[(index + seed) % len(_FAMILY_NAMES)]
    sex = rng.choice(("F", "M"))
    given = _pick(rng, _GIVEN_NAMES_F if sex == "F" else _GIVEN_NAMES_M)
    middle = chr(ord("A") + rng.randrange(26))
    # An affine permutation of 10_000_000..99_999_999: unique per index for one seed.
    mrn = str(10_000_000 + (index * 7_919_081 + seed * 1_234_567 + 11_060_674) % 90_000_000)
    birth_date, birth_text = _date(rng.randrange(1940, 2000), rng.randrange(1, 366))
    street, city, country, dial = _STREETS[rng.randrange(len(_STREETS))]
    inst_name, inst_addr, dept, issuer, station_prefix = _INSTITUTIONS[
        rng.randrange(len(_INSTITUTIONS))
    ]
    phone = f"{dial} {_digits(rng, 7)}"
    ct_day = rng.randrange(1, 330)
    ct = _study(rng, "CT", 1, ct_day, family, given, mrn, birth_text, station_prefix)
    mr = _study(
        rng, "MR", 2, ct_day + rng.randrange(2, 30), family, given, mrn, birth_text, station_prefix
    )
    ascii_family = family.translate(_ASCII_FOLD)
    ascii_given = given.translate(_ASCII_FOLD)
    return PlantedPHI(
        index=index,
        seed=seed,
        patient_name=f"{family}^{given}^{middle}",
        family_name=family,
        given_name=given,
        other_patient_names=f"{ascii_family}^{ascii_given}",
        sex=sex,
        patient_id=mrn,
        issuer_of_patient_id=issuer,
        other_patient_ids=(f"INS{_digits(rng, 9)}", f"NID-{_digits(rng, 4)}-{_digits(rng, 6)}"),
        birth_date=birth_date,
        birth_date_text=birth_text,
        address=f"{street} {rng.randrange(1, 180)}, {city}, {country}",
        phone=phone,
        referring_physician=_pick(rng, _PHYSICIANS),
        performing_physician=_pick(rng, _PHYSICIANS),
        reading_physician=_pick(rng, _PHYSICIANS),
        operator=_pick(rng, _OPERATORS),
        institution_name=inst_name,
        institution_address=inst_addr,
        department_name=dept,
        patient_comments=(
            f"Contrast allergy. {given} {family} asks to be called on {phone} before 9am."
        ),
        additional_patient_history=(
            f"Seen by {_pick(rng, _INSURERS)} on {ct.date_text}; follow-up of {family}'s nodule"
        ),
        ct=ct,
        mr=mr,
    )


# --- UIDs ---------------------------------------------------------------------------------


def _uid(phi: PlantedPHI, *parts: int) -> str:
    """Return a UID under :data:`UID_ROOT` with the patient's MRN embedded."""
    return ".".join((UID_ROOT, phi.patient_id, str(phi.seed), *(str(p) for p in parts)))


# --- pixel phantoms -----------------------------------------------------------------------

# (centre x, centre y, semi-axis x, semi-axis y, value, z half-extent) in a [-1, 1] field;
# later ellipses are painted over earlier ones. An ellipse shrinks like an ellipsoid with z.
_Ellipse = tuple[float, float, float, float, int, float]
_CT_PHANTOM: tuple[_Ellipse, ...] = (
    (0.0, 0.05, 0.80, 0.58, 40, 9.0),  # body, soft tissue (HU)
    (0.0, 0.90, 0.95, 0.03, 300, 9.0),  # table
    (-0.38, 0.0, 0.27, 0.40, -850, 1.1),  # right lung
    (0.38, 0.0, 0.27, 0.40, -850, 1.1),  # left lung
    (0.08, 0.12, 0.22, 0.18, 45, 0.7),  # heart
    (-0.05, 0.30, 0.06, 0.06, 180, 9.0),  # aorta with contrast
    (0.0, 0.46, 0.10, 0.09, 700, 9.0),  # vertebral body
    (0.0, 0.46, 0.06, 0.055, 250, 9.0),  # marrow
    (0.30, -0.10, 0.035, 0.035, 20, 0.15),  # lung nodule
)
_MR_PHANTOM: tuple[_Ellipse, ...] = (
    (0.0, 0.0, 0.78, 0.92, 1400, 1.3),  # scalp fat
    (0.0, 0.0, 0.72, 0.86, 120, 1.25),  # skull
    (0.0, 0.0, 0.68, 0.82, 1900, 1.2),  # CSF
    (0.0, 0.0, 0.65, 0.78, 900, 1.15),  # grey matter
    (0.0, 0.02, 0.50, 0.62, 1150, 0.95),  # white matter
    (-0.12, -0.05, 0.07, 0.22, 1900, 0.45),  # right ventricle
    (0.12, -0.05, 0.07, 0.22, 1900, 0.45),  # left ventricle
    (0.30, 0.30, 0.05, 0.05, 1700, 0.2),  # lesion
)
_NOISE_MARGIN = 32


class _Phantom:
    """Precomputed ellipse maps and a noise pool for one series."""

    def __init__(
        self,
        ellipses: tuple[_Ellipse, ...],
        rows: int,
        cols: int,
        background: int,
        noise_sigma: float,
        rng: np.random.Generator,
    ) -> None:
        y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, np.newaxis]
        x = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[np.newaxis, :]
        self.maps = [
            (((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2, value, extent)
            for cx, cy, ax, ay, value, extent in ellipses
        ]
        self.rows, self.cols, self.background = rows, cols, background
        pool = rng.normal(0.0, noise_sigma, (rows + _NOISE_MARGIN, cols + _NOISE_MARGIN))
        self.noise = pool.astype(np.int16)

    def slice(self, t: float, i: int) -> npt.NDArray[np.int16]:
        """Return the phantom at relative position ``t`` in [-1, 1] plus noise window ``i``."""
        img = np.full((self.rows, self.cols), self.background, dtype=np.int16)
        for r2, value, extent in self.maps:
            s2 = 1.0 - (t / extent) ** 2
            if s2 > 0.0:
                np.putmask(img, r2 <= s2, value)
        r0, c0 = divmod(i % (_NOISE_MARGIN * _NOISE_MARGIN), _NOISE_MARGIN)
        img += self.noise[r0 : r0 + self.rows, c0 : c0 + self.cols]
        return img


# --- datasets -----------------------------------------------------------------------------


def _person_item(**kwargs: str) -> Dataset:
    item = Dataset()
    for keyword, value in kwargs.items():
        setattr(item, keyword, value)
    return item


def _csa2(tags: list[tuple[str, str, list[str]]]) -> bytes:
    """Encode a Siemens CSA2 header (``SV10``) with string items."""
    out = [b"SV10\x04\x03\x02\x01", struct.pack("<2I", len(tags), 77)]
    for name, vr, items in tags:
        header = (name.encode("ascii"), len(items), vr.encode("ascii"), 0, len(items), 77)
        out.append(struct.pack("<64si4s3i", *header))
        for item in items:
            data = item.encode("latin-1") + b"\x00"
            out.append(struct.pack("<4i", len(data), len(data), 77, len(data)))
            out.append(data + b"\x00" * (-len(data) % 4))
    blob = b"".join(out)
    return blob + b"\x00" * (len(blob) % 2)


def _age(birth_date: str, study_date: str) -> str:
    years = int(study_date[:4]) - int(birth_date[:4])
    if study_date[4:] < birth_date[4:]:
        years -= 1
    return f"{years:03d}Y"


def _base_dataset(phi: PlantedPHI, study: PlantedStudy, m: int) -> Dataset:
    """Return the attributes shared by every instance of ``phi``'s study ``study``."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.InstanceCreationDate = study.study_date
    ds.InstanceCreationTime = study.study_time
    ds.TimezoneOffsetFromUTC = TIMEZONE
    # Patient
    ds.PatientName = phi.patient_name
    ds.PatientID = phi.patient_id
    ds.IssuerOfPatientID = phi.issuer_of_patient_id
    ds.TypeOfPatientID = "TEXT"
    ds.PatientBirthDate = phi.birth_date
    ds.PatientSex = phi.sex
    ds.OtherPatientNames = phi.other_patient_names
    ds.OtherPatientIDsSequence = Sequence(
        [
            _person_item(PatientID=pid, IssuerOfPatientID=issuer, TypeOfPatientID="TEXT")
            for pid, issuer in zip(
                phi.other_patient_ids, ("INSURANCE", "NATIONAL REGISTRY"), strict=True
            )
        ]
    )
    ds.ReferencedPatientSequence = Sequence(
        [
            _person_item(
                ReferencedSOPClassUID=_DETACHED_PATIENT_SOP_CLASS,
                ReferencedSOPInstanceUID=_uid(phi, 5),
            )
        ]
    )
    ds.PatientAddress = phi.address
    ds.PatientTelephoneNumbers = phi.phone
    ds.PatientComments = phi.patient_comments
    # Patient Study
    ds.PatientAge = _age(phi.birth_date, study.study_date)
    ds.PatientSize = "1.72"
    ds.PatientWeight = "74"
    ds.AdditionalPatientHistory = phi.additional_patient_history
    # General Study
    ds.StudyInstanceUID = _uid(phi, 1, m)
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = phi.referring_physician
    ds.PhysiciansOfRecord = phi.referring_physician
    ds.RequestingPhysician = phi.referring_physician
    ds.NameOfPhysiciansReadingStudy = phi.reading_physician
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description
    ds.ReferencedStudySequence = Sequence(
        [
            _person_item(
                ReferencedSOPClassUID=_DETACHED_STUDY_SOP_CLASS,
                ReferencedSOPInstanceUID=_uid(phi, 6, m),
            )
        ]
    )
    # General Series
    ds.SeriesInstanceUID = _uid(phi, 2, m, 1)
    ds.SeriesNumber = "1"
    ds.SeriesDate = study.study_date
    ds.SeriesTime = study.study_time
    ds.SeriesDescription = study.series_description
    ds.PerformingPhysicianName = phi.performing_physician
    ds.OperatorsName = phi.operator
    ds.PatientPosition = "HFS"
    ds.PerformedProcedureStepID = study.performed_procedure_step_id
    ds.PerformedProcedureStepStartDate = study.study_date
    ds.PerformedProcedureStepStartTime = study.study_time
    request = Dataset()
    request.AccessionNumber = study.accession_number
    request.StudyInstanceUID = ds.StudyInstanceUID
    request.RequestedProcedureID = study.requested_procedure_id
    request.RequestedProcedureDescription = study.study_description
    request.ScheduledProcedureStepID = study.scheduled_procedure_step_id
    request.ScheduledProcedureStepDescription = f"{study.modality} {phi.family_name}"
    ds.RequestAttributesSequence = Sequence([request])
    # Frame of Reference
    ds.FrameOfReferenceUID = _uid(phi, 4, m)
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.InstitutionName = phi.institution_name
    ds.InstitutionAddress = phi.institution_address
    ds.InstitutionalDepartmentName = phi.department_name
    ds.StationName = study.station_name
    ds.DeviceSerialNumber = study.device_serial_number
    # General Image / Acquisition
    ds.AcquisitionNumber = "1"
    ds.AcquisitionDate = study.study_date
    ds.AcquisitionTime = study.study_time
    ds.AcquisitionDateTime = study.acquisition_datetime
    ds.ContentDate = study.study_date
    ds.ContentTime = study.study_time
    ds.ImageComments = study.image_comments
    ds.BurnedInAnnotation = "NO"
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    # ACME RIS private block, with a private sequence
    acme = ds.private_block(0x0033, ACME_CREATOR, create=True)
    acme.add_new(0x01, "PN", phi.patient_name)
    acme.add_new(0x02, "LO", phi.patient_id)
    acme.add_new(0x03, "DA", phi.birth_date)
    acme.add_new(0x04, "SH", study.accession_number)
    acme.add_new(0x05, "SH", phi.phone)
    item = Dataset()
    inner = item.private_block(0x0033, ACME_CREATOR, create=True)
    inner.add_new(0x11, "LT", f"Order for {phi.family_name}, {phi.given_name}; {study.date_text}")
    inner.add_new(0x12, "LO", phi.patient_id)
    acme.add_new(0x10, "SQ", Sequence([item]))
    return ds


def _clone(ds: Dataset) -> Dataset:
    """Return an independent copy of ``ds`` (four times faster than ``copy.deepcopy``).

    Element objects, sequences and multi-valued values are new; single values are immutable
    (str, int, bytes and pydicom's value types) and are shared.
    """
    new = Dataset()
    for elem in ds:
        clone = copy.copy(elem)
        if elem.VR == "SQ":
            clone.value = Sequence([_clone(item) for item in elem.value])
        elif isinstance(elem.value, MultiValue):
            clone.value = list(elem.value)
        new[elem.tag] = clone
    return new


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _ds(value: float) -> str:
    """Format a decimal string (DS) deterministically within 16 characters."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _instance(
    template: Dataset,
    phi: PlantedPHI,
    m: int,
    i: int,
    position: tuple[float, float, float],
    pixels: npt.NDArray[np.int16] | npt.NDArray[np.uint16],
    sop_class_uid: str,
    shared: bool,
) -> FileDataset:
    """Return slice ``i``; with ``shared`` it reuses (and changes) ``template``'s elements."""
    sop_instance_uid = _uid(phi, 3, m, i + 1)
    ds = FileDataset(
        "",
        template if shared else _clone(template),
        file_meta=_file_meta(sop_class_uid, sop_instance_uid),
        preamble=b"\x00" * 128,
    )
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = str(i + 1)
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.SliceLocation = _ds(position[2])
    little_endian = pixels.astype("<u2" if pixels.dtype == np.uint16 else "<i2")
    ds.add_new(0x7FE00010, "OW", little_endian.tobytes())
    return ds


_PER_SLICE_TAGS = (0x00080018, 0x00200013, 0x00200032, 0x00201041, 0x7FE00010)
"""SOP Instance UID, Instance Number, Image Position, Slice Location, Pixel Data."""


class _SeriesEncoder:
    """Encode the instances of one series, the shared elements once (same bytes as dcmwrite).

    ``pydicom.dcmwrite`` spends ~7 ms per instance on ~150 elements that are identical in
    every slice; this writes them once and encodes only :data:`_PER_SLICE_TAGS` per slice.
    """

    def __init__(self, template: Dataset) -> None:
        self.charset = str(template.SpecificCharacterSet)
        boundaries = [*_PER_SLICE_TAGS, 0x100000000]
        buffers = [_explicit_le_buffer() for _ in boundaries]
        for elem in template:
            if elem.tag in _PER_SLICE_TAGS or (elem.tag.element == 0 and elem.tag.group > 6):
                continue
            segment = next(k for k, bound in enumerate(boundaries) if elem.tag < bound)
            write_data_element(buffers[segment], elem, self.charset)
        self.segments = [buffer.getvalue() for buffer in buffers]

    def encode(self, ds: FileDataset) -> bytes:
        """Return the Part 10 bytes of ``ds``, a slice made from this encoder's template."""
        fp = _explicit_le_buffer()
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
        for segment, tag in zip(self.segments, _PER_SLICE_TAGS, strict=False):
            fp.write(segment)
            write_data_element(fp, ds[tag], self.charset)
        fp.write(self.segments[-1])
        return fp.getvalue()


def _explicit_le_buffer() -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    return buffer


def _iter_ct(
    phi: PlantedPHI, n_slices: int, rows: int, cols: int, seed: int, shared: bool
) -> Iterator[FileDataset]:
    study, m = phi.ct, 1
    ds = _base_dataset(phi, study, m)
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.Modality = "CT"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "LightSpeed VCT"
    ds.SoftwareVersions = "07MW18.4"
    ds.BodyPartExamined = "CHEST"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ScanOptions = "HELICAL MODE"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "360"
    ds.DistanceSourceToDetector = "949.075"
    ds.DistanceSourceToPatient = "541"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "250"
    ds.Exposure = "125"
    ds.FilterType = "BODY FILTER"
    ds.GeneratorPower = "30000"
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = "STANDARD"
    ds.RevolutionTime = 0.5
    ds.SpiralPitchFactor = 0.984375
    ds.CTDIvol = 10.52
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.WindowCenterWidthExplanation = "SOFT TISSUE"
    spacing = 360.0 / cols
    thickness = 2.5
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [_ds(360.0 / rows), _ds(spacing)]
    ds.SliceThickness = _ds(thickness)
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    iden = ds.private_block(0x0009, GE_IDEN_CREATOR, create=True)
    iden.add_new(0x01, "LO", "CT_LIGHTSPEED")
    iden.add_new(0x02, "SH", "CT01")
    iden.add_new(0x04, "SH", "LightSpeedVCT")
    iden.add_new(0x27, "SL", 1_700_000_000 + int(study.study_date[4:]) * 60)
    iden.add_new(0x2A, "LO", phi.institution_name)
    iden.add_new(0xE3, "UI", _uid(phi, 8, m))
    parm = ds.private_block(0x0043, GE_PARM_CREATOR, create=True)
    parm.add_new(0x01, "SS", 0)
    parm.add_new(0x02, "SS", 0)
    parm.add_new(0x10, "US", 1)
    parm.add_new(0x1E, "DS", "0.703125")
    parm.add_new(0x28, "OB", struct.pack("<4I", 0x47454D53, 1, 2, 3))
    parm.add_new(0x61, "UI", _uid(phi, 7, m))
    rng = np.random.default_rng([seed, phi.index, m])
    phantom = _Phantom(_CT_PHANTOM, rows, cols, -1000, 12.0, rng)
    x0 = -180.0 + spacing / 2
    for i in range(n_slices):
        t = -1.0 + 2.0 * (i + 0.5) / n_slices
        hu = phantom.slice(t, i)
        stored = np.clip(hu + 1024, 0, 2047)
        z = -60.0 - i * thickness
        yield _instance(ds, phi, m, i, (x0, x0, z), stored, CT_IMAGE_STORAGE, shared)


def _iter_mr(
    phi: PlantedPHI, n_slices: int, rows: int, cols: int, seed: int, shared: bool
) -> Iterator[FileDataset]:
    study, m = phi.mr, 2
    ds = _base_dataset(phi, study, m)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.Modality = "MR"
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "Skyra"
    ds.SoftwareVersions = "syngo MR E11"
    ds.BodyPartExamined = "HEAD"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = ["SK", "SP", "OSP"]
    ds.ScanOptions = "SAT1"
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "*tse2d1_3"
    ds.AngioFlag = "N"
    ds.RepetitionTime = "600"
    ds.EchoTime = "12"
    ds.EchoTrainLength = "3"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "123.25"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.MagneticFieldStrength = "3"
    ds.NumberOfPhaseEncodingSteps = str(rows)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "190"
    ds.ReceiveCoilName = "Head_32"
    ds.TransmitCoilName = "Body"
    ds.AcquisitionMatrix = [0, cols, rows, 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = "150"
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.45"
    ds.dBdt = "0"
    ds.PixelRepresentation = 0
    ds.WindowCenter = "900"
    ds.WindowWidth = "1800"
    spacing = 230.0 / cols
    thickness = 3.0
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [_ds(230.0 / rows), _ds(spacing)]
    ds.SliceThickness = _ds(thickness)
    ds.SpacingBetweenSlices = _ds(thickness)
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    csa = ds.private_block(0x0029, CSA_CREATOR, create=True)
    csa.add_new(0x08, "CS", "IMAGE NUM 4")
    csa.add_new(0x09, "LO", "20100114")
    csa.add_new(
        0x10,
        "OB",
        _csa2(
            [
                ("EchoLinePosition", "IS", ["128"]),
                ("SliceMeasurementDuration", "DS", ["180000.0"]),
                ("ImaCoilString", "LO", ["HE1-4"]),
                ("ImaComments", "LT", [f"{phi.patient_name} {study.date_text}"]),
                ("SliceNormalVector", "FD", ["0.0", "0.0", "1.0"]),
            ]
        ),
    )
    csa.add_new(0x18, "CS", "MR")
    csa.add_new(0x19, "LO", "20100114")
    protocol = (
        "### ASCCONV BEGIN ###\n"
        f'tProtocolName\t = ""t1_tse_tra""\n'
        f'sPatient.tName\t = ""{phi.patient_name}""\n'
        f'sPatient.tID\t = ""{phi.patient_id}""\n'
        f'sStudy.tReferringPhysician\t = ""{phi.referring_physician}""\n'
        "sKSpace.lBaseResolution\t = 256\n"
        "### ASCCONV END ###"
    )
    csa.add_new(
        0x20,
        "OB",
        _csa2(
            [
                ("UsedPatientWeight", "IS", ["74"]),
                ("MrPhoenixProtocol", "UN", [protocol]),
                ("SeriesWorkflowStatus", "LO", ["COMPLETED"]),
            ]
        ),
    )
    rng = np.random.default_rng([seed, phi.index, m])
    phantom = _Phantom(_MR_PHANTOM, rows, cols, 0, 30.0, rng)
    x0 = -115.0 + spacing / 2
    for i in range(n_slices):
        t = -0.9 + 1.8 * (i + 0.5) / n_slices
        stored = np.clip(np.abs(phantom.slice(t, i)), 0, 4095).astype(np.uint16)
        z = -30.0 + i * thickness
        yield _instance(ds, phi, m, i, (x0, x0, z), stored, MR_IMAGE_STORAGE, shared)


def _check_size(n_slices: int, rows: int, cols: int) -> None:
    if n_slices < 1 or rows < 8 or cols < 8:
        raise ValueError("synthetic series need n_slices >= 1 and rows, cols >= 8")


def make_ct_series(
    phi: PlantedPHI, n_slices: int, rows: int = 512, cols: int = 512, seed: int = 0
) -> list[FileDataset]:
    """Make a CT Image Storage series of a thorax phantom for ``phi``.

    Parameters
    ----------
    phi : PlantedPHI
        The patient; its values are planted in every instance.
    n_slices : int
        Number of axial slices (2.5 mm apart).
    rows, cols : int
        Image size.
    seed : int
        Seed of the pixel noise.

    Returns
    -------
    list of FileDataset
        Independent datasets with file meta (explicit VR little endian), 16 bits allocated,
        12 bits stored, signed, with Rescale Slope/Intercept to HU.
    """
    _check_size(n_slices, rows, cols)
    return list(_iter_ct(phi, n_slices, rows, cols, seed, False))


def make_mr_series(
    phi: PlantedPHI, n_slices: int, rows: int = 256, cols: int = 256, seed: int = 0
) -> list[FileDataset]:
    """Make an MR Image Storage series of a head phantom for ``phi``.

    Parameters
    ----------
    phi : PlantedPHI
        The patient; its values are planted in every instance, including the CSA blobs.
    n_slices : int
        Number of axial slices (3 mm apart).
    rows, cols : int
        Image size.
    seed : int
        Seed of the pixel noise.

    Returns
    -------
    list of FileDataset
        Independent datasets with file meta (explicit VR little endian), 16 bits allocated,
        12 bits stored, unsigned.
    """
    _check_size(n_slices, rows, cols)
    return list(_iter_mr(phi, n_slices, rows, cols, seed, False))


def write_corpus(
    out_dir: Path,
    patients: int = 20,
    ct_slices: int = 50,
    mr_slices: int = 50,
    ct_size: int = 512,
    mr_size: int = 256,
    seed: int = 0,
) -> CorpusSummary:
    """Write a corpus of ``patients`` × (one CT and one MR series) to ``out_dir``.

    Files are named ``patientNNNN/ct/NNNN.dcm`` and ``patientNNNN/mr/NNNN.dcm`` (no PHI in
    paths). Instances are generated and written one at a time, so memory stays small.

    Parameters
    ----------
    out_dir : Path
        Output folder, created if needed.
    patients : int
        Number of patients.
    ct_slices, mr_slices : int
        Slices per CT and per MR series; 0 leaves that series out.
    ct_size, mr_size : int
        Rows and columns of the CT and MR images.
    seed : int
        Seed of the planted values and of the pixel noise.

    Returns
    -------
    CorpusSummary
        The files written and the values planted in them.
    """
    if patients < 0 or ct_slices < 0 or mr_slices < 0:
        raise ValueError("write_corpus: counts must be >= 0")
    out_dir.mkdir(parents=True, exist_ok=True)
    phis: list[PlantedPHI] = []
    paths: list[Path] = []
    total = 0
    for index in range(patients):
        phi = make_patient_phi(index, seed)
        phis.append(phi)
        for name, count, iterate, size in (
            ("ct", ct_slices, _iter_ct, ct_size),
            ("mr", mr_slices, _iter_mr, mr_size),
        ):
            if count == 0:
                continue
            _check_size(count, size, size)
            folder = out_dir / f"patient{index:04d}" / name
            folder.mkdir(parents=True, exist_ok=True)
            encoder: _SeriesEncoder | None = None
            for i, ds in enumerate(iterate(phi, count, size, size, seed, True)):
                # Shared mode: every slice's dataset is the series template, changed in place.
                encoder = encoder or _SeriesEncoder(ds)
                path = folder / f"{i + 1:04d}.dcm"
                data = encoder.encode(ds)
                path.write_bytes(data)
                total += len(data)
                paths.append(path)
    logger.info("wrote synthetic corpus: %d files, %d bytes", len(paths), total)
    return CorpusSummary(
        root=out_dir,
        files=len(paths),
        total_bytes=total,
        patients=tuple(phis),
        paths=tuple(paths),
    )


__all__ = [
    "CT_IMAGE_STORAGE",
    "MR_IMAGE_STORAGE",
    "UID_ROOT",
    "CorpusSummary",
    "PlantedPHI",
    "PlantedStudy",
    "make_ct_series",
    "make_mr_series",
    "make_patient_phi",
    "write_corpus",
]
