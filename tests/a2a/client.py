"""An A2A client no one here wrote: the protocol's Python SDK (a2a-sdk),
against tidewright's card and JSON-RPC endpoint. It reads the card, sends
messages (blocking, streaming, returning at once), drops a stream midway
and resubscribes, lists a context's tasks, cancels one, and provokes each
refusal. Argv: tidewright's HTTP base URL; the token is in $TIDEWRIGHT_TOKEN. Prints
what it saw as JSON."""

import asyncio
import json
import os
import sys
import time

import httpx
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Value

from a2a.client import A2ACardResolver, ClientCallContext, ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from a2a.utils.errors import (
    InvalidParamsError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)


def request(message_id, skill=None, text=None, data=None, context="", immediately=False):
    parts = []
    if text is not None:
        parts.append(Part(text=text))
    if data is not None:
        parts.append(Part(data=json_format.ParseDict(data, Value())))
    asked = SendMessageRequest(
        message=Message(message_id=message_id, role=Role.ROLE_USER, parts=parts, context_id=context)
    )
    if skill:
        asked.metadata.update({"skill": skill})
    if immediately:
        asked.configuration.CopyFrom(SendMessageConfiguration(return_immediately=True))
    return asked


def state(task):
    return TaskState.Name(task.status.state)


def artifacts(task):
    return [json_format.MessageToDict(a) for a in task.artifacts]


def refusal(error):
    return {"type": type(error).__name__, "message": str(error), "data": error.data}


