"""qscope.data.probes on a fake sae_probes package, on the real wheel if installed, and the corpus build."""

from __future__ import annotations

import csv
import importlib
import io
from pathlib import Path

import pytest

from qscope.data import probes
from qscope.data.probes import ProbesNotInstalledError, list_tasks, read_task
from qscope.errors import QscopeError


def _zst_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    zstandard = pytest.importorskip("zstandard")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue().encode("utf-8")))


@pytest.fixture
def fake_probes(tmp_path, monkeypatch):
    """A minimal sae_probes package whose __init__ fails to import, like the real wheel under --no-deps."""
    pkg = tmp_path / "site" / "sae_probes"
    data = pkg / "data" / "cleaned_data"
    data.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import pandas_that_is_not_installed\n")
    _zst_csv(
        data / "2_multi.csv.zst",
        ["prompt", "prompt_len", "target"],
        [["red apple", "9", "fruit"], ["carrot", "6", "vegetable"]],
    )
    _zst_csv(
        data / "10_bin.csv.zst",
        ["prompt", "prompt_len", "target"],
        [['He said "hi",\nthen left.', "24", "1"], ["plain", "5", "0"], ["", "0", "1"]],
    )
    _zst_csv(
        pkg / "data" / "probing_datasets_MASTER.csv.zst",
        ["Dataset save name", "Data type"],
        [
            ["cleaned_data/2_multi.csv", "Multiclass Classification"],
            ["cleaned_data/10_bin.csv", "Binary Classification"],
        ],
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return pkg


def test_list_and_read_without_importing_the_package(fake_probes):
    assert Path(probes.probes_data_dir()) == fake_probes / "data"
    assert list_tasks() == ["10_bin"]
    assert list_tasks(binary_only=False) == ["2_multi", "10_bin"]  # numeric order, not string order
    rows = read_task("10_bin")
    assert rows == [  # quoted commas/newlines survive; empty prompts are dropped
        {"task": "10_bin", "text": 'He said "hi",\nthen left.', "label": "1"},
        {"task": "10_bin", "text": "plain", "label": "0"},
    ]
    assert read_task("2_multi", limit=1) == [{"task": "2_multi", "text": "red apple", "label": "fruit"}]
    assert [r["task"] for r in probes.iter_probe_records(binary_only=False)] == ["2_multi"] * 2 + ["10_bin"] * 2
    with pytest.raises(QscopeError, match="unknown sae-probes task"):
        read_task("nope")


def test_not_installed_error_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(probes.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ProbesNotInstalledError, match=r"pip install --no-deps sae-probes"):
        list_tasks()


def test_real_wheel():
    if importlib.util.find_spec("sae_probes") is None:
        pytest.skip("sae-probes not installed (`pip install --no-deps sae-probes`)")
    pytest.importorskip("zstandard")
    tasks = list_tasks()
    assert len(tasks) == 113
    assert len(list_tasks(binary_only=False)) >= 113
    rows = read_task("100_news_fake")
    assert len(rows) > 1000 and {r["label"] for r in rows} == {"0", "1"}
    assert all(r["text"] for r in rows)


def test_build_sae_corpus_end_to_end(fake_probes, tmp_path, repo_script):
    """The corpus script on the fake probes + a tiny apt list: schema, dedup, caps, sources."""
    pq = pytest.importorskip("pyarrow.parquet")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "x_main_binary-amd64_Packages").write_text(
        "Package: fldigi\nDescription: modem for hamradio\nDescription-md5: a\nSection: hamradio\n\n"
        "Package: xlog\nDescription: logbook for hamradio\nDescription-md5: b\nSection: hamradio\n\n"
        "Package: inline\nDescription: old style\n inline long text.\nSection: misc\n"
    )
    (lists / "x_main_i18n_Translation-en").write_text(
        "Package: fldigi\nDescription-md5: a\nDescription-en: modem for hamradio\n Fldigi decodes PSK31.\n\n"
        "Package: xlog\nDescription-md5: b\nDescription-en: logbook for hamradio\n Fldigi decodes PSK31.\n"
    )

    script = repo_script("scripts/build_sae_corpus.py")
    out = tmp_path / "corpus.parquet"
    rc = script.main(
        [
            "--out",
            str(out),
            "--apt-lists",
            str(lists),
            "--min-train-chars",
            "0",
            "--min-chars",
            "1",
            "--max-chars",
            "40",
        ]
    )
    assert rc == 0
    table = pq.read_table(out)
    assert table.column_names == ["text", "source", "split"]
    rows = table.to_pylist()
    assert {r["source"] for r in rows} == {"debian:hamradio", "debian:misc", "probes:2_multi", "probes:10_bin"}
    assert sum(r["source"] == "debian:hamradio" for r in rows) == 2  # same long text, different summaries
    assert all(len(r["text"]) <= 40 and r["split"] in ("train", "heldout") for r in rows)
    assert len({r["text"] for r in rows}) == len(rows) == 7
    assert b"qscope.corpus" in table.schema.metadata
    assert not list(tmp_path.glob(".tmp-*"))  # atomic write left nothing behind
