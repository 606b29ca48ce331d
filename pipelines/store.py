"""The signature store: a corpus encoded once, mined / classified / indexed many times without the model.

    <store>/_manifest.json                 encoder settings (SignatureMeta) + one entry per corpus file
    <store>/source_key=<file>/*.parquet    that file's rows: id, text, text_hash, source_file, row,
                                           reject_reason, feature_ids, feature_values, n_tokens, truncated
    <store>/_lock, <store>/_staging-<run>  while a run updates it

Read it with `pyarrow.dataset.dataset(store, partitioning="hive")` or `pl.scan_parquet(f"{store}/**/*.parquet")`.

Files are keyed by their path relative to the corpus root plus a fingerprint (size + mtime; sha256 when the mtime
moved but the size did not, with `hash_files`), so a rerun — from another machine, or from a `ray job submit
--working-dir` upload — encodes only new or changed files, and drops the rows of files that are gone. Signatures
depend on the encoder settings, so a store built with another model / SAE (weights hash) / layer / pooling /
top_n / max_length is refused with the differing setting named; `reencode` rebuilds it instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from qscope.errors import InputError
from qscope.pipelines.flow import ParquetInput
from qscope.pipelines.outputs import RunLock, clear_stale_staging, staging_dir
from qscope.pipelines.sources import EMPTY_TEXT, CorpusFile, CorpusSource
from qscope.signatures import SignatureMeta

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
PARTITION = "source_key"
FORMAT = 2
UNREADABLE = ("unreadable file", "file unreadable after")


@dataclass
class FileEntry:
    """What the store knows of one corpus file."""

    key: str
    partition: str
    fingerprint: dict
    rows: int = 0
    rejected: int = 0
    """Rows kept out of the signatures (bad rows and empty texts)."""
    bad: int = 0
    """Rejected rows that were neither empty nor an unreadable file: what `max_bad_fraction` counts (a quarantined
    file is reported on its own: summary, state, exit code)."""
    quarantined: str | None = None
    """Why the file could not be read (the rest of the corpus went on without it)."""
    run_id: str = ""
    encoded_at: str = ""


@dataclass
class StorePlan:
    """What a run does to the store for one corpus: encode these files, reuse those, forget the rest."""

    encode: list[CorpusFile] = field(default_factory=list)
    reuse: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)


class SignatureStore:
    """Open with `SignatureStore.open(path, meta, run_id)` (takes the store's lock); `close()` releases it."""

    def __init__(self, root: str | Path, meta: SignatureMeta, run_id: str):
        self.root, self.meta, self.run_id = Path(root), meta, run_id
        self.files: dict[str, FileEntry] = {}
        self.lock = RunLock(self.root, run_id, what="signature store")

    @classmethod
    def open(cls, root: str | Path, meta: SignatureMeta, run_id: str, reencode: bool = False) -> SignatureStore:
        store = cls(root, meta, run_id)
        if store.root.is_file():
            raise InputError(
                f"signature store {store.root} is a file (an older qscope single-file export); "
                "point corpus_signatures at a new directory, or delete it to rebuild"
            )
        store.lock.acquire()
        try:
            store._load(reencode)
        except BaseException:
            store.lock.release()
            raise
        return store

    def close(self) -> None:
        self.lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _load(self, reencode: bool) -> None:
        clear_stale_staging(self.root)
        path = self.root / MANIFEST
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: corrupt manifest ({exc}); delete the store to rebuild it") from None
            if data.get("format") != FORMAT:
                raise InputError(
                    f"{self.root}: signature store format {data.get('format')}, this qscope reads "
                    f"format {FORMAT}; delete it (or pass reencode) to rebuild"
                )
            stored = SignatureMeta(**data["meta"])
            why = self.meta.reuse_mismatch(stored)
            if why and not reencode:
                raise InputError(
                    f"signature store {self.root} was built with {why}: its signatures are not "
                    "this run's; set `reencode: true` (CLI --reencode) to rebuild it, or use another "
                    "store (`corpus_signatures:`)"
                )
            if not why:
                self.files = {k: FileEntry(**v) for k, v in data.get("files", {}).items()}
        # Partitions the manifest does not know (a crash between a move and the manifest write) are dropped.
        known = {e.partition for e in self.files.values()}
        for p in self.root.glob(f"{PARTITION}=*"):
            if p.name.split("=", 1)[1] not in known:
                shutil.rmtree(p, ignore_errors=True)
        self.files = {k: e for k, e in self.files.items() if self._partition_dir(e.partition).exists() or e.rows == 0}

    # --- planning ----------------------------------------------------------------------------------------------
    def plan(self, source: CorpusSource, hash_files: bool = True) -> StorePlan:
        plan = StorePlan()
        current = {f.key for f in source.files}
        for f in source.files:
            old = self.files.get(f.key)
            fp = fingerprint(source, f)
            if source.hub is None and old is not None and same_content(old.fingerprint, fp, source, f, hash_files):
                old.fingerprint = {**old.fingerprint, **{k: v for k, v in fp.items() if k != "sha256"}}
                plan.reuse.append(f.key)
            else:
                plan.encode.append(f)
        plan.remove = sorted(set(self.files) - current)
        return plan

    def staging(self) -> Path:
        return staging_dir(self.root, self.run_id, "encoded")

    # --- committing ----------------------------------------------------------------------------------------------
    def commit(
        self, plan: StorePlan, source: CorpusSource, staged: Path, hash_files: bool = True, partial: bool = False
    ) -> None:
        """Move every staged file partition into place (replacing the old one), forget removed files, then write
        the manifest. Entries are counted from the staged parts themselves."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for f in plan.encode:
            new = staged / f"{PARTITION}={f.partition}"
            final = self._partition_dir(f.partition)
            if final.exists():
                shutil.rmtree(final)
            fp = {"partial": True} if partial else fingerprint(source, f, with_hash=hash_files)  # never reused
            entry = FileEntry(f.key, f.partition, fp, run_id=self.run_id, encoded_at=now)
            if new.exists():
                new.rename(final)
                _count(entry, final)
            self.files[f.key] = entry
        for key in plan.remove:
            entry = self.files.pop(key)
            shutil.rmtree(self._partition_dir(entry.partition), ignore_errors=True)
        self.write_manifest()
        shutil.rmtree(staged.parent, ignore_errors=True)

    def write_manifest(self) -> None:
        from qscope.paths import atomic_path

        data = {
            "format": FORMAT,
            "meta": asdict(self.meta),
            "files": {k: asdict(e) for k, e in sorted(self.files.items())},
        }
        with atomic_path(self.root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(data, indent=1))

    # --- reading -------------------------------------------------------------------------------------------------
    def _partition_dir(self, partition: str) -> Path:
        return self.root / f"{PARTITION}={partition}"

    def read(self, keys=None, columns: list[str] | None = None, rows: str = "good") -> ParquetInput:
        """The stored rows of `keys` (default: every file) as a flow input; rows "good", "rejected" or "all"."""
        keys = sorted(self.files) if keys is None else keys
        paths = [
            str(self._partition_dir(self.files[k].partition))
            for k in keys
            if k in self.files and self._partition_dir(self.files[k].partition).exists()
        ]
        return ParquetInput(paths, str(self.root), columns, rows)

    def totals(self, keys=None) -> dict:
        keys = sorted(self.files) if keys is None else keys
        entries = [self.files[k] for k in keys if k in self.files]
        rows = sum(e.rows for e in entries)
        rejected = sum(e.rejected for e in entries)
        return {
            "files": len(entries),
            "rows": rows,
            "good": rows - rejected,
            "rejected": rejected,
            "bad": sum(e.bad for e in entries),
            "quarantined": {e.key: e.quarantined for e in entries if e.quarantined},
        }


def _count(entry: FileEntry, partition: Path) -> None:
    for part in sorted(partition.rglob("*.parquet")):
        reasons = pq.read_table(part, columns=["reject_reason"]).column("reject_reason")
        entry.rows += len(reasons)
        entry.rejected += len(reasons) - reasons.null_count
        if len(reasons) != reasons.null_count:
            given = reasons.drop_null().to_pylist()
            unreadable = [r for r in given if r.startswith(UNREADABLE)]
            entry.bad += sum(1 for r in given if r != EMPTY_TEXT and not r.startswith(UNREADABLE))
            if unreadable:
                entry.quarantined = unreadable[0]


def fingerprint(source: CorpusSource, f: CorpusFile, with_hash: bool = False) -> dict:
    fp = {"size": f.size, "mtime_ns": f.mtime_ns}
    if with_hash and source.hub is None:
        fp["sha256"] = sha256(source, f)
    return fp


def same_content(old: dict, new: dict, source: CorpusSource, f: CorpusFile, hash_files: bool) -> bool:
    """Unchanged when size and mtime agree; when only the mtime moved, the sha256 decides (with hash_files)."""
    if old.get("size") != new.get("size"):
        return False
    if old.get("mtime_ns") == new.get("mtime_ns"):
        return True
    return bool(hash_files and old.get("sha256") and old["sha256"] == sha256(source, f))


def sha256(source: CorpusSource, f: CorpusFile) -> str | None:
    h = hashlib.sha256()
    try:
        with source.filesystem.open_input_stream(f.path) as stream:
            while chunk := stream.read(1 << 22):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
