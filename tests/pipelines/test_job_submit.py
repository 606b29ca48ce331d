"""`ray job submit --working-dir . -- python -m qscope.pipelines.expand ...` against a real local Ray head."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    ray_bin = shutil.which("ray", path=str(VENV_BIN)) or shutil.which("ray")
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled"}
    dash = _free_port()
    temp = Path("/tmp") / f"qsray{dash}"  # short: Ray's socket paths have a length limit
    start = [ray_bin, "start", "--head", "--num-cpus=2", f"--port={_free_port()}", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats",
             # The session's own local Ray (tests/pipelines/conftest.py) already holds the default agent ports
             # (52365 ...); a second head's job agent would then never come up ("No available agent").
             f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
             f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]
    try:
        r = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            pytest.fail(f"ray start failed (job submission needs ray[default]): {r.stdout[-1500:]}{r.stderr[-1500:]}")
        yield ray_bin, f"http://127.0.0.1:{dash}", env
    finally:
        # `ray stop` would stop every Ray on the machine (other sessions' too): end only this head's processes,
        # found by its private temp dir on their command lines.
        _kill_processes_mentioning(str(temp))
        shutil.rmtree(temp, ignore_errors=True)


def _kill_processes_mentioning(marker: str) -> None:
    import signal

    def pids():
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if marker.encode() in (d / "cmdline").read_bytes():
                        out.append(int(d.name))
                except OSError:
                    pass
        return out

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(3)


def test_job_submit_expand(ray_head, tmp_path, tiny_expand_config):
    ray_bin, address, env = ray_head
    cfg = tiny_expand_config(executor="ray")
    config = tmp_path / "job.yaml"
    config.write_text("pipeline: expand\n" + cfg.to_yaml())
    deadline = time.time() + 60
    while True:  # the dashboard's job API comes up shortly after `ray start` returns
        r = subprocess.run([ray_bin, "job", "list", "--address", address], env=env, capture_output=True, text=True)
        if r.returncode == 0 or time.time() > deadline:
            break
        time.sleep(2)
    cmd = [ray_bin, "job", "submit", "--address", address, "--working-dir", ".", "--",
           "python", "-m", "qscope.pipelines.expand", "--config", str(config), "--seeds", cfg.seeds, "--json"]
    deadline = time.time() + 180
    while True:  # `job list` answers before the node's job agent is up; submit says so ("No available agent")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, cwd=Path(__file__).parents[2])
        if r.returncode == 0 or "No available agent" not in r.stdout + r.stderr or time.time() > deadline:
            break
        time.sleep(3)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in (r.stdout + r.stderr).lower()
    result = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith('{"parquet"')][-1])
    t = pq.read_table(result["parquet"])
    assert t.num_rows == result["rows"] > 0 and Path(result["report"]).exists()
