"""One background asyncio loop per deployment, for the asyncio parts (amqtt broker, tap).

Why a thread: the roles are MQTT clients with their own reader threads, the CLI and the
console call in from their own threads, and amqtt needs a running loop; one daemon thread with
one loop keeps all asyncio objects on the loop that created them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class NetLoop:
    """A daemon thread running an asyncio loop; :meth:`run` executes a coroutine on it."""

    def __init__(self, name: str = "ssdtf-net") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, callback: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    def stop(self) -> None:
        if not self.loop.is_running():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(_cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            # closed, a leftover StreamWriter finalized later only warns instead of touching
            # this loop's selector (see EmbeddedBroker.start for why that matters)
            with contextlib.suppress(RuntimeError):
                self.loop.close()


def free_port() -> int:
    """A free TCP port on the loopback interface (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
