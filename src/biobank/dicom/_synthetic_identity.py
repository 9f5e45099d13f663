"""Planted identities of the synthetic corpus: names, IDs, dates and addresses.

:func:`make_patient_phi` draws every identifying value of one synthetic patient (and of that
patient's CT and MR study) from made-up word lists, deterministically in ``(index, seed)``.
Part of :mod:`biobank.dicom.synthetic`, which re-exports the public names.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TIMEZONE = "+0100"
"""The UTC offset of every planted date-time and of Timezone Offset From UTC."""


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


__all__ = ["TIMEZONE", "PlantedPHI", "PlantedStudy", "make_patient_phi"]
