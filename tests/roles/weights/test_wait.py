"""The weights wait, run for real (``sh``) against a unit as ``systemctl``/``journalctl`` report it
and the progress file and stamp the fetcher writes: progress lines while it runs, done at the
stamp, one line with the journal when it fails or stalls, and a vanished unit started again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from metalserve.plan import WeightsPlan, plan_alone
from metalserve.spec import host_spec
from roles.weights import PROGRESS, STAMP, start_command
from roles.weights.ready import Step, wait
from tests.faultkit import FakeUnit

JOURNAL = (
    "Started metalserve weights metalserve/tiny-moe@main.\n"
    "error: metalserve/tiny-moe@main: expected http://10.77.0.1:8390 to serve it, found 401 "
    "Unauthorized — fix: check the repo id, revision, token file and HF_ENDPOINT\n"
)
TOKEN_FILE = Path(__file__).resolve().parents[2] / "fixtures/secrets/api_key"


def weights(local: Path, **update: object) -> WeightsPlan:
    plan = plan_alone(host_spec("h", {
        "profile": "sandbox-cpu", "model": {"repo_id": "metalserve/tiny-moe"},
        "engine": {"name": "llamacpp"}, "secrets": {"hf_token_file": str(TOKEN_FILE)},
        "sources": {"weights": {"kind": "mirror", "endpoint": "https://hub.example.internal"}},
    }))  # fmt: skip
    assert plan.weights is not None
    return plan.weights.model_copy(update={"local_dir": str(local), **update})


class Host:
    """The host side: a fake unit, the folder the fetcher writes, a clock and the log."""

    def __init__(self, tmp: Path, w: WeightsPlan, state: str) -> None:
        self.unit = FakeUnit(tmp, name=f"{w.unit}.service", state=state, journal=JOURNAL)
        self.local = Path(w.local_dir)
        (self.local / ".cache").mkdir(parents=True)
        self.now, self.said, self.ran = 0.0, list[str](), list[str]()
        self.polls: list[object] = []  # callables run at each sleep, in turn

    def run(self, command: str) -> list[str]:
        self.ran.append(command)
        done = subprocess.run(["sh", "-c", command], env=self.unit.env, capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip
        return done.stdout.splitlines()

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.polls:
            self.polls.pop(0)()  # type: ignore[operator]

    def progress(self, done: int, phase: str = "download", line: str = "") -> None:
        doc = {"phase": phase, "done": done, "total": 1000, "verified": 0,
               "line": line or f"weights: {done} of 1000 bytes"}  # fmt: skip
        (self.local / PROGRESS).write_text(json.dumps(doc))

    def stamp(self, w: WeightsPlan) -> None:
        doc = {"repo": w.repo_id, "revision": w.revision, "files": 8, "sizes": {"a": 1},
               "allow": list(w.allow_patterns), "ignore": list(w.ignore_patterns)}  # fmt: skip
        (self.local / STAMP).write_text(json.dumps(doc, indent=2))

    def wait(self, w: WeightsPlan) -> Step:
        return wait(w, "start-the-unit", self.run, self.said.append, lambda: self.now, self.sleep)


def test_progress_lines_while_it_runs_then_done_at_the_stamp(tmp_path: Path) -> None:
    w = weights(tmp_path / "m")
    host = Host(tmp_path, w, "active")
    host.progress(100)
    host.polls = [lambda: host.progress(600), lambda: (host.stamp(w), host.unit.set("inactive"))]

    step = host.wait(w)

    assert step == Step("done", "weights: metalserve/tiny-moe@main verified (8 files)")
    assert host.said == ["weights: 100 of 1000 bytes", "weights: 600 of 1000 bytes"]


def test_a_failed_unit_fails_at_once_with_its_journal_on_one_line(tmp_path: Path) -> None:
    w = weights(tmp_path / "m")
    host = Host(tmp_path, w, "failed")

    step = host.wait(w)

    assert step.kind == "fail" and len(host.ran) == 1
    assert step.say.startswith(f"weights: expected {w.unit} to fetch metalserve/tiny-moe@main, "
                               "found it failed")  # fmt: skip
    assert "last journal lines: Started metalserve weights metalserve/tiny-moe@main. | error: " in (
        step.say
    )
    assert "\n" not in step.say


def test_no_new_bytes_for_the_stall_limit_fails(tmp_path: Path) -> None:
    w = weights(tmp_path / "m", stall_s=60, progress_every_s=10)
    host = Host(tmp_path, w, "active")
    host.progress(300)

    step = host.wait(w)

    assert step.kind == "fail" and "found no progress for 60 s (weights: 300 of 1000" in step.say
    assert len(host.said) == 6  # a line every 10 s until the limit


def test_a_unit_gone_without_a_stamp_is_started_again_once(tmp_path: Path) -> None:
    w = weights(tmp_path / "m")
    host = Host(tmp_path, w, "inactive")
    host.polls = [lambda: host.unit.set("active"), lambda: host.unit.set("inactive")]

    step = host.wait(w)

    assert host.ran.count("start-the-unit") == 1
    assert step.kind == "fail" and "gone twice without a stamp" in step.say


def test_a_node_on_a_shared_folder_waits_for_rank_0_and_fails_with_its_error(
    tmp_path: Path,
) -> None:
    w = weights(tmp_path / "m", fetches=False)
    host = Host(tmp_path, w, "inactive")  # no unit on this node
    host.progress(100)
    host.polls = [lambda: host.progress(0, "failed", "error: the disk is full")]

    step = host.wait(w)

    assert host.said == ["rank 0: weights: 100 of 1000 bytes"] and "start-the-unit" not in host.ran
    assert step.kind == "fail" and "found its download failed: error: the disk is full" in step.say


def test_the_unit_gets_the_token_s_path_never_the_token(tmp_path: Path) -> None:
    w = weights(tmp_path / "m")
    command = start_command(w, "/opt/metalserve/bin/fetch_weights.py")
    assert w.token_file and f"--setenv=HF_TOKEN_PATH={w.token_file}" in command
    assert TOKEN_FILE.read_text().strip() not in command
    assert "--setenv=HF_XET_HIGH_PERFORMANCE=1" in command
