"""Submit rates of the Python client against a running control plane, for
`make bench` (tests/benches/e2e.rs runs it once per run and puts its figures
in its table): one submit at a time with the blocking client and with the
asyncio one, each beside the same client's floor (a gRPC health check, a call
that does nothing); and the rates of many concurrent submits through a
producer (threads, and asyncio tasks), against ``submit_many`` batches made
by hand. A rate counts submits accepted; between phases it waits for the
workers to finish what was submitted, so each phase starts on a quiet
control plane.

    TIDEWRIGHT_TOKEN=... python submit_rates.py URL ONE_AT_A_TIME CONCURRENT

prints a JSON list of [figure, value, unit], in the order measured."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Tuple

from tidewright import AsyncClient, Client, v1

TASK = {"name": "py-bench", "steps": [{"id": "s", "noop": {}}]}
HEALTH = "/grpc.health.v1.Health/Check"
THREADS = 64
COROUTINES = 256
BATCH = 1000
OPEN = (v1.TASK_STATE_QUEUED, v1.TASK_STATE_RUNNING)


def settle(client: Client, within: float = 600.0) -> None:
    """Waits (with a deadline) until no task is queued or running."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        counts = client._tasks.CountTasks(v1.CountTasksRequest(), metadata=client._metadata)
        if not any(c.tasks for c in counts.counts if c.state in OPEN):
            return
        time.sleep(0.05)
    raise TimeoutError("the submitted tasks did not finish in time")


def timed(calls: int, call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return calls / (time.perf_counter() - started)


async def timed_async(calls: int, call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return calls / (time.perf_counter() - started)


def main() -> None:
    url, one, many = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    token = os.environ["TIDEWRIGHT_TOKEN"]
    figures: Dict[str, Tuple[float, str]] = {}
    with Client(url, token) as client:
        # Warm-up: the connection, the server's statements.
        for _ in range(50):
            client.submit(TASK)
        settle(client)

        health = client._grpc.unary_unary(HEALTH)  # type: ignore[union-attr]
        figures[f"Python, one call at a time, the floor: gRPC health checks ({one} calls)"] = (
            timed(one, lambda: health(b"")),
            "calls/s",
        )
        figures[f"Python, one call at a time ({one} tasks, Client.submit)"] = (
            timed(one, lambda: client.submit(TASK)),
            "tasks/s",
        )
        settle(client)

        async def asyncio_phase() -> Tuple[float, float]:
            async with AsyncClient(url, token) as aclient:
                for _ in range(50):
                    await aclient.submit(TASK)
                ahealth = aclient._grpc.unary_unary(HEALTH)  # type: ignore[union-attr]
                floor = await timed_async(one, lambda: ahealth(b""))
                rate = await timed_async(one, lambda: aclient.submit(TASK))
                return floor, rate

        floor, rate = asyncio.run(asyncio_phase())
        figures[f"Python asyncio, one call at a time, the floor: gRPC health checks ({one} calls)"] = (
            floor,
            "calls/s",
        )
        figures[f"Python asyncio, one call at a time ({one} tasks, AsyncClient.submit)"] = (rate, "tasks/s")
        settle(client)

        started = time.perf_counter()
        for _ in range(0, many, BATCH):
            client.submit_many([TASK] * BATCH)
        figures[f"Python, submit_many batches of {BATCH} ({many} tasks, accepted)"] = (
            many / (time.perf_counter() - started),
            "tasks/s",
        )
        settle(client)

        with client.producer() as producer:
            # Each thread submits in a loop, as a program's workers would.
            left = itertools.count()

            def submitter() -> None:
                while next(left) < many:
                    producer.submit(TASK)

            threads = [threading.Thread(target=submitter) for _ in range(THREADS)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rate = many / (time.perf_counter() - started)
        figures[f"Python, Producer.submit from {THREADS} threads ({many} tasks, accepted)"] = (rate, "tasks/s")
        settle(client)

        async def producer_phase() -> float:
            async with AsyncClient(url, token) as aclient, aclient.producer() as producer:
                left = itertools.count()

                async def submitter() -> None:
                    while next(left) < many:
                        await producer.submit(TASK)

                started = time.perf_counter()
                await asyncio.gather(*(submitter() for _ in range(COROUTINES)))
                return many / (time.perf_counter() - started)

        figures[f"Python asyncio, AsyncProducer.submit from {COROUTINES} tasks ({many} tasks, accepted)"] = (
            asyncio.run(producer_phase()),
            "tasks/s",
        )
        settle(client)
    print(json.dumps([[name, value, unit] for name, (value, unit) in figures.items()]))


if __name__ == "__main__":
    main()
