"""Evaluates a CRD's CEL validation rules (x-kubernetes-validations) against
objects, with cel-python, as the API server would on create and update:
the schema's defaults are applied first, each rule sees the value at its
node as `self`, and a rule that reads `oldSelf` (a transition rule) runs
only on an update.

stdin: {"crds": "<path>", "cases": [{"kind": K, "object": {...},
"old": {...} or null}]}
stdout: one list per case, of the messages of the rules it breaks (or
"error: ..." when a rule cannot be evaluated on it).
"""

import copy
import json
import sys

import celpy
import yaml


def schemas(path):
    """kind -> the openAPIV3Schema of its first served version."""
    found = {}
    with open(path, encoding="utf-8") as crds:
        for doc in yaml.safe_load_all(crds):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                version = doc["spec"]["versions"][0]
                found[doc["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return found


def default(schema, value):
    """The value with the schema's defaults filled in, as the API server does."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = default(sub, out[name])
        return out
    if isinstance(value, list) and "items" in schema:
        return [default(schema["items"], item) for item in value]
    return value


def rules_at(schema, value, old, env, broken):
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"] and old is None:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(old)
        try:
            program = env.program(env.compile(rule["rule"]))
            if not bool(program.evaluate(activation)):
                broken.append(rule.get("message", rule["rule"]))
        except Exception as error:  # a rule that cannot run on this value
            broken.append(f"error: {rule['rule']}: {error}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                before = old.get(name) if isinstance(old, dict) else None
                rules_at(sub, value[name], before, env, broken)


def main():
    request = json.load(sys.stdin)
    by_kind = schemas(request["crds"])
    env = celpy.Environment()
    results = []
    for case in request["cases"]:
        schema = by_kind[case["kind"]]
        value = default(schema, case["object"])
        old = case.get("old")
        old = default(schema, old) if old is not None else None
        broken = []
        rules_at(schema, value, old, env, broken)
        results.append(broken)
    json.dump(results, sys.stdout)


main()
