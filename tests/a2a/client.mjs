// An A2A client no one here wrote: the protocol's JavaScript SDK
// (@a2a-js/sdk), against tidewright's card and JSON-RPC endpoint. It streams a
// task, drops the stream midway, resubscribes to the rest, reads the task
// back and provokes a refusal. Argv: tidewright's HTTP base URL; the token is in
// TIDEWRIGHT_TOKEN. Prints what it saw as JSON.
// The SDK is where scripts/a2a-sdk.sh installed it: $A2A_SDK_DIR.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(pathToFileURL(`${process.env.A2A_SDK_DIR}/`));
const { Role, TaskState } = require("@a2a-js/sdk");
const { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory } = require("@a2a-js/sdk/client");

const base = process.argv[2];
const token = process.env.TIDEWRIGHT_TOKEN;

const withToken = (url, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token}`);
  return fetch(url, { ...init, headers });
};

const factory = new ClientFactory(
  ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [new JsonRpcTransportFactory({ fetchImpl: withToken })],
  }),
);
const client = await factory.createFromUrl(base);

const request = (messageId, skill, data) => ({
  tenant: "",
  message: {
    messageId,
    contextId: "ctx-js",
    taskId: "",
    role: Role.ROLE_USER,
    parts: [{ content: { $case: "data", value: data } }],
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  },
  configuration: undefined,
  metadata: { skill },
});

const text = (update) => update.status?.message?.parts?.[0]?.content?.value ?? "";
const report = { ticks: [] };

let taskId;
for await (const item of client.sendMessageStream(
  request("js-stream", "ticker", { count: 10, pause: "0.2" }),
)) {
  const { $case, value } = item.payload ?? {};
  if ($case === "task") {
    report.first = "task";
    taskId = value.id;
  } else if ($case === "statusUpdate" && text(value).startsWith("tick ")) {
    report.ticks.push(text(value));
    if (report.ticks.length === 2) break;
  }
}

for await (const item of client.resubscribeTask({ tenant: "", id: taskId })) {
  const { $case, value } = item.payload ?? {};
  if ($case === "task") {
    report.resumedFirst ??= "task";
  } else if ($case === "artifactUpdate") {
    report.artifact = value.artifact.parts.map((p) => p.content?.$case);
  } else if ($case === "statusUpdate") {
    report.final = TaskState[value.status.state];
    if (text(value).startsWith("tick ")) report.ticks.push(text(value));
  }
}

const task = await client.getTask({ tenant: "", id: taskId, historyLength: undefined });
report.got = { state: TaskState[task.status.state], context: task.contextId };

try {
  await client.sendMessage(request("js-bad", "no-such-skill", { count: 1 }));
} catch (e) {
  report.refused = { name: e.constructor.name, message: e.message };
}
console.log(JSON.stringify(report));
