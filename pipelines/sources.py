"""Corpora of any size, read as a stream of row blocks: JSONL / JSON / CSV / TSV / Parquet files, Hugging Face
`datasets` directories (`save_to_disk`) and `hf:NAME[:CONFIG][@SPLIT]` hub datasets.

A corpus spec is a file, a directory (every supported file inside, recursively; names starting with `.` or `_` are
skipped), a glob, or a URI that pyarrow's filesystems accept (`file://`, `s3://`, `gs://`, `hdfs://` ...).
`resolve_corpus(spec)` lists it on the driver (names and sizes only, nothing is read); the rows are read where the
work runs — by Ray Data read tasks (`ray_sources.CorpusDatasource`) or in-process (`iter_corpus`) — with the same code:
`iter_file_rows` turns one open file into blocks of `ROW_SCHEMA`.

Every block row is either good (`reject_reason` null) or a bad row kept with its reason: a line that is not JSON,
a CSV row with more fields than the header, bytes that are not UTF-8, an empty or non-text `text`, a file that
cannot be read at all. Bad rows never stop the stream; the pipeline counts them against `max_bad_fraction`.
Documents longer than `max_chars` are cut (the LM reads at most `max_length` tokens anyway).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from qscope.errors import InputError

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".arrow": "arrow",
}
COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd", ".lz4": "lz4"}
EMPTY_TEXT = "empty text"
"""The one reject reason that is not a *bad* row: an empty document is skipped, not counted against
`max_bad_fraction`."""
ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("text_hash", pa.string()),
        ("source_file", pa.string()),
        ("row", pa.int64()),
        ("reject_reason", pa.string()),
        ("source_key", pa.string()),
    ]
)
BLOCK_ROWS = 1024
"""Rows per block a reader yields: small enough that the first rows reach the encoder at once."""
_CHUNK = 1 << 22
RAW_SNIPPET = 500
"""Characters of a rejected line kept with it (the rejected-rows output shows what was wrong)."""


@dataclass(frozen=True)
class CorpusFile:
    key: str
    """Path relative to the corpus root (`hf:...` for hub datasets): stable across machines and upload dirs."""
    path: str
    """What the filesystem opens (a local path, or the URI's path part)."""
    format: str
    size: int | None = None
    mtime_ns: int | None = None

    @property
    def partition(self) -> str:
        """A directory-safe name for the file's rows in a signature store (readable part + hash of the key)."""
        return partition_key(self.key)

    @property
    def stem(self) -> str:
        """The key without format suffixes: default ids are `<stem>:<row>`."""
        return re.sub(r"(\.(jsonl|ndjson|json|csv|tsv|parquet|arrow))?(\.(gz|bz2|zst|zstd|lz4))?$", "", self.key)


@dataclass
class CorpusSource:
    """A resolved corpus: its files (or hub dataset) and how to read a row out of them."""

    spec: str
    files: list[CorpusFile]
    filesystem: Any = None
    """A `pyarrow.fs.FileSystem` (None for hub datasets)."""
    text_column: str = "text"
    id_column: str = "id"
    max_chars: int = 20_000
    hub: dict | None = None
    """`hf:` datasets: {name, config, split}."""
    known_rows: dict[str, int] = field(default_factory=dict)
    """Row counts known without reading the rows (Parquet footers, datasets metadata): progress totals."""

    def subset(self, keys) -> CorpusSource:
        keys = set(keys)
        return CorpusSource(
            self.spec,
            [f for f in self.files if f.key in keys],
            self.filesystem,
            self.text_column,
            self.id_column,
            self.max_chars,
            self.hub,
            self.known_rows,
        )

    def total_rows(self) -> int | None:
        if self.hub or any(f.key not in self.known_rows for f in self.files):
            return None
        return sum(self.known_rows[f.key] for f in self.files)


def partition_key(key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[-60:].lstrip("._") or "file"
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def file_format(name: str) -> tuple[str, str | None]:
    """(format, compression) from a file name: `x.jsonl`, `x.jsonl.gz`, `data-00000-of-00001.arrow`..."""
    lower = name.lower()
    compression = None
    for suffix, codec in COMPRESSION.items():
        if lower.endswith(suffix):
            compression, lower = codec, lower[: -len(suffix)]
            break
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix):
            return fmt, compression
    raise InputError(f"{name}: unknown file type; use .jsonl, .json, .csv, .tsv, .parquet (optionally .gz / .zst)")


def resolve_corpus(
    spec: str, text_column: str = "text", id_column: str = "id", max_chars: int = 20_000, count_rows: bool = True
) -> CorpusSource:
    """List a corpus spec (nothing is read but directory listings, file sizes and Parquet footers)."""
    if not spec:
        raise InputError("no corpus given (config `corpus:` or --corpus)")
    spec = str(spec)
    if spec.startswith("hf:"):
        return CorpusSource(
            spec, [CorpusFile(spec, spec, "hub")], None, text_column, id_column, max_chars, hub=parse_hub_spec(spec)
        )
    from pyarrow import fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(spec) if "://" in spec else (pafs.LocalFileSystem(), _local(spec))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"corpus {spec}: not a path or URI pyarrow can open ({exc})") from None
    files = _list(filesystem, path, spec)
    source = CorpusSource(spec, files, filesystem, text_column, id_column, max_chars)
    if count_rows:
        source.known_rows = _count_rows(filesystem, files)
    return source


