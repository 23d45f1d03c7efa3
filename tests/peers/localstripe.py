"""localstripe (a stateful Stripe-API server) in a subprocess on 127.0.0.1, for one test session.

localstripe's CLI binds every interface and has no host option, so the subprocess serves
`localstripe.server.app` itself with aiohttp's `web.run_app(host="127.0.0.1")`. localstripe
pickles its whole state after every write to a fixed path (`/tmp/localstripe.pickle`, not the
temp folder) and its CLI reloads it at start: the runner never reloads it and redirects the
dump into a private directory (TMPDIR/TEMP point there too), so parallel test sessions share
nothing. `reset()` empties the state (`DELETE /_config/data`); `register_webhook()` makes it
deliver signed events (≈ 1 s after each, once, no retries) to a URL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The subprocess: argv = port, state file.
RUNNER = """
import pickle, sys
from aiohttp import web
from localstripe import resources
from localstripe.server import app

port, state = int(sys.argv[1]), sys.argv[2]

def dump_to_disk(self):
    with open(state, "wb") as f:
        pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)

resources.Store.dump_to_disk = dump_to_disk
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
"""

API_KEY = "sk_test_syncmesh_localstripe"


def _send(request: urllib.request.Request) -> None:
    """One request to localstripe (loopback only); raises on any non-2xx answer."""
    with urllib.request.urlopen(request, timeout=5):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalStripe:
    url: str  # http://127.0.0.1:<port>
    process: subprocess.Popen[bytes]
    state_dir: Path
    api_key: str = API_KEY

    def reset(self) -> None:
        """Forget every object (webhook registrations stay)."""
        _send(urllib.request.Request(f"{self.url}/_config/data", method="DELETE"))

    def register_webhook(
        self, webhook_id: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        data: list[tuple[str, str]] = [("url", url), ("secret", secret)]
        data += [("events[]", e) for e in events or []]
        body = urllib.parse.urlencode(data).encode()
        _send(urllib.request.Request(f"{self.url}/_config/webhooks/{webhook_id}", data=body, method="POST"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_localstripe(state_dir: Path, timeout: float = 20.0) -> LocalStripe:
    port = free_port()
    env = {**os.environ, "TMPDIR": str(state_dir), "TEMP": str(state_dir), "TMP": str(state_dir)}
    log = (state_dir / "localstripe.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(port), str(state_dir / "localstripe.pickle")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LocalStripe(f"http://127.0.0.1:{port}", process, state_dir)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"localstripe exited with {process.returncode}: see {state_dir}/localstripe.log"
            )
        try:
            _send(
                urllib.request.Request(
                    f"{server.url}/v1/balance", headers={"Authorization": f"Bearer {API_KEY}"}
                )
            )
            return server
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"localstripe did not answer within {timeout:g}s")
        time.sleep(0.05)


@pytest.fixture(scope="session", name="localstripe")
def localstripe_server() -> Iterator[LocalStripe]:
    """One localstripe for the test session (import `localstripe_server` to use it as
    `localstripe`)."""
    with tempfile.TemporaryDirectory(prefix="localstripe-") as tmp:
        server = start_localstripe(Path(tmp))
        try:
            yield server
        finally:
            server.stop()
