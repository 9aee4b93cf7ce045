"""A lead step's agent, played by the official MCP Python SDK: it starts
`tidewright mcp` over stdio as an agent CLI would (the step's environment holds
the control plane's address and the step's token), lists the tools, and
calls every one: shared state and topics, then the fleet (submit a task and
a template, wait, read, logs, list, cancel), and some that must be refused.
Writes what each call answered to $TIDEWRIGHT_OUTPUT, for the test to check."""

import asyncio
import json
import os

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


# A child's step that submits a task of its own: a grandchild.
GRANDCHILD = (
    "printf 'name: grandchild\\nsteps:\\n  - id: a\\n    shell: {command: [\"true\"]}\\n' > g.yaml"
    " && tidewright submit -f g.yaml"
)


def shell(step_id, script):
    return {"id": step_id, "shell": {"command": ["sh", "-c", script]}}


async def main():
    params = StdioServerParameters(command="tidewright", args=["mcp"], env=dict(os.environ))
    report = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            report["tools"] = sorted(tool.name for tool in listed.tools)

            async def call(name, arguments):
                result = await session.call_tool(name, arguments)
                text = result.content[0].text
                if result.is_error:
                    return {"error": text}
                return json.loads(text)

            # Shared state and topics.
            report["state_put"] = await call("state_put", {"key": "plan", "value": {"parts": 2}})
            report["state_get"] = await call("state_get", {"key": "plan"})
            report["state_delete"] = await call("state_delete", {"key": "plan"})
            report["publish"] = await call("publish", {"topic": "t", "message": "hi"})
            report["wait_for_message"] = await call(
                "wait_for_message", {"topic": "t", "timeoutSeconds": 1}
            )

            # The fleet: a child that answers, one from a template, one that
            # waits until cancelled, and one left running when this step ends.
            answer = "echo hello from the child; echo '{\"n\": 7}' > \"$TIDEWRIGHT_OUTPUT\""
            report["submit_task"] = await call(
                "submit_task",
                {"task": {"name": "part-1", "steps": [shell("work", answer)]}, "key": "part-1"},
            )
            child = report["submit_task"]["taskId"]
            report["submit_again"] = await call(
                "submit_task",
                {"task": {"name": "part-1", "steps": [shell("work", answer)]}, "key": "part-1"},
            )
            report["submit_template"] = await call(
                "submit_template", {"name": "greet", "parameters": {"who": "the lead", "times": 2}}
            )
            report["wait_for_task"] = await call("wait_for_task", {"taskId": child, "timeoutSeconds": 60})
            report["get_task"] = await call("get_task", {"taskId": child})
            report["task_logs"] = await call("task_logs", {"taskId": child, "step": "work"})
            sleeper = await call(
                "submit_task", {"task": {"name": "sleeper", "steps": [shell("nap", "sleep 600")]}}
            )
            # Only an agent's session takes a message: the refusal says so.
            report["steer_task"] = await call(
                "steer_task", {"taskId": sleeper["taskId"], "step": "nap", "message": "Hurry up."}
            )
            report["cancel_task"] = await call("cancel_task", {"taskId": sleeper["taskId"]})
            # A grandchild is one level deeper than the limit the test sets.
            report["deeper"] = await call(
                "submit_task",
                {"task": {"name": "deeper", "steps": [shell("go", GRANDCHILD)]}},
            )
            report["left_running"] = await call(
                "submit_task", {"task": {"name": "left", "steps": [shell("nap", "sleep 600")]}}
            )
            report["list_tasks"] = await call("list_tasks", {})
            report["list_running"] = await call("list_tasks", {"state": "running"})

            # Refusals, each the tool's answer: past the fan-out limit, a
            # task that is not this task's child, a task file that will not do.
            report["over_the_limit"] = await call(
                "submit_task", {"task": {"name": "one-too-many", "steps": [shell("x", "true")]}}
            )
            # At the limit, a resubmit with a key already used finds its task.
            report["again_at_the_limit"] = await call(
                "submit_task",
                {"task": {"name": "part-1", "steps": [shell("work", answer)]}, "key": "part-1"},
            )
            report["not_a_child"] = await call("get_task", {"taskId": os.environ["TIDEWRIGHT_TASK_ID"]})
            report["bad_task"] = await call("submit_task", {"task": {"name": "bad", "steps": [{"id": "Bad!"}]}})
            report["wait_timeout"] = await call(
                "wait_for_task", {"taskId": report["left_running"]["taskId"], "timeoutSeconds": 1}
            )
    with open(os.environ["TIDEWRIGHT_OUTPUT"], "w") as output:
        json.dump(report, output)


asyncio.run(main())
