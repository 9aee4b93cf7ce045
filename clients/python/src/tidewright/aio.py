"""The asyncio client: the same calls as :class:`tidewright.Client`, each a
coroutine, and ``watch`` an async iterator."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, TypeVar, cast

import grpc
import grpc.aio

from . import _channel, v1
from ._spec import TaskSpecLike
from ._requests import (
    Submitted,
    _FIRST_PAUSE,
    _LONGEST_PAUSE,
    list_request,
    schedule_request,
    submit_many_request,
    submit_request,
    submitted_many,
    template_request,
    webhook_request,
)
from .errors import TidewrightError, StreamLost
from .producer import MAX_BATCH, AsyncProducer

T = TypeVar("T")


class AsyncClient(_channel.Connection):
    """An asyncio client of tidewright's control plane; see :class:`tidewright.Client`.

    Use it as ``async with AsyncClient.from_env() as client: ...``, or call
    ``await client.close()``.
    """

    _grpc: Optional[grpc.aio.Channel] = None

    def _connect(self) -> None:
        old = self._grpc
        if old is not None:
            asyncio.ensure_future(old.close(None))
        address, credentials = _channel.target(self._replicas.current, self._settings)
        if credentials is None:
            self._grpc = grpc.aio.insecure_channel(address, options=_channel.OPTIONS)
        else:
            self._grpc = grpc.aio.secure_channel(address, credentials, options=_channel.OPTIONS)
        self._tasks, self._state = _channel.stubs(self._grpc)

    async def close(self) -> None:
        if self._grpc is not None:
            await self._grpc.close(None)
            self._grpc = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _call(self, call: Callable[[], Awaitable[T]], repeat: bool = True) -> T:
        deadline = time.monotonic() + self._retry_for
        pause = _FIRST_PAUSE
        while True:
            try:
                return await call()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    self._unavailable(e)
                    if repeat and time.monotonic() + pause < deadline:
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, _LONGEST_PAUSE)
                        continue
                raise TidewrightError.from_rpc(e) from None

    async def submit(
        self,
        spec: TaskSpecLike,
        *,
        idempotency_key: Optional[str] = None,
        tenant: str = "",
    ) -> Submitted:
        request = submit_request(spec, idempotency_key, tenant)
        answer = await self._call(lambda: self._tasks.SubmitTask(request, metadata=self._metadata))
        return Submitted(answer.task_id, answer.created, request.idempotency_key)

    async def submit_many(
        self,
        specs: Iterable[TaskSpecLike],
        *,
        idempotency_keys: Optional[Iterable[Optional[str]]] = None,
        tenant: str = "",
    ) -> List[Submitted]:
        """``Client.submit_many``, as a coroutine."""
        request = submit_many_request(specs, idempotency_keys, tenant)
        answer = await self._call(lambda: self._tasks.SubmitTasks(request, metadata=self._metadata))
        return submitted_many(request, answer)

    def producer(self, *, max_batch: int = MAX_BATCH, in_flight: int = 4, linger: float = 0.0) -> AsyncProducer:
        """``Client.producer`` for asyncio: ``await producer.submit(...)``
        from many tasks. Call it within the running event loop, and
        ``await producer.close()`` when done."""
        async def send(request: v1.SubmitTasksRequest) -> v1.SubmitTasksResponse:
            return await self._call(lambda: self._tasks.SubmitTasks(request, metadata=self._metadata))

        return AsyncProducer(send, max_batch, in_flight, linger)

    async def submit_and_wait(
        self,
        spec: TaskSpecLike,
        *,
        idempotency_key: Optional[str] = None,
        tenant: str = "",
        timeout: Optional[float] = None,
    ) -> v1.Task:
        submitted = await self.submit(spec, idempotency_key=idempotency_key, tenant=tenant)
        return await self.wait(submitted.task_id, timeout=timeout)

    async def wait(self, task_id: str, timeout: Optional[float] = None) -> v1.Task:
        """Waits for the task to end and answers it; ``TimeoutError`` after
        ``timeout`` seconds."""

        async def ended() -> None:
            async for _ in self.watch(task_id):
                pass

        try:
            await asyncio.wait_for(ended(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"task {task_id} did not end in time") from None
        return await self.get(task_id)

    async def watch(
        self,
        task_id: str,
        *,
        after_seq: int = 0,
        follow: bool = True,
        resume_for: float = 60.0,
    ) -> AsyncIterator[v1.Event]:
        """The task's events as an async iterator, resumed after a broken
        connection from the last sequence number handed out."""
        last, ended = after_seq, False
        broken_since: Optional[float] = None
        pause = _FIRST_PAUSE
        while True:
            request = v1.WatchTaskRequest(task_id=task_id, after_seq=last, follow=follow)
            stream = self._tasks.WatchTask(request, metadata=self._metadata)
            try:
                async for event in stream:
                    broken_since, pause = None, _FIRST_PAUSE
                    if event.seq <= last:
                        continue
                    last, ended = event.seq, _channel.is_final(event)
                    yield event
                if not follow or ended:
                    return
            except grpc.RpcError as e:
                if e.code() in _channel.PERMANENT:
                    raise TidewrightError.from_rpc(e) from None
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    self._unavailable(e)
            finally:
                stream.cancel()
            now = time.monotonic()
            broken_since = broken_since or now
            if now - broken_since + pause > resume_for:
                raise StreamLost(task_id, last)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    async def get(self, task_id: str) -> v1.Task:
        request = v1.GetTaskRequest(task_id=task_id)
        return cast(v1.Task, await self._call(lambda: self._tasks.GetTask(request, metadata=self._metadata)))

    async def cancel(self, task_id: str) -> v1.Task:
        request = v1.CancelTaskRequest(task_id=task_id)
        return cast(v1.Task, await self._call(lambda: self._tasks.CancelTask(request, metadata=self._metadata)))

    async def retry(self, task_id: str) -> v1.Task:
        request = v1.RetryTaskRequest(task_id=task_id)
        return cast(v1.Task, await self._call(lambda: self._tasks.RetryTask(request, metadata=self._metadata), repeat=False))

    async def list(
        self,
        *,
        states: Optional[Iterable[int]] = None,
        labels: Optional[Dict[str, str]] = None,
        tenants: Optional[Iterable[str]] = None,
        name_prefix: str = "",
        page_size: int = 100,
    ) -> AsyncIterator[v1.Task]:
        request = list_request(states, labels, tenants, name_prefix, page_size)
        while True:
            page = await self._call(lambda: self._tasks.ListTasks(request, metadata=self._metadata))
            for task in page.tasks:
                yield task
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def templates(self) -> List[v1.TaskTemplate]:
        request = v1.ListTemplatesRequest()
        answer = await self._call(lambda: self._tasks.ListTemplates(request, metadata=self._metadata))
        return list(answer.templates)

    async def submit_template(
        self,
        name: str,
        parameters: Optional[Mapping[str, object]] = None,
        *,
        idempotency_key: Optional[str] = None,
        tenant: str = "",
    ) -> Submitted:
        request = template_request(name, parameters, idempotency_key, tenant)
        answer = await self._call(lambda: self._tasks.SubmitTemplate(request, metadata=self._metadata))
        return Submitted(answer.task_id, answer.created, request.idempotency_key)

    async def create_schedule(
        self,
        name: str,
        cron: str,
        spec: Optional[TaskSpecLike] = None,
        *,
        timezone: str = "",
        template: Optional[str] = None,
        parameters: Optional[Mapping[str, object]] = None,
        concurrency_policy: str = "",
        tenant: str = "",
    ) -> v1.Schedule:
        request = schedule_request(name, cron, spec, timezone, template, parameters, concurrency_policy, tenant)
        return cast(
            v1.Schedule,
            await self._call(lambda: self._tasks.CreateSchedule(request, metadata=self._metadata), repeat=False),
        )

    async def schedules(self) -> List[v1.Schedule]:
        request = v1.ListSchedulesRequest()
        answer = await self._call(lambda: self._tasks.ListSchedules(request, metadata=self._metadata))
        return list(answer.schedules)

    async def schedule(self, name: str, *, tenant: str = "") -> v1.Schedule:
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        return cast(v1.Schedule, await self._call(lambda: self._tasks.GetSchedule(request, metadata=self._metadata)))

    async def suspend_schedule(self, name: str, suspend: bool = True, *, tenant: str = "") -> v1.Schedule:
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        method = self._tasks.SuspendSchedule if suspend else self._tasks.ResumeSchedule
        return cast(v1.Schedule, await self._call(lambda: method(request, metadata=self._metadata)))

    async def trigger_schedule(self, name: str, *, tenant: str = "") -> str:
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        answer = await self._call(lambda: self._tasks.TriggerSchedule(request, metadata=self._metadata), repeat=False)
        return str(answer.task_id)

    async def delete_schedule(self, name: str, *, tenant: str = "") -> None:
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        await self._call(lambda: self._tasks.DeleteSchedule(request, metadata=self._metadata))

    async def create_webhook(self, url: str, events: Iterable[str], secret: str, *, tenant: str = "") -> v1.Webhook:
        request = webhook_request(url, events, secret, tenant)
        return cast(
            v1.Webhook,
            await self._call(lambda: self._tasks.CreateWebhook(request, metadata=self._metadata), repeat=False),
        )

    async def webhooks(self) -> List[v1.Webhook]:
        request = v1.ListWebhooksRequest()
        answer = await self._call(lambda: self._tasks.ListWebhooks(request, metadata=self._metadata))
        return list(answer.webhooks)

    async def delete_webhook(self, webhook_id: str) -> None:
        request = v1.DeleteWebhookRequest(id=webhook_id)
        await self._call(lambda: self._tasks.DeleteWebhook(request, metadata=self._metadata))

    async def webhook_deliveries(self, webhook_id: str = "", *, page_size: int = 50) -> AsyncIterator[v1.WebhookDelivery]:
        request = v1.ListWebhookDeliveriesRequest(webhook_id=webhook_id, page_size=page_size)
        while True:
            page = await self._call(lambda: self._tasks.ListWebhookDeliveries(request, metadata=self._metadata))
            for delivery in page.deliveries:
                yield delivery
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token
