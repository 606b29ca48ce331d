"""`--json` means exactly one JSON document on stdout and every other byte on stderr, for every command.

Each command runs as a real process (`python -m qscope.cli ...`), as a script piping into jq would run it: library
logs, C-level writes and child processes all share the process's file descriptor 1, which an in-process capture
would not show. stdout must be one line that `json.loads` reads; any extra byte fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FEATURE = 4411  # any feature of the shipped SAE (8192 of them) will do: the output format is under test
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_cli(*args: str, rc: int = 0, timeout: int = 900, env: dict | None = None) -> tuple[dict, str]:
    """Run `qscope ARGS` in a fresh process; return (the JSON document, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "qscope.cli", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=timeout,
        cwd=REPO,
    )
    assert proc.returncode == rc, f"rc {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}"
    return parse_one_document(proc.stdout), proc.stderr


def parse_one_document(stdout: str) -> dict:
    assert stdout.endswith("\n") and stdout.count("\n") == 1, f"stdout is not exactly one JSON line: {stdout[:3000]!r}"
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> dict[str, Path]:
    rows = [json.loads(x) for x in (REPO / "data" / "demo" / "corpus.jsonl").read_text().splitlines() if x.strip()]
    ham = [r for r in rows if r.get("section") == "hamradio"][:4]
    other = [r for r in rows if r.get("section") != "hamradio"][:8]
    root = tmp_path_factory.mktemp("cli-json")
    out = {}
    for name, subset in (("pos", ham), ("neg", other), ("corpus", ham + other)):
        out[name] = root / f"{name}.jsonl"
        out[name].write_text("".join(json.dumps({"id": r["id"], "text": r["text"][:300]}) + "\n" for r in subset))
    out["seeds"] = root / "seeds.jsonl"
    out["seeds"].write_text(
        "".join(
            json.dumps({"text": r["text"][:300], "label": lab}) + "\n"
            for r, lab in ((ham[0], "ham"), (ham[1], "ham"), (other[0], "other"), (other[1], "other"))
        )
    )
    out["root"] = root
    return out