def _local(spec: str) -> str:
    import os

    return os.path.abspath(os.path.expanduser(spec))


def _list(filesystem, path: str, spec: str) -> list[CorpusFile]:
    from pyarrow import fs as pafs

    if any(ch in path for ch in "*?["):
        root = re.split(r"[*?\[]", path, maxsplit=1)[0].rsplit("/", 1)[0] or "/"
        infos = _walk(filesystem, root)
        pattern = _glob_regex(path)
        hits = [i for i in infos if pattern.fullmatch(i.path)]
        if not hits:
            raise InputError(f"corpus pattern {spec} matches no files")
        return [_corpus_file(i, root) for i in hits]
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"corpus path {spec} does not exist")
    if info.type == pafs.FileType.File:
        file_format(info.base_name)  # an unknown extension fails here, before any work
        return [_corpus_file(info, path.rsplit("/", 1)[0] or "/")]
    arrow = _hf_saved_dataset(filesystem, path, spec)
    if arrow is not None:
        return arrow
    infos = [i for i in _walk(filesystem, path) if _known(i.base_name)]
    if not infos:
        raise InputError(f"corpus directory {spec} holds no .jsonl/.json/.csv/.tsv/.parquet files")
    return [_corpus_file(i, path) for i in infos]


def _glob_regex(pattern: str) -> re.Pattern:
    """Shell glob semantics: `*` and `?` stay inside one path component, `**/` spans any number of them."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            j = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1 : j].replace("!", "^", 1) + "]")
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _walk(filesystem, root: str):
    from pyarrow import fs as pafs

    sel = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    infos = [i for i in filesystem.get_file_info(sel) if i.type == pafs.FileType.File]
    hidden = re.compile(r"(^|/)[._]")  # `.git`, `_SUCCESS`, `_staging-*`: never corpus data
    return sorted((i for i in infos if not hidden.search(i.path[len(root) :].lstrip("/"))), key=lambda i: i.path)


def _known(name: str) -> bool:
    try:
        file_format(name)
        return True
    except InputError:
        return False


def _corpus_file(info, root: str) -> CorpusFile:
    key = info.path[len(root) :].lstrip("/") if info.path.startswith(root) else info.base_name
    fmt, _ = file_format(info.base_name)
    mtime = info.mtime_ns if info.mtime is not None else None
    return CorpusFile(key or info.base_name, info.path, fmt, info.size, mtime)


def _hf_saved_dataset(filesystem, path: str, spec: str) -> list[CorpusFile] | None:
    """The Arrow shards of a `datasets` `save_to_disk` directory (a Dataset, or the `train` / only split of a
    DatasetDict), in order; None when `path` is not one."""

    def read_json(p):
        with filesystem.open_input_stream(p) as f:
            return json.loads(f.read())

    from pyarrow import fs as pafs

    exists = lambda p: filesystem.get_file_info(p).type == pafs.FileType.File  # noqa: E731
    if exists(f"{path}/dataset_dict.json"):
        splits = read_json(f"{path}/dataset_dict.json").get("splits", [])
        split = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
        if split is None:
            raise InputError(
                f"corpus {spec} is a DatasetDict with splits {splits} and no 'train': "
                f"pass one split's directory, e.g. {spec.rstrip('/')}/{splits[0] if splits else 'SPLIT'}"
            )
        path = f"{path}/{split}"
    if not (exists(f"{path}/state.json") and exists(f"{path}/dataset_info.json")):
        return None
    state = read_json(f"{path}/state.json")
    shards = [d["filename"] for d in state.get("_data_files", [])]
    if state.get("_indices_data_files"):
        raise InputError(
            f"corpus {spec}: the saved dataset has an indices mapping; save it after `ds.flatten_indices()`"
        )
    if not shards:
        raise InputError(f"corpus {spec}: the saved dataset lists no data files in state.json")
    return [_corpus_file(filesystem.get_file_info(f"{path}/{s}"), path) for s in shards]


def _count_rows(filesystem, files: list[CorpusFile]) -> dict[str, int]:
    """Row counts from Parquet footers (cheap); other formats are counted as they are read."""
    import pyarrow.parquet as pq

    known = {}
    for f in files:
        if f.format == "parquet":
            try:
                with filesystem.open_input_file(f.path) as fh:
                    known[f.key] = pq.ParquetFile(fh).metadata.num_rows
            except (pa.ArrowInvalid, OSError):
                pass  # unreadable: the reader reports it as a rejected file
    return known


def parse_hub_spec(spec: str) -> dict:
    """`hf:NAME[:CONFIG][@SPLIT]` → {name, config, split} (split defaults to train)."""
    body = spec[3:]
    body, _, split = body.partition("@")
    name, _, config = body.partition(":")
    if not name:
        raise InputError(f"corpus {spec}: expected hf:NAME[:CONFIG][@SPLIT]")
    return {"name": name, "config": config or None, "split": split or "train"}


# --- rows ------------------------------------------------------------------------------------------------------
class RowBuilder:
    """Collects rows of one file into `ROW_SCHEMA` blocks; validates each row on the way in."""

    def __init__(self, file: CorpusFile, text_column: str, id_column: str, max_chars: int):
        self.file, self.text_column, self.id_column, self.max_chars = file, text_column, id_column, max_chars
        self.cols: dict[str, list] = {n: [] for n in ROW_SCHEMA.names}
        self.stem, self.partition = file.stem, file.partition

    def add(self, row: int, record: Any) -> None:
        """A parsed record (dict, or a bare string = a text)."""
        if isinstance(record, str):
            record = {self.text_column: record}
        if not isinstance(record, dict):
            return self.reject(row, f"row is a JSON {type(record).__name__}, expected an object with a text field")
        text = record.get(self.text_column)
        rid = record.get(self.id_column)
        rid = f"{self.stem}:{row}" if rid is None else str(rid)
        if text is None:
            reason = (
                EMPTY_TEXT
                if self.text_column in record
                else f"no {self.text_column!r} field (fields: {', '.join(map(str, list(record)[:8]))})"
            )
            return self.reject(row, reason, rid)
        if isinstance(text, (dict, list)):
            return self.reject(row, f"{self.text_column!r} is a {type(text).__name__}, not text", rid)
        text = text if isinstance(text, str) else str(text)
        if _has_surrogates(text):
            return self.reject(row, "text is not valid UTF-8", rid)
        if not text.strip():
            return self.reject(row, EMPTY_TEXT, rid)
        if not rid:
            return self.reject(row, "empty id", rid)
        self._append(rid, text[: self.max_chars], row, None)

    def reject(self, row: int, reason: str, rid: str | None = None, text: str | None = None) -> None:
        if text is not None and _has_surrogates(text):
            text = text.encode("utf-8", "replace").decode("utf-8")
        self._append(rid or f"{self.stem}:{row}", text, row, reason)

    def _append(self, rid, text, row, reason) -> None:
        c = self.cols
        c["id"].append(rid)
        c["text"].append(text)
        c["text_hash"].append(text_hash(text) if text is not None and reason is None else None)
        c["source_file"].append(self.file.key)
        c["row"].append(row)
        c["reject_reason"].append(reason)
        c["source_key"].append(self.partition)

    def __len__(self) -> int:
        return len(self.cols["id"])

    def flush(self) -> pa.Table:
        table = pa.table(self.cols, schema=ROW_SCHEMA)
        self.cols = {n: [] for n in ROW_SCHEMA.names}
        return table


def _has_surrogates(text: str) -> bool:
    # Lone surrogates come from bytes that were not UTF-8 (decoded with surrogateescape); Arrow cannot hold them.
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def text_hash(text: str) -> str:
    """16-byte BLAKE2b of a text (hex): with the id, what says a stored signature is still this row's."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def iter_file_rows(
    f, file: CorpusFile, text_column: str, id_column: str, max_chars: int, block_rows: int = BLOCK_ROWS
) -> Iterator[pa.Table]:
    """Blocks of `ROW_SCHEMA` from one open (decompressed) file. Never raises on bad data: a file that cannot be
    read at all, or stops being readable half-way, ends with one rejected row saying so."""
    rows = RowBuilder(file, text_column, id_column, max_chars)
    reader = {"jsonl": _jsonl, "json": _json, "csv": _csv, "tsv": _csv, "parquet": _columnar, "arrow": _columnar}[
        file.format
    ]
    n = -1
    try:
        for n, record in reader(f, file, text_column, id_column):
            if isinstance(record, _Bad):
                rows.reject(n, record.reason, text=record.raw)
            else:
                rows.add(n, record)
            if len(rows) >= block_rows:
                yield rows.flush()
    except Exception as exc:  # noqa: BLE001 - a corrupt file is reported as a row, never kills the run
        where = "unreadable file" if n < 0 else f"file unreadable after row {n}"
        rows.reject(-1, f"{where}: {type(exc).__name__}: {str(exc)[:300]}", f"{file.key}:unreadable")
    if len(rows):
        yield rows.flush()


