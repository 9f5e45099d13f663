"""WADO-RS (PS3.18 §10.4): instances, metadata, frames, bulk data, rendered, thumbnails.

Instances are sent from the blob store as they were stored (``transfer-syntax=*``
semantics) unless the client names another transfer syntax; metadata come from the
catalogue's precomputed series metadata, never from the files; frames are cut out of the
stored bytes without decoding when the client accepts the stored compression (or the pixel
data are native), and decoded one frame at a time otherwise.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array  # type: ignore[attr-defined]

from biobank.access import Principal
from biobank.api.deps import ReaderDep, Services, ServicesDep, base_url, client_of, owner_filter
from biobank.api.negotiate import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    FRAME_MEDIA_TYPES,
    frame_media,
    image_media,
    instance_syntax,
    want_json,
)
from biobank.catalog import InstanceSummary
from biobank.catalog.search import DicomQuery, QueryLevel
from biobank.dicom.frames import extract_frames, frame_count
from biobank.dicom.multipart import encode_multipart, multipart_content_type, new_boundary
from biobank.dicom.render import (
    NotAcceptable,
    parse_viewport,
    parse_window,
    render_frame,
    render_thumbnail,
)
from biobank.errors import InvalidInput, InvalidQuery, NotFound

router = APIRouter(tags=["WADO-RS"])

DICOM_JSON = "application/dicom+json"
MAX_INSTANCES = 100_000


# --- finding what the caller may see ------------------------------------------------------


def _visible(svc: Services, caller: Principal, study: str, series: str | None = None) -> None:
    """Raise NotFound unless the study (and series in it) exists and ``caller`` may see it."""
    query = DicomQuery(
        level=QueryLevel.SERIES if series else QueryLevel.STUDY,
        study_instance_uid=study,
        series_instance_uid=series,
        owner_user_id=owner_filter(caller),
        limit=1,
    )
    if not svc.catalog.search(query).matches:
        what = f"series {series} of study {study}" if series else f"study {study}"
        raise NotFound(f"no {what} on this node (or not visible to {caller.username})")


def _instances(
    svc: Services, caller: Principal, study: str, series: str | None, sop: str | None
) -> list[InstanceSummary]:
    _visible(svc, caller, study, series)
    found = svc.catalog.find_instances(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        limit=MAX_INSTANCES,
    )
    if not found:
        raise NotFound(f"no instance {sop} in series {series} of study {study}")
    return found


def _audit(request: Request, svc: Services, caller: Principal, action: str, *uids: str) -> None:
    svc.audit.record(caller, action, "/".join(u for u in uids if u), 200, client_of(request), "")


# --- instances ----------------------------------------------------------------------------


def _transcode(data: bytes, syntax: str) -> bytes:
    """``data`` in transfer syntax ``syntax`` (decompressing; compressing is not offered)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    stored = str(ds.file_meta.TransferSyntaxUID)
    target = pydicom.uid.UID(syntax)
    if stored == syntax:
        return data
    if syntax != EXPLICIT_VR_LITTLE_ENDIAN:
        raise NotAcceptable(
            f"instances are offered as stored ({stored}) or as Explicit VR Little Endian "
            f"({EXPLICIT_VR_LITTLE_ENDIAN}); ask for one of those or transfer-syntax=*"
        )
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    else:
        ds.file_meta.TransferSyntaxUID = target
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _send_instances(
    request: Request, svc: Services, instances: list[InstanceSummary]
) -> StreamingResponse:
    syntax = instance_syntax(request.headers.get("accept"))
    if syntax is not None and syntax != EXPLICIT_VR_LITTLE_ENDIAN:
        other = {i.transfer_syntax_uid for i in instances} - {syntax}
        if other:  # decided before the first byte is sent: a stream cannot turn into a 406
            raise NotAcceptable(
                f"instances are offered as stored ({', '.join(sorted(str(o) for o in other))}) "
                f"or as Explicit VR Little Endian ({EXPLICIT_VR_LITTLE_ENDIAN}); ask for one "
                "of those or transfer-syntax=*"
            )
    boundary = new_boundary()

    def parts() -> Iterator[tuple[bytes, dict[str, str]]]:
        for instance in instances:
            data = svc.store.get(instance.blob_digest)
            actual = instance.transfer_syntax_uid or EXPLICIT_VR_LITTLE_ENDIAN
            if syntax is not None and syntax != actual:
                data, actual = _transcode(data, syntax), syntax
            yield data, {"Content-Type": f"application/dicom; transfer-syntax={actual}"}

    media = multipart_content_type("application/dicom", boundary)
    return StreamingResponse(encode_multipart(parts(), boundary), media_type=media)


