"""Run a function over a stream of source items on a pool of worker processes.

The ``biobank deid`` runner and the ingest pipeline share this: items are read lazily and
grouped into chunks (at most ``CHUNK_ITEMS`` items or ``CHUNK_BYTES`` of archive data held),
at most ``jobs * 4`` chunks are in flight, and a worker process that dies (a decoder crash on
a corrupt file) costs only the item that killed it: the chunks lost with the broken pool are
retried one item per fresh process, and the rest of the stream goes on in a new pool.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from biobank.ingest.sources import SourceItem

R = TypeVar("R")

CHUNK_ITEMS = 16
CHUNK_BYTES = 64 << 20


def run_items(
    items: Iterator[SourceItem],
    *,
    jobs: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    process_item: Callable[[SourceItem], R],
    collect: Callable[[R], None],
    on_crash: Callable[[SourceItem], R],
) -> None:
    """Call ``process_item`` on every item and pass each result to ``collect`` (in this process).

    ``process_item`` and ``initializer`` must be module-level functions (they are pickled by
    name). With ``jobs == 1`` everything runs in this process. ``on_crash`` makes the result
    of an item whose worker process died.
    """
    if jobs <= 1:
        initializer(*initargs)
        for item in items:
            collect(process_item(item))
        return
    stream: Iterator[list[SourceItem]] | None = chunks(items)
    while stream is not None:
        suspects, stream = _pool_round(stream, jobs, initializer, initargs, process_item, collect)
        for item in suspects:
            with cf.ProcessPoolExecutor(
                max_workers=1, initializer=initializer, initargs=initargs
            ) as pool:
                try:
                    result = pool.submit(_run_chunk, process_item, [item]).result()[0]
                except cf.process.BrokenProcessPool:
                    result = on_crash(item)
            collect(result)


def chunks(items: Iterator[SourceItem]) -> Iterator[list[SourceItem]]:
    """Group items for the workers: at most CHUNK_ITEMS items or CHUNK_BYTES of held data."""
    chunk: list[SourceItem] = []
    held = 0
    for item in items:
        chunk.append(item)
        held += len(item.data) if item.data is not None else 0
        if len(chunk) >= CHUNK_ITEMS or held >= CHUNK_BYTES:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _run_chunk(process_item: Callable[[SourceItem], R], chunk: list[SourceItem]) -> list[R]:
    return [process_item(item) for item in chunk]


def _pool_round(
    stream: Iterator[list[SourceItem]],
    jobs: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    process_item: Callable[[SourceItem], R],
    collect: Callable[[R], None],
) -> tuple[list[SourceItem], Iterator[list[SourceItem]] | None]:
    """Process chunks until the stream ends or the pool breaks.

    Returns the items of the chunks lost with a broken pool, and the rest of the stream
    (None when it was consumed).
    """
    suspects: list[SourceItem] = []
    broken = False
    exhausted = False
    with cf.ProcessPoolExecutor(
        max_workers=jobs, initializer=initializer, initargs=initargs
    ) as pool:
        in_flight: dict[cf.Future[list[R]], list[SourceItem]] = {}
        while True:
            while not broken and not exhausted and len(in_flight) < jobs * 4:
                chunk = next(stream, None)
                if chunk is None:
                    exhausted = True
                    break
                try:
                    in_flight[pool.submit(_run_chunk, process_item, chunk)] = chunk
                except cf.process.BrokenProcessPool:
                    broken = True
                    suspects.extend(chunk)
            if not in_flight:
                break
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                chunk = in_flight.pop(future)
                try:
                    results = future.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    suspects.extend(chunk)
                    continue
                for result in results:
                    collect(result)
    return suspects, None if exhausted else stream


__all__ = ["CHUNK_BYTES", "CHUNK_ITEMS", "chunks", "run_items"]
