"""The pipelined producer: ``submit`` calls from many threads (``Producer``)
or asyncio tasks (``AsyncProducer``) coalesce into ``SubmitTasks`` batches,
so a program reaches the control plane's batched rate without making
batches itself, and each caller still gets its own task or its own error.

While every call is under way (``in_flight`` of them), submits wait in the
queue and go together in the next call: batches grow with the load, and a
lone submit goes out at once. ``linger`` (seconds) holds a call that found
fewer than ``max_batch`` submits waiting for more, for fuller batches at a
steady rate."""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

from . import v1
from ._requests import Submitted, submit_request
from ._spec import TaskSpecLike
from .errors import TidewrightError

#: One ``SubmitTasks`` call, as the client makes it (with its token and
#: its retries); the producers know nothing else of the client.
SendBatch = Callable[[v1.SubmitTasksRequest], v1.SubmitTasksResponse]
SendBatchAsync = Callable[[v1.SubmitTasksRequest], Awaitable[v1.SubmitTasksResponse]]

#: The most tasks the control plane takes in one ``SubmitTasks`` call.
MAX_BATCH = 1000

_TASK_FIELD = re.compile(r"^tasks\[(\d+)\]\.")


@dataclass
class _Queued:
    request: v1.SubmitTaskRequest
    # A concurrent.futures.Future or an asyncio.Future.
    answer: Any = field(repr=False)


def check(max_batch: int, in_flight: int, linger: float) -> None:
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError(f"max_batch: {max_batch} is not between 1 and {MAX_BATCH}")
    if in_flight < 1:
        raise ValueError("in_flight: must be at least 1")
    if linger < 0:
        raise ValueError("linger: must not be negative")


def refused_task(error: TidewrightError, size: int) -> Optional[Tuple[int, TidewrightError]]:
    """Which task of a batch of ``size`` a refusal names, and the refusal
    as a lone submit of that task would have had it (``spec.name``, not
    ``tasks[3].spec.name``); ``None`` when it is the whole batch's."""
    found = _TASK_FIELD.match(error.field or "")
    if found is None or int(found.group(1)) >= size:
        return None
    prefix = found.group(0)
    message = error.message[len(prefix) :] if error.message.startswith(prefix) else error.message
    return int(found.group(1)), TidewrightError(message, code=error.code, field=(error.field or "")[len(prefix) :])


def by_tenant(batch: List[_Queued]) -> List[List[_Queued]]:
    """The batch in one group per tenant, in order of first appearance: a
    refusal for one tenant (a token that may not submit to it) names no
    task, so it must not reach another tenant's submits."""
    groups: Dict[str, List[_Queued]] = {}
    for queued in batch:
        groups.setdefault(queued.request.tenant, []).append(queued)
    return list(groups.values())


def settled(batch: List[_Queued], outcome: Union[v1.SubmitTasksResponse, TidewrightError]) -> List[_Queued]:
    """Answers the submits a call's outcome settles; returns those to send
    again. A refusal naming one task is that task's, and the others go
    again without it (their keys make a repeat safe); any other failure is
    every task's."""
    if isinstance(outcome, TidewrightError):
        own = refused_task(outcome, len(batch))
        if own is None:
            for queued in batch:
                _settle(queued.answer, error=TidewrightError(outcome.message, code=outcome.code, field=outcome.field))
            return []
        index, error = own
        _settle(batch[index].answer, error=error)
        return batch[:index] + batch[index + 1 :]
    for queued, made in zip(batch, outcome.tasks):
        _settle(queued.answer, Submitted(made.task_id, made.created, queued.request.idempotency_key))
    return []


def _settle(answer: Any, submitted: Optional["Submitted"] = None, error: Optional[TidewrightError] = None) -> None:
    # A caller may have given up on its future (cancelled it); its task
    # was still sent, and its key makes a later submit find it.
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(submitted)


_STOP = object()