@router.get("/studies/{study}", summary="Retrieve a study")
def retrieve_study(study: str, request: Request, svc: ServicesDep, caller: ReaderDep) -> Any:
    """Every instance of the study, multipart/related; type="application/dicom"."""
    found = _instances(svc, caller, study, None, None)
    _audit(request, svc, caller, "wado.study", study)
    return _send_instances(request, svc, found)


@router.get("/studies/{study}/series/{series}", summary="Retrieve a series")
def retrieve_series(
    study: str, series: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Any:
    """Every instance of the series."""
    found = _instances(svc, caller, study, series, None)
    _audit(request, svc, caller, "wado.series", study, series)
    return _send_instances(request, svc, found)


@router.get("/studies/{study}/series/{series}/instances/{sop}", summary="Retrieve an instance")
def retrieve_instance(
    study: str, series: str, sop: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Any:
    """One instance."""
    found = _instances(svc, caller, study, series, sop)
    _audit(request, svc, caller, "wado.instance", study, series, sop)
    return _send_instances(request, svc, found)


# --- metadata -----------------------------------------------------------------------------

_BULK = b'"BulkDataURI":"'
_RELATIVE = _BULK + b"instances/"
_LEGACY = _BULK + b"bulk/"


def _absolute(text: bytes, series_url: str) -> bytes:
    """Make the catalogue's relative BulkDataURIs absolute for this request."""
    if _LEGACY in text:  # catalogued before BulkDataURIs named their instance
        return _legacy_absolute(text, series_url)
    return text.replace(_RELATIVE, _BULK + series_url.encode() + b"/instances/")


def _legacy_absolute(text: bytes, series_url: str) -> bytes:
    parsed = json.loads(text)
    headers = parsed if isinstance(parsed, list) else [parsed]
    for header in headers:
        sop = header.get("00080018", {}).get("Value", [""])[0]
        prefix = f"{series_url}/instances/{sop}/"
        _rewrite(header, prefix)
    return json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode()


def _rewrite(node: Any, prefix: str) -> None:
    if isinstance(node, dict):
        uri = node.get("BulkDataURI")
        if isinstance(uri, str) and uri.startswith("bulk/"):
            node["BulkDataURI"] = prefix + uri
        for value in node.values():
            _rewrite(value, prefix)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, prefix)


def _series_url(request: Request, svc: Services, study: str, series: str) -> str:
    return f"{base_url(request, svc)}/studies/{study}/series/{series}"


def _json(body: bytes) -> Response:
    return Response(body, media_type=DICOM_JSON)


@router.get("/studies/{study}/metadata", summary="Retrieve the metadata of a study")
def study_metadata(study: str, request: Request, svc: ServicesDep, caller: ReaderDep) -> Response:
    """The headers of every instance of the study (DICOM JSON, bulk data as BulkDataURI)."""
    want_json(request.headers.get("accept"))
    _visible(svc, caller, study)
    series_list = svc.catalog.search(
        DicomQuery(level=QueryLevel.SERIES, study_instance_uid=study, limit=10_000)
    ).matches
    pieces = []
    for match in series_list:
        series = match["0020000E"]["Value"][0]
        text = svc.catalog.series_metadata_json(series)
        pieces.append(_absolute(text, _series_url(request, svc, study, series))[1:-1])
    _audit(request, svc, caller, "wado.study.metadata", study)
    return _json(b"[" + b",".join(p for p in pieces if p) + b"]")


@router.get("/studies/{study}/series/{series}/metadata", summary="Retrieve series metadata")
def series_metadata(
    study: str, series: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """The headers of every instance of the series, from the precomputed series metadata."""
    want_json(request.headers.get("accept"))
    _visible(svc, caller, study, series)
    text = svc.catalog.series_metadata_json(series)
    _audit(request, svc, caller, "wado.series.metadata", study, series)
    return _json(_absolute(text, _series_url(request, svc, study, series)))


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/metadata",
    summary="Retrieve instance metadata",
)
def instance_metadata(
    study: str, series: str, sop: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """The header of one instance."""
    want_json(request.headers.get("accept"))
    _instances(svc, caller, study, series, sop)
    header = svc.catalog.instance_header(sop)
    text = json.dumps([header], ensure_ascii=False, separators=(",", ":")).encode()
    _audit(request, svc, caller, "wado.instance.metadata", study, series, sop)
    return _json(_absolute(text, _series_url(request, svc, study, series)))


# --- frames and bulk data -----------------------------------------------------------------


def _frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidQuery(
            f"frame list {text!r}: write frame numbers from 1, separated by commas (1,2,5)"
        ) from None
    if not numbers or min(numbers) < 1:
        raise InvalidQuery(f"frame list {text!r}: frame numbers start at 1")
    return numbers


def _decoded_frames(data: bytes, numbers: list[int]) -> list[bytes]:
    count = frame_count(data)
    for number in numbers:
        if number > count:
            raise NotFound(f"frame {number} does not exist; the instance has {count} frame(s)")
    return [
        np.ascontiguousarray(pixel_array(io.BytesIO(data), index=n - 1)).tobytes() for n in numbers
    ]


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
    summary="Retrieve frames",
)
def retrieve_frames(
    study: str,
    series: str,
    sop: str,
    frames: str,
    request: Request,
    svc: ServicesDep,
    caller: ReaderDep,
) -> Response:
    """Frames as stored (compressed media type) or native octet-stream, per the Accept header."""
    numbers = _frame_numbers(frames)
    (instance,) = _instances(svc, caller, study, series, sop)
    stored = instance.transfer_syntax_uid or EXPLICIT_VR_LITTLE_ENDIAN
    media, syntax = frame_media(request.headers.get("accept"), stored)
    data = svc.store.get(instance.blob_digest)
    if media == "application/octet-stream" and stored in FRAME_MEDIA_TYPES:
        bodies = _decoded_frames(data, numbers)
    else:
        bodies = extract_frames(data, numbers)
    part_type = media if syntax is None else f"{media}; transfer-syntax={syntax}"
    boundary = new_boundary()
    base = f"{_series_url(request, svc, study, series)}/instances/{sop}/frames"
    parts = [
        (body, {"Content-Type": part_type, "Content-Location": f"{base}/{n}"})
        for body, n in zip(bodies, numbers, strict=True)
    ]
    _audit(request, svc, caller, "wado.frames", study, series, sop)
    return Response(
        b"".join(encode_multipart(parts, boundary)),
        media_type=multipart_content_type(media, boundary, syntax),
    )


def _element_value(ds: Dataset, path: list[str]) -> bytes:
    node: Any = ds
    for index, step in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, Dataset):
            try:
                tag = int(step, 16)
            except ValueError:
                raise NotFound(f"bulk data path {'/'.join(path)}: {step!r} is not a tag") from None
            if tag not in node:
                raise NotFound(f"bulk data {'/'.join(path)}: no such element in the instance")
            element = node[tag]
            if last:
                value = element.value
                if isinstance(value, bytes):
                    return value
                raise NotFound(f"bulk data {'/'.join(path)} is not a binary value")
            node = element.value
        else:
            try:
                node = node[int(step)]
            except (ValueError, IndexError, TypeError):
                raise NotFound(f"bulk data path {'/'.join(path)}: no item {step}") from None
    raise NotFound(f"bulk data path {'/'.join(path)} does not name a value")


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/bulk/{path:path}",
    summary="Retrieve bulk data",
)
def retrieve_bulk(
    study: str,
    series: str,
    sop: str,
    path: str,
    request: Request,
    svc: ServicesDep,
    caller: ReaderDep,
) -> Response:
    """The value of a BulkDataURI of the metadata, as application/octet-stream."""
    (instance,) = _instances(svc, caller, study, series, sop)
    ds = pydicom.dcmread(io.BytesIO(svc.store.get(instance.blob_digest)))
    value = _element_value(ds, [p for p in path.split("/") if p])
    boundary = new_boundary()
    parts = [(value, {"Content-Type": "application/octet-stream"})]
    _audit(request, svc, caller, "wado.bulk", study, series, sop)
    return Response(
        b"".join(encode_multipart(parts, boundary)),
        media_type=multipart_content_type("application/octet-stream", boundary),
    )


