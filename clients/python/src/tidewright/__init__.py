"""tidewright: the Python client of tidewright, the control plane for fleets of
AI coding agents.

    from tidewright import Client

    client = Client.from_env()          # as the `tidewright` CLI connects
    task = client.submit_and_wait("task.yaml", idempotency_key="issue-42")
    for event in client.watch(task.id):
        ...

The messages (``v1.Task``, ``v1.Event``...) are generated from tidewright's
proto files when the package is built.
"""

from . import v1
from ._channel import is_final
from ._config import Settings, resolve as resolve_settings
from ._spec import TaskSpecLike, from_dict as spec_from_dict, load_task
from .aio import AsyncClient
from ._requests import Submitted
from .client import Client
from .errors import TidewrightError, SpecError, StreamLost
from .producer import AsyncProducer, Producer

__all__ = [
    "AsyncClient",
    "AsyncProducer",
    "Client",
    "TidewrightError",
    "Producer",
    "Settings",
    "SpecError",
    "StreamLost",
    "Submitted",
    "TaskSpecLike",
    "is_final",
    "load_task",
    "resolve_settings",
    "spec_from_dict",
    "v1",
]
