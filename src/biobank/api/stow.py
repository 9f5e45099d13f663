"""STOW-RS (PS3.18 §10.5): store instances sent as multipart/related; type="application/dicom".

The body is parsed while it arrives; every ``store_group`` parts go to the ingest pool (on a
site node they are de-identified, on a central node checked) while the rest is still being
received. One request is one ingest batch. A bad part never drops the good ones: the answer
lists each instance stored (ReferencedSOPSequence, with its RetrieveURL) and each failure
(FailedSOPSequence, with a FailureReason code and, in a private element, the reason in words).
Status: 200 when every instance was stored, 202 when some failed, 409 when all failed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import anyio
import pydicom
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from biobank.access import Principal
from biobank.api.deps import Services, ServicesDep, StorerDep, base_url, client_of
from biobank.api.negotiate import want_json
from biobank.catalog import ItemOutcome, ItemResult
from biobank.dicom.multipart import MultipartReader, Part, PayloadTooLarge, parse_content_type
from biobank.errors import InvalidInput

router = APIRouter(tags=["STOW-RS"])

#: FailureReason codes (PS3.4 Annex GG / PS3.18 Table 10.5.3-3).
PROCESSING_FAILURE = 0x0110
CANNOT_UNDERSTAND = 0xC000
STUDY_MISMATCH = 0xA900  # "Data Set does not match SOP Class": used for a foreign study
OUT_OF_RESOURCES = 0xA700
#: The private block carrying the reason in words (creator "BIOBANK 1.0").
PRIVATE_CREATOR = "BIOBANK 1.0"

_UNKNOWN = ""


def _uids(data: bytes) -> tuple[str, str, str]:
    """SOP Class, SOP Instance and Study Instance UIDs of a part as sent ("" when unreadable)."""
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data),
            stop_before_pixels=True,
            force=True,
            specific_tags=[0x00080016, 0x00080018, 0x0020000D],
        )
        return (
            str(ds.get("SOPClassUID", "") or getattr(ds.file_meta, "MediaStorageSOPClassUID", "")),
            str(
                ds.get("SOPInstanceUID", "")
                or getattr(ds.file_meta, "MediaStorageSOPInstanceUID", "")
            ),
            str(ds.get("StudyInstanceUID", "")),
        )
    except Exception:  # noqa: BLE001 - the part is reported as failed anyway
        return _UNKNOWN, _UNKNOWN, _UNKNOWN


class _Upload:
    """The parts of one request and their fate, in arrival order."""

    def __init__(self, svc: Services, caller: Principal, study: str | None) -> None:
        self.svc = svc
        self.caller = caller
        self.study = study
        self.batch_id = svc.ingest.begin(f"STOW-RS from {caller.username}")
        self.pending: list[tuple[int, bytes]] = []
        self.results: dict[int, ItemResult] = {}
        self.failed: dict[int, tuple[int, str]] = {}  # index → (reason code, words)
        self.sent: dict[int, tuple[str, str]] = {}  # index → SOP class and instance as sent
        self.stored_in: dict[int, tuple[str, str, str]] = {}  # SOP class, study, series
        self.count = 0

    def add(self, part: Part, body_type: str) -> None:
        index = self.count
        self.count += 1
        media = part.media_type or body_type
        if media != "application/dicom":
            self.failed[index] = (
                CANNOT_UNDERSTAND,
                f"part {index + 1} is {media or 'untyped'}; only application/dicom parts "
                "are accepted (send whole DICOM files)",
            )
            return
        if self.study is not None:
            sop_class, sop, study = _uids(part.body)
            if study != self.study:
                self.sent[index] = (sop_class, sop)
                self.failed[index] = (
                    STUDY_MISMATCH,
                    f"part {index + 1} belongs to another study than {self.study}, the "
                    "study of the request URL; send it to /studies or to its own study",
                )
                return
        self.pending.append((index, part.body))

    def take(self) -> list[tuple[int, bytes]]:
        group, self.pending = self.pending, []
        return group

    def store(self, group: list[tuple[int, bytes]]) -> None:
        items = [(f"STOW-RS part {index + 1}", data) for index, data in group]
        results = self.svc.ingest.store_records(
            items,
            channel="STOW-RS",
            owner_user_id=self.caller.user_id,
            batch_id=self.batch_id,
        )
        for (index, data), (result, record) in zip(group, results, strict=True):
            self.results[index] = result
            if record is not None:
                self.stored_in[index] = (
                    record.sop_class_uid,
                    record.study_instance_uid,
                    record.series_instance_uid,
                )
            if result.outcome not in (ItemOutcome.STORED, ItemOutcome.DUPLICATE):
                self.sent[index] = _uids(data)[:2]
            self.svc.metrics.items.labels("stow-rs", result.outcome.value).inc()


async def _receive(request: Request, upload: _Upload, boundary: str, body_type: str) -> None:
    http = upload.svc.http
    reader = MultipartReader(boundary, max_part_bytes=http.max_instance_bytes)
    received = 0
    async with anyio.create_task_group() as tasks:
        limiter = anyio.Semaphore(2)  # at most two groups in the pool while receiving

        async def store(group: list[tuple[int, bytes]]) -> None:
            try:
                await run_in_threadpool(upload.store, group)
            finally:
                limiter.release()

        async for chunk in request.stream():
            received += len(chunk)
            if received > http.max_upload_bytes:
                raise PayloadTooLarge(
                    f"the request body exceeds {http.max_upload_bytes} bytes (http."
                    "max_upload_bytes of node.yaml); send the study in several requests"
                )
            for part in reader.feed(chunk):
                upload.add(part, body_type)
            if len(upload.pending) >= http.store_group:
                group = upload.take()
                await limiter.acquire()  # back-pressure: wait for a free slot
                tasks.start_soon(store, group)
        for part in reader.close():
            upload.add(part, body_type)
        if upload.pending:
            await limiter.acquire()
            tasks.start_soon(store, upload.take())


def _reason_code(result: ItemResult) -> int:
    if result.outcome is ItemOutcome.CONFLICT:
        return PROCESSING_FAILURE
    return CANNOT_UNDERSTAND


def _sop_item(sop_class: str, sop: str) -> dict[str, Any]:
    item: dict[str, Any] = {}
    item["00081150"] = {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"}
    item["00081155"] = {"vr": "UI", "Value": [sop]} if sop else {"vr": "UI"}
    return item


def _answer(request: Request, upload: _Upload, study: str | None) -> tuple[int, dict[str, Any]]:
    root = base_url(request, upload.svc)
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for index in range(upload.count):
        result = upload.results.get(index)
        if result is not None and result.outcome in (ItemOutcome.STORED, ItemOutcome.DUPLICATE):
            stored.append(_stored_item(root, upload, index, result))
            continue
        if result is not None:
            code, words = _reason_code(result), f"part {index + 1}: {result.reason}"
        else:
            code, words = upload.failed[index]
        sop_class, sop = upload.sent.get(index, (_UNKNOWN, _UNKNOWN))
        item = _sop_item(sop_class, sop)
        item["00081197"] = {"vr": "US", "Value": [code]}
        item["00090010"] = {"vr": "LO", "Value": [PRIVATE_CREATOR]}
        item["00091001"] = {"vr": "LT", "Value": [words]}
        failed.append(item)
    answer: dict[str, Any] = {}
    if study is not None:
        answer["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{study}"]}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        answer["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else (202 if stored else 409)
    return status, answer


def _stored_item(root: str, upload: _Upload, index: int, result: ItemResult) -> dict[str, Any]:
    sop = result.sop_instance_uid or ""  # the stored UIDs: de-identified on a site node
    sop_class, study, series = upload.stored_in[index]
    item = _sop_item(sop_class, sop)
    url = f"{root}/studies/{study}/series/{series}/instances/{sop}"
    item["00081190"] = {"vr": "UR", "Value": [url]}
    return item


async def _stow(request: Request, svc: Services, caller: Principal, study: str | None) -> Response:
    want_json(request.headers.get("accept"))
    content_type = request.headers.get("content-type", "")
    media, params = parse_content_type(content_type) if content_type else ("", {})
    body_type = params.get("type", "").lower()
    if media != "multipart/related" or "boundary" not in params:
        return _unsupported(media)
    if body_type not in ("application/dicom", ""):
        return _unsupported(f'multipart/related; type="{body_type}"')
    upload = _Upload(svc, caller, study)
    interrupted = True
    try:
        try:
            await _receive(request, upload, params["boundary"], body_type or "application/dicom")
        except BaseExceptionGroup as group:  # the task group wraps what it raises
            raise _first(group) from None
        interrupted = False
    finally:
        await run_in_threadpool(svc.ingest.end, upload.batch_id, interrupted=interrupted)
    if upload.count == 0:
        raise InvalidInput("the multipart body holds no part; send at least one DICOM instance")
    status, answer = _answer(request, upload, study)
    stored = len(answer.get("00081199", {}).get("Value", []))
    svc.audit.record(
        caller,
        "stow",
        study or "*",
        status,
        client_of(request),
        f"parts={upload.count} stored={stored} failed={upload.count - stored}",
    )
    body = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/dicom+json")


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a group (nested groups opened), the one the client should see."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _unsupported(media: str) -> Response:
    message = (
        f'STOW-RS takes multipart/related; type="application/dicom" with a boundary, not '
        f"{media or 'a body without Content-Type'}"
    )
    return Response(
        json.dumps({"status": 415, "error": message}),
        status_code=415,
        media_type="application/json",
    )


@router.post("/studies", summary="Store instances (STOW-RS)")
async def store_instances(request: Request, svc: ServicesDep, caller: StorerDep) -> Response:
    """Store the instances of the body; see the module docstring for the answer."""
    return await _stow(request, svc, caller, None)


@router.post("/studies/{study}", summary="Store instances of one study (STOW-RS)")
async def store_study_instances(
    study: str, request: Request, svc: ServicesDep, caller: StorerDep
) -> Response:
    """Like ``POST /studies``; parts of another study fail (FailureReason A900)."""
    return await _stow(request, svc, caller, study)


__all__ = ["router"]
