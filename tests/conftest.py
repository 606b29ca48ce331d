"""Session-wide fixtures: the embedded default LM is loaded once per test run; nothing reaches the network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

# No Hugging Face hub at test time: loading code is exercised on what we make or ship.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def lm():
    from qscope.models import LanguageModel

    return LanguageModel.load()


@pytest.fixture(scope="session")
def random_sae_factory():
    """Build small random SAEs on the default model's width (deterministic per seed)."""
    import torch

    from qscope.sae import SAE, SAEConfig

    def make(architecture="topk", d_in=576, d_sae=1024, k=16, hook_layer=15, seed=0, **kw):
        torch.manual_seed(seed)
        cfg = SAEConfig(
            architecture=architecture,
            d_in=d_in,
            d_sae=d_sae,
            k=k if architecture == "topk" else None,
            hook_layer=hook_layer,
            sae_id=f"test/{architecture}-{seed}",
            model_name="smollm2-135m",
            **kw,
        )
        sae = SAE.from_config(cfg)
        with torch.no_grad():
            sae.b_enc.normal_(0, 0.01)
            sae.b_dec.normal_(0, 0.01)
            if architecture == "jumprelu":
                sae.threshold.uniform_(0.0, 0.5)
        return sae

    return make


@pytest.fixture(scope="session")
def sae_dir(tmp_path_factory, random_sae_factory):
    """A small random SAE on the default model's layer 15, saved in SAELens layout (loaded by path)."""
    path = tmp_path_factory.mktemp("sae") / "tiny-topk"
    random_sae_factory(d_sae=1024, k=16, seed=3).save(path)
    return path


@pytest.fixture(scope="session")
def repo_script():
    """Import a script of the checkout that is not in a package (`repo_script("bench/code_steering.py")`)."""
    import importlib.util

    def load(relative: str):
        path = ROOT / relative
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


class FreshInstall(NamedTuple):
    venv: Path
    python: Path
    site: Path
    """The venv's site-packages (purelib), where the installed qscope lies."""


@pytest.fixture
def fresh_install(tmp_path) -> FreshInstall:
    """`pip install --no-deps .` (not editable) of this checkout into a new venv; dependencies are not installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(ROOT)], check=True, cwd=tmp_path)
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    return FreshInstall(venv, py, site)


class CLI:
    """`qscope` run in-process, its arguments given as Python values:
    `cli("classify", seeds=path, max_length=24, no_labels=True)` runs `qscope classify --seeds PATH --max-length 24
    --no-labels --json`, checks the exit code (0 unless `rc=`) and returns the parsed JSON it printed."""

    def __init__(self, capsys):
        self.capsys = capsys

    @staticmethod
    def args(command: str, *positional, **options) -> list[str]:
        """The argument list: positionals, then `--name value` per option (True: the bare flag; None / False:
        left out; a list: the flag once per item)."""
        args = [command, *map(str, positional)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if v is True:
                    args.append(flag)
                elif v is not None and v is not False:
                    args += [flag, str(v)]
        return args

    def __call__(self, command: str, *positional, rc: int = 0, **options) -> dict:
        import json

        from qscope.cli import main

        code = main(self.args(command, *positional, **options, json=True))
        out = self.capsys.readouterr().out
        assert code == rc, out
        return json.loads(out)


@pytest.fixture
def cli(capsys) -> CLI:
    return CLI(capsys)
