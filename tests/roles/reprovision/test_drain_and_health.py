"""The drain and health waits of re-provisioning, run for real against an HTTP server on loopback."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metalserve.engines import VllmSettings
from roles.nvidia_driver.reprovision import drain_command
from roles.service import wait_for_health_command
from tests.faultkit import FakeUnit, timed_shell


class FakeEngine:
    """An engine's /metrics and /health, with a settable number of requests in flight."""

    def __init__(self) -> None:
        self.running = 0.0
        self.healthy = True
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/metrics":
                    body = (
                        "# HELP vllm:num_requests_running Number of requests in model execution.\n"
                        "# TYPE vllm:num_requests_running gauge\n"
                        f'vllm:num_requests_running{{engine="0",model_name="glm"}} {engine.running}\n'
                        'vllm:num_requests_running_total{engine="0"} 99.0\n'
                    ).encode()
                    self.send_response(200)
                elif self.path == "/health" and engine.healthy:
                    body = b""
                    self.send_response(200)
                else:
                    body = b""
                    self.send_response(503)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.server.shutdown()


def _timed(command: str) -> tuple[int, float]:
    start = time.monotonic()
    done = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60)
    return done.returncode, time.monotonic() - start


METRIC = VllmSettings.RUNNING_REQUESTS_METRIC


def test_an_idle_engine_is_drained_at_once(engine: FakeEngine) -> None:
    code, seconds = _timed(drain_command(f"{engine.url}/metrics", METRIC, 30))
    assert code == 0 and seconds < 5


def test_the_drain_waits_for_in_flight_requests_to_finish(engine: FakeEngine) -> None:
    engine.running = 3.0
    threading.Timer(3.0, lambda: setattr(engine, "running", 0.0)).start()
    code, seconds = _timed(drain_command(f"{engine.url}/metrics", METRIC, 30))
    assert code == 0 and 2.5 < seconds < 10


def test_the_drain_is_bounded_and_then_lets_the_stop_proceed(engine: FakeEngine) -> None:
    engine.running = 1.0  # never finishes
    code, seconds = _timed(drain_command(f"{engine.url}/metrics", METRIC, 3))
    assert code == 0 and 2.5 < seconds < 8


def test_an_engine_that_does_not_answer_counts_as_drained() -> None:
    code, seconds = _timed(drain_command("http://127.0.0.1:9/metrics", METRIC, 30))
    assert code == 0 and seconds < 5


def test_health_wait_succeeds_when_healthy_and_fails_past_its_bound(
    engine: FakeEngine, tmp_path: Path
) -> None:
    unit = FakeUnit(tmp_path, state="active", http_code=None)  # the real curl asks the engine
    health = f"{engine.url}/health"
    assert timed_shell(wait_for_health_command(health, 10, unit.name), unit.env)[0] == 0
    engine.healthy = False
    code, seconds, _ = timed_shell(wait_for_health_command(health, 3, unit.name), unit.env)
    assert code != 0 and seconds < 10