class Producer:
    """Submits through ``SubmitTasks`` batches formed from the ``submit``
    calls of many threads; made by :meth:`tidewright.Client.producer`.
    ``close()`` (or leaving a ``with`` block) answers what is queued, then
    stops its threads."""

    def __init__(self, send: SendBatch, max_batch: int, in_flight: int, linger: float) -> None:
        check(max_batch, in_flight, linger)
        self._send = send
        self._max_batch = max_batch
        self._linger = linger
        # Room for every call's next batch; beyond it submits wait (back-pressure).
        self._queue: "queue.Queue[Any]" = queue.Queue(max_batch * in_flight)
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, name=f"tidewright-producer-{n}", daemon=True) for n in range(in_flight)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, spec: TaskSpecLike, *, idempotency_key: Optional[str] = None, tenant: str = "") -> "Submitted":
        """``Client.submit``, in a batch with whatever other submits are
        waiting; blocks until this task is made or refused. A refusal of
        this task is this caller's alone."""
        return self.submit_future(spec, idempotency_key=idempotency_key, tenant=tenant).result()

    def submit_future(
        self, spec: TaskSpecLike, *, idempotency_key: Optional[str] = None, tenant: str = ""
    ) -> "Future[Submitted]":
        """``submit`` without waiting: the answer as a future."""
        request = submit_request(spec, idempotency_key, tenant)
        answer: "Future[Submitted]" = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the producer is closed")
            self._queue.put(_Queued(request, answer))
        return answer

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            deadline = time.monotonic() + self._linger
            while len(batch) < self._max_batch:
                try:
                    wait = deadline - time.monotonic()
                    queued = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is _STOP:
                    stop = True
                    break
                batch.append(queued)
            for group in by_tenant(batch):
                while group:
                    request = v1.SubmitTasksRequest(tasks=[q.request for q in group])
                    outcome: Union[v1.SubmitTasksResponse, TidewrightError]
                    try:
                        outcome = self._send(request)
                    except TidewrightError as e:
                        outcome = e
                    group = settled(group, outcome)
            if stop:
                return


class AsyncProducer:
    """``Producer`` for asyncio: ``await producer.submit(...)`` from many
    tasks; made by :meth:`tidewright.AsyncClient.producer`, within a
    running event loop. ``await producer.close()`` (or leaving an ``async
    with`` block) answers what is queued, then stops."""

    def __init__(self, send: SendBatchAsync, max_batch: int, in_flight: int, linger: float) -> None:
        check(max_batch, in_flight, linger)
        self._send = send
        self._max_batch = max_batch
        self._linger = linger
        self._queue: "asyncio.Queue[Any]" = asyncio.Queue(max_batch * in_flight)
        self._closed = False
        self._senders = [asyncio.ensure_future(self._run()) for _ in range(in_flight)]

    async def submit(
        self, spec: TaskSpecLike, *, idempotency_key: Optional[str] = None, tenant: str = ""
    ) -> "Submitted":
        """``AsyncClient.submit``, in a batch with whatever other submits
        are waiting. A refusal of this task is this caller's alone."""
        if self._closed:
            raise RuntimeError("the producer is closed")
        answer: "asyncio.Future[Submitted]" = asyncio.get_running_loop().create_future()
        await self._queue.put(_Queued(submit_request(spec, idempotency_key, tenant), answer))
        return await answer

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._senders:
            await self._queue.put(_STOP)
        await asyncio.gather(*self._senders)

    async def __aenter__(self) -> "AsyncProducer":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._linger
            while len(batch) < self._max_batch:
                try:
                    queued = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    wait = deadline - loop.time()
                    if wait <= 0:
                        break
                    queued = await _get_within(self._queue, wait)
                    if queued is None:
                        break
                if queued is _STOP:
                    stop = True
                    break
                batch.append(queued)
            for group in by_tenant(batch):
                while group:
                    request = v1.SubmitTasksRequest(tasks=[q.request for q in group])
                    outcome: Union[v1.SubmitTasksResponse, TidewrightError]
                    try:
                        outcome = await self._send(request)
                    except TidewrightError as e:
                        outcome = e
                    group = settled(group, outcome)
            if stop:
                return



async def _get_within(waiting: "asyncio.Queue[Any]", seconds: float) -> Any:
    """The queue's next item, or ``None`` after ``seconds``. Not
    ``asyncio.wait_for``: before Python 3.12 it can drop an item that
    arrives as the time runs out."""
    getter = asyncio.ensure_future(waiting.get())
    await asyncio.wait({getter}, timeout=seconds)
    if not getter.done():
        getter.cancel()
    try:
        return await getter
    except asyncio.CancelledError:
        return None
