"""mine: incremental (only new / changed files), idempotent (reruns add nothing), resumable after a failure."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from qscope.errors import InputError
from qscope.pipelines import mine
from qscope.pipelines.config import MineConfig


@pytest.fixture
def setup(tmp_path, sae_dir, demo_subset):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = (demo_subset / "corpus.jsonl").read_text().splitlines(keepends=True)
    (corpus / "a.jsonl").write_text("".join(rows[:6]))
    (corpus / "b.jsonl").write_text("".join(rows[6:10]))
    cfg = MineConfig.from_dict({"seeds": str(demo_subset / "seeds.jsonl"), "corpus": str(corpus),
                                "out": str(tmp_path / "out"), "executor": "local", "min_score": 0.0,
                                "n_targets": 3, "model": {"sae": str(sae_dir), "max_length": 24}})
    return cfg, corpus, rows


def _rows(out):
    return pq.read_table(sorted((out / "mined").glob("*.parquet"))).to_pylist()


def test_incremental_idempotent_and_resumable(setup):
    cfg, corpus, rows = setup
    from pathlib import Path

    out = Path(cfg.out)
    r1 = mine.run(mine.build_plan(cfg))
    assert sorted(p["file"].split("/")[-1] for p in r1["processed"]) == ["a.jsonl", "b.jsonl"]
    first = _rows(out)
    assert len(first) == 10 and len({r["id"] for r in first}) == 10  # min_score 0: everything kept
    assert (out / "_SUCCESS").exists() and (out / "background.json").exists()

    r2 = mine.run(mine.build_plan(cfg))  # nothing changed: nothing processed, nothing added
    assert r2["processed"] == [] and r2["skipped"] == 2 and _rows(out) == first

    (corpus / "a.jsonl").touch()  # same bytes, new mtime: still nothing to do
    assert mine.run(mine.build_plan(cfg))["processed"] == []

    (corpus / "c.jsonl").write_text("".join(rows[10:13]))  # a new file: only it is processed
    (corpus / "b.jsonl").write_text("".join(rows[6:9]))  # a changed file: its output is replaced
    r3 = mine.run(mine.build_plan(cfg))
    assert sorted(p["file"].split("/")[-1] for p in r3["processed"]) == ["b.jsonl", "c.jsonl"]
    now = _rows(out)
    assert len(now) == 6 + 3 + 3 and len({r["id"] for r in now}) == len(now)

    # A failure mid-run (a corrupt new file after a good one) keeps what was finished; the rerun resumes.
    (corpus / "d.jsonl").write_text("".join(rows[13:15]))
    (corpus / "e.jsonl").write_text('{"text": "fine"}\n{broken\n')
    with pytest.raises(InputError, match="not valid JSON"):
        mine.run(mine.build_plan(cfg))
    state = json.loads((out / "state.json").read_text())
    assert any(k.endswith("d.jsonl") for k in state["files"]) and not (out / "_SUCCESS").exists()
    (corpus / "e.jsonl").write_text('{"id": "e1", "text": "APRS tracker for hams"}\n')
    r4 = mine.run(mine.build_plan(cfg))
    assert [p["file"].split("/")[-1] for p in r4["processed"]] == ["e.jsonl"]
    final = _rows(out)
    assert len(final) == 12 + 2 + 1 and len({r["id"] for r in final}) == len(final)

    # New seeds: earlier scores are not comparable, so everything is mined again (still no duplicates).
    seeds = out.parent / "seeds2.jsonl"
    shutil.copy(cfg.seeds, seeds)
    with open(seeds, "a") as f:
        f.write('{"id": "extra", "text": "Software defined radio receiver"}\n')
    cfg.seeds = str(seeds)
    r5 = mine.run(mine.build_plan(cfg))
    assert len(r5["processed"]) == 5 and len(_rows(out)) == 15