# --- rendered and thumbnails --------------------------------------------------------------


def _render_options(request: Request) -> dict[str, Any]:
    params = request.query_params
    options: dict[str, Any] = {}
    if "window" in params:
        center, width, _function = parse_window(params["window"])
        options["window"] = (center, width)
    if "viewport" in params:
        options["viewport"] = parse_viewport(params["viewport"])
    if "quality" in params:
        try:
            options["quality"] = int(params["quality"])
        except ValueError:
            raise InvalidInput("quality must be a whole number from 1 to 100") from None
    return options


def _rendered(request: Request, svc: Services, instance: InstanceSummary, frame: int) -> Response:
    media = image_media(request.headers.get("accept"))
    data = svc.store.get(instance.blob_digest)
    count = frame_count(data)
    if frame > count:
        raise NotFound(f"frame {frame} does not exist; the instance has {count} frame(s)")
    image = render_frame(data, frame, media_type=media, **_render_options(request))
    return Response(image, media_type=media)


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/rendered",
    summary="Render an instance (first frame)",
)
def rendered_instance(
    study: str, series: str, sop: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """The instance's first frame as JPEG or PNG; ``window``, ``viewport``, ``quality``."""
    (instance,) = _instances(svc, caller, study, series, sop)
    _audit(request, svc, caller, "wado.rendered", study, series, sop)
    return _rendered(request, svc, instance, 1)


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
    summary="Render a frame",
)
def rendered_frame(
    study: str,
    series: str,
    sop: str,
    frame: int,
    request: Request,
    svc: ServicesDep,
    caller: ReaderDep,
) -> Response:
    """One frame as JPEG or PNG."""
    if frame < 1:
        raise InvalidQuery("frame numbers start at 1")
    (instance,) = _instances(svc, caller, study, series, sop)
    _audit(request, svc, caller, "wado.rendered", study, series, sop)
    return _rendered(request, svc, instance, frame)


