"""Keyword tables of the series classifier: vendor sequence names and description words.

Descriptions come from hospitals across Europe, so the words are listed in English, German,
French, Spanish, Italian, Dutch and Portuguese. Sources: the rule tables of dcm2niix
(``BidsGuess``, rordenlab/dcm2niix ``setBidsSiemens/Philips/GE``), HaukeBartsch
``classifyRules.json``, the Flywheel classifier, vendor protocol names (Siemens ``*tse``,
``*tfl3d``, ``spc``, ``*ep_b``; GE ``fse``, ``EFGRE3D``, ``BRAVO``, ``LAVA``; Philips ``TSE``,
``T1TFE``, ``THRIVE``, ``DwiSE``) and the research notes (``shared/research/curation.md`` §2).

Text is normalised before matching (:func:`normalise_text`): lower case, ``t2*`` → ``t2star``,
every character outside letters and digits → a space. Each table is ordered: the first
pattern that matches wins, so specific phrases come before generic ones.
"""

from __future__ import annotations

import re
import unicodedata

from biobank.curation.models import SeriesLabel

L = SeriesLabel


def normalise_text(*parts: str) -> str:
    """Lower-case, accent-free words of ``parts`` separated by single spaces."""
    text = " ".join(p for p in parts if p).lower()
    text = re.sub(r"t2\s*\*", "t2star ", text)
    text = re.sub(r"(?<![a-z0-9])\+\s*c\b|\bc\s*\+", " postcontrast ", text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return f" {text.strip()} "


def _words(*patterns: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(patterns) + r")(?![a-z0-9])")


#: Description keywords, in order; the first match gives the text label.
TEXT_RULES: tuple[tuple[SeriesLabel, str, re.Pattern[str]], ...] = (
    (
        L.LOCALIZER,
        "localizer",
        _words(
            r"loc",
            r"locali[sz]er",
            r"localiser",
            r"localizador",  # es, pt
            r"localizzatore",  # it
            r"lokali[sz]er",  # de, nl
            r"scout",
            r"survey",  # Philips
            r"surview",
            r"3 ?pl(?:ane)?(?: loc)?",
            r"tri ?pilot",
            r"pilot",
            r"aa ?head(?: scout)?",
            r"aa ?scout",
            r"ubersicht",  # de Übersicht
            r"reperage",  # fr repérage
        ),
    ),
    (
        L.OTHER,
        "derived diffusion map",
        _words(r"e ?adc", r"exp(?:onential)? adc", r"fa", r"fractional anisotropy", r"md map"),
    ),
    (
        L.ADC,
        "ADC",
        _words(
            r"adc",
            r"apparent diffusion",
            r"diffusion apparent\w*",  # fr coefficient de diffusion apparent
            r"difusion aparente",  # es
            r"diffusione apparente",  # it
            r"difusao aparente",  # pt
        ),
    ),
    (
        L.DWI,
        "diffusion",
        _words(
            r"dwi",
            r"dw",
            r"diff\w*",  # en diffusion, de Diffusion, fr diffusion, it diffusione, nl diffusie
            r"difus\w*",  # es difusión, pt difusão
            r"dti",
            r"ivim",
            r"trace\w*",
            r"resolve",
            r"b ?\d{2,4}",
            r"calc ?b\w*",
        ),
    ),
    (
        L.OTHER,
        "T2*/SWI, angiography, maps or functional",
        _words(
            r"t2star",
            r"t2 ?ffe",
            r"t2 ?me\w*",
            r"t2 ?fl2d",
            r"t2 ?gre",
            r"swi",
            r"swan",
            r"susc\w*",
            r"hemo\w*",
            r"medic",
            r"merge",
            r"tof",
            r"angio\w*",
            r"mra",
            r"mip",
            r"t[12] ?map\w*",
            r"mapping",
            r"molli",
            r"shmolli",
            r"field ?map",
            r"b1 ?map",
            r"bold",
            r"fmri",
            r"resting ?state",
            r"spectro\w*",
            r"svs",
            r"csi",
            r"dsc",
        ),
    ),
    (
        L.DCE,
        "dynamic",
        _words(
            r"dce",
            r"dyn\w*",  # en dynamic, de dynamisch, fr dynamique, nl dynamisch
            r"dinamic\w*",  # es dinámico, it dinamico, pt dinâmico
            r"twist",
            r"tricks",
            r"disco",
            r"ktrans",
            r"perf\w*",  # en/de/fr perfusion, nl perfusie, it perfusione, es perfusión
            r"multi ?phas\w*",
        ),
    ),
    (L.T1W, "T1 FLAIR", _words(r"t1 ?w? ?flair")),
    (
        L.FLAIR,
        "FLAIR",
        _words(r"flair", r"dark ?fluid", r"fluid att\w*", r"t2 ?tirm", r"spcir"),
    ),
    (
        L.PD,
        "proton density",
        _words(
            r"pd",
            r"pdw",
            r"pd ?w",
            r"pd ?fs",
            r"pdfs",
            r"pd ?spair",
            r"proton\w*(?: density)?",
            r"protonendichte",  # de
            r"protonendichtheid",  # nl
            r"densite (?:de )?protons?",  # fr
            r"densidad protonica",  # es
            r"densita protonica",  # it
            r"densidade protonica",  # pt
            r"dp",  # fr/es/it/pt densité/densidad/densità/densidade de protones
            r"dp ?fs",
        ),
    ),
    (
        L.T2W,
        "T2",
        _words(
            r"t2",
            r"t2w",
            r"t2 ?gewichtet",  # de
            r"ponderee t2",  # fr
            r"ponderad[ao] (?:en )?t2",  # es, pt
            r"pesat[ao] (?:in )?t2",  # it
            r"gewogen t2",  # nl
            r"stir",
        ),
    ),
    (
        L.T1W,
        "T1",
        _words(
            r"t1",
            r"t1w",
            r"t1 ?gewichtet",
            r"ponderee t1",
            r"ponderad[ao] (?:en )?t1",
            r"pesat[ao] (?:in )?t1",
            r"gewogen t1",
        ),
    ),
    (
        L.T2W,
        "T2 sequence family",
        _words(
            r"haste",
            r"ssfse",
            r"ss ?fse",
            r"space",
            r"cube",
            r"vista",
            r"blade",
            r"propeller",
            r"multivane",
        ),
    ),
    (
        L.T1W,
        "T1 sequence family",
        _words(
            r"mp ?rage",
            r"vibe",
            r"starvibe",
            r"lava",
            r"thrive",
            r"bravo",
            r"f?spgr",
            r"t1 ?tfe",
            r"tfe",
            r"flash",
            r"dixon",
            r"in ?phase",
            r"opp\w* ?phase",
        ),
    ),
    (L.T2W, "TSE/FSE", _words(r"tse", r"fse", r"turbo spin echo")),
)

#: Post-contrast words (checked on the normalised text).
CONTRAST_TEXT = _words(
    r"postcontrast",
    r"post(?! ?op)",  # not post-op
    r"gd",
    r"gad\w*",  # gado, gadolinium
    r"km",  # de Kontrastmittel
    r"kontrast\w*",
    r"contrast",
    r"contraste",  # fr, es, pt
    r"contrasto",  # it
    r"contrastmiddel",  # nl
    r"mdc",  # it mezzo di contrasto
    r"mdc ?\+",
    r"inj\w*",
    r"dotarem",
    r"gadovist",
    r"multihance",
    r"prohance",
    r"clariscan",
    r"primovist",
    r"eovist",
)

#: Words that say "without contrast"; they override :data:`CONTRAST_TEXT`.
NO_CONTRAST_TEXT = _words(
    r"pre",
    r"precontrast",
    r"nativ\w*",  # de nativ, fr natif
    r"native?",
    r"ohne",  # de
    r"sans",  # fr
    r"sin",  # es
    r"senza",  # it
    r"zonder",  # nl
    r"sem",  # pt
    r"non ?contrast",
    r"unenhanced",
    r"plain",
)

#: Orientation words, used only when Image Orientation (Patient) is missing.
ORIENTATION_TEXT: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("axial", _words(r"tra\w*", r"ax\w*", r"assiale", r"axiaal", r"transversa\w*")),
    ("coronal", _words(r"cor\w*", r"koronar", r"coronaal", r"frontal")),
    ("sagittal", _words(r"sag\w*")),
)

