"""What one admitted request holds, and when it gives it back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Union

from breastgpt.serve.batching import Slot

Work = Union[asyncio.Future, concurrent.futures.Future]


class Lease:
    """An admission slot, a temporary folder for decoded data URLs and a cancel flag, plus the work (decoding,
    generation) the request started.

    `close()` is synchronous and idempotent so that a `finally` can run it however the request ended — a
    cancelled task cannot skip code that never awaits. It sets the cancel flag at once; the slot and the folder
    go back when the last tracked piece of work has finished as well, so the admission count is the work the
    server really holds and a client that leaves early cannot free a slot its generation still occupies.
    """

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.cancel = threading.Event()
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix="breastgpt-req-"))
        except BaseException:
            slot.release()
            raise
        self._lock = threading.Lock()
        self._pending: set[Work] = set()
        self._closed = False
        self._released = False

    def track(self, work: Work) -> Work:
        with self._lock:
            self._pending.add(work)
        work.add_done_callback(self._finished)  # type: ignore[arg-type]
        return work

    def _finished(self, work: Work) -> None:
        if not work.cancelled():
            work.exception()  # marks a failure as seen; the request that awaited the work reports it
        with self._lock:
            self._pending.discard(work)
        self._release_if_idle()

    def close(self) -> None:
        self.cancel.set()
        with self._lock:
            self._closed = True
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        with self._lock:
            if not self._closed or self._pending or self._released:
                return
            self._released = True
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.slot.release()
