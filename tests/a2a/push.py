"""A2A push notifications, with the protocol's Python SDK (a2a-sdk): a
message asks for its task's updates to be pushed to a receiver this script
serves on loopback; a running task gets a config of its own, read back,
listed and deleted. Each notification received is parsed strictly as the
SDK's StreamResponse. Argv: tidewright's HTTP base URL; the token is in
$TIDEWRIGHT_TOKEN. Prints what it saw as JSON."""

import asyncio
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Value

from a2a.client import ClientConfig, create_client
from a2a.types.a2a_pb2 import (
    AuthenticationInfo,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    ListTaskPushNotificationConfigsRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    TaskPushNotificationConfig,
    TaskState,
)

received = []


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def ticker(message_id, count, pause, push=None):
    asked = SendMessageRequest(
        message=Message(
            message_id=message_id,
            role=Role.ROLE_USER,
            parts=[Part(data=json_format.ParseDict({"count": count, "pause": pause}, Value()))],
        ),
        configuration=SendMessageConfiguration(return_immediately=True),
    )
    asked.metadata.update({"skill": "ticker"})
    if push is not None:
        asked.configuration.task_push_notification_config.CopyFrom(push)
    return asked


async def until(what, seconds=60):
    deadline = time.time() + seconds
    while not what():
        assert time.time() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def main(base):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    report = {}
    headers = {"Authorization": f"Bearer {os.environ['TIDEWRIGHT_TOKEN']}"}
    async with httpx.AsyncClient(headers=headers, timeout=120) as http:
        client = await create_client(base, ClientConfig(httpx_client=http, streaming=False))
        report["card_push"] = client._card.capabilities.push_notifications

        # A message with its push config: its updates reach the receiver,
        # the last one the ended task.
        config = TaskPushNotificationConfig(
            url=f"{url}/message",
            token="tok-1",
            authentication=AuthenticationInfo(scheme="Bearer", credentials="cred-1"),
        )
        task = [a async for a in client.send_message(ticker("p-1", 3, "0.3", config))][-1].task
        mine = lambda: [r for r in received if r["path"] == "/message"]
        await until(lambda: any(b"\"task\"" in r["body"] for r in mine()))
        kinds, states = [], []
        for r in mine():
            update = json_format.Parse(r["body"], StreamResponse())  # strict: unknown fields fail
            kind = update.WhichOneof("payload")
            kinds.append(kind)
            status = update.task.status if kind == "task" else update.status_update.status
            states.append(TaskState.Name(status.state))
        first = mine()[0]["headers"]
        report["message"] = {
            "task": task.id,
            "kinds": kinds,
            "states": states,
            "token": first.get("x-a2a-notification-token"),
            "authorization": first.get("authorization"),
            "signed": first.get("webhook-signature", "").startswith("v1,"),
            "final_artifacts": len(json_format.Parse(mine()[-1]["body"], StreamResponse()).task.artifacts),
        }
        listed = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=task.id)
        )
        report["message"]["listed"] = [json_format.MessageToDict(c) for c in listed.configs]

        # A running task gets a config of its own: read back, listed,
        # deleted; its cancel is pushed.
        running = [a async for a in client.send_message(ticker("p-2", 1000, "0.1"))][-1].task
        made = await client.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=running.id, id="ops", url=f"{url}/later", token="tok-2")
        )
        got = await client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=running.id, id="ops")
        )
        await client.cancel_task(CancelTaskRequest(id=running.id))
        later = lambda: [r for r in received if r["path"] == "/later"]
        await until(lambda: any(b"TASK_STATE_CANCELED" in r["body"] for r in later()))
        await client.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=running.id, id="ops")
        )
        after = await client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=running.id)
        )
        report["config"] = {
            "made": json_format.MessageToDict(made),
            "got": json_format.MessageToDict(got),
            "token": later()[-1]["headers"].get("x-a2a-notification-token"),
            "authorization": later()[-1]["headers"].get("authorization"),
            "after_delete": len(after.configs),
        }
    server.shutdown()
    print(json.dumps(report))


asyncio.run(main(sys.argv[1]))
