"""`ray job submit --working-dir . -- python -m qscope.pipelines.expand ...` against a real local Ray head."""

import json
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ray_head(ray_head_factory):
    with ray_head_factory() as head:
        yield head


def test_job_submit_expand(ray_head, tmp_path, tiny_expand_config):
    _submit_and_check(*ray_head, tmp_path, tiny_expand_config)


def test_job_submit_with_qscope_installed_from_a_wheel(ray_head_factory, tmp_path, tiny_expand_config, fresh_install):
    """The README's command against a head whose environment has qscope installed non-editable: the uploaded
    working dir (whose qscope/ has no pipelines/ inside) comes first on sys.path and must still import
    qscope.pipelines (issue 11)."""
    import sysconfig

    venv, py, site = fresh_install
    # Dependencies from this test's environment (a .pth adds its site-packages; its editable-install hook, itself a
    # .pth inside that directory, is not processed), qscope itself only from the wheel.
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (venv / "bin" / "ray").write_text(f"#!{py}\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n")
    (venv / "bin" / "ray").chmod(0o755)
    where = subprocess.run(
        [str(py), "-c", "import qscope.pipelines; print(qscope.pipelines.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert where.startswith(str(site))
    with ray_head_factory(venv_bin=venv / "bin") as head:
        _submit_and_check(*head, tmp_path, tiny_expand_config)


def _submit_and_check(ray_bin, address, env, tmp_path, tiny_expand_config):
    cfg = tiny_expand_config(executor="ray")
    config = tmp_path / "job.yaml"
    config.write_text("pipeline: expand\n" + cfg.to_yaml())
    deadline = time.time() + 60
    while True:  # the dashboard's job API comes up shortly after `ray start` returns
        r = subprocess.run([ray_bin, "job", "list", "--address", address], env=env, capture_output=True, text=True)
        if r.returncode == 0 or time.time() > deadline:
            break
        time.sleep(2)
    cmd = [
        ray_bin,
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        ".",
        "--",
        "python",
        "-m",
        "qscope.pipelines.expand",
        "--config",
        str(config),
        "--seeds",
        cfg.seeds,
        "--json",
    ]
    deadline = time.time() + 180
    while True:  # `job list` answers before the node's job agent is up; submit says so ("No available agent")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, cwd=ROOT)
        if r.returncode == 0 or "No available agent" not in r.stdout + r.stderr or time.time() > deadline:
            break
        time.sleep(3)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in (r.stdout + r.stderr).lower()
    result = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith('{"parquet"')][-1])
    t = pq.read_table(result["parquet"])
    assert t.num_rows == result["rows"] > 0 and Path(result["report"]).exists()
