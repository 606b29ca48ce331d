"""`ray job submit --working-dir . -- python -m qscope.pipelines.expand ...` against a real local Ray head."""

import json
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_head(ray_head_factory):
    with ray_head_factory() as head:
        yield head


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
