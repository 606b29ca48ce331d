"""mine: incremental (only new / changed files), idempotent (reruns add nothing), deleted files forgotten, corrupt
files quarantined without blocking the rest, keys relative to the corpus root."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from qscope.pipelines import mine
from qscope.pipelines.config import MineConfig


@pytest.fixture
def setup(tmp_path, sae_dir, demo_subset):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = (demo_subset / "corpus.jsonl").read_text().splitlines(keepends=True)
    (corpus / "a.jsonl").write_text("".join(rows[:6]))
    (corpus / "b.jsonl").write_text("".join(rows[6:10]))
    cfg = MineConfig.from_dict(
        {
            "seeds": str(demo_subset / "seeds.jsonl"),
            "corpus": str(corpus),
            "out": str(tmp_path / "out"),
            "executor": "local",
            "min_score": 0.0,
            "targets": {"n_features": 3},
            "model": {"sae": str(sae_dir), "max_length": 24},
        }
    )
    return cfg, corpus, rows


def _rows(out: Path) -> list[dict]:
    return pl.read_parquet(out / "mined" / "**" / "*.parquet").sort("id").to_dicts()


def _names(result) -> list[str]:
    return sorted(p["file"] for p in result["processed"])


def test_incremental_idempotent_and_quarantine(setup):
    cfg, corpus, rows = setup
    out = Path(cfg.out)
    r1 = mine.run(mine.build_plan(cfg))
    assert _names(r1) == ["a.jsonl", "b.jsonl"] and r1["reset"] and r1["files_encoded"] == 2
    first = _rows(out)
    assert len(first) == 10 and len({r["id"] for r in first}) == 10  # min_score 0: everything kept
    assert {r["source_file"] for r in first} == {"a.jsonl", "b.jsonl"}
    assert (out / "_SUCCESS").exists() and (out / "_seed_model" / "seed_model.json").exists()

    r2 = mine.run(mine.build_plan(cfg))  # nothing changed: nothing encoded or mined, nothing added
    assert r2["processed"] == [] and r2["skipped"] == 2 and r2["files_encoded"] == 0 and _rows(out) == first

    (corpus / "a.jsonl").touch()  # same bytes, new mtime: still nothing to do
    assert mine.run(mine.build_plan(cfg))["processed"] == []

    (corpus / "c.jsonl").write_text("".join(rows[10:13]))  # a new file: only it is processed
    (corpus / "b.jsonl").write_text("".join(rows[6:9]))  # a changed file: its output is replaced
    r3 = mine.run(mine.build_plan(cfg))
    assert _names(r3) == ["b.jsonl", "c.jsonl"] and r3["files_encoded"] == 2
    now = _rows(out)
    assert len(now) == 6 + 3 + 3 and len({r["id"] for r in now}) == len(now)

    # A corrupt file is quarantined: reported (summary, state, exit code), left in place, the others go on.
    (corpus / "d.parquet").write_bytes(b"PAR1 not a parquet file")
    (corpus / "e.jsonl").write_text("".join(rows[13:15]))
    r4 = mine.run(mine.build_plan(cfg))
    assert _names(r4) == ["d.parquet", "e.jsonl"] and list(r4["quarantined"]) == ["d.parquet"]
    assert mine.exit_code(r4) == mine.EXIT_QUARANTINED and (corpus / "d.parquet").exists()
    state = json.loads((out / "state.json").read_text())
    assert state["files"]["d.parquet"]["quarantined"].startswith("unreadable file")
    assert len(_rows(out)) == 14 and (out / "_SUCCESS").exists()

    (corpus / "b.jsonl").unlink()  # a deleted file: its rows leave the results and the store
    r5 = mine.run(mine.build_plan(cfg))
    assert (
        r5["processed"] == []
        and len(_rows(out)) == 11
        and "b.jsonl" not in json.loads((out / "state.json").read_text())["files"]
    )

    # New seeds: earlier scores are not comparable, so everything is mined again — from the store, no encoding.
    seeds = out.parent / "seeds2.jsonl"
    shutil.copy(cfg.seeds, seeds)
    with open(seeds, "a") as f:
        f.write('{"id": "extra", "text": "Software defined radio receiver"}\n')
    cfg.seeds = str(seeds)
    r6 = mine.run(mine.build_plan(cfg))
    assert r6["reset"] and r6["files_encoded"] == 0 and len(r6["processed"]) == 4 and len(_rows(out)) == 11


def test_a_moved_corpus_root_changes_nothing(setup, tmp_path):
    """Keys are paths relative to the corpus root: the same files under another root (an uploaded working dir,
    another mount) are neither encoded nor mined again, and no old output is left beside new ones."""
    cfg, corpus, _ = setup
    mine.run(mine.build_plan(cfg))
    moved = tmp_path / "uploaded" / "corpus"
    shutil.copytree(corpus, moved, copy_function=shutil.copyfile)  # new mtimes: the content hash decides
    cfg.corpus = str(moved)
    r = mine.run(mine.build_plan(cfg))
    assert r["processed"] == [] and r["files_encoded"] == 0
    assert len(list((Path(cfg.out) / "mined").iterdir())) == 2


@pytest.mark.slow
def test_mine_on_ray(ray_local, setup):
    cfg, corpus, _ = setup
    cfg.executor = "ray"
    cfg.resources.light.local_below = 0  # mining itself on Ray actors too
    r = mine.run(mine.build_plan(cfg))
    assert _names(r) == ["a.jsonl", "b.jsonl"] and len(_rows(Path(cfg.out))) == 10
