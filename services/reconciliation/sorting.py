"""External sort of a record stream by key, in bounded memory.

Vendors list in their own order (Stripe: newest first; Tryton: by id), which is not the
merge's order (the cross-system key). `sorted_pages` takes any stream of record pages and
hands them back sorted by key: up to `chunk` records are sorted in memory; a longer stream is
cut into sorted runs spilled to temporary files (pickled in batches) and merged back with
`heapq.merge`, so memory stays O(chunk + runs x batch) whatever the stream's length. The files
are removed when the stream ends or is abandoned.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import IO

from services.reconciliation.domain import Record

DEFAULT_CHUNK = 100_000
_BATCH = 1_000
_KEY = attrgetter("key")


def _write_run(records: list[Record], directory: Path, number: int) -> Path:
    records.sort(key=_KEY)
    path = directory / f"run-{number}.pickle"
    with path.open("wb") as f:
        for start in range(0, len(records), _BATCH):
            pickle.dump(records[start : start + _BATCH], f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _read_run(f: IO[bytes]) -> Iterator[Record]:
    while True:
        try:
            batch: list[Record] = pickle.load(f)
        except EOFError:
            return
        yield from batch


def _pages(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    page: list[Record] = []
    for record in records:
        page.append(record)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


async def sorted_pages(
    pages: AsyncIterable[Sequence[Record]], *, chunk: int = DEFAULT_CHUNK, page_size: int = _BATCH
) -> AsyncIterator[list[Record]]:
    """`pages`' records sorted by key, in pages of `page_size`."""
    buffer: list[Record] = []
    runs: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="syncmesh-reconcile-") as tmp:
        directory = Path(tmp)
        async for page in pages:
            buffer.extend(page)
            if len(buffer) >= chunk:
                runs.append(_write_run(buffer, directory, len(runs)))
                buffer = []
        if not runs:
            buffer.sort(key=_KEY)
            for start in range(0, len(buffer), page_size):
                yield buffer[start : start + page_size]
            return
        if buffer:
            runs.append(_write_run(buffer, directory, len(runs)))
            buffer = []
        files = [path.open("rb") for path in runs]
        try:
            merged = heapq.merge(*(_read_run(f) for f in files), key=_KEY)
            for out in _pages(merged, page_size):
                yield out
        finally:
            for f in files:
                f.close()
