"""Corpus sources: every format, layout and URI is read the same way in-process and by Ray Data; bad rows are kept
with their reason instead of failing the stream."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscope.errors import InputError
from qscope.pipelines.flow import CorpusInput, Flow
from qscope.pipelines.sources import EMPTY_TEXT, iter_corpus, parse_hub_spec, resolve_corpus


def _rows(source) -> list[dict]:
    return pa.concat_tables(list(iter_corpus(source))).to_pylist()


@pytest.fixture
def mixed(tmp_path):
    """A directory with every supported format, compressed files, bad rows and files readers must skip."""
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    lines = [
        json.dumps({"id": "j1", "text": "plain"}),
        # raw U+2028 / U+2029 / U+0085 inside a string: valid JSON (json.dumps(ensure_ascii=False) writes it)
        json.dumps({"id": "j2", "text": "a\u2028b\u2029c\u0085d"}, ensure_ascii=False),
        "{not json",
        json.dumps({"id": "j4", "text": "   "}),
        json.dumps({"id": "j5", "body": "no text field"}),
        json.dumps(["a", "list"]),
    ]
    (d / "a.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "j7", "text": "caf\xe9"}\n')
    with gzip.open(d / "sub" / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "from gzip"}) + "\n")
    big = "x" * 200_000  # over the csv module's 128 KiB default field limit
    (d / "c.csv").write_text(f'id,text\nc1,"quoted\nnewline"\nc2,{big}\nc3,one,two\n')
    (d / "d.tsv").write_text("id\ttext\nt1\ttab separated\n")
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["parquet row", None], "other": [1, 2]}), d / "e.parquet")
    (d / "f.json").write_text(json.dumps({"rows": [{"id": "k1", "text": "json list"}]}))
    (d / "_SUCCESS").write_text("")  # other tools' markers and hidden files are not corpus
    (d / ".hidden.jsonl").write_text('{"text": "hidden"}\n')
    return d


def test_every_format_and_bad_row_is_read(mixed):
    src = resolve_corpus(str(mixed), max_chars=1000)
    assert [f.key for f in src.files] == ["a.jsonl", "c.csv", "d.tsv", "e.parquet", "f.json", "sub/b.jsonl.gz"]
    assert src.known_rows == {"e.parquet": 2}
    rows = {r["id"]: r for r in _rows(src)}
    good = {i: r["text"] for i, r in rows.items() if r["reject_reason"] is None}
    assert good == {
        "j1": "plain",
        "j2": "a\u2028b\u2029c\u0085d",
        "c1": "quoted\nnewline",
        "c2": "x" * 1000,
        "t1": "tab separated",
        "p1": "parquet row",
        "k1": "json list",
        "sub/b:0": "from gzip",
    }
    bad = {i: r["reject_reason"] for i, r in rows.items() if r["reject_reason"]}
    assert bad["a:2"].startswith("not valid JSON") and rows["a:2"]["text"] == "{not json"  # the line, for review
    assert bad["j4"] == EMPTY_TEXT and bad["p2"] == EMPTY_TEXT
    assert "no 'text' field" in bad["j5"] and "JSON list" in bad["a:5"]
    assert bad["a:6"] == "line is not valid UTF-8"  # undecodable: its id is unknown, its place is not
    assert bad["c:2"] == "3 fields, the header has 2"
    assert all(r["source_file"] and r["source_key"] for r in rows.values())
    assert rows["j1"]["text_hash"] and rows["a:2"]["text_hash"] is None


def test_columns_are_mapped_for_every_source(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"doc_id": 7, "body": "mapped"}) + "\n")
    pq.write_table(pa.table({"doc_id": ["q"], "body": ["mapped too"]}), tmp_path / "y.parquet")
    src = resolve_corpus(str(tmp_path), text_column="body", id_column="doc_id")
    assert [(r["id"], r["text"]) for r in _rows(src)] == [("7", "mapped"), ("q", "mapped too")]


def test_globs_uris_and_errors(mixed, tmp_path):
    assert [f.key for f in resolve_corpus(str(mixed / "*.jsonl")).files] == ["a.jsonl"]
    uri = resolve_corpus(f"file://{mixed}/d.tsv")
    assert [r["text"] for r in _rows(uri)] == ["tab separated"]
    with pytest.raises(InputError, match="does not exist"):
        resolve_corpus(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="matches no files"):
        resolve_corpus(str(tmp_path / "*.csv"))
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        resolve_corpus(str(tmp_path / "notes.docx"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no"):
        resolve_corpus(str(empty))


def test_unreadable_file_is_one_rejected_row_and_the_rest_is_read(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "b.jsonl.gz").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "c.jsonl").write_text('{"text": "still read"}\n')
    rows = _rows(resolve_corpus(str(tmp_path)))
    assert [r["text"] for r in rows if r["reject_reason"] is None] == ["still read"]
    reasons = {r["source_file"]: r["reject_reason"] for r in rows if r["reject_reason"]}
    assert reasons["a.parquet"].startswith("unreadable file") and reasons["b.jsonl.gz"].startswith(
        ("unreadable file", "file unreadable after")
    )


def test_huggingface_saved_dataset_is_a_plain_path(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"id": ["h1", "h2", "h3"], "text": ["one", "two", "three"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    src = resolve_corpus(str(tmp_path / "ds"))
    assert all(f.format == "arrow" for f in src.files)
    assert [(r["id"], r["text"]) for r in _rows(src)] == [("h1", "one"), ("h2", "two"), ("h3", "three")]
    datasets.DatasetDict({"train": ds.select([0]), "test": ds.select([1, 2])}).save_to_disk(str(tmp_path / "dd"))
    assert [r["id"] for r in _rows(resolve_corpus(str(tmp_path / "dd")))] == ["h1"]  # DatasetDict: train split
    assert [r["id"] for r in _rows(resolve_corpus(str(tmp_path / "dd" / "test")))] == ["h2", "h3"]
    datasets.DatasetDict({"a": ds, "b": ds}).save_to_disk(str(tmp_path / "ab"))
    with pytest.raises(InputError, match="no 'train'"):
        resolve_corpus(str(tmp_path / "ab"))


def test_hf_hub_spec(tmp_path):
    assert parse_hub_spec("hf:org/name:cfg@test") == {"name": "org/name", "config": "cfg", "split": "test"}
    assert parse_hub_spec("hf:imdb") == {"name": "imdb", "config": None, "split": "train"}
    pytest.importorskip("datasets")
    # load_dataset reads a local folder of data files the same way it reads a hub dataset (no network here)
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "train.jsonl").write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(3)))
    src = resolve_corpus(f"hf:{tmp_path / 'hub'}")
    assert [r["text"] for r in _rows(src)] == ["t0", "t1", "t2"]


def test_ray_reads_what_the_local_reader_reads(ray_local, mixed):
    src = resolve_corpus(str(mixed), max_chars=1000)
    local = sorted(_rows(src), key=lambda r: (r["source_file"], r["row"]))
    ds = Flow(CorpusInput(src), [], "read").to_ray()
    remote = sorted(
        pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow"))).to_pylist(),
        key=lambda r: (r["source_file"], r["row"]),
    )
    assert remote == local


def test_ray_reads_a_large_file_in_small_whole_blocks(ray_local, tmp_path):
    """A one-file corpus reaches the stages in blocks of about runtime.BLOCK_BYTES: not gathered into Ray's default
    128 MB blocks (the read worker then held ~400 MB through a 1M-row run) and not split into slivers of a few
    rows (Ray splits each block a read task emits to reach ~200 blocks when a corpus has fewer files)."""
    import ray

    from qscope.pipelines.runtime import BLOCK_BYTES

    assert ray.data.DataContext.get_current().target_max_block_size == BLOCK_BYTES
    rows = 12_000
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(rows):
            f.write(json.dumps({"id": f"r{i}", "text": f"document {i} " + "word " * 200}) + "\n")  # ~1 KB each
    ds = Flow(CorpusInput(resolve_corpus(str(path))), [], "read").to_ray()
    sizes = [(b.num_rows, b.nbytes) for b in ds.iter_batches(batch_size=None, batch_format="pyarrow")]
    assert sum(n for n, _ in sizes) == rows
    assert max(nbytes for _, nbytes in sizes) <= 1.5 * BLOCK_BYTES  # ~12 MB of rows: several blocks
    assert len(sizes) >= 3
    assert min(n for n, _ in sizes[:-1]) >= 1000  # whole reader blocks (1,024 rows), not slivers
