"""`syncmesh up` as a user runs it: embedded NATS, SQLite, health, clean stop, restart with data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from syncmesh.customers.v1 import customers_pb2 as pb
from syncmesh.customers.v1 import customers_pb2_grpc as pb_grpc

from services.platform.server import load_service
from services.platform.settings import DOMAIN_SERVICES
from tests.conftest import request_id

SYNCMESH = str(Path(sys.executable).with_name("syncmesh"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCMESH_")}
    env.update(extra)
    return env


def run_up(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNCMESH, "up", *args], env=env or clean_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        (
            {"SYNCMESH_GRPC_PORT": "fifty"},
            [],
            "grpc_port (SYNCMESH_GRPC_PORT): Input should be a valid integer",
        ),
        (
            {"SYNCMESH_DATABASE_URL": "mysql://x"},
            [],
            "database_url (SYNCMESH_DATABASE_URL): must be a postgresql:// URL",
        ),
        ({"SYNCMESH_AUTH__TOKENS": '{"short": "crm"}'}, [], "at least 16 characters"),
        ({"SYNCMESH_SERVICES": '["orders", "ledger"]'}, [], "unknown service(s) ledger"),
        (
            {},
            ["--config", "/nonexistent/syncmesh.toml"],
            "config file /nonexistent/syncmesh.toml does not exist",
        ),
    ],
)
def test_bad_config_fails_with_one_clear_line(
    env: dict[str, str], args: list[str], expected: str, tmp_path: Path
) -> None:
    result = run_up("--data-dir", str(tmp_path), *args, env=clean_env(**env))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("syncmesh: invalid configuration") or lines[0].startswith(
        "syncmesh: config file"
    )
    assert expected in lines[0]
    assert not (tmp_path / "customers.db").exists()  # nothing was started


def test_bad_config_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "syncmesh.toml"
    config.write_text("grpc_port = 50051\nhttp_prot = 8080\n")
    result = run_up("--config", str(config), env=clean_env())
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"syncmesh: invalid configuration in {config} or the environment: http_prot (SYNCMESH_HTTP_PROT): unknown setting"
    )
    config.write_text("grpc_port = [")
    result = run_up("--config", str(config), env=clean_env())
    assert result.returncode == 2 and "is not valid TOML" in result.stderr


class Up:
    """A running `syncmesh up` child process."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [SYNCMESH, "up", "--data-dir", str(data_dir), "--grpc-port", "0", "--http-port", "0"],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"gRPC on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+)", line)
        assert match, line + (self.proc.stderr.read() if self.proc.stderr else "")
        self.grpc_port, self.http_port = int(match.group(1)), int(match.group(2))
        tokens = tomllib.loads((data_dir / "tokens.toml").read_text())["tokens"]
        self.token = {identity: token for token, identity in tokens.items()}

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=20)
        return self.proc.returncode, out


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def test_up_serves_every_service_stops_cleanly_and_keeps_data(data_dir: Path) -> None:
    up = Up(data_dir)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{up.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in DOMAIN_SERVICES:
                full = load_service(name).full_name
                status = health.Check(health_pb2.HealthCheckRequest(service=full), timeout=5).status
                assert status == health_pb2.HealthCheckResponse.SERVING, full
            auth = (("authorization", f"Bearer {up.token['crm']}"),)
            created = pb_grpc.CustomerServiceStub(channel).CreateCustomer(
                pb.CreateCustomerRequest(
                    request_id=request_id(), customer=pb.Customer(legal_name="Kept Ltd")
                ),
                metadata=auth,
                timeout=5,
            )
        with urllib.request.urlopen(f"http://127.0.0.1:{up.http_port}/healthz", timeout=5) as reply:
            assert reply.status == 200
            assert b'"SERVING"' in reply.read()
    finally:
        code, out = up.stop()
    assert code == 0 and "syncmesh up stopped" in out
    assert (data_dir / "customers.db").is_file() and (data_dir / "nats" / "jetstream").is_dir()
    # The embedded NATS server went with the hub.
    assert _nats_gone(data_dir)

    again = Up(data_dir)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{again.grpc_port}") as channel:
            got = pb_grpc.CustomerServiceStub(channel).GetCustomer(
                pb.GetCustomerRequest(name=created.name),
                metadata=(("authorization", f"Bearer {again.token['crm']}"),),
                timeout=5,
            )
        assert got.legal_name == "Kept Ltd"
        assert again.token == up.token  # the generated tokens are reused, not rotated on restart
    finally:
        code, _ = again.stop()
    assert code == 0


def _nats_gone(data_dir: Path) -> bool:
    for ports_file in (data_dir / "nats" / "ports").glob("*.ports"):
        pid = int(ports_file.stem.rsplit("_", 1)[1])
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            return False
    return True


def test_events_tail_shows_what_was_published(data_dir: Path) -> None:
    up = Up(data_dir)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{up.grpc_port}") as channel:
            stub = pb_grpc.CustomerServiceStub(channel)
            auth = (("authorization", f"Bearer {up.token['crm']}"),)
            names = [
                stub.CreateCustomer(
                    pb.CreateCustomerRequest(
                        request_id=request_id(), customer=pb.Customer(legal_name=f"Tailed {i}")
                    ),
                    metadata=auth,
                    timeout=5,
                ).name
                for i in range(3)
            ]
        result = subprocess.run(
            [SYNCMESH, "events", "tail", "--data-dir", str(data_dir), "--since", "1h", "--limit", "3",
             "--subject", "customers.>"],
            env=clean_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 3
        for line, name in zip(lines, names, strict=True):
            assert "com.syncmesh.customers.customer.upserted.v1" in line and name in line and "#1" in line
        bad = subprocess.run(
            [SYNCMESH, "events", "tail", "--data-dir", str(data_dir), "--since", "yesterday-ish"],
            env=clean_env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert bad.returncode == 2 and "neither a duration" in bad.stderr
    finally:
        up.stop()


def test_operator_commands_find_the_ops_token_of_up(data_dir: Path) -> None:
    up = Up(data_dir)
    try:
        # No --token: the ops token `up` wrote to <data_dir>/tokens.toml.
        target = ["--data-dir", str(data_dir), "--grpc", f"127.0.0.1:{up.grpc_port}"]

        def syncmesh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [SYNCMESH, *args, *target], env=env or clean_env(), capture_output=True, text=True, timeout=30
            )

        listed = syncmesh("dlq", "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == "No dead letters in state DEAD."
        parked = syncmesh("parked", "list")
        assert parked.returncode == 0 and parked.stdout.strip() == "No parked events."
        # `up` hosts the webhook dispatcher (and the sagas' wake consumers): a replay by key for
        # the dispatcher finds nothing to run.
        replay = syncmesh("replay", "--key", "customers/1", "--consumer", "gateway-dispatch", "--dry-run")
        assert replay.returncode == 0, replay.stderr
        assert replay.stdout.splitlines() == [
            "No events selected.",
            "0 would be replayed, 0 skipped (dry run)",
        ]
        # A consumer `up` does not host is refused, in one line.
        other = syncmesh("replay", "--key", "customers/1", "--consumer", "nope", "--dry-run")
        assert other.returncode == 1 and other.stdout == ""
        assert other.stderr.strip().startswith("syncmesh: CONSUMER_NOT_FOUND: ")
        # A token of another system is refused.
        crm = syncmesh("dlq", "list", env=clean_env(SYNCMESH_TOKEN=up.token["crm"]))
        assert crm.returncode == 1 and crm.stderr.startswith("syncmesh: OPERATOR_REQUIRED: ")
    finally:
        up.stop()