class _Bad:
    __slots__ = ("reason", "raw")

    def __init__(self, reason: str, raw: bytes | str | None = None):
        self.reason = reason
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        self.raw = raw[:RAW_SNIPPET] if raw else None


def _lines(f) -> Iterator[bytes]:
    """Lines split on b"\\n" only: U+2028 / U+2029 / U+0085 inside JSON strings are text, not line breaks."""
    rest = b""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _jsonl(f, file, text_column, id_column):
    n = 0
    for line in _lines(f):
        if not line.strip():
            continue
        if n == 0 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield n, json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            yield n, _Bad("line is not valid UTF-8", line)
        except json.JSONDecodeError as exc:
            yield n, _Bad(f"not valid JSON ({exc.msg} at column {exc.colno})", line)
        n += 1


def _json(f, file, text_column, id_column):
    data = f.read().decode("utf-8").removeprefix("\ufeff")
    obj = json.loads(data)  # a malformed file is one unreadable file (use JSONL for large corpora)
    if isinstance(obj, dict):  # {"rows": [...]} or {"data": [...]}
        lists = [v for v in obj.values() if isinstance(v, list)]
        obj = lists[0] if len(lists) == 1 else [obj]
    if not isinstance(obj, list):
        raise ValueError("expected a JSON list of objects (or of strings)")
    yield from enumerate(obj)


