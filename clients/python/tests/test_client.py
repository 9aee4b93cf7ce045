"""tidewright against a real `tidewright up`: DAGs submitted and waited for,
watches that resume after the connection is cut, errors that carry the
status and the field, idempotent resubmits, paging, and the asyncio client."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import grpc
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tidewright import AsyncClient, Client, TidewrightError, SpecError, is_final, v1

from conftest import Tidewright, Proxy


def shell(step_id: str, script: str, depends_on: List[str] = ()) -> Dict[str, Any]:  # type: ignore[assignment]
    step: Dict[str, Any] = {"id": step_id, "shell": {"command": ["sh", "-c", script]}}
    if depends_on:
        step["dependsOn"] = list(depends_on)
    return step


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def gate_script(gate: Path) -> str:
    # Gives up once the test's directory is gone, so no step outlives it.
    return f"while [ ! -e {gate} ]; do [ -d {gate.parent} ] || exit 1; sleep 0.02; done"


DAG = {
    "name": "fan-in",
    "steps": [
        shell("a", "echo '{\"n\": 1}' > \"$TIDEWRIGHT_OUTPUT\""),
        shell("b", "echo '{\"n\": 2}' > \"$TIDEWRIGHT_OUTPUT\""),
        shell("sum", "cat \"$TIDEWRIGHT_INPUTS\" > \"$TIDEWRIGHT_OUTPUT\"", ["a", "b"]),
    ],
}


def output(task: v1.Task, step_id: str) -> Any:
    (step,) = [s for s in task.steps if s.id == step_id]
    return json.loads(step.output_json)


def test_a_dag_is_submitted_and_waited_for(client: Client) -> None:
    task = client.submit_and_wait(DAG, timeout=60)
    assert task.state == v1.TASK_STATE_SUCCEEDED, task.message
    assert output(task, "sum") == {"a": {"n": 1}, "b": {"n": 2}}
    assert [s.state for s in task.steps] == [v1.STEP_STATE_SUCCEEDED] * 3


def test_a_yaml_task_file_is_submitted_by_its_path(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(
        "name: from-yaml\nsteps:\n"
        "  - id: hello\n    shell:\n      command: [sh, -c, 'echo hello from yaml']\n"
    )
    submitted = client.submit(path)
    task = client.wait(submitted.task_id, timeout=60)
    assert task.state == v1.TASK_STATE_SUCCEEDED
    logs = [e.log.line for e in client.watch(task.id, follow=False) if e.WhichOneof("kind") == "log"]
    assert logs == ["hello from yaml"]


def test_watch_resumes_after_the_connection_is_cut(client: Client, proxy: Proxy, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = (
        "for i in $(seq 1 20); do echo before-$i; done; "
        + gate_script(gate)
        + "; for i in $(seq 1 20); do echo after-$i; done"
    )
    task_id = client.submit({"name": "talks", "steps": [shell("talk", script)]}).task_id
    through_proxy = Client(proxy.url, client._settings.token)
    watched: List[v1.Event] = []
    for event in through_proxy.watch(task_id):
        watched.append(event)
        if event.WhichOneof("kind") == "log" and event.log.line == "before-20":
            proxy.cut()
            gate.write_text("")
    through_proxy.close()

    assert proxy.accepted >= 2, "the watch went on over a new connection"
    assert [e.seq for e in watched] == list(range(1, len(watched) + 1)), "every event once, in order"
    assert is_final(watched[-1]) and watched[-1].task_state.state == v1.TASK_STATE_SUCCEEDED
    lines = [e.log.line for e in watched if e.WhichOneof("kind") == "log"]
    assert lines == [f"before-{i}" for i in range(1, 21)] + [f"after-{i}" for i in range(1, 21)]
    assert list(client.watch(task_id, follow=False)) == watched
    assert [e.seq for e in client.watch(task_id, after_seq=10)] == [e.seq for e in watched[10:]]


def test_errors_carry_the_status_and_the_field(client: Client, tidewright: Tidewright) -> None:
    name = unique("dup")
    with pytest.raises(TidewrightError) as refused:
        client.submit({"name": name, "steps": [shell("a", "true"), shell("a", "true")]})
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.field == "spec.steps[1].id"
    assert "already used" in refused.value.message
    assert str(refused.value).startswith("invalid argument: spec.steps[1].id: ")
    assert list(client.list(name_prefix=name)) == [], "nothing was stored"

    with pytest.raises(SpecError) as local:
        client.submit({"name": name, "steps": [{"id": "a", "shel": {"command": ["true"]}}]})
    assert local.value.field == "spec.steps[0].shel"

    with pytest.raises(TidewrightError) as missing:
        client.get("01JAAAAAAAAAAAAAAAAAAAAAAA")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND

    with pytest.raises(TidewrightError) as watch_missing:
        list(client.watch("01JAAAAAAAAAAAAAAAAAAAAAAA"))
    assert watch_missing.value.code == grpc.StatusCode.NOT_FOUND

    with Client(tidewright.url, "tidewright_not-a-token") as stranger:
        with pytest.raises(TidewrightError) as unauthenticated:
            stranger.get("x")
    assert unauthenticated.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "tidewright_not-a-token" not in str(unauthenticated.value)


def test_a_resubmit_under_the_same_key_is_the_same_task(client: Client) -> None:
    name = unique("once")
    key = unique("issue")
    first = client.submit({"name": name, "steps": [shell("s", "true")]}, idempotency_key=key)
    again = client.submit({"name": name, "steps": [shell("s", "true")]}, idempotency_key=key)
    assert first.created and not again.created
    assert again.task_id == first.task_id
    assert [t.id for t in client.list(name_prefix=name)] == [first.task_id]
    other = client.submit({"name": name, "steps": [shell("s", "true")]})
    assert other.created and other.task_id != first.task_id


def test_a_batch_is_made_whole_once_or_refused_whole_naming_its_task(client: Client) -> None:
    batch = unique("many")
    specs = [{"name": f"{batch}-{i}", "steps": [{"id": "s", "noop": {}}]} for i in range(4)]
    submitted = client.submit_many(specs)
    assert all(s.created for s in submitted)
    assert len({s.idempotency_key for s in submitted}) == 4
    for i, s in enumerate(submitted):
        task = client.wait(s.task_id, timeout=60)
        assert (task.spec.name, task.state) == (f"{batch}-{i}", v1.TASK_STATE_SUCCEEDED)
    # Sent again under the same keys, as after a lost answer: the same tasks.
    again = client.submit_many(specs, idempotency_keys=[s.idempotency_key for s in submitted])
    assert [s.task_id for s in again] == [s.task_id for s in submitted]
    assert not any(s.created for s in again)
    bad = {"name": f"{batch}-bad", "steps": [{"id": "s", "noop": {}}, {"id": "s", "noop": {}}]}
    with pytest.raises(TidewrightError) as refused:
        client.submit_many([specs[0] | {"name": f"{batch}-fine"}, bad])
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.field == "tasks[1].spec.steps[1].id"
    assert [t.spec.name for t in client.list(name_prefix=batch)] == [f"{batch}-{i}" for i in reversed(range(4))]
    with pytest.raises(ValueError, match="idempotency_keys: 1 keys for 4 tasks"):
        client.submit_many(specs, idempotency_keys=["one"])


PRODUCED = 300


def produced_spec(batch: str, n: int) -> Dict[str, Any]:
    # Every 50th has two steps of one id: refused, naming the field.
    steps = [{"id": "s", "noop": {}}] * (2 if n % 50 == 7 else 1)
    return {"name": f"{batch}-{n}", "steps": steps}


def check_produced(client: Client, batch: str, answers: List[Any]) -> None:
    """Each submit answered its own: its task, or its own refusal as a lone
    submit would have it; and the tasks came in a few calls (the tasks of
    one call share their creation time)."""
    made = []
    for n, answer in enumerate(answers):
        if n % 50 == 7:
            assert isinstance(answer, TidewrightError), (n, answer)
            assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
            assert answer.field == "spec.steps[1].id", answer
            assert answer.message.startswith("spec.steps[1].id: "), answer.message
        else:
            assert not isinstance(answer, BaseException), (n, answer)
            assert answer.created and answer.idempotency_key == f"{batch}-key-{n}"
            made.append((n, answer.task_id))
    assert len(made) == PRODUCED - PRODUCED // 50
    calls = set()
    for n, task_id in made:
        task = client.get(task_id)
        assert task.spec.name == f"{batch}-{n}"
        calls.add((task.created_at.seconds, task.created_at.nanos))
    assert len(calls) <= PRODUCED // 10, f"{len(made)} submits made in {len(calls)} calls"
    assert len(list(client.list(name_prefix=f"{batch}-"))) == len(made)


def test_a_producer_coalesces_submits_from_many_threads_and_answers_each_its_own(client: Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batch = unique("produced")
    with client.producer(max_batch=100, in_flight=1) as producer:

        def submit(n: int) -> Any:
            try:
                return producer.submit(produced_spec(batch, n), idempotency_key=f"{batch}-key-{n}")
            except TidewrightError as e:
                return e

        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(pool.map(submit, range(PRODUCED)))
    check_produced(client, batch, answers)
    with pytest.raises(RuntimeError, match="closed"):
        producer.submit(produced_spec(batch, 0))
    with pytest.raises(ValueError, match="max_batch: 1001"):
        client.producer(max_batch=1001)


def test_an_asyncio_producer_coalesces_submits_and_answers_each_its_own(tidewright: Tidewright, client: Client) -> None:
    batch = unique("aproduced")

    async def scenario() -> List[Any]:
        async with AsyncClient(tidewright.url, tidewright.token) as aclient:
            async with aclient.producer(max_batch=100, in_flight=1, linger=0.005) as producer:
                return await asyncio.gather(
                    *(
                        producer.submit(produced_spec(batch, n), idempotency_key=f"{batch}-key-{n}")
                        for n in range(PRODUCED)
                    ),
                    return_exceptions=True,
                )

    check_produced(client, batch, asyncio.run(scenario()))


def test_list_pages_through_every_task_newest_first(client: Client) -> None:
    batch = unique("paged")
    ids = [client.submit({"name": f"{batch}-{i}", "labels": {"batch": batch}, "steps": [{"id": "s", "noop": {}}]}).task_id for i in range(7)]
    listed = [t.id for t in client.list(labels={"batch": batch}, page_size=3)]
    assert listed == list(reversed(ids))


def test_wait_times_out_then_cancel_and_retry(client: Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    task_id = client.submit({"name": "gated", "steps": [shell("wait", gate_script(gate))]}).task_id
    with pytest.raises(TimeoutError):
        client.wait(task_id, timeout=0.5)
    client.cancel(task_id)
    assert client.wait(task_id, timeout=60).state == v1.TASK_STATE_CANCELLED
    gate.write_text("")
    again = client.retry(task_id)
    assert again.id == task_id
    assert client.wait(task_id, timeout=60).state == v1.TASK_STATE_SUCCEEDED


def test_the_asyncio_client_submits_watches_and_waits(tidewright: Tidewright) -> None:
    async def scenario() -> None:
        async with AsyncClient(tidewright.url, tidewright.token) as client:
            submitted = await client.submit(DAG, idempotency_key=unique("async"))
            events = [e async for e in client.watch(submitted.task_id)]
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert is_final(events[-1])
            task = await client.wait(submitted.task_id, timeout=60)
            assert task.state == v1.TASK_STATE_SUCCEEDED
            assert output(task, "sum") == {"a": {"n": 1}, "b": {"n": 2}}
            listed = [t.id async for t in client.list(name_prefix="fan-in", page_size=1)]
            assert submitted.task_id in listed
            with pytest.raises(TidewrightError) as missing:
                await client.get("01JAAAAAAAAAAAAAAAAAAAAAAA")
            assert missing.value.code == grpc.StatusCode.NOT_FOUND
            assert "greet" in [t.name for t in await client.templates()]
            greeted = await client.submit_template("greet", {"who": "async"})
            task = await client.wait(greeted.task_id, timeout=60)
            assert output(task, "say") == {"said": "hello async false"}
            with pytest.raises(TidewrightError) as unknown:
                await client.submit_template("greet", {"who": "x", "colour": "red"})
            assert unknown.value.field == "parameters.colour"
            assert [w async for w in client.webhook_deliveries("no-such-webhook")] == []
            many = await client.submit_many([DAG, DAG], idempotency_keys=[unique("a"), None])
            assert [s.created for s in many] == [True, True]
            for s in many:
                assert (await client.wait(s.task_id, timeout=60)).state == v1.TASK_STATE_SUCCEEDED

    asyncio.run(scenario())


def test_from_env_connects_as_the_cli_does(tidewright: Tidewright, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TIDEWRIGHT_SERVER", "TIDEWRIGHT_TOKEN", "TIDEWRIGHT_TOKEN_FILE", "TIDEWRIGHT_CONTEXT", "TIDEWRIGHT_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local.token").write_text(tidewright.token + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "current-context: here\ncontexts:\n"
        f"  here:\n    server: {tidewright.url}\n    token-file: local.token\n"
        "  elsewhere:\n    server: http://127.0.0.1:1\n"
    )
    monkeypatch.setenv("TIDEWRIGHT_CONFIG", str(config))
    with Client.from_env() as c:
        assert c.server == tidewright.url
        assert c.submit_and_wait(DAG, timeout=60).state == v1.TASK_STATE_SUCCEEDED

    monkeypatch.setenv("TIDEWRIGHT_CONTEXT", "nowhere")
    with pytest.raises(TidewrightError, match="'nowhere' is not in"):
        Client.from_env()

    monkeypatch.delenv("TIDEWRIGHT_CONTEXT")
    monkeypatch.delenv("TIDEWRIGHT_CONFIG")
    monkeypatch.setenv("TIDEWRIGHT_SERVER", tidewright.url)
    monkeypatch.setenv("TIDEWRIGHT_TOKEN_FILE", str(tmp_path / "local.token"))
    with Client.from_env() as c:
        assert c.get(c.submit(DAG).task_id).spec.name == "fan-in"


def test_no_token_is_ever_shown_or_logged(tidewright: Tidewright, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Client(tidewright.url, tidewright.token) as c:
        c.submit_and_wait(DAG, timeout=60)
        shown = [repr(c), repr(c._settings)]
    with pytest.raises(TidewrightError) as refused:
        Client(tidewright.url, "tidewright_secret-not-a-token").get("x")
    shown.append(str(refused.value))
    shown.append(caplog.text)
    for text in shown:
        assert tidewright.token not in text and "tidewright_secret-not-a-token" not in text, text


def test_the_servers_templates_are_listed_and_run_and_bad_parameters_name_the_field(client: Client) -> None:
    templates = {t.name: t for t in client.templates()}
    assert {"deploy", "feature", "refactor", "greet"} <= set(templates)
    greet = templates["greet"]
    assert greet.origin.endswith("greet.yaml")
    assert [(p.name, p.type, p.required) for p in greet.parameters] == [
        ("loud", "boolean", False),
        ("who", "string", True),
    ]
    assert greet.parameters[0].default_value == "false"

    key = unique("greet")
    submitted = client.submit_template("greet", {"who": "world", "loud": True}, idempotency_key=key)
    again = client.submit_template("greet", {"who": "world", "loud": True}, idempotency_key=key)
    assert (again.task_id, again.created) == (submitted.task_id, False)
    task = client.wait(submitted.task_id, timeout=60)
    assert task.state == v1.TASK_STATE_SUCCEEDED, task.message
    assert output(task, "say") == {"said": "hello world true"}

    with pytest.raises(TidewrightError) as missing:
        client.submit_template("greet", {"loud": False})
    assert (missing.value.code, missing.value.field) == (grpc.StatusCode.INVALID_ARGUMENT, "parameters.who")
    with pytest.raises(TidewrightError) as mistyped:
        client.submit_template("greet", {"who": "x", "loud": "very"})
    assert mistyped.value.field == "parameters.loud"
    with pytest.raises(TidewrightError) as unknown:
        client.submit_template("nope")
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND
    assert "greet" in str(unknown.value)


class Receiver:
    """A webhook receiver on loopback: keeps each request's headers and body,
    and answers 204."""

    def __init__(self) -> None:
        self.received: List[Tuple[Dict[str, str], bytes]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, headers: Dict[str, str], body: bytes) -> bool:
    """The README's check, as a receiver would run it: the Standard Webhooks
    library verifies the signature and refuses an old timestamp."""
    try:
        Webhook(secret).verify(body, headers)
        return True
    except WebhookVerificationError:
        return False


def test_webhooks_are_registered_delivered_signed_logged_and_removed(client: Client) -> None:
    secret = "whsec_cHl0aG9uLWtleS1vZi10aGlydHktdHdvLWJ5dGVzIQ=="
    with pytest.raises(TidewrightError) as refused:
        client.create_webhook("ftp://example.com/x", ["task.succeeded"], secret)
    assert (refused.value.code, refused.value.field) == (grpc.StatusCode.INVALID_ARGUMENT, "url")

    receiver = Receiver()
    try:
        webhook = client.create_webhook(receiver.url, ["task.succeeded"], secret)
        assert webhook.enabled and webhook.id in [w.id for w in client.webhooks()]
        task = client.submit_and_wait(DAG, timeout=60)
        deadline = time.monotonic() + 30
        while not any(json.loads(body)["task"]["id"] == task.id for _, body in receiver.received):
            assert time.monotonic() < deadline, "the delivery arrived"
            time.sleep(0.05)
        headers, body = [(h, b) for h, b in receiver.received if json.loads(b)["task"]["id"] == task.id][0]
        assert verify(secret, headers, body)
        assert not verify(secret, headers, body.replace(b"succeeded", b"failed"))
        assert json.loads(body)["type"] == "task.succeeded"

        while True:
            logged = [d for d in client.webhook_deliveries(webhook.id, page_size=1) if d.task_id == task.id]
            if logged and logged[0].state == "delivered":
                break
            assert time.monotonic() < deadline, "the delivery was logged"
            time.sleep(0.05)
        assert (logged[0].id, logged[0].last_status) == (headers["webhook-id"], 204)
    finally:
        receiver.close()
    client.delete_webhook(webhook.id)
    assert webhook.id not in [w.id for w in client.webhooks()]
    with pytest.raises(TidewrightError) as gone:
        client.delete_webhook(webhook.id)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND


def test_a_schedule_fires_each_second_and_is_suspended_triggered_and_deleted(client: Client) -> None:
    with pytest.raises(TidewrightError) as refused:
        client.create_schedule("bad", "61 * * * *", DAG)
    assert (refused.value.code, refused.value.field) == (grpc.StatusCode.INVALID_ARGUMENT, "cron")
    made = client.create_schedule("py-every-second", "* * * * * *", DAG, timezone="Europe/Rome")
    assert made.spec.timezone == "Europe/Rome" and made.HasField("next_tick")
    deadline = time.monotonic() + 30
    while not [run for run in client.schedule("py-every-second").history if run.task_id]:
        assert time.monotonic() < deadline, "a tick fired"
        time.sleep(0.05)
    fired = [run.task_id for run in client.schedule("py-every-second").history if run.task_id]
    assert client.wait(fired[0], timeout=60).state == v1.TASK_STATE_SUCCEEDED
    assert not client.suspend_schedule("py-every-second").HasField("next_tick")
    triggered = client.trigger_schedule("py-every-second")
    assert triggered in [run.task_id for run in client.schedule("py-every-second").history]
    client.delete_schedule("py-every-second")
    assert "py-every-second" not in [s.spec.name for s in client.schedules()]
