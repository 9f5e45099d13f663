"""Curation: series classification, image quality control, contact sheets (issue 6).

Modules: :mod:`biobank.curation.classify` (MR series labels from physics tags, vendor
sequence names and multilingual descriptions), :mod:`biobank.curation.series` (a series
read from files or from the node), :mod:`biobank.curation.qc` (MRIQC-style metrics, CT
checks and the fixed-threshold decision), :mod:`biobank.curation.rules` and
:mod:`biobank.curation.cohort` (robust z-scores against the series of the same label and
manufacturer) and :mod:`biobank.curation.sheet` (a contact sheet of a whole series).
"""
