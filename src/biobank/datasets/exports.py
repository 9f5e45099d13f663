"""Exports of the node's holdings: the EUCAIM search view and the MIABIS collection descriptor.

**EUCAIM search view** (:func:`eucaim_view`): one object per patient with the fields of the
EUCAIM federated-query minimal schema (EGA-archive/EUCAIM-Schema), named exactly as there:
``patientId`` (the pseudonym — the de-identified Patient ID), ``sex`` (an ontology term:
SNOMED CT 248153007 male, 248152002 female, 261665006 unknown), ``disease[]`` (one per
``condition_occurrence``: ``diseaseId``, ``diagnosis``, ``ageAtDiagnosis`` as a Beacon-style
``{"iso8601duration": "P56Y"}``, ``yearOfDiagnosis``, ``dateOfFirstTreatment`` — the first
drug exposure or non-imaging procedure on or after the diagnosis — and ``tumorMetadata``
from the form variables, see :data:`TUMOR_VARIABLES`) and ``imageStudy[]`` (one per study:
``imageStudyId``, ``disease`` — the patient's latest diagnosis on or before the study, else
the first —, ``imageModality``, ``imageBodyPart``, ``imageManufacturer``,
``dateOfImageAcquisition``); :func:`eucaim_collection` gives the EUCAIM *Collection*
object of the node. Dates are the node's de-identified (shifted) dates, ISO 8601
``YYYY-MM-DD``; a diagnosis year is therefore the shifted year.

Ontology terms are ``{"id": "<scheme>:<code>", "label": ...}``: diagnoses by the vocabulary
and code of their OMOP concept (``ICD10:C61``, ``SNOMED:399068003``), or ``source:<value>``
when unmapped; modality ``DCM:<code>`` (DICOM CID 29); body part ``SNOMED:<code>`` when
mapped (DICOM PS3.16 Annex L), else ``DICOM:<BodyPartExamined>``; manufacturer
``DICOM:<Manufacturer>``.

**MIABIS collection** (:func:`miabis_collection`): the MIABIS Core v3 *Collection*
attributes (MIABIS-COLLECTION-01..23), keyed by their MIABIS names, computed from the
catalogue (sex, ages, dataset types, diseases, number of subjects) or given by the caller
(ID, name, description, contact, access conditions); imaging counts, modalities and body
parts, which MIABIS has no attribute for, are under ``"extensions"``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from biobank.catalog import Catalog
from biobank.catalog.omop_export import (
    CollectionFacts,
    ConditionFact,
    PatientFacts,
    StudyFact,
    Term,
    VariableFact,
    collection_facts,
    patient_facts,
)
from biobank.catalog.omop_imaging import BODY_PART_SNOMED, GENDER_CONCEPTS
from biobank.errors import InvalidInput

SEX_TERMS: dict[int, dict[str, str]] = {
    GENDER_CONCEPTS["M"]: {"id": "SNOMED:248153007", "label": "Male"},
    GENDER_CONCEPTS["F"]: {"id": "SNOMED:248152002", "label": "Female"},
}
UNKNOWN_SEX = {"id": "SNOMED:261665006", "label": "Unknown"}

TUMOR_VARIABLES: dict[str, str] = {
    "psa": "PSA",
    "psa_ng_ml": "PSA",
    "gleason": "histologicGraceGleasonScore",
    "gleason_score": "histologicGraceGleasonScore",
    "isup": "histologicGradeISUP",
    "isup_grade": "histologicGradeISUP",
    "grade_group": "histologicGradeISUP",
    "pirads": "tumorPIRADSAssesment",
    "pi_rads": "tumorPIRADSAssesment",
    "birads": "tumorBIRADSAssesment",
    "bi_rads": "tumorBIRADSAssesment",
    "er": "ER",
    "er_status": "ER",
    "pr": "PR",
    "pr_status": "PR",
    "her2": "HER2",
    "her2_status": "HER2",
    "ki67": "KI67",
    "ki_67": "KI67",
    "cm": "cancerStageCMCategory",
    "ctnm_m": "cancerStageCMCategory",
    "clinical_m": "cancerStageCMCategory",
    "clinical_m_category": "cancerStageCMCategory",
    "pm": "cancerStagePMCategory",
    "ptnm_m": "cancerStagePMCategory",
    "pathological_m": "cancerStagePMCategory",
    "pathological_m_category": "cancerStagePMCategory",
}
"""Form variable name (the part after ``<form>.``, lower case) → EUCAIM Tumor field."""
TUMOR_CONCEPTS: dict[int, str] = {
    3013603: "PSA",  # LOINC 2857-1 Prostate specific Ag [Mass/volume] in Serum or Plasma
    36660206: "histologicGradeISUP",  # LOINC 94734-1 Prostate cancer grade group
}
"""Measurement concept → EUCAIM Tumor field, for variables named otherwise."""
NUMERIC_TUMOR_FIELDS = frozenset({"PSA", "KI67"})

MODALITY_LABELS = {
    "CT": "Computed Tomography",
    "MR": "Magnetic Resonance",
    "PT": "Positron emission tomography (PET)",
    "NM": "Nuclear Medicine",
    "US": "Ultrasound",
    "MG": "Mammography",
    "CR": "Computed Radiography",
    "DX": "Digital Radiography",
    "XA": "X-Ray Angiography",
    "SEG": "Segmentation",
    "SR": "SR Document",
}
"""DICOM CID 29 meanings of the common modalities (others use the code as the label)."""

MIABIS_SEX = {GENDER_CONCEPTS["M"]: "Male", GENDER_CONCEPTS["F"]: "Female"}
MIABIS_DATASET_IMAGING = "Body (Radiological) image"
MIABIS_DATASET_CLINICAL = "Clinical dataset"
MIABIS_SAMPLE_TYPE = "Digital sample"


# -- EUCAIM --------------------------------------------------------------------------------


def _term(term: Term) -> dict[str, str]:
    return {"id": f"{term.vocabulary}:{term.code}", "label": term.label or term.code}


def _age_at(person: PatientFacts, day: datetime.date) -> int | None:
    if not person.year_of_birth:
        return None
    birth = (person.month_of_birth or 1, person.day_of_birth or 1)
    return day.year - person.year_of_birth - ((day.month, day.day) < birth)


def _variable_name(variable: VariableFact) -> str | None:
    name = variable.variable.rsplit(".", 1)[-1].strip().lower()
    return TUMOR_VARIABLES.get(name) or TUMOR_CONCEPTS.get(variable.concept_id)


def _tumor_value(field: str, variable: VariableFact) -> Any:
    if field in NUMERIC_TUMOR_FIELDS and variable.number is not None:
        return variable.number
    if variable.value is not None:
        return _term(variable.value)
    text = f"{variable.number:g}" if variable.number is not None else variable.text or ""
    return {"id": f"{variable.variable}:{text}", "label": text}


def _tumor(disease_id: str, variables: Sequence[VariableFact]) -> dict[str, Any] | None:
    fields: dict[str, tuple[datetime.date, Any]] = {}
    for variable in variables:
        field = _variable_name(variable)
        if field is None:
            continue
        # The value closest to the diagnosis: the earliest one.
        if field not in fields or variable.day < fields[field][0]:
            fields[field] = (variable.day, _tumor_value(field, variable))
    if not fields:
        return None
    tumor: dict[str, Any] = {"tumorId": f"{disease_id}-tumor"}
    tumor.update({name: value for name, (_, value) in sorted(fields.items())})
    return tumor


def _diseases(person: PatientFacts) -> list[dict[str, Any]]:
    conditions = person.conditions
    if not conditions:
        return []
    linked: dict[int, list[VariableFact]] = {c.condition_occurrence_id: [] for c in conditions}
    first = conditions[0].condition_occurrence_id
    for variable in person.variables:
        target = variable.condition_occurrence_id
        linked[target if target in linked else first].append(variable)
    diseases = []
    for condition in conditions:
        disease_id = f"{person.pseudonym}-D{condition.condition_occurrence_id}"
        age = _age_at(person, condition.start_date)
        treated = [day for day in person.treatments if day >= condition.start_date]
        disease: dict[str, Any] = {
            "diseaseId": disease_id,
            "diagnosis": _term(condition.diagnosis),
            "ageAtDiagnosis": None if age is None else {"iso8601duration": f"P{age}Y"},
            "yearOfDiagnosis": condition.start_date.year,
            "dateOfFirstTreatment": treated[0].isoformat() if treated else None,
        }
        tumor = _tumor(disease_id, linked[condition.condition_occurrence_id])
        if tumor is not None:
            disease["tumorMetadata"] = tumor
        diseases.append(disease)
    return diseases


def _modality(study: StudyFact) -> dict[str, str] | None:
    if not study.modalities:
        return None
    code = study.modalities[0].upper()
    return {"id": f"DCM:{code}", "label": MODALITY_LABELS.get(code, code)}


def _body_part(study: StudyFact) -> dict[str, str] | None:
    if not study.body_parts:
        return None
    value = study.body_parts[0].upper()
    snomed = BODY_PART_SNOMED.get(value)
    label = value.capitalize()
    return {"id": f"SNOMED:{snomed}" if snomed else f"DICOM:{value}", "label": label}


def _disease_of(
    study: StudyFact, conditions: Sequence[ConditionFact], diseases: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    chosen = None
    for condition, disease in zip(conditions, diseases, strict=True):
        if condition.start_date <= study.day or chosen is None:
            chosen = disease
    if chosen is None:
        return None
    return {key: chosen[key] for key in ("diseaseId", "diagnosis")}


def eucaim_patient(person: PatientFacts) -> dict[str, Any]:
    """The EUCAIM search-view object of one person (see the module doc)."""
    diseases = _diseases(person)
    return {
        "patientId": person.pseudonym,
        "sex": SEX_TERMS.get(person.gender_concept_id, UNKNOWN_SEX),
        "disease": diseases,
        "imageStudy": [
            {
                "imageStudyId": study.study_instance_uid,
                "disease": _disease_of(study, person.conditions, diseases),
                "imageModality": _modality(study),
                "imageBodyPart": _body_part(study),
                "imageManufacturer": (
                    {"id": f"DICOM:{study.manufacturers[0]}", "label": study.manufacturers[0]}
                    if study.manufacturers
                    else None
                ),
                "dateOfImageAcquisition": study.day.isoformat(),
            }
            for study in person.studies
        ],
    }


def eucaim_view(catalog: Catalog) -> list[dict[str, Any]]:
    """The EUCAIM search view of every person of the node, sorted by pseudonym.

    Per-patient data (pseudonyms, shifted dates): for curators and the federation's
    search index, never for the public.
    """
    return [eucaim_patient(person) for person in patient_facts(catalog)]


def eucaim_collection(
    catalog: Catalog, *, collection_id: str, name: str, description: str
) -> dict[str, Any]:
    """The EUCAIM *Collection* object of the node (counts, age range, value sets)."""
    facts = collection_facts(catalog)
    return {
        "id": collection_id,
        "name": name,
        "description": description,
        "subjectsCount": facts.persons,
        "studiesCount": facts.studies,
        "ageRange": {"min": facts.age_low, "max": facts.age_high, "unit": "years"},
        "modalities": sorted(facts.modalities),
        "bodyParts": sorted(facts.body_parts),
        "gender": [
            SEX_TERMS.get(concept, UNKNOWN_SEX)["label"]
            for concept in sorted(facts.sexes)
            if facts.sexes[concept]
        ],
    }


# -- MIABIS --------------------------------------------------------------------------------


def _miabis_sexes(facts: CollectionFacts) -> list[str]:
    found = {MIABIS_SEX.get(concept, "Unknown") for concept, n in facts.sexes.items() if n}
    return [sex for sex in ("Male", "Female", "Unknown") if sex in found]


def _disease_entry(term: Term, persons: int) -> dict[str, Any]:
    system = {"ICD10": "ICD-10", "ICD10CM": "ICD-10-CM", "SNOMED": "SNOMED CT"}.get(
        term.vocabulary, term.vocabulary
    )
    return {"system": system, "code": term.code, "label": term.label, "subjects": persons}


def miabis_collection(
    catalog: Catalog,
    *,
    collection_id: str,
    name: str,
    description: str,
    acronym: str | None = None,
    url: str | None = None,
    contact: dict[str, str] | None = None,
    collection_setting: str = "Routine health care setting",
    collection_design: Sequence[str] = ("Disease-specific cohort",),
    access_conditions: Sequence[str] = ("Specific research use",),
    status: str = "Active",
    inclusion_criteria: Sequence[str] = ("Health status", "Hospital patient"),
    publications: Sequence[str] = (),
) -> dict[str, Any]:
    """The MIABIS Core v3 Collection descriptor of the node's holdings (see the module doc).

    Raises
    ------
    InvalidInput
        If ``collection_id``, ``name`` or ``description`` is empty (MIABIS requires them).
    """
    for label, value in (
        ("collection_id", collection_id),
        ("name", name),
        ("description", description),
    ):
        if not value or not value.strip():
            raise InvalidInput(
                f"MIABIS collection: {label} is required (MIABIS Core v3); give a value"
            )
    facts = collection_facts(catalog)
    dataset_types = []
    if facts.series:
        dataset_types.append(MIABIS_DATASET_IMAGING)
    if facts.clinical:
        dataset_types.append(MIABIS_DATASET_CLINICAL)
    has_ages = facts.age_low is not None
    return {
        "ID": collection_id,
        "Acronym": acronym,
        "Name": name,
        "URL": url,
        "Contact Information": contact,
        "Description": description,
        "Sample source": "Human",
        "Sex": _miabis_sexes(facts),
        "Age Low": facts.age_low,
        "Age High": facts.age_high,
        "Age Low Unit": "Years" if has_ages else None,
        "Age High Unit": "Years" if has_ages else None,
        "Dataset type": dataset_types,
        "Sample type": MIABIS_SAMPLE_TYPE,
        "Storage temperature": [],
        "Disease": [_disease_entry(term, n) for term, n in facts.diagnoses],
        "Sample collection setting": collection_setting,
        "Collection design": list(collection_design),
        "Use & Access conditions": list(access_conditions),
        "Collection status": status,
        "Total number of subjects": facts.persons,
        "Inclusion criteria": list(inclusion_criteria),
        "Publications": list(publications),
        "extensions": {
            "numberOfImageStudies": facts.studies,
            "numberOfImageSeries": facts.series,
            "modalities": facts.modalities,
            "bodyParts": facts.body_parts,
        },
    }


__all__ = [
    "MODALITY_LABELS",
    "SEX_TERMS",
    "TUMOR_CONCEPTS",
    "TUMOR_VARIABLES",
    "eucaim_collection",
    "eucaim_patient",
    "eucaim_view",
    "miabis_collection",
]
