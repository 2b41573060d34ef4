"""Dynamic batching: requests that arrive within a short window and share decoding parameters run as one
left-padded batch on the engine. A bounded admission count gives back-pressure (429) instead of an ever
growing queue."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from breastgpt.infer.engine import Conversation, Engine, Generation, GenerationParams


class Saturated(Exception):
    """The server already holds its maximum number of requests."""


class Slot:
    """One admitted request's place in the count; `release` may be called any number of times, from any thread,
    and gives the place back once."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._batcher._give_back()  # noqa: SLF001 — the slot is the only caller


@dataclass
class Job:
    conversation: Conversation
    params: GenerationParams
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    cancel: threading.Event = field(default_factory=threading.Event)


class Batcher:
    def __init__(self, engine: Engine, *, max_batch: int, window_ms: float, max_pending: int) -> None:
        self.engine, self.max_batch, self.window_s = engine, max_batch, window_ms / 1000.0
        self.max_pending = max_pending
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="breastgpt-batcher", daemon=True)
        self.batches_run = 0
        self.batch_sizes: list[int] = []

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    def admit(self) -> Slot:
        """Reserve a slot or raise `Saturated`."""
        with self._pending_lock:
            if self._pending >= self.max_pending:
                raise Saturated()
            self._pending += 1
        return Slot(self)

    def _give_back(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    @property
    def in_flight(self) -> int:
        """Requests admitted whose work (decoding, generation) has not finished."""
        return self._pending

    def submit(self, conversation: Conversation, params: GenerationParams, cancel: threading.Event) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(conversation, params, loop.create_future(), loop, cancel)
        self._queue.put(job)
        return job

    def _collect(self, first: Job) -> tuple[list[Job], list[Job]]:
        """Jobs arriving within the window; those with other parameters go back for the next batch."""
        batch, others = [first], []
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            (batch if job.params == first.params else others).append(job)
        return batch, others

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, others = self._collect(first)
            for job in others:
                self._queue.put(job)
            live = [job for job in batch if not job.cancel.is_set()]
            for job in batch:
                if job.cancel.is_set():  # its client left before the batch ran: nothing to generate
                    _resolve(job, result=Generation("", 0, 0, "cancelled"))
            if live:
                self._generate(live)

    def _generate(self, jobs: list[Job]) -> None:
        shared_cancel = _AllCancelled([job.cancel for job in jobs])
        try:
            results = self.engine.generate([job.conversation for job in jobs], jobs[0].params, cancel=shared_cancel)
        except Exception as error:  # reported to each waiting request as a 500 with no content echoed
            for job in jobs:
                _resolve(job, error=error)
            return
        self.batches_run += 1
        self.batch_sizes.append(len(jobs))
        for job, result in zip(jobs, results):
            _resolve(job, result=result)


class _AllCancelled(threading.Event):
    """Set only when every request of the batch was cancelled (one client leaving must not stop the others)."""

    def __init__(self, events: list[threading.Event]) -> None:
        super().__init__()
        self.events = events

    def is_set(self) -> bool:
        return all(event.is_set() for event in self.events)


def _resolve(job: Job, result: Generation | None = None, error: BaseException | None = None) -> None:
    def apply() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    job.loop.call_soon_threadsafe(apply)


def batch_stats(batcher: Batcher) -> dict[str, Any]:
    sizes = batcher.batch_sizes
    return {"batches": batcher.batches_run, "mean_batch_size": sum(sizes) / len(sizes) if sizes else 0.0,
            "in_flight": batcher.in_flight, "max_queue": batcher.max_pending}
