"""Every command on Qwen as a real process: `--model qwen2.5-coder-0.5b` without `--sae` reads the Qwen SAE.

Small inputs (a few texts, a few tokens): the commands and the model/SAE selection are under test, not quality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QWEN, QWEN_SAE_ID = "qwen2.5-coder-0.5b", "qscope/qwen2.5-coder-0.5b-l12"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

pytestmark = pytest.mark.slow


def run_cli(*args: str, rc: int = 0, timeout: int = 1200) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "qscope.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout, cwd=REPO
    )
    assert proc.returncode == rc, f"rc {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
    assert proc.stdout.count("\n") == 1, proc.stdout[:2000]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def files(qwen_gguf, tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen-cli")
    code = ["def add(a, b):\n    return a + b", "for i in range(3):\n    print(i)", "import os\nprint(os.getcwd())"]
    prose = [
        "The weather was lovely today.",
        "She walked to the market.",
        "Paris is the capital of France.",
        "今天天气很好。",
    ]
    out = {"root": root}
    for name, rows in (("pos", code), ("neg", prose), ("corpus", code + prose)):
        out[name] = root / f"{name}.jsonl"
        out[name].write_text(
            "".join(json.dumps({"id": f"{name}{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(rows)),
            encoding="utf-8",
        )
    out["seeds"] = root / "seeds.jsonl"
    out["seeds"].write_text(
        "".join(
            json.dumps({"text": t, "label": lab}) + "\n"
            for t, lab in ((code[0], "code"), (code[1], "code"), (prose[0], "prose"), (prose[1], "prose"))
        )
    )
    return out


def test_features_picks_the_qwen_sae(files):
    doc = run_cli("features", "def f(x): return x", "--model", QWEN, "--top", "3", "--json")
    assert doc["model"] == QWEN and doc["sae"] == QWEN_SAE_ID and doc["layer"] == 12


def test_discover(files, cli):
    doc = run_cli(
        *cli.args(
            "discover", pos=files["pos"], neg=files["neg"], model=QWEN, top=3, no_labels=True, max_length=32, json=True
        )
    )
    assert doc["n_pos"] == 3 and len(doc["features"]) == 3


def test_dashboard_and_inspect(files, cli):
    out = files["root"] / "dash"
    doc = run_cli(
        *cli.args("dashboard", features="1,2", model=QWEN, out=out, texts=files["corpus"], max_length=32, json=True)
    )
    assert [f["feature"] for f in doc["features"]] == [1, 2] and (out / "index.html").exists()
    page = files["root"] / "inspect.html"
    doc = run_cli(
        "inspect", "print('hello')", "--model", QWEN, "--out", str(page), "--top", "3", "--no-labels", "--json"
    )
    assert len(doc["features"]) == 3 and page.exists()


def test_steer_and_sweep(files, cli):
    doc = run_cli(
        "steer", "Say hello.", "--model", QWEN, "--feature", "1", "--strength", "1", "--max-new-tokens", "3", "--json"
    )
    assert doc["engine"] == "hf" and len(doc["results"]) == 1
    doc = run_cli(*cli.args("sweep", "Say hello.", model=QWEN, feature=1, strengths="0,1", max_new_tokens=3, json=True))
    assert [r["strength"] for r in doc["rows"]] == [0.0, 1.0]


def test_eval_sae_on_its_own_held_out_set(files):
    doc = run_cli("eval-sae", "--model", QWEN, "--tokens", "256", "--max-length", "128", "--json")
    # "about --tokens": texts are chosen until 256 usable tokens, then massive-activation outliers (secondary attention
    # sinks) are dropped from the evaluation: here 257 chosen, 5 dropped
    assert doc["sae"] == QWEN_SAE_ID and 240 <= doc["n_tokens"] <= 300
    assert doc["text_source"] == "qwen2.5-coder-0.5b-l12/heldout_texts.jsonl"


def test_classify(files, cli):
    inputs = {"seeds": files["seeds"], "corpus": files["corpus"], "model": QWEN, "sae": "qwen2.5-coder-0.5b-l12"}
    out = files["root"] / "labels.parquet"
    doc = run_cli(*cli.args("classify", **inputs, out=out, max_length=24, executor="local", json=True))
    assert doc["rows"] == 7


def test_run_plan_of_the_qwen_demo():
    doc = run_cli("run", "configs/qwen_demo.yaml", "--plan", "--json", timeout=300)
    assert doc["pipeline"] == "expand" and doc["stages"]
