"""An MCP client outside tidewright, with the official MCP Python SDK's
streamable HTTP transport: it lists the fleet's tools at the control
plane's /mcp, submits a task, waits for it and reads it, as the caller its
bearer token names. Argv: the endpoint's URL; the token is in $TIDEWRIGHT_TOKEN.
Prints what each call answered, as JSON."""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


async def main(url):
    report = {}
    headers = {"Authorization": f"Bearer {os.environ['TIDEWRIGHT_TOKEN']}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                report["tools"] = sorted(tool.name for tool in listed.tools)

                async def call(name, arguments):
                    result = await session.call_tool(name, arguments)
                    text = result.content[0].text
                    return {"error": text} if result.is_error else json.loads(text)

                task = {
                    "name": "from-mcp",
                    "steps": [{"id": "s", "shell": {"command": ["sh", "-c", "echo '{\"ok\": true}' > \"$TIDEWRIGHT_OUTPUT\""]}}],
                }
                report["submit_task"] = await call("submit_task", {"task": task})
                task_id = report["submit_task"]["taskId"]
                report["wait_for_task"] = await call("wait_for_task", {"taskId": task_id, "timeoutSeconds": 60})
                report["list_tasks"] = await call("list_tasks", {})
                report["bad_task"] = await call("submit_task", {"task": {"name": "x", "steps": [{"id": "Bad!"}]}})
    print(json.dumps(report))


asyncio.run(main(sys.argv[1]))