@router.get("/studies/{study}/rendered", summary="Render every instance of a study")
def rendered_study(study: str, request: Request, svc: ServicesDep, caller: ReaderDep) -> Any:
    """multipart/related of each instance's first frame, rendered (JPEG by default)."""
    found = _instances(svc, caller, study, None, None)
    _audit(request, svc, caller, "wado.rendered", study)
    return _rendered_parts(request, svc, found)


@router.get(
    "/studies/{study}/series/{series}/rendered", summary="Render every instance of a series"
)
def rendered_series(
    study: str, series: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Any:
    """multipart/related of each instance's first frame, rendered."""
    found = _instances(svc, caller, study, series, None)
    _audit(request, svc, caller, "wado.rendered", study, series)
    return _rendered_parts(request, svc, found)


def _rendered_parts(
    request: Request, svc: Services, instances: list[InstanceSummary]
) -> StreamingResponse:
    media = image_media(request.headers.get("accept"))
    options = _render_options(request)  # checked before the first byte is sent
    boundary = new_boundary()

    def parts() -> Iterator[tuple[bytes, dict[str, str]]]:
        for instance in instances:
            image = render_frame(
                svc.store.get(instance.blob_digest), 1, media_type=media, **options
            )
            yield image, {"Content-Type": media}

    content_type = multipart_content_type(media, boundary)
    return StreamingResponse(encode_multipart(parts(), boundary), media_type=content_type)


def _thumbnail(request: Request, svc: Services, instances: list[InstanceSummary]) -> Response:
    media = image_media(request.headers.get("accept"))
    middle = instances[len(instances) // 2]
    size = 128
    if "viewport" in request.query_params:
        size = max(parse_viewport(request.query_params["viewport"]))
    image = render_thumbnail(svc.store.get(middle.blob_digest), media_type=media, size=size)
    return Response(image, media_type=media)


@router.get("/studies/{study}/thumbnail", summary="Thumbnail of a study")
def study_thumbnail(study: str, request: Request, svc: ServicesDep, caller: ReaderDep) -> Response:
    """The middle image of the study's first series."""
    _visible(svc, caller, study)
    first = svc.catalog.search(
        DicomQuery(level=QueryLevel.SERIES, study_instance_uid=study, limit=1)
    ).matches
    if not first:
        raise NotFound(f"study {study} has no series")
    series = first[0]["0020000E"]["Value"][0]
    found = _instances(svc, caller, study, series, None)
    _audit(request, svc, caller, "wado.thumbnail", study)
    return _thumbnail(request, svc, found)


@router.get("/studies/{study}/series/{series}/thumbnail", summary="Thumbnail of a series")
def series_thumbnail(
    study: str, series: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """The middle image of the series."""
    found = _instances(svc, caller, study, series, None)
    _audit(request, svc, caller, "wado.thumbnail", study, series)
    return _thumbnail(request, svc, found)


@router.get(
    "/studies/{study}/series/{series}/instances/{sop}/thumbnail",
    summary="Thumbnail of an instance",
)
def instance_thumbnail(
    study: str, series: str, sop: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """The instance's middle frame."""
    found = _instances(svc, caller, study, series, sop)
    _audit(request, svc, caller, "wado.thumbnail", study, series, sop)
    return _thumbnail(request, svc, found)


__all__ = ["router"]
