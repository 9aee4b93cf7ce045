"""What the clients send and answer, made from the caller's arguments:
the requests (each submit with an idempotency key, fresh when none is
given), the answers as :class:`Submitted`, and how long a retry pauses.
Both clients and both producers use them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, cast

from . import v1
from ._spec import TaskSpecLike, to_spec

_FIRST_PAUSE = 0.1
_LONGEST_PAUSE = 2.0


@dataclass(frozen=True)
class Submitted:
    task_id: str
    #: False when the idempotency key matched a task made before.
    created: bool
    #: The key it was submitted under: the caller's, or a fresh one.
    idempotency_key: str


def submit_request(spec: TaskSpecLike, idempotency_key: Optional[str], tenant: str) -> v1.SubmitTaskRequest:
    return v1.SubmitTaskRequest(
        spec=to_spec(spec),
        # A fresh key when none is given, so the client's own retry of a
        # submit whose answer was lost still makes one task.
        idempotency_key=idempotency_key or uuid.uuid4().hex,
        tenant=tenant,
    )


def submit_many_request(
    specs: Iterable[TaskSpecLike],
    idempotency_keys: Optional[Iterable[Optional[str]]],
    tenant: str,
) -> v1.SubmitTasksRequest:
    tasks = list(specs)
    keys: List[Optional[str]] = [None] * len(tasks) if idempotency_keys is None else list(idempotency_keys)
    if len(keys) != len(tasks):
        raise ValueError(f"idempotency_keys: {len(keys)} keys for {len(tasks)} tasks")
    return v1.SubmitTasksRequest(tasks=[submit_request(spec, key, tenant) for spec, key in zip(tasks, keys)])


def submitted_many(request: v1.SubmitTasksRequest, answer: v1.SubmitTasksResponse) -> List[Submitted]:
    return [Submitted(a.task_id, a.created, r.idempotency_key) for a, r in zip(answer.tasks, request.tasks)]


def parameter_text(value: object) -> str:
    """A template parameter's value as the server reads it: text, with
    booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def template_request(
    name: str, parameters: Optional[Mapping[str, object]], idempotency_key: Optional[str], tenant: str
) -> v1.SubmitTemplateRequest:
    return v1.SubmitTemplateRequest(
        name=name,
        parameters={key: parameter_text(value) for key, value in (parameters or {}).items()},
        idempotency_key=idempotency_key or uuid.uuid4().hex,
        tenant=tenant,
    )


def webhook_request(url: str, events: Iterable[str], secret: str, tenant: str) -> v1.CreateWebhookRequest:
    return v1.CreateWebhookRequest(tenant=tenant, url=url, events=list(events), secret=secret)


def schedule_request(
    name: str,
    cron: str,
    spec: Optional[TaskSpecLike],
    timezone: str,
    template: Optional[str],
    parameters: Optional[Mapping[str, object]],
    concurrency_policy: str,
    tenant: str,
) -> v1.CreateScheduleRequest:
    """A schedule of ``spec`` (or of ``template`` with ``parameters``) at
    each tick of ``cron`` in ``timezone``."""
    schedule = v1.ScheduleSpec(name=name, cron=cron, timezone=timezone, concurrency_policy=concurrency_policy)
    if spec is not None:
        schedule.task.CopyFrom(to_spec(spec))
    if template is not None:
        schedule.template.name = template
        for key, value in (parameters or {}).items():
            schedule.template.params[key] = parameter_text(value)
    return v1.CreateScheduleRequest(tenant=tenant, spec=schedule)


def list_request(
    states: Optional[Iterable[int]],
    labels: Optional[Dict[str, str]],
    tenants: Optional[Iterable[str]],
    name_prefix: str,
    page_size: int,
) -> v1.ListTasksRequest:
    return v1.ListTasksRequest(
        states=cast(Any, list(states or ())),
        labels=dict(labels or {}),
        tenants=list(tenants or ()),
        name_prefix=name_prefix,
        page_size=page_size,
    )
