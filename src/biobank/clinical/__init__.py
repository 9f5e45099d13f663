"""Clinical data: form definitions, validation with actionable issues, mapping to OMOP.

Forms are YAML files (``data/forms/``, format in ``data/forms/README.md``) parsed strictly
by :mod:`.forms`; records are validated in two phases by :mod:`.validate` (types, then
rules); valid records are stored and mapped to OMOP CDM 5.4, invalid ones are reported with
every problem named — never silently dropped.
"""

from biobank.clinical.forms import (
    FormRegistry,
    Operand,
    builtin_form,
    builtin_form_names,
    check_references,
    load_form,
    parse_form,
    parse_form_text,
    parse_operands,
)
from biobank.clinical.mapping import map_record
from biobank.clinical.models import (
    IDENTITY_FIELDS,
    Code,
    Comparison,
    Condition,
    Form,
    OmopRef,
    OmopRows,
    OmopTable,
    OmopTarget,
    Operator,
    Rule,
    Severity,
    ValidationIssue,
    Value,
    Variable,
    VariableType,
)
from biobank.clinical.quality import FormSummary, Outlier, outliers, summarise
from biobank.clinical.service import SEAL_PURPOSE, ClinicalService, ImportReport, RecordResult
from biobank.clinical.sources import read_records
from biobank.clinical.validate import (
    Others,
    check_rules,
    coerce_record,
    coerce_value,
    describe_condition,
    has_errors,
    record_key,
    validate_record,
)

__all__ = [
    "IDENTITY_FIELDS",
    "SEAL_PURPOSE",
    "ClinicalService",
    "FormSummary",
    "ImportReport",
    "Outlier",
    "RecordResult",
    "map_record",
    "outliers",
    "read_records",
    "summarise",
    "Code",
    "Comparison",
    "Condition",
    "Form",
    "FormRegistry",
    "OmopRef",
    "OmopRows",
    "OmopTable",
    "OmopTarget",
    "Operand",
    "Operator",
    "Others",
    "Rule",
    "Severity",
    "ValidationIssue",
    "Value",
    "Variable",
    "VariableType",
    "builtin_form",
    "builtin_form_names",
    "check_references",
    "check_rules",
    "coerce_record",
    "coerce_value",
    "describe_condition",
    "has_errors",
    "load_form",
    "parse_form",
    "parse_form_text",
    "parse_operands",
    "record_key",
    "validate_record",
]
