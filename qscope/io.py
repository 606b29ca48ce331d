"""Reading seed files and corpora: JSONL / JSON / CSV / Parquet with a text column.

Every reader returns a `Records` table with at least `id` (string) and `text` (string) plus any other columns of the
file (labels, sections...). Bad input fails with one `InputError` that names the file and, where it helps, the line:
missing path, empty file, malformed JSON / CSV, missing text column, non-UTF-8 bytes, a repeated id. Rows with an
empty text are dropped and counted; documents longer than `max_chars` are cut and counted (`Records.n_truncated`),
never dropped. JSONL records end at "\n" only (raw U+2028 / U+2029 / U+0085 inside strings are text), and CSV cells
have no size limit (a 1 MB cell is one long document).

    from qscope.io import read_records
    recs = read_records("data/demo/seeds.jsonl")          # id, text, label
    print(len(recs), recs.n_truncated, recs.table.column_names)
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from qscope.errors import InputError

log = logging.getLogger(__name__)

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
DEFAULT_MAX_CHARS = 20_000
"""Longer texts are cut to this many characters (the LM reads at most max_length tokens anyway)."""


@dataclass
class Records:
    """Rows read from one or more files: `table` has string columns `id` and `text` first, then the rest."""

    table: pa.Table
    sources: list[str] = field(default_factory=list)
    n_truncated: int = 0
    """Documents longer than max_chars that were cut."""
    n_empty: int = 0
    """Rows whose text was empty / whitespace / null; dropped."""

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def ids(self) -> list[str]:
        return self.table.column("id").to_pylist()

    @property
    def texts(self) -> list[str]:
        return self.table.column("text").to_pylist()

    def column(self, name: str) -> list | None:
        return self.table.column(name).to_pylist() if name in self.table.column_names else None

    def summary(self) -> dict:
        return {
            "rows": len(self),
            "truncated": self.n_truncated,
            "empty_dropped": self.n_empty,
            "sources": self.sources,
        }


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    for s in reversed(suffixes):
        if s in FORMATS:
            return FORMATS[s]
    raise InputError(
        f"{path}: unknown file type {''.join(path.suffixes) or '(no extension)'}; "
        "use .jsonl, .json, .csv, .tsv or .parquet"
    )


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}); "
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    return text.removeprefix("\ufeff")


def _rows_jsonl(path: Path, text: str) -> list[dict]:
    rows = []
    # Records end at "\n" only. str.splitlines() would also split at U+2028, U+2029, U+0085 and other
    # characters that JSON strings may hold raw (json.dumps(ensure_ascii=False) writes them so); a trailing
    # "\r" of CRLF files is JSON whitespace.
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {n} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if isinstance(obj, str):  # a bare string per line is a text
            obj = {"text": obj}
        if not isinstance(obj, dict):
            raise InputError(f"{path}: line {n} is a JSON {type(obj).__name__}, expected an object with a text field")
        rows.append(obj)
    return rows


def _rows_json(path: Path, text: str) -> list[dict]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if isinstance(obj, dict):  # {"rows": [...]} or {"data": [...]}
        lists = [v for v in obj.values() if isinstance(v, list)]
        obj = lists[0] if len(lists) == 1 else [obj]
    if isinstance(obj, list):  # a list of bare strings is a list of texts
        obj = [{"text": r} if isinstance(r, str) else r for r in obj]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise InputError(f"{path}: expected a JSON list of objects (or of strings)")
    return obj


def _rows_csv(path: Path, text: str, delimiter: str) -> list[dict]:
    # The csv module refuses cells over 128 KiB by default ("field larger than field limit"): a long document is
    # valid input, cut later like any other. No cell can be longer than the whole file, so that is the limit.
    with _csv_field_limit(len(text) + 1):
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
            rows = []
            for row in reader:
                if None in row:  # more fields than the header
                    raise InputError(f"{path}: line {reader.line_num} has more fields than the header")
                rows.append(row)
        except csv.Error as exc:
            raise InputError(f"{path}: malformed CSV ({exc})") from None
    return rows


_CSV_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _csv_field_limit(limit: int):
    """Raise the csv module's (process-wide) field size limit for the block, then put the old one back."""
    with _CSV_LIMIT_LOCK:
        old = csv.field_size_limit()
        csv.field_size_limit(max(old, min(limit, sys.maxsize)))
        try:
            yield
        finally:
            csv.field_size_limit(old)


