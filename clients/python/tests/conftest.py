"""A real `tidewright up` (embedded control plane, SQLite, two local workers) on a
free loopback port for the whole session, and a TCP proxy that can cut
every connection through it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from tidewright import Client

START_WITHIN = 60.0

GREET = """description: Greets someone.
parameters:
  who: {required: true}
  loud: {type: boolean, default: false}
steps:
  - id: say
    shell:
      command: [sh, -c, 'printf "{\\"said\\": \\"hello %s %s\\"}" "$WHO" "$LOUD" > "$TIDEWRIGHT_OUTPUT"']
      env: {WHO: "${{ who }}", LOUD: "${{ loud }}"}
"""


def tidewright_bin() -> str:
    path = os.environ.get("TIDEWRIGHT_BIN")
    if not path or not Path(path).is_file():
        raise RuntimeError("set TIDEWRIGHT_BIN to the tidewright binary (scripts/python-client.sh does)")
    return path


class Tidewright:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / ".tidewright"
        self.log = open(root / "tidewright-up.log", "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TIDEWRIGHT_"))}
        # A template of the server's own, beside the built-in set.
        self.templates_dir = root / "templates"
        self.templates_dir.mkdir()
        (self.templates_dir / "greet.yaml").write_text(GREET)
        self.process = subprocess.Popen(
            [
                tidewright_bin(),
                "up",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
                "--workers",
                "2",
                "--templates-dir",
                str(self.templates_dir),
                # The tests' webhook receiver listens on loopback.
                "--webhook-allow-private-networks",
                # Steps run sandboxed; the gates the tests open for them
                # are in pytest's directories, beside this one.
                "--sandbox-shared",
                str(root.parent),
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        endpoint = self.data_dir / "endpoint"
        deadline = time.monotonic() + START_WITHIN
        while not (endpoint.is_file() and endpoint.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tidewright up did not start; see {root / 'tidewright-up.log'}")
            time.sleep(0.05)
        self.url = endpoint.read_text().strip()
        self.token = (self.data_dir / "admin.token").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def tidewright(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tidewright]:
    running = Tidewright(tmp_path_factory.mktemp("tidewright"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(tidewright: Tidewright) -> Iterator[Client]:
    with Client(tidewright.url, tidewright.token) as c:
        yield c


class Proxy:
    """Forwards loopback TCP to the control plane; ``cut()`` drops every
    connection through it at once, as a network failure would, and it
    keeps accepting new ones."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split("://", 1)[-1].rsplit(":", 1)
        self.upstream: Tuple[str, int] = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._open: List[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self.accepted += 1
                self._open += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self._lock:
            cut, self._open = self._open, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy(tidewright: Tidewright) -> Iterator[Proxy]:
    p = Proxy(tidewright.url)
    try:
        yield p
    finally:
        p.close()