# --- the mechanism itself -------------------------------------------------------------------------------
def test_everything_but_the_document_goes_to_stderr():
    """Python prints, C-level writes (fd 1, libc stdio), child processes, logging, warnings, and writes after
    the command (atexit, as vLLM / Ray shut down) all land on stderr; stdout holds the one document."""
    script = textwrap.dedent("""
        import atexit, ctypes, logging, os, subprocess, sys, warnings
        from qscope.cli.common import emit_json, json_stdout

        logging.basicConfig(stream=sys.stdout, level=logging.INFO)  # a library that logs to stdout
        with json_stdout(restore=False):
            print("python print")
            sys.__stdout__.write("sys.__stdout__ write\\n")
            os.write(1, b"raw fd 1 write\\n")
            ctypes.CDLL(None).printf(b"libc printf\\n")
            subprocess.run(["echo", "child process"], check=True)
            logging.getLogger("lib").info("a log record")
            warnings.warn("a warning")
            emit_json({"ok": True, "nan": float("nan"), "inf": float("-inf"), "text": "caf\\u00e9 \\u2028"})
            print("after the document")
        atexit.register(lambda: print("at exit"))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert parse_one_document(proc.stdout) == {"ok": True, "nan": None, "inf": None, "text": "caf\u00e9 \u2028"}
    for noise in (
        "python print",
        "sys.__stdout__ write",
        "raw fd 1 write",
        "libc printf",
        "child process",
        "a log record",
        "a warning",
        "after the document",
        "at exit",
    ):
        assert noise in proc.stderr, noise


def test_in_process_main_restores_stdout(capfd):
    """Called in-process (tests, notebooks), `main` puts file descriptor 1 back afterwards."""
    from qscope.cli import main

    assert main(["features", "x", "--sae", "/nonexistent-sae", "--json"]) == 2
    out, err = capfd.readouterr()
    assert parse_one_document(out)["error"] == "SAELoadError"
    os.write(1, b"back on stdout\n")
    assert capfd.readouterr().out == "back on stdout\n"


def test_a_second_document_is_refused(capsys, monkeypatch):
    from qscope.cli import features, main
    from qscope.cli.common import emit_json

    def twice(args):
        emit_json({"n": 1})
        emit_json({"n": 2})

    monkeypatch.setattr(features, "run", twice)
    assert main(["features", "x", "--json"]) == 1
    captured = capsys.readouterr()
    assert parse_one_document(captured.out) == {"n": 1} and "second JSON document" in captured.err


def test_unexpected_errors_are_one_json_document_too(capsys, monkeypatch):
    from qscope.cli import features, main

    def boom(args):
        raise RuntimeError("something broke")

    monkeypatch.setattr(features, "run", boom)
    assert main(["features", "x", "--json"]) == 1
    captured = capsys.readouterr()
    assert parse_one_document(captured.out) == {"error": "RuntimeError", "message": "something broke"}
    assert "Traceback" in captured.err
    with pytest.raises(RuntimeError):  # without --json a bug keeps its traceback
        main(["features", "x"])


def test_usage_errors_are_json():
    doc, err = run_cli("features", "x", "--top", "many", "--json", rc=2)
    assert doc["error"] == "UsageError" and "--top" in doc["message"] and "usage:" in err
    doc, _ = run_cli("features", "--json", rc=2)  # a required argument missing
    assert doc["error"] == "UsageError"


def test_bad_input_error_is_json():
    doc, _ = run_cli("features", "x", "--sae", "/nonexistent-sae", "--json", rc=2)
    assert doc["error"] == "SAELoadError" and "/nonexistent-sae" in doc["message"]


def test_model_mismatch_is_refused_then_allowed(tmp_path, cli):
    """An SAE trained on another model of the same width is refused unless --allow-model-mismatch."""
    from qscope.models.resolve import embedded_model_dir

    copy = tmp_path / "renamed-model"  # the same weights without provenance: the SAE cannot tell it is its model
    copy.mkdir()
    for f in embedded_model_dir("smollm2-135m").iterdir():
        if f.name == "config.json":
            cfg = json.loads(f.read_text())
            cfg.pop("_name_or_path", None)
            (copy / f.name).write_text(json.dumps(cfg))
        elif f.is_file():
            (copy / f.name).symlink_to(f)
    doc, _ = run_cli("features", "a text", "--model", str(copy), "--json", rc=2)
    assert doc["error"] == "InputError" and "trained on model 'smollm2-135m'" in doc["message"]
    doc, _ = run_cli(
        *cli.args("features", "a text", model=copy, allow_model_mismatch=True, top=3, max_length=16, json=True)
    )
    assert doc["model"] == str(copy) and len(doc["documents"]) == 1


# --- every command with --json, as a process ----------------------------------------------------------------
def test_features_json():
    doc, _ = run_cli("-v", "features", "Morse code keyer", "second text", "--top", "3", "--max-length", "16", "--json")
    assert doc["sae"] == "qscope/smollm2-135m-l15" and len(doc["documents"]) == 2
    assert len(doc["documents"][0]["features"]) == 3


def test_discover_json(texts, cli):
    doc, _ = run_cli(
        *cli.args("discover", pos=texts["pos"], neg=texts["neg"], top=3, no_labels=True, max_length=32, json=True)
    )
    assert doc["n_pos"] == 4 and doc["n_neg"] == 8 and len(doc["features"]) == 3


def test_inspect_json(texts):
    page = texts["root"] / "inspect.html"
    doc, _ = run_cli(
        "inspect",
        "The antenna tuner matches the transceiver.",
        "--out",
        str(page),
        "--top",
        "3",
        "--no-labels",
        "--json",
    )
    assert doc["n_tokens"] > 0 and len(doc["features"]) == 3 and page.exists()


def test_dashboard_json(texts, cli):
    out = texts["root"] / "dash"
    doc, _ = run_cli(
        *cli.args("dashboard", features=f"{FEATURE},5", out=out, texts=texts["corpus"], max_length=32, json=True)
    )
    assert [f["feature"] for f in doc["features"]] == [FEATURE, 5] and (out / "index.html").exists()


def test_eval_sae_json():
    doc, _ = run_cli("eval-sae", "--tokens", "64", "--json")
    assert doc["sae"] == "qscope/smollm2-135m-l15" and doc["n_tokens"] >= 64


def test_steer_hf_json():
    doc, _ = run_cli(
        "steer", "Say hello.", "--feature", str(FEATURE), "--strength", "1", "--max-new-tokens", "3", "--json"
    )
    assert doc["engine"] == "hf" and len(doc["results"]) == 1


def test_sweep_json():
    doc, _ = run_cli(
        "sweep", "Say hello.", "--feature", str(FEATURE), "--strengths", "0,1", "--max-new-tokens", "3", "--json"
    )
    assert [r["strength"] for r in doc["rows"]] == [0.0, 1.0]


def test_train_sae_json(tmp_path):
    import numpy as np
    import yaml

    from qscope.training import write_activation_cache

    x = np.random.default_rng(0).standard_normal((4096, 32)).astype(np.float32)
    cache = write_activation_cache(tmp_path / "cache", {3: x})
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "layers": [3],
                "cache": str(cache),
                "out": str(tmp_path / "run"),
                "batch_size": 256,
                "max_tokens": 256 * 8,
                "checkpoint_every": 0,
                "num_threads": 1,
                "heldout_tokens": 512,
                "sae": {
                    "architecture": "topk",
                    "d_sae": 64,
                    "k": 4,
                    "lr": 1e-2,
                    "warmup_steps": 2,
                    "dead_tokens": 1024,
                },
            }
        )
    )
    doc, _ = run_cli("train-sae", str(config), "--json")
    assert doc["steps"] == 8 and "3" in doc["exported"]


def test_run_plan_json():
    doc, _ = run_cli("run", "configs/demo.yaml", "--plan", "--json")
    assert doc["pipeline"] == "expand" and doc["stages"]


def test_classify_json(texts, cli):
    out = texts["root"] / "labels.parquet"
    doc, _ = run_cli(
        *cli.args("classify", seeds=texts["seeds"], corpus=texts["corpus"], out=out, max_length=24, executor="local"),
        "--json",
    )
    assert doc["rows"] == 12


@pytest.mark.vllm
def test_steer_vllm_json():
    """The case that started it: vLLM logs ~50 INFO lines at start-up (and more from its engine process)."""
    pytest.importorskip("vllm")
    doc, err = run_cli(
        "steer",
        "Say hello.",
        "--feature",
        str(FEATURE),
        "--strength",
        "1",
        "--max-new-tokens",
        "3",
        "--engine",
        "vllm",
        "--json",
        timeout=1200,
    )
    assert doc["engine"] == "vllm" and len(doc["results"]) == 1
    assert "INFO" in err, "vLLM's start-up logs must still be there, on stderr"
