"""The blocking client: one connection to the control plane (to the replica
that leads), the caller's token on every call."""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, TypeVar, cast

import grpc

from . import _channel, v1
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
from ._spec import TaskSpecLike
from .errors import TidewrightError, StreamLost
from .producer import MAX_BATCH, Producer

T = TypeVar("T")

RETRY_UNAVAILABLE = _channel.RETRY_UNAVAILABLE


class Client(_channel.Connection):
    """A client of tidewright's control plane.

    ``server`` is a URL (``http://127.0.0.1:7070``, ``https://...`` for TLS)
    or several replicas' separated by commas; calls go to the one that
    leads. The token is never logged or shown by ``repr``. ``from_env()``
    connects as the ``tidewright`` CLI would.
    """

    _grpc: Optional[grpc.Channel] = None

    def _connect(self) -> None:
        if self._grpc is not None:
            self._grpc.close()
        address, credentials = _channel.target(self._replicas.current, self._settings)
        if credentials is None:
            self._grpc = grpc.insecure_channel(address, options=_channel.OPTIONS)
        else:
            self._grpc = grpc.secure_channel(address, credentials, options=_channel.OPTIONS)
        self._tasks, self._state = _channel.stubs(self._grpc)

    def close(self) -> None:
        if self._grpc is not None:
            self._grpc.close()
            self._grpc = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, call: Callable[[], T], repeat: bool = True) -> T:
        """Runs ``call``; while it fails as UNAVAILABLE, and ``repeat`` says
        it is safe to, again with back-off."""
        deadline = time.monotonic() + self._retry_for
        pause = _FIRST_PAUSE
        while True:
            try:
                return call()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    self._unavailable(e)
                    if repeat and time.monotonic() + pause < deadline:
                        time.sleep(pause)
                        pause = min(pause * 2, _LONGEST_PAUSE)
                        continue
                raise TidewrightError.from_rpc(e) from None

    # ----------------------------------------------------------------- tasks

    def submit(
        self,
        spec: TaskSpecLike,
        *,
        idempotency_key: Optional[str] = None,
        tenant: str = "",
    ) -> Submitted:
        """Submits a task: a dict in the task file's shape, a YAML file's
        path, or a ``v1.TaskSpec``. The same ``idempotency_key`` gives the
        same task, however often it is sent."""
        request = submit_request(spec, idempotency_key, tenant)
        answer = self._call(lambda: self._tasks.SubmitTask(request, metadata=self._metadata))
        return Submitted(answer.task_id, answer.created, request.idempotency_key)

    def submit_many(
        self,
        specs: Iterable[TaskSpecLike],
        *,
        idempotency_keys: Optional[Iterable[Optional[str]]] = None,
        tenant: str = "",
    ) -> List[Submitted]:
        """Submits several tasks in one call: all are made, or none, and a
        refusal names its task's index (``tasks[2].spec.name``). One call
        for many tasks is how a program reaches the control plane's batched
        rate; the answers are in the order of ``specs``. Each task has its
        key (``idempotency_keys``, one per task, ``None`` for a fresh one),
        so a batch sent again makes each task once. At most 1,000 tasks."""
        request = submit_many_request(specs, idempotency_keys, tenant)
        answer = self._call(lambda: self._tasks.SubmitTasks(request, metadata=self._metadata))
        return submitted_many(request, answer)

    def producer(self, *, max_batch: int = MAX_BATCH, in_flight: int = 4, linger: float = 0.0) -> Producer:
        """A producer whose ``submit`` calls, from as many threads as the
        program runs, go together in ``SubmitTasks`` batches: the batched
        rate without making batches. Use it where many submits happen at
        once (a queue consumer, a webhook receiver under load); ``submit``
        stays the plainest call for one task at a time, and
        ``submit_many`` for a batch already in hand. ``max_batch`` tasks a
        call at most, ``in_flight`` calls at once, ``linger`` seconds a
        call may wait for a fuller batch (0: none). Close it when done."""
        def send(request: v1.SubmitTasksRequest) -> v1.SubmitTasksResponse:
            return cast(
                v1.SubmitTasksResponse,
                self._call(lambda: self._tasks.SubmitTasks(request, metadata=self._metadata)),
            )

        return Producer(send, max_batch, in_flight, linger)

    def submit_and_wait(
        self,
        spec: TaskSpecLike,
        *,
        idempotency_key: Optional[str] = None,
        tenant: str = "",
        timeout: Optional[float] = None,
    ) -> v1.Task:
        submitted = self.submit(spec, idempotency_key=idempotency_key, tenant=tenant)
        return self.wait(submitted.task_id, timeout=timeout)

    def wait(self, task_id: str, timeout: Optional[float] = None) -> v1.Task:
        """Waits for the task to end (succeed, fail or be cancelled) and
        answers it whole; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self._events(task_id, 0, True, 60.0, deadline):
            pass
        return self.get(task_id)

    def watch(
        self,
        task_id: str,
        *,
        after_seq: int = 0,
        follow: bool = True,
        resume_for: float = 60.0,
    ) -> Iterator[v1.Event]:
        """The task's events, in order, live until it ends (or only the
        stored ones, ``follow=False``). A broken connection is resumed from
        the last sequence number handed out, so nothing is missed or seen
        twice; ``StreamLost`` after ``resume_for`` seconds out of reach."""
        return self._events(task_id, after_seq, follow, resume_for, None)

    def _events(
        self,
        task_id: str,
        after_seq: int,
        follow: bool,
        resume_for: float,
        deadline: Optional[float],
    ) -> Iterator[v1.Event]:
        last, ended = after_seq, False
        broken_since: Optional[float] = None
        pause = _FIRST_PAUSE
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"task {task_id} did not end in time")
            request = v1.WatchTaskRequest(task_id=task_id, after_seq=last, follow=follow)
            stream = self._tasks.WatchTask(request, metadata=self._metadata, timeout=remaining)
            try:
                for event in stream:
                    broken_since, pause = None, _FIRST_PAUSE
                    # A resumed replay starts past the last event handed
                    # out; this guards against a server that did not.
                    if event.seq <= last:
                        continue
                    last, ended = event.seq, _channel.is_final(event)
                    yield event
                # The server ends a followed stream when the task ends;
                # ending before that is a restart or a deposed leader.
                if not follow or ended:
                    return
            except grpc.RpcError as e:
                code = e.code()
                if code in _channel.PERMANENT:
                    raise TidewrightError.from_rpc(e) from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise TimeoutError(f"task {task_id} did not end in time") from None
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._unavailable(e)
            finally:
                stream.cancel()
            now = time.monotonic()
            broken_since = broken_since or now
            if now - broken_since + pause > resume_for:
                raise StreamLost(task_id, last)
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    def get(self, task_id: str) -> v1.Task:
        """One task, whole, with its steps."""
        request = v1.GetTaskRequest(task_id=task_id)
        return cast(v1.Task, self._call(lambda: self._tasks.GetTask(request, metadata=self._metadata)))

    def cancel(self, task_id: str) -> v1.Task:
        """Cancels a task; its running steps are stopped."""
        request = v1.CancelTaskRequest(task_id=task_id)
        return cast(v1.Task, self._call(lambda: self._tasks.CancelTask(request, metadata=self._metadata)))

    def retry(self, task_id: str) -> v1.Task:
        """Runs a failed or cancelled task's unfinished steps again. Not
        repeated on UNAVAILABLE: a second retry of a running task is refused."""
        request = v1.RetryTaskRequest(task_id=task_id)
        return cast(v1.Task, self._call(lambda: self._tasks.RetryTask(request, metadata=self._metadata), repeat=False))

    def list(
        self,
        *,
        states: Optional[Iterable[int]] = None,
        labels: Optional[Dict[str, str]] = None,
        tenants: Optional[Iterable[str]] = None,
        name_prefix: str = "",
        page_size: int = 100,
    ) -> Iterator[v1.Task]:
        """Every task the filters select, newest first, fetched a page at a
        time as the iterator is read. Steps are omitted; ``get`` has them."""
        request = list_request(states, labels, tenants, name_prefix, page_size)
        while True:
            page = self._call(lambda: self._tasks.ListTasks(request, metadata=self._metadata))
            yield from page.tasks
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    # ------------------------------------------------------------- templates

    def templates(self) -> List[v1.TaskTemplate]:
        """The task templates the server offers: its built-in set and its
        ``--templates-dir``, with their parameters."""
        request = v1.ListTemplatesRequest()
        answer = self._call(lambda: self._tasks.ListTemplates(request, metadata=self._metadata))
        return list(answer.templates)

    def submit_template(
        self,
        name: str,
        parameters: Optional[Mapping[str, object]] = None,
        *,
        idempotency_key: Optional[str] = None,
        tenant: str = "",
    ) -> Submitted:
        """Has the server render one of its templates with ``parameters``
        and submit the task it makes. An unknown, missing or mistyped
        parameter raises :class:`TidewrightError` with ``field`` naming it
        (``parameters.repo``), and nothing is stored."""
        request = template_request(name, parameters, idempotency_key, tenant)
        answer = self._call(lambda: self._tasks.SubmitTemplate(request, metadata=self._metadata))
        return Submitted(answer.task_id, answer.created, request.idempotency_key)

    # ------------------------------------------------------------- schedules

    def create_schedule(
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
        """Creates a schedule: ``spec`` (or ``template`` with
        ``parameters``) is submitted at each tick of ``cron`` in
        ``timezone`` (UTC when empty), each tick once. A field that will not
        do raises :class:`TidewrightError` with ``field`` naming it, and nothing
        is stored. Not repeated on UNAVAILABLE."""
        request = schedule_request(name, cron, spec, timezone, template, parameters, concurrency_policy, tenant)
        return cast(
            v1.Schedule,
            self._call(lambda: self._tasks.CreateSchedule(request, metadata=self._metadata), repeat=False),
        )

    def schedules(self) -> List[v1.Schedule]:
        """The schedules the caller may see, with their history."""
        request = v1.ListSchedulesRequest()
        return list(self._call(lambda: self._tasks.ListSchedules(request, metadata=self._metadata)).schedules)

    def schedule(self, name: str, *, tenant: str = "") -> v1.Schedule:
        """One schedule: its next tick and what its last ticks did."""
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        return cast(v1.Schedule, self._call(lambda: self._tasks.GetSchedule(request, metadata=self._metadata)))

    def suspend_schedule(self, name: str, suspend: bool = True, *, tenant: str = "") -> v1.Schedule:
        """Suspends a schedule, or resumes it (``suspend=False``): the ticks
        it passed over do not fire."""
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        method = self._tasks.SuspendSchedule if suspend else self._tasks.ResumeSchedule
        return cast(v1.Schedule, self._call(lambda: method(request, metadata=self._metadata)))

    def trigger_schedule(self, name: str, *, tenant: str = "") -> str:
        """Submits the schedule's task now; its id."""
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        answer = self._call(lambda: self._tasks.TriggerSchedule(request, metadata=self._metadata), repeat=False)
        return str(answer.task_id)

    def delete_schedule(self, name: str, *, tenant: str = "") -> None:
        """Removes a schedule; the tasks it submitted stay."""
        request = v1.ScheduleRequest(tenant=tenant, name=name)
        self._call(lambda: self._tasks.DeleteSchedule(request, metadata=self._metadata))

    # -------------------------------------------------------------- webhooks

    def create_webhook(self, url: str, events: Iterable[str], secret: str, *, tenant: str = "") -> v1.Webhook:
        """Registers an endpoint for a tenant's events (admins). Each
        delivery is signed with ``secret``, which is never answered back.
        Not repeated on UNAVAILABLE: a second call would register twice."""
        request = webhook_request(url, events, secret, tenant)
        return cast(
            v1.Webhook, self._call(lambda: self._tasks.CreateWebhook(request, metadata=self._metadata), repeat=False)
        )

    def webhooks(self) -> List[v1.Webhook]:
        """The endpoints of the tenants the caller may see (admins)."""
        request = v1.ListWebhooksRequest()
        return list(self._call(lambda: self._tasks.ListWebhooks(request, metadata=self._metadata)).webhooks)

    def delete_webhook(self, webhook_id: str) -> None:
        """Removes an endpoint and its deliveries (admins)."""
        request = v1.DeleteWebhookRequest(id=webhook_id)
        self._call(lambda: self._tasks.DeleteWebhook(request, metadata=self._metadata))

    def webhook_deliveries(self, webhook_id: str = "", *, page_size: int = 50) -> Iterator[v1.WebhookDelivery]:
        """The delivery log, newest first (of one endpoint, or all the
        caller may see), fetched a page at a time as it is read."""
        request = v1.ListWebhookDeliveriesRequest(webhook_id=webhook_id, page_size=page_size)
        while True:
            page = self._call(lambda: self._tasks.ListWebhookDeliveries(request, metadata=self._metadata))
            yield from page.deliveries
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    # ----------------------------------------------------------------- state

    def get_state(self, scope: str, key: str, *, tenant: str = "") -> v1.StateValue:
        request = v1.GetStateRequest(ref=v1.StateRef(tenant=tenant, scope=scope, key=key))
        return cast(v1.StateValue, self._call(lambda: self._state.GetState(request, metadata=self._metadata)))

    def put_state(
        self,
        scope: str,
        key: str,
        value_json: str,
        *,
        tenant: str = "",
        expect_version: Optional[int] = None,
        ttl_seconds: int = 0,
    ) -> v1.StateValue:
        """Stores a value given as JSON text; with ``expect_version``, only
        if the key is at that version (0: holds none)."""
        request = v1.PutStateRequest(
            ref=v1.StateRef(tenant=tenant, scope=scope, key=key),
            value_json=value_json,
            ttl_seconds=ttl_seconds,
        )
        if expect_version is not None:
            request.expect_version = expect_version
        return cast(
            v1.StateValue, self._call(lambda: self._state.PutState(request, metadata=self._metadata), repeat=False)
        )
