// Sends one of GitHub's own example webhook deliveries, as GitHub sends it:
// the example of EVENT (and ACTION) from @octokit/webhooks-examples, with
// CHANGES (JSON) merged into it, checked against GitHub's description of
// that delivery (@octokit/openapi-webhooks, with Ajv: a payload it refuses
// is not sent), signed by @octokit/webhooks-methods with SECRET (unsigned
// when it is empty), named DELIVERY. Prints the answer's status and body as
// one JSON line. Run from the forge tools' directory (tests/src/forge.rs
// copies it there), where its packages are.
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

const payload = merge(structuredClone(example), JSON.parse(changes || "{}"));

// GitHub's description of the delivery: `check-run-completed` for event
// check_run, action completed; `status` for an event without actions.
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats");
const described = require("@octokit/openapi-webhooks/generated/api.github.com.json");
const name = event.replaceAll("_", "-");
const key = [`${name}-${action}`, name].find((k) => described.webhooks[k]);
if (!key) {
  console.error(`@octokit/openapi-webhooks describes no ${event} ${action} delivery`);
  process.exit(2);
}
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "webhooks", components: described.components });
const schema = described.webhooks[key].post.requestBody.content["application/json"].schema;
const valid = ajv.compile({ $ref: `webhooks${schema.$ref}` });
if (!valid(payload)) {
  console.error(`the ${key} delivery is not as GitHub describes it: ${JSON.stringify(valid.errors)}`);
  process.exit(3);
}
const body = JSON.stringify(payload);
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
