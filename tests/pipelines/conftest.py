import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qscope.pipelines.config import ExpandConfig


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray per test session (2 CPU slots, no dashboard); operators ask for fractional CPUs."""
    import ray

    from qscope.pipelines.runtime import init_ray

    started = not ray.is_initialized()
    init_ray(address="local", num_cpus=2)  # private: never join a cluster someone left on the machine
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def demo_subset(tmp_path_factory):
    """6 seeds and a 24-row corpus (8 of them hamradio) from the committed demo data."""
    d = tmp_path_factory.mktemp("data")
    seeds = [json.loads(x) for x in open("data/demo/seeds.jsonl")][:6]
    corpus = [json.loads(x) for x in open("data/demo/corpus.jsonl")]
    ham = [r for r in corpus if r["section"] == "hamradio"][:8]
    rest = [r for r in corpus if r["section"] != "hamradio"][:16]
    (d / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in seeds))
    (d / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ham + rest))
    return d


@pytest.fixture
def demo_config(demo_subset, sae_dir) -> dict:
    """A pipeline config's inputs over the demo subset, in-process, with the tiny SAE and 24-token rows."""
    return {
        "seeds": str(demo_subset / "seeds.jsonl"),
        "corpus": str(demo_subset / "corpus.jsonl"),
        "executor": "local",
        "model": {"sae": str(sae_dir), "max_length": 24},
    }


@pytest.fixture
def classify_inputs(demo_config) -> dict:
    """The same inputs as `qscope classify` options (for the `cli` fixture)."""
    return {"seeds": demo_config["seeds"], "corpus": demo_config["corpus"], **demo_config["model"]}


@pytest.fixture
def tiny_expand_config(tmp_path, demo_config):
    def make(**over):
        cfg = ExpandConfig.from_dict(
            {
                **demo_config,
                "out": str(tmp_path / "out"),
                "targets": {"n_features": 4},
                "mining": {"max_results": 5, "min_score": 0.0},
                "synthesis": {"n_samples": 2, "max_new_tokens": 6, "strengths": [0.0, 2.0], "temperature": 0.0},
                "filter": {"min_target_score": 0.0, "min_chars": 1, "min_seed_score": None},
                "resources": {"encode": {"batch_size": 32}, "score": {"batch_size": 32}},
            }
        )
        for k, v in over.items():
            setattr(cfg, k, v)
        return cfg

    return make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_ray_head(extra_env: dict | None = None, venv_bin: Path | None = None):
    """A real `ray start --head` (2 CPUs, dashboard on a free port, private temp dir) from the environment whose
    bin/ is `venv_bin` (default: this one); yields (ray_bin, dashboard address, env). Ends only this head's
    processes: `ray stop` would stop every Ray on the machine."""
    venv_bin = Path(venv_bin or Path(sys.executable).parent)
    ray_bin = shutil.which("ray", path=str(venv_bin)) or shutil.which("ray")
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled", **(extra_env or {})}
    dash = _free_port()
    temp = Path("/tmp") / f"qsray{dash}"  # short: Ray's socket paths have a length limit
    if "RAY_TMPDIR" in (extra_env or {}):  # where `ray.init()` looks for "the cluster running on this machine"
        temp = Path(extra_env["RAY_TMPDIR"]) / "ray"
    start = [
        ray_bin,
        "start",
        "--head",
        "--num-cpus=2",
        f"--port={_free_port()}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
        # The session's own local Ray (ray_local) already holds the default agent ports (52365 ...); a second
        # head's job agent would then never come up ("No available agent").
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]
    try:
        r = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            pytest.fail(f"ray start failed (job submission needs ray[default]): {r.stdout[-1500:]}{r.stderr[-1500:]}")
        yield ray_bin, f"http://127.0.0.1:{dash}", env
    finally:
        _kill_processes_mentioning(str(temp))
        shutil.rmtree(temp, ignore_errors=True)


def _kill_processes_mentioning(marker: str) -> None:
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


@pytest.fixture
def ray_head_factory():
    """`with ray_head_factory(extra_env) as (ray_bin, address, env):` a real local Ray head (see local_ray_head)."""
    return local_ray_head