#: Vendor sequence names (SequenceName, PulseSequenceName, GE private names), lower case
#: without ``*``. First match wins; ``None`` means "a family, the physics tags decide".
NAME_RULES: tuple[tuple[SeriesLabel | None, str, re.Pattern[str]], ...] = (
    (L.OTHER, "TOF angiography (fl3d1r, tof)", re.compile(r"^fl3d\d*r|tof")),
    (L.OTHER, "balanced SSFP (trufi, fiesta, bffe)", re.compile(r"trufi|tfi\d|fiesta|bffe")),
    (L.OTHER, "field map / SWI (fm2d, swi)", re.compile(r"^fm\d|swi|swan")),
    (L.DWI, "diffusion EPI (ep_b, re_b, dwi)", re.compile(r"^(ep|re)_?b\d|dwi|diff|dwise")),
    (L.FLAIR, "3D FLAIR (spcir) / FLAIR", re.compile(r"spcir|flair")),
    (L.T2W, "3D TSE (spc, cube, vista)", re.compile(r"^spc|cube|vista")),
    (L.T2W, "single-shot TSE (haste h2d, ssfse)", re.compile(r"^h2d|ssfse|haste")),
    (
        L.T1W,
        "T1 gradient echo (tfl, fl3d, vibe, fspgr, bravo, lava, tfe, thrive)",
        re.compile(r"^tfl|^fl3d|vibe|efgre3d|fspgr|bravo|lava|t1ffe|thrive|tfe|mprage"),
    ),
    (None, "inversion recovery TSE (tir)", re.compile(r"^tir|ir_?fse|fse_?ir")),
    (None, "spin echo family (tse, se, fse)", re.compile(r"^tse|^se\d|fse|tse")),
)


__all__ = [
    "CONTRAST_TEXT",
    "NAME_RULES",
    "NO_CONTRAST_TEXT",
    "ORIENTATION_TEXT",
    "TEXT_RULES",
    "normalise_text",
]
