"""The default static series of an MR study: 3D, T2W, axial, original.

Downstream steps (registration of DWI and DCE, the contact sheet, radiomics) need one anatomical
reference per study. The choice is made from the classifications only, so it is the same
whether the series were read from files or from the catalogue.

Tie-breaks, in order, between series of the same tier:

1. not flagged for review (physics and text agree);
2. the smallest voxel (slice thickness × pixel area), i.e. the finest sampling;
3. the largest coverage (slices × slice thickness);
4. the highest Series Number (a series repeated after motion is usually the better one);
5. the Series Instance UID, so that the choice is deterministic.

Tiers, the first non-empty one wins; every tier after the first sets ``fallback``:

1. T2W, 3D, axial, original (the requirement);
2. T2W, original, axial (2D);
3. T2W, original, any plane (3D first);
4. T2W, derived (reformats);
5. any other original MR series that is not a localizer and not ``other`` (3D, then axial).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from biobank.curation.models import Classification, DefaultChoice, Orientation, SeriesLabel

_EXCLUDED = {SeriesLabel.LOCALIZER, SeriesLabel.OTHER}


def _voxel(c: Classification) -> float:
    if c.slice_thickness is None or c.pixel_area is None:
        return float("inf")
    return c.slice_thickness * c.pixel_area


def _coverage(c: Classification) -> float:
    return c.n_slices * (c.slice_thickness or 0.0)


def _rank(c: Classification) -> tuple[bool, float, float, int, str]:
    number = c.series_number if c.series_number is not None else -1
    return (c.needs_review, _voxel(c), -_coverage(c), -number, c.series_instance_uid)


def _is_t2(c: Classification) -> bool:
    return c.label is SeriesLabel.T2W


def _axial(c: Classification) -> bool:
    return c.orientation is Orientation.AXIAL


_Tier = tuple[str, Callable[[Classification], bool], Callable[[Classification], tuple[bool, ...]]]

_TIERS: tuple[_Tier, ...] = (
    (
        "3D axial original T2W",
        lambda c: _is_t2(c) and c.is3d and _axial(c) and not c.derived,
        lambda c: (),
    ),
    (
        "no 3D axial original T2W; best 2D axial original T2W",
        lambda c: _is_t2(c) and _axial(c) and not c.derived,
        lambda c: (),
    ),
    (
        "no axial original T2W; best original T2W in another plane",
        lambda c: _is_t2(c) and not c.derived,
        lambda c: (not c.is3d,),
    ),
    (
        "no original T2W; best derived T2W",
        _is_t2,
        lambda c: (not c.is3d, not _axial(c)),
    ),
    (
        "no T2W series; best other original MR series",
        lambda c: c.label not in _EXCLUDED and not c.derived,
        lambda c: (not c.is3d, not _axial(c)),
    ),
)


def choose_default(study_instance_uid: str, series: Iterable[Classification]) -> DefaultChoice:
    """Choose the default static series among the classified series of one study.

    Parameters
    ----------
    study_instance_uid : str
        The study.
    series : iterable of Classification
        Its series (non-MR series are ignored).

    Returns
    -------
    DefaultChoice
        The series, whether it is a fallback and why.
    """
    mr = [c for c in series if c.modality == "MR"]
    for index, (reason, accept, prefer) in enumerate(_TIERS):
        candidates = [c for c in mr if accept(c)]
        if not candidates:
            continue
        best = min(candidates, key=lambda c: (*prefer(c), *_rank(c)))
        tie = (
            f"chosen among {len(candidates)} by: not in review, smallest voxel, largest "
            "coverage, highest series number"
            if len(candidates) > 1
            else "only candidate"
        )
        return DefaultChoice(
            study_instance_uid=study_instance_uid,
            series_instance_uid=best.series_instance_uid,
            fallback=index > 0,
            reason=f"{reason} ({tie})",
            candidates=len(candidates) if index == 0 else 0,
        )
    return DefaultChoice(
        study_instance_uid=study_instance_uid,
        series_instance_uid=None,
        fallback=True,
        reason="no usable MR series (only localizers, other or non-MR series)",
    )


def default_series(classifications: Iterable[Classification]) -> dict[str, DefaultChoice]:
    """The default static series of every study holding MR series.

    Parameters
    ----------
    classifications : iterable of Classification
        Series of one or more studies.

    Returns
    -------
    dict of str to DefaultChoice
        By Study Instance UID, in first-seen order; studies without MR series are left out.
    """
    studies: dict[str, list[Classification]] = {}
    for c in classifications:
        studies.setdefault(c.study_instance_uid, []).append(c)
    return {
        uid: choose_default(uid, series)
        for uid, series in studies.items()
        if any(c.modality == "MR" for c in series)
    }


__all__ = ["choose_default", "default_series"]
