// Sends one of GitHub's own example webhook deliveries, as GitHub sends it:
// the example of EVENT (and ACTION) from @octokit/webhooks-examples, with
// CHANGES (JSON) merged into it, signed by @octokit/webhooks-methods with
// SECRET (unsigned when it is empty), named DELIVERY. Prints the answer's
// status and body as one JSON line. Run from the forge tools' directory
// (tests/src/forge.rs copies it there), where its packages are.
//
//   node deliver.mjs URL EVENT ACTION SECRET DELIVERY CHANGES
import { createRequire } from "node:module";

import { sign } from "@octokit/webhooks-methods";

const require = createRequire(import.meta.url);
const examples = require("@octokit/webhooks-examples");

const [url, event, action, secret, delivery, changes] = process.argv.slice(2);
const family = examples.find((e) => e.name === event);
const example = family?.examples.find((e) => !action || e.action === action);
if (!example) {
  console.error(`@octokit/webhooks-examples has no ${event} ${action} example`);
  process.exit(2);
}

function merge(into, from) {
  for (const [key, value] of Object.entries(from)) {
    if (value && typeof value === "object" && !Array.isArray(value) && into[key] && typeof into[key] === "object") {
      merge(into[key], value);
    } else {
      into[key] = value;
    }
  }
  return into;
}

const body = JSON.stringify(merge(structuredClone(example), JSON.parse(changes || "{}")));
const headers = {
  "content-type": "application/json",
  "user-agent": "GitHub-Hookshot/tidewright-tests",
  "x-github-event": event,
  "x-github-delivery": delivery,
};
if (secret) {
  headers["x-hub-signature-256"] = await sign(secret, body);
}
const answer = await fetch(url, { method: "POST", headers, body });
console.log(JSON.stringify({ status: answer.status, body: await answer.text() }));
