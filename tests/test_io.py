"""qscope.io: every supported format, and one clear InputError per kind of bad input."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qscope.errors import InputError
from qscope.io import file_fingerprint, list_corpus_files, read_records


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_formats_agree(tmp_path):
    rows = [{"id": "a", "text": "alpha text", "label": "x"}, {"id": "b", "text": "beta text", "label": "y"}]
    j = _jsonl(tmp_path / "s.jsonl", rows)
    (tmp_path / "s.json").write_text(json.dumps(rows))
    (tmp_path / "s.csv").write_text("id,text,label\na,alpha text,x\nb,beta text,y\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    for p in [j, tmp_path / "s.json", tmp_path / "s.csv", tmp_path / "s.parquet"]:
        r = read_records(p)
        assert r.ids == ["a", "b"] and r.texts == ["alpha text", "beta text"] and r.column("label") == ["x", "y"]
        assert r.table.column_names[:2] == ["id", "text"]


def test_ids_default_to_row_numbers_and_other_text_column(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("prompt,target\nhello world,1\nsecond row,0\n")
    r = read_records(p, text_column="prompt")
    assert r.ids == ["c:0", "c:1"] and r.texts == ["hello world", "second row"]


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("empty.jsonl", b"", "empty"),
        ("blank.jsonl", b"\n\n  \n", "empty"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": broken\n', "line 2 is not valid JSON"),
        ("list.jsonl", b'["a", "b"]\n', "expected an object"),
        ("notext.jsonl", b'{"id": "a", "body": "x"}\n', "no 'text' column"),
        ("latin1.jsonl", '{"text": "caf\u00e9"}\n'.encode("latin-1"), "not valid UTF-8"),
        ("bad.csv", b"id,text\na,hello,extra\n", "more fields than the header"),
        ("allempty.jsonl", b'{"text": ""}\n{"text": "  "}\n', "all 2 rows have an empty"),
        ("x.txt", b"hello", "unknown file type"),
        ("bad.parquet", b"not parquet at all", "not a readable Parquet"),
        ("dup.jsonl", b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "more than once"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, name, content, match):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_records(p)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl", what="corpus")
    with pytest.raises(InputError, match="does not exist"):
        list_corpus_files(tmp_path / "nope")


def test_huge_documents_are_truncated_and_counted_and_empty_rows_dropped(tmp_path):
    p = _jsonl(tmp_path / "h.jsonl", [{"text": "x" * 5000}, {"text": "short"}, {"text": ""}, {"text": None}])
    r = read_records(p, max_chars=1000)
    assert len(r) == 2 and r.n_truncated == 1 and r.n_empty == 2
    assert len(r.texts[0]) == 1000


def test_utf8_bom_and_directory_listing(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.jsonl").write_bytes("\ufeff".encode() + b'{"id": "1", "text": "one"}\n')
    (d / "b.csv").write_text("id,text\n2,two\n")
    (d / ".hidden.jsonl").write_text("garbage")
    (d / "notes.md").write_text("ignored")
    files = list_corpus_files(d)
    assert [f.name for f in files] == ["a.jsonl", "b.csv"]
    r = read_records(files)
    assert r.ids == ["1", "2"] and r.texts == ["one", "two"]


def test_fingerprint_changes_with_content(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "a"}\n')
    fp1 = file_fingerprint(p)
    p.write_text('{"text": "b"}\n')
    fp2 = file_fingerprint(p)
    assert fp1["sha256"] != fp2["sha256"] and set(fp1) == {"size", "mtime_ns", "sha256"}


def test_read_texts_one_reader_for_every_tool(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qscope.io import read_texts

    (tmp_path / "s.jsonl").write_text('"a bare string"\n{"text": "an object", "split": "train"}\n')
    assert read_texts(tmp_path / "s.jsonl") == ["a bare string", "an object"]
    (tmp_path / "l.json").write_text('["one", {"text": "two"}]')
    assert read_texts(tmp_path / "l.json") == ["one", "two"]
    pq.write_table(pa.table({"body": ["x", "y", " "], "split": ["train", "heldout", "train"]}), tmp_path / "c.parquet")
    assert read_texts(tmp_path / "c.parquet", "body", split="train") == ["x"]
    assert read_texts(tmp_path / "c.parquet", "body") == ["x", "y"]
    (tmp_path / "d.txt").write_text("p1 line\nstill p1\n\n\np2\n")
    assert read_texts(tmp_path / "d.txt") == ["p1 line\nstill p1", "p2"]
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_texts(tmp_path / "bad.jsonl")
    with pytest.raises(InputError, match="no non-empty texts in split 'dev'"):
        read_texts(tmp_path / "c.parquet", "body", split="dev")
    with pytest.raises(InputError, match="does not exist"):
        read_texts(tmp_path / "missing.txt")


# --- valid input that must not be rejected (issue 15) ---------------------------------------------------
SEPARATORS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"  # str.splitlines() splits at all of these; JSONL must not


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path):
    from qscope.evaluation import load_texts
    from qscope.io import read_texts

    texts = [f"line one{sep}still the same record" for sep in SEPARATORS] + ["plain"]
    p = tmp_path / "seeds.jsonl"
    # What json.dumps(ensure_ascii=False) writes: the separators raw inside the strings, CRLF line ends.
    p.write_text(
        "".join(json.dumps({"id": str(n), "text": t}, ensure_ascii=False) + "\r\n" for n, t in enumerate(texts)),
        encoding="utf-8",
        newline="",
    )
    assert "\u2028" in p.read_text(encoding="utf-8")
    r = read_records(p)
    assert r.texts == texts and r.ids == [str(n) for n in range(len(texts))]
    assert read_texts(p) == texts
    assert load_texts(p).texts == texts
    # Line numbers in errors count "\n" lines, as editors do.
    p.write_text(json.dumps({"text": "a\u2028b"}, ensure_ascii=False) + "\n{broken\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        read_records(p)


def test_csv_cells_over_128_kib_are_long_documents_not_malformed(tmp_path):
    import csv

    from qscope.io import read_texts

    big = "word " * 60_000  # 300 kB in one cell
    p = tmp_path / "seeds.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        w.writerow(["a", big, "x"])
        w.writerow(["b", "short one", "y"])
    limit = csv.field_size_limit()
    r = read_records(p, max_chars=20_000)
    assert r.ids == ["a", "b"] and r.column("label") == ["x", "y"]
    assert r.n_truncated == 1 and r.texts[0] == big[:20_000] and r.texts[1] == "short one"
    assert read_texts(p)[0] == big  # the text-only reader keeps it whole (the tokenizer cuts it)
    assert csv.field_size_limit() == limit, "the process-wide csv limit must be put back"
    tsv = tmp_path / "seeds.tsv"
    tsv.write_text(f"id\ttext\nq\t{big}\n", encoding="utf-8")
    assert read_records(tsv, max_chars=100).n_truncated == 1


@pytest.mark.timeout(60)
def test_late_duplicate_id_in_a_million_rows_fails_fast(tmp_path):
    ids = [f"row-{n}" for n in range(1_000_000)]
    ids[-1] = ids[-2]
    p = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": ids, "text": ["t"] * len(ids)}), p)
    with pytest.raises(InputError, match=r"id 'row-999998' occurs more than once \(rows 999998 and 999999\)"):
        read_records(p)
