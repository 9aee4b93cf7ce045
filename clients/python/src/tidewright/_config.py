"""Where a client connects, with what: the same config file, contexts and
``TIDEWRIGHT_*`` variables as the ``tidewright`` CLI. Variables beat the context; the
context beats the defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml

from .errors import TidewrightError

DEFAULT_SERVER = "http://127.0.0.1:7070"
LOCAL_ADMIN_TOKEN = Path(".tidewright/admin.token")
_CONTEXT_KEYS = {"server", "token", "token-file", "ca-file", "client-cert", "client-key"}


@dataclass(frozen=True)
class Settings:
    """A server (one URL, or replicas' separated by commas), a token and
    TLS files. Its repr never shows the token."""

    server: str = DEFAULT_SERVER
    token: Optional[str] = field(default=None, repr=False)
    ca_file: Optional[Path] = None
    client_cert: Optional[Path] = None
    client_key: Optional[Path] = None


def default_config_path(env: Mapping[str, str]) -> Optional[Path]:
    base = env.get("XDG_CONFIG_HOME")
    if base and Path(base).is_absolute():
        return Path(base) / "tidewright" / "config.yaml"
    home = env.get("HOME")
    return Path(home) / ".config" / "tidewright" / "config.yaml" if home else None


def _load(path: Path, required: bool) -> Dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise TidewrightError(f"config file {path}: not found") from None
        return {}
    except OSError as e:
        raise TidewrightError(f"config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise TidewrightError(f"config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise TidewrightError(f"config file {path}: not a mapping")
    return data


def _read_token(path: Path, what: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise TidewrightError(f"{what} {path}: {e.strerror}") from None


def resolve(env: Optional[Mapping[str, str]] = None) -> Settings:
    """Settings from ``env`` (``os.environ`` by default) and the config file."""
    env = os.environ if env is None else env
    def value(name: str) -> Optional[str]:
        return env.get(name) or None  # empty counts as unset

    named = value("TIDEWRIGHT_CONFIG")
    path = Path(named) if named else default_config_path(env)
    config = _load(path, required=named is not None) if path else {}
    directory = path.parent if path else Path()
    contexts = config.get("contexts") or {}
    name = value("TIDEWRIGHT_CONTEXT") or config.get("current-context")
    context: Dict[str, Any] = {}
    if name:
        if name not in contexts:
            raise TidewrightError(f"context {name!r} is not in {path}")
        context = contexts[name] or {}
        unknown = set(context) - _CONTEXT_KEYS
        if unknown:
            raise TidewrightError(f"config file {path}: context {name!r}: unknown field {sorted(unknown)[0]!r}")

    def anchored(key: str) -> Optional[Path]:
        raw = context.get(key)
        if not raw:
            return None
        # Relative to the config file; ~ is the home directory.
        return Path(raw).expanduser() if str(raw).startswith("~") else directory / str(raw)

    def env_path(name: str) -> Optional[Path]:
        named = value(name)
        return Path(named) if named else None

    token_file = env_path("TIDEWRIGHT_TOKEN_FILE")
    context_token_file = anchored("token-file")
    token: Optional[str]
    if value("TIDEWRIGHT_TOKEN"):
        token = value("TIDEWRIGHT_TOKEN")
    elif token_file:
        token = _read_token(token_file, "TIDEWRIGHT_TOKEN_FILE")
    elif context.get("token"):
        token = str(context["token"])
    elif context_token_file:
        token = _read_token(context_token_file, "the context's token-file")
    elif LOCAL_ADMIN_TOKEN.is_file():
        token = _read_token(LOCAL_ADMIN_TOKEN, "the local token")
    else:
        token = None
    return Settings(
        server=value("TIDEWRIGHT_SERVER") or context.get("server") or DEFAULT_SERVER,
        token=token,
        ca_file=env_path("TIDEWRIGHT_CA_FILE") or anchored("ca-file"),
        client_cert=env_path("TIDEWRIGHT_CLIENT_CERT") or anchored("client-cert"),
        client_key=env_path("TIDEWRIGHT_CLIENT_KEY") or anchored("client-key"),
    )