async def main(base):
    report = {}
    headers = {"Authorization": f"Bearer {os.environ['TIDEWRIGHT_TOKEN']}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as http:
        card = await A2ACardResolver(http, base).get_agent_card()
        report["card"] = {
            "name": card.name,
            "skills": [s.id for s in card.skills],
            "interfaces": [(i.url, i.protocol_binding, i.protocol_version) for i in card.supported_interfaces],
            "streaming": card.capabilities.streaming,
        }
        streaming = await create_client(card, ClientConfig(httpx_client=http, streaming=True))
        blocking = await create_client(card, ClientConfig(httpx_client=http, streaming=False))

        # Blocking: the answer is the ended task; the same message again is
        # the same task.
        once = request("m-block", "ticker", data={"count": 2, "pause": "0"}, context="ctx-a")
        answers = [a async for a in blocking.send_message(once)]
        task = answers[-1].task
        again = [a async for a in blocking.send_message(once)][-1].task
        report["blocking"] = {
            "state": state(task),
            "context": task.context_id,
            "artifacts": artifacts(task),
            "again": again.id == task.id,
        }

        # Streaming, dropped after three ticks, then resumed twice: plainly
        # (the task as it is now, then what follows), and from the last
        # event seen (its sequence number rides in each update's metadata;
        # sent as Last-Event-ID, nothing between is missed).
        def tick(item):
            text = item.status_update.status.message.parts[0].text
            return text if text.startswith("tick ") else None

        def seq(item):
            return int(item.status_update.metadata["tidewrightEvent"]["seq"])

        async def first_ticks(message_id, context):
            kinds, ticks, last = [], [], 0
            stream = streaming.send_message(
                request(message_id, "ticker", data={"count": 12, "pause": "0.2"}, context=context)
            )
            async for item in stream:
                if item.HasField("task"):
                    kinds.append("task")
                    task_id = item.task.id
                elif item.HasField("status_update"):
                    kinds.append(TaskState.Name(item.status_update.status.state))
                    last = seq(item)
                    if tick(item):
                        ticks.append(tick(item))
                        if len(ticks) == 3:
                            break
            await stream.aclose()
            return task_id, kinds, ticks, last

        async def rest(task_id, context=None):
            kinds, ticks, final, artifact = [], [], None, None
            async for item in streaming.subscribe(SubscribeToTaskRequest(id=task_id), context=context):
                if item.HasField("task"):
                    kinds.append("task")
                elif item.HasField("artifact_update"):
                    artifact = json_format.MessageToDict(item.artifact_update.artifact)
                elif item.HasField("status_update"):
                    final = TaskState.Name(item.status_update.status.state)
                    if tick(item):
                        ticks.append(tick(item))
            return kinds, ticks, final, artifact

        task_id, kinds, ticks, _ = await first_ticks("m-stream", "ctx-a")
        resumed, more, final, artifact = await rest(task_id)
        report["streaming"] = {
            "first": kinds[0],
            "resumed_first": resumed[0] if resumed else None,
            "ticks": ticks + more,
            "final": final,
            "artifact": artifact,
        }
        other, _, ticks, last = await first_ticks("m-resume", "ctx-b")
        # Ticks go on while no one listens (polled, with a deadline).
        deadline = time.time() + 30
        while (await streaming.get_task(GetTaskRequest(id=other))).metadata["tidewright"]["lastSeq"] < last + 3:
            assert time.time() < deadline, "the task logs no more ticks"
            await asyncio.sleep(0.05)
        context = ClientCallContext(service_parameters={"Last-Event-ID": str(last)})
        resumed, more, final, _ = await rest(other, context)
        report["last_event_id"] = {"resumed_first": resumed[0], "ticks": ticks + more, "final": final}

        # The latency from an event (tidewright stamps it when it commits it) to
        # this client, over a task logging a line every 20 ms.
        latencies = []
        async for item in streaming.send_message(
            request("m-latency", "ticker", data={"count": 200, "pause": "0.02"})
        ):
            if item.HasField("status_update"):
                status = item.status_update.status
                if status.message.parts and status.message.parts[0].text.startswith("tick "):
                    latencies.append(time.time() * 1e6 - status.timestamp.ToMicroseconds())
        report["latency_us"] = latencies

        # A context's tasks, and one task read back.
        listed = await streaming.list_tasks(ListTasksRequest(context_id="ctx-a"))
        report["listed"] = sorted(t.id for t in listed.tasks) == sorted([task.id, task_id])
        got = await streaming.get_task(GetTaskRequest(id=task_id))
        report["got"] = {"state": state(got), "artifacts": len(got.artifacts)}

        # Returning at once, then cancelled; a second cancel is refused.
        answered = [
            a
            async for a in blocking.send_message(
                request("m-cancel", "ticker", data={"count": 1000, "pause": "0.1"}, immediately=True)
            )
        ][-1].task
        cancelled = await streaming.cancel_task(CancelTaskRequest(id=answered.id))
        report["cancel"] = {"answered": state(answered), "cancelled": state(cancelled)}
        try:
            await streaming.cancel_task(CancelTaskRequest(id=answered.id))
        except TaskNotCancelableError as e:
            report["cancel"]["again"] = refusal(e)

        refusals = {}
        try:
            [a async for a in blocking.send_message(request("m-skill", "no-such-skill", text="hi"))]
        except InvalidParamsError as e:
            refusals["skill"] = refusal(e)
        try:
            [a async for a in blocking.send_message(request("m-empty", "ticker", data=None, text=None))]
        except InvalidParamsError as e:
            refusals["no_parts"] = refusal(e)
        malformed = request("m-part", "ticker", data={"count": 1})
        malformed.message.parts.append(Part())
        try:
            [a async for a in blocking.send_message(malformed)]
        except InvalidParamsError as e:
            refusals["part"] = refusal(e)
        try:
            await streaming.get_task(GetTaskRequest(id="no-such-task"))
        except TaskNotFoundError as e:
            refusals["unknown_task"] = refusal(e)
        try:
            async for _ in streaming.subscribe(SubscribeToTaskRequest(id=task.id)):
                pass
        except UnsupportedOperationError as e:
            refusals["ended"] = refusal(e)
        report["refusals"] = refusals
    print(json.dumps(report))


asyncio.run(main(sys.argv[1]))
