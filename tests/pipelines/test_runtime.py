"""A Ray cluster already running on the machine: qscope joins it (and says so), or starts a private one when asked —
never a traceback (`ValueError: When connecting to an existing cluster, num_cpus ... must not be provided`)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_classify_with_a_running_cluster(ray_head_factory, tmp_path, classify_inputs, cli):
    # RAY_TMPDIR isolates the head's address file, which is how `ray.init()` finds "the cluster on this machine".
    ray_tmp = Path("/tmp") / f"qsrt{tmp_path.name[-6:]}"
    ray_tmp.mkdir(exist_ok=True)
    with ray_head_factory({"RAY_TMPDIR": str(ray_tmp)}) as (_, _, env):
        env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
        base = [sys.executable, "-m", "qscope.cli", *cli.args("classify", json=True, **classify_inputs)]

        def classify(*extra):
            return subprocess.run(base + list(extra), env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)

        joined = classify("--out", str(tmp_path / "a.parquet"))
        assert joined.returncode == 0, joined.stderr[-3000:]
        assert json.loads(joined.stdout)["rows"] == 24 and "joined the Ray cluster" in joined.stderr
        private = classify("--out", str(tmp_path / "b.parquet"), "--address", "local")
        assert private.returncode == 0, private.stderr[-3000:]
        assert "joined" not in private.stderr and pq.read_table(tmp_path / "b.parquet").num_rows == 24


def test_a_stale_cluster_address_starts_a_private_ray_at_once(tmp_path, classify_inputs, cli):
    # A head that crashed leaves `ray_current_cluster` behind; joining it would retry for minutes.
    ray_tmp = Path("/tmp") / f"qsst{tmp_path.name[-6:]}"
    ray_tmp.mkdir(exist_ok=True)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (ray_tmp / "ray").mkdir(exist_ok=True)
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(ray_tmp)}
    out = tmp_path / "a.parquet"
    cmd = [sys.executable, "-m", "qscope.cli", *cli.args("classify", out=out, json=True, **classify_inputs)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"(127.0.0.1:{port}) does not answer" in run.stderr and "joined" not in run.stderr
    assert pq.read_table(tmp_path / "a.parquet").num_rows == 24
