"""Checks objects against the openAPIV3Schema of the CustomResourceDefinition
that serves them, as the API server would with strict field validation:
types, required fields, enums, and no field the schema does not know (the
server would prune it silently otherwise).

Reads {"crds": [paths], "objects": [objects]} as JSON on stdin; prints, as
JSON, one list of problems per object (empty when it is admitted).
"""

import json
import sys

import jsonschema
import yaml


def strict(schema):
    """The schema as JSON Schema: unknown fields refused where the CRD has
    properties and keeps no unknown fields; int-or-string either."""
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) if isinstance(v, (dict, list)) else v for k, v in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    if isinstance(schema.get("items"), dict):
        out["items"] = strict(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(schema["additionalProperties"])
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def schemas(paths):
    """(group/version, kind) -> the version's schema, for served versions."""
    found = {}
    for path in paths:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served"):
                        api = f"{group}/{version['name']}"
                        found[(api, kind)] = strict(version["schema"]["openAPIV3Schema"])
    return found


def main():
    request = json.load(sys.stdin)
    known = schemas(request["crds"])
    results = []
    for obj in request["objects"]:
        key = (obj.get("apiVersion"), obj.get("kind"))
        schema = known.get(key)
        if schema is None:
            results.append([f"no CRD serves {key[0]} {key[1]}"])
            continue
        # metadata is the API server's to check, not the CRD's.
        body = {k: v for k, v in obj.items() if k != "metadata"}
        schema = dict(schema)
        schema["properties"] = dict(schema.get("properties", {}))
        schema["properties"]["metadata"] = {}
        validator = jsonschema.Draft7Validator(schema)
        results.append(
            sorted(
                f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
                for e in validator.iter_errors(body)
            )
        )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
