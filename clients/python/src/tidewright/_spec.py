"""Task specs from what people hold: a dict in the task file's shape (the
same camelCase fields as the YAML and the Kubernetes ``Task``), a YAML file,
or the message itself."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Union

import yaml
from google.protobuf import json_format

from . import v1
from .errors import SpecError

TaskSpecLike = Union[Mapping[str, Any], str, "os.PathLike[str]", "v1.TaskSpec"]


def load_task(path: Union[str, "os.PathLike[str]"]) -> "v1.TaskSpec":
    """Reads a YAML task file, as ``tidewright submit -f`` does."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"reading {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: {e}") from None
    if not isinstance(data, Mapping):
        raise SpecError(f"{path}: a task file is a mapping with steps or a prompt")
    return from_dict(data, where=str(path))


def from_dict(data: Mapping[str, Any], where: str = "spec") -> "v1.TaskSpec":
    spec = v1.TaskSpec()
    try:
        json_format.ParseDict(dict(data), spec)
    except json_format.ParseError as e:
        raise SpecError(f"{where}: {e}", field=_field_of(str(e))) from None
    return spec


def _field_of(message: str) -> str:
    """The field a parse error is about, named as the server names fields:
    '... no field named "shel" at "TaskSpec.steps[0]"' -> spec.steps[0].shel."""
    at = re.search(r'at "TaskSpec\.?([^"]*)"', message)
    path = ["spec"] + ([at.group(1)] if at and at.group(1) else [])
    unknown = re.search(r'has no field named "([^"]+)"', message)
    if unknown:
        path.append(unknown.group(1))
    return ".".join(path)


def to_spec(spec: TaskSpecLike) -> "v1.TaskSpec":
    if isinstance(spec, v1.TaskSpec):
        return spec
    if isinstance(spec, Mapping):
        return from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return load_task(spec)
    raise SpecError(f"a task spec is a dict, a YAML file's path or a v1.TaskSpec, not {type(spec).__name__}")