def _read_table(path: Path) -> pa.Table:
    fmt = file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path}: file is empty")
    text = _decode(path, data)
    rows = {
        "jsonl": lambda: _rows_jsonl(path, text),
        "json": lambda: _rows_json(path, text),
        "csv": lambda: _rows_csv(path, text, ","),
        "tsv": lambda: _rows_csv(path, text, "\t"),
    }[fmt]()
    if not rows:
        raise InputError(f"{path}: no rows")
    columns: dict[str, list] = {}
    for r in rows:
        for k in r:
            columns.setdefault(k, [])
    for k in columns:
        columns[k] = [r.get(k) for r in rows]
    try:
        return pa.table(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in a column: keep them as strings
        return pa.table({k: [None if v is None else str(v) for v in vs] for k, vs in columns.items()})


def read_records(
    path: str | Path | Iterable[str | Path],
    text_column: str = "text",
    id_column: str = "id",
    max_chars: int = DEFAULT_MAX_CHARS,
    what: str = "input",
) -> Records:
    """Read one file (or several, concatenated) into `Records` (id, text, other columns).

    Ids default to `<file stem>:<row>` when the file has no `id_column`; they must be unique.
    """
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    if not paths:
        raise InputError(f"no {what} files given")
    tables, n_trunc, n_empty = [], 0, 0
    for p in paths:
        t, tr, em = _read_one(p, text_column, id_column, max_chars, what)
        tables.append(t)
        n_trunc, n_empty = n_trunc + tr, n_empty + em
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    check_unique_ids(table.column("id").to_pylist(), what)
    if n_trunc:
        log.warning("%s: %d document(s) longer than %d characters were truncated", what, n_trunc, max_chars)
    if n_empty:
        log.warning("%s: %d row(s) with an empty text were dropped", what, n_empty)
    return Records(table, [str(p) for p in paths], n_trunc, n_empty)


def check_unique_ids(ids: list[str], what: str = "input") -> None:
    """InputError naming the first repeated id and the rows holding it; one pass, however late the repeat."""
    first: dict[str, int] = {}
    for row, i in enumerate(ids):
        seen = first.setdefault(i, row)
        if seen != row:
            n_repeated = len(ids) - len(set(ids))
            more = f"; {n_repeated} rows repeat an earlier id in all" if n_repeated > 1 else ""
            raise InputError(
                f"{what}: id {i!r} occurs more than once (rows {seen} and {row}{more}); ids must be unique"
            )


def _read_one(path: Path, text_column: str, id_column: str, max_chars: int, what: str) -> tuple[pa.Table, int, int]:
    if not path.exists():
        raise InputError(f"{what} path {path} does not exist")
    if path.is_dir():
        raise InputError(f"{what} path {path} is a directory; pass a .jsonl/.csv/.parquet file")
    table = _read_table(path)
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows")
    if text_column not in table.column_names:
        raise InputError(
            f"{path}: no {text_column!r} column (columns: {', '.join(table.column_names)}); "
            f"rename the text column or pass text_column="
        )
    raw = table.column(text_column).to_pylist()
    if id_column in table.column_names:
        ids = ["" if i is None else str(i) for i in table.column(id_column).to_pylist()]
    else:
        ids = [f"{path.stem}:{n}" for n in range(len(raw))]
    keep, texts, n_trunc = [], [], 0
    for n, t in enumerate(raw):
        if t is not None and not isinstance(t, str):
            t = str(t)
        if t is None or not t.strip():
            continue
        if len(t) > max_chars:
            t, n_trunc = t[:max_chars], n_trunc + 1
        keep.append(n)
        texts.append(t)
    n_empty = len(raw) - len(keep)
    if not keep:
        raise InputError(f"{path}: all {len(raw)} rows have an empty {text_column!r}")
    rest = {c: table.column(c).take(pa.array(keep)) for c in table.column_names if c not in (text_column, id_column)}
    out = pa.table({"id": pa.array([ids[n] for n in keep], pa.string()), "text": pa.array(texts, pa.string()), **rest})
    return out, n_trunc, n_empty


PLAIN_TEXT_SUFFIXES = (".txt", ".text", ".md")


def read_texts(path: str | Path, text_column: str = "text", split: str | None = None) -> list[str]:
    """The non-empty texts of one file, in file order — for the tools that need texts only (SAE training and
    evaluation, feature discovery, dashboards).

    .jsonl / .json / .csv / .tsv / .parquet: the `text_column` (as `read_records` reads it: same errors, a bare
    string per JSONL line or JSON list item counts as a text); with `split`, only rows whose `split` column equals
    it (files without that column are used whole). .txt / .md: documents separated by blank lines, or one per line
    when the file has no blank line. Large Parquet corpora are read column-wise, without building a `Records` table.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"text file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in PLAIN_TEXT_SUFFIXES:
        raw = _decode(path, path.read_bytes()).replace("\r\n", "\n")
        texts = raw.split("\n\n") if "\n\n" in raw.strip() else raw.split("\n")
    elif file_format(path) == "parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        if text_column not in names:
            raise InputError(f"{path}: no {text_column!r} column (columns: {', '.join(names)})")
        cols = [text_column] + (["split"] if split and "split" in names else [])
        table = pq.read_table(path, columns=cols).to_pydict()
        texts = table[text_column]
        if "split" in table:
            texts = [t for t, s in zip(texts, table["split"]) if s == split]
    else:
        table = read_records(path, text_column, max_chars=1 << 62, what="texts").table
        texts = table.column("text").to_pylist()
        if split and "split" in table.column_names:
            texts = [t for t, s in zip(texts, table.column("split").to_pylist()) if s == split]
    texts = [t.strip() if suffix in PLAIN_TEXT_SUFFIXES else t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise InputError(f"{path}: no non-empty texts" + (f" in split {split!r}" if split else ""))
    return texts


def file_fingerprint(path: str | Path, hash_bytes: bool = True) -> dict:
    """size, mtime_ns and (optionally) sha256 of a file: what the `mine` pipeline's state file records."""
    path = Path(path)
    st = path.stat()
    fp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if hash_bytes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        fp["sha256"] = h.hexdigest()
    return fp


def list_corpus_files(spec: str | Path | Iterable[str | Path]) -> list[Path]:
    """A file, a directory (every supported file inside, recursively) or a glob → sorted list of files."""
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    files: list[Path] = []
    for s in specs:
        p = Path(s).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".") and _known(f))
            if not found:
                raise InputError(f"corpus directory {p} holds no .jsonl/.json/.csv/.tsv/.parquet files")
            files += found
        elif p.exists():
            files.append(p)
        elif any(ch in str(s) for ch in "*?["):
            found = sorted(Path(x) for x in __import__("glob").glob(str(s), recursive=True))
            if not found:
                raise InputError(f"corpus pattern {s} matches no files")
            files += found
        else:
            raise InputError(f"corpus path {p} does not exist")
    return files


def _known(path: Path) -> bool:
    try:
        file_format(path)
        return True
    except InputError:
        return False
