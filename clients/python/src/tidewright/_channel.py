"""What the sync and asyncio clients share: which replica to call, how to
reach it (plaintext or TLS), the token on each call, and which codes are
worth another try."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Type, TypeVar

import grpc

from . import _config
from ._config import Settings
from .errors import TidewrightError, trailer

#: The trailing metadata key a standby names the leader (``host:port``) in.
LEADER_METADATA = "tidewright-leader"

#: Codes no second try changes: a watch ends with them.
PERMANENT = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

#: Keepalive as the Rust client's: a replica that stops answering fails the
#: calls waiting on it within about 20 s, so the client moves on.
OPTIONS: Sequence[Tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


def server_list(server: str) -> List[str]:
    """``http://a:7070,b:7070`` -> each replica's URL; an entry without a
    scheme takes the first entry's."""
    entries = [s.strip() for s in server.split(",") if s.strip()]
    if not entries:
        raise TidewrightError("server: empty")
    scheme = entries[0].split("://", 1)[0] if "://" in entries[0] else "http"
    urls = []
    for entry in entries:
        url = entry if "://" in entry else f"{scheme}://{entry}"
        if not url.startswith(("http://", "https://")):
            raise TidewrightError(f"server {entry!r} is not a URL like http://127.0.0.1:7070")
        urls.append(url.rstrip("/"))
    return urls


def _read(path: Optional[object], what: str) -> Optional[bytes]:
    if path is None:
        return None
    try:
        with open(str(path), "rb") as f:
            return f.read()
    except OSError as e:
        raise TidewrightError(f"reading the {what} {path}: {e.strerror}") from None


def target(url: str, settings: Settings) -> Tuple[str, Optional[grpc.ChannelCredentials]]:
    """The gRPC target of a URL and, for ``https://``, its credentials."""
    secure = url.startswith("https://")
    address = url.split("://", 1)[1]
    tls_files = settings.ca_file or settings.client_cert or settings.client_key
    if not secure:
        if tls_files:
            raise TidewrightError(f"server {url!r}: TLS files are set, so the URL must start with https://")
        return address, None
    if bool(settings.client_cert) != bool(settings.client_key):
        raise TidewrightError("a client certificate needs both its certificate and its key file")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_file, "CA file"),
        private_key=_read(settings.client_key, "client key"),
        certificate_chain=_read(settings.client_cert, "client certificate"),
    )
    return address, credentials


def metadata(settings: Settings) -> Tuple[Tuple[str, str], ...]:
    token = (settings.token or "").strip()
    return (("authorization", f"Bearer {token}"),) if token else ()


class Replicas:
    """Which replica to call: the one in use until it fails or refuses,
    then the leader it named, or else the next in the list."""

    def __init__(self, server: str) -> None:
        self.urls = server_list(server)
        self.current = self.urls[0]

    def learn(self, error: grpc.RpcError) -> bool:
        """After an UNAVAILABLE from the current replica; true when the
        client should connect elsewhere."""
        leader = trailer(error, LEADER_METADATA)
        if leader:
            scheme = self.current.split("://", 1)[0]
            chosen = f"{scheme}://{leader.strip()}"
        elif len(self.urls) > 1:
            index = self.urls.index(self.current) if self.current in self.urls else -1
            chosen = self.urls[(index + 1) % len(self.urls)]
        else:
            return False
        moved = chosen != self.current
        self.current = chosen
        return moved


def stubs(channel: Any) -> Tuple[Any, Any]:
    """The task and state service stubs over ``channel`` (grpc's generator
    writes them without type hints)."""
    from . import v1

    return (
        v1.TaskServiceStub(channel),  # type: ignore[no-untyped-call]
        v1.StateServiceStub(channel),  # type: ignore[no-untyped-call]
    )


def is_final(event: object) -> bool:
    """True for a task's final state event: succeeded, failed or cancelled."""
    from . import v1

    if not isinstance(event, v1.Event) or event.WhichOneof("kind") != "task_state":
        return False
    return event.task_state.state in (
        v1.TASK_STATE_SUCCEEDED,
        v1.TASK_STATE_FAILED,
        v1.TASK_STATE_CANCELLED,
    )


C = TypeVar("C", bound="Connection")

#: How long calls that are safe to repeat are tried again on UNAVAILABLE.
RETRY_UNAVAILABLE = 30.0


def _path(value: Optional[str]) -> Optional[Path]:
    return Path(value) if value else None


class Connection:
    """What the sync and asyncio clients share: their settings, the replica
    they call, the token's metadata, and how they are made."""

    def __init__(
        self,
        server: str = _config.DEFAULT_SERVER,
        token: Optional[str] = None,
        *,
        ca_file: Optional[str] = None,
        client_cert: Optional[str] = None,
        client_key: Optional[str] = None,
        retry_unavailable_for: float = RETRY_UNAVAILABLE,
    ) -> None:
        self._settings = Settings(server, token, _path(ca_file), _path(client_cert), _path(client_key))
        self._replicas = Replicas(server)
        self._metadata = metadata(self._settings)
        self._retry_for = retry_unavailable_for
        self._connect()

    @classmethod
    def from_settings(cls: Type[C], settings: Settings, **options: Any) -> C:
        return cls(
            settings.server,
            settings.token,
            ca_file=str(settings.ca_file) if settings.ca_file else None,
            client_cert=str(settings.client_cert) if settings.client_cert else None,
            client_key=str(settings.client_key) if settings.client_key else None,
            **options,
        )

    @classmethod
    def from_env(cls: Type[C], **options: Any) -> C:
        """Connects as the ``tidewright`` CLI would: ``TIDEWRIGHT_SERVER``,
        ``TIDEWRIGHT_TOKEN`` / ``TIDEWRIGHT_TOKEN_FILE``, ``TIDEWRIGHT_CA_FILE``,
        ``TIDEWRIGHT_CLIENT_CERT`` / ``TIDEWRIGHT_CLIENT_KEY``, else the config file's
        context (``TIDEWRIGHT_CONFIG``, ``TIDEWRIGHT_CONTEXT``), else ``tidewright up``'s
        defaults and ``.tidewright/admin.token``."""
        return cls.from_settings(_config.resolve(), **options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(server={self._replicas.current!r})"

    @property
    def server(self) -> str:
        """The replica calls go to now."""
        return self._replicas.current

    def _connect(self) -> None:
        raise NotImplementedError

    def _unavailable(self, error: grpc.RpcError) -> None:
        if self._replicas.learn(error):
            self._connect()