class _RawStream(io.RawIOBase):
    """A pyarrow input stream as a Python raw stream (for `io.TextIOWrapper`)."""

    def __init__(self, f):
        self.f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(len(b))
        b[: len(data)] = data
        return len(data)


def _csv(f, file, text_column, id_column):
    # Cells can be larger than csv's 128 KiB default (long documents); they are cut to max_chars later.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = io.TextIOWrapper(
        io.BufferedReader(_RawStream(f), 1 << 20), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    reader = csv.reader(text, delimiter="\t" if file.format == "tsv" else ",")
    header = next(reader, None)
    if header is None:
        return
    for n, cells in enumerate(reader):
        if not cells:
            continue
        if len(cells) > len(header):
            yield n, _Bad(f"{len(cells)} fields, the header has {len(header)}", ",".join(cells))
            continue
        yield n, dict(zip(header, cells))


def _columnar(f, file, text_column, id_column):
    """Parquet (row groups) and Arrow IPC streams (`datasets` shards), a record batch at a time."""
    if file.format == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        cols = [c for c in (text_column, id_column) if c in names]
        batches = pf.iter_batches(batch_size=BLOCK_ROWS, columns=cols or None)
    else:
        reader = pa.ipc.open_stream(f)
        names = reader.schema.names
        batches = iter(reader)
    if text_column not in names:
        raise ValueError(f"no {text_column!r} column (columns: {', '.join(names[:12])})")
    n = 0
    for batch in batches:
        texts = batch.column(batch.schema.get_field_index(text_column)).to_pylist()
        ids = (
            batch.column(batch.schema.get_field_index(id_column)).to_pylist()
            if id_column in batch.schema.names
            else [None] * len(texts)
        )
        for t, i in zip(texts, ids):
            yield n, {text_column: t, id_column: i} if i is not None else {text_column: t}
            n += 1


def open_corpus_file(filesystem, file: CorpusFile):
    """Open one corpus file for `iter_file_rows` (random access for Parquet, decompressed streams otherwise)."""
    if file.format in ("parquet", "arrow"):
        return filesystem.open_input_file(file.path)
    _, compression = file_format(file.path.rsplit("/", 1)[-1])
    return filesystem.open_input_stream(file.path, compression=compression)


def iter_corpus(source: CorpusSource, block_rows: int = BLOCK_ROWS) -> Iterator[pa.Table]:
    """Every block of a corpus, in-process (`executor: local`): files one after another, then the hub."""
    if source.hub is not None:
        yield from iter_hub(source, block_rows)
        return
    for file in source.files:
        try:
            f = open_corpus_file(source.filesystem, file)
        except OSError as exc:
            rows = RowBuilder(file, source.text_column, source.id_column, source.max_chars)
            rows.reject(-1, f"unreadable file: {exc}", f"{file.key}:unreadable")
            yield rows.flush()
            continue
        with f:
            yield from iter_file_rows(f, file, source.text_column, source.id_column, source.max_chars, block_rows)


def load_hub_dataset(source: CorpusSource):
    """A streaming `datasets.IterableDataset` for an `hf:` corpus (needs the hub, or its local cache)."""
    try:
        import datasets
    except ImportError:
        raise InputError("hf: corpora need the `datasets` package (pip install datasets)") from None
    hub = source.hub
    try:
        return datasets.load_dataset(hub["name"], hub["config"], split=hub["split"], streaming=True)
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, no such split: one clear line
        raise InputError(
            f"corpus {source.spec}: cannot open the Hugging Face dataset ({type(exc).__name__}: {str(exc)[:300]})"
        ) from None


def iter_hub(
    source: CorpusSource, block_rows: int = BLOCK_ROWS, shard: tuple[int, int] | None = None
) -> Iterator[pa.Table]:
    """Blocks of an `hf:` corpus; `shard` = (index, count) reads one shard of the streaming dataset (its rows are
    keyed `<spec>/<index>` so ids stay unique)."""
    ds, file = load_hub_dataset(source), source.files[0]
    if shard is not None and shard[1] > 1:
        ds = ds.shard(num_shards=shard[1], index=shard[0])
        file = CorpusFile(f"{file.key}/{shard[0]}", file.path, "hub")
    rows = RowBuilder(file, source.text_column, source.id_column, source.max_chars)
    for n, record in enumerate(ds):
        rows.add(n, record)
        if len(rows) >= block_rows:
            yield rows.flush()
    if len(rows):
        yield rows.flush()
