"""Per-document feature signatures in Parquet.

Schema (one row per document):

| column          | type          | meaning                                                     |
|-----------------|---------------|-------------------------------------------------------------|
| id              | string        | document id (from the input, or its row number)             |
| feature_ids     | list<int32>   | top-N SAE latents of the pooled document, value-descending  |
| feature_values  | list<float32> | pooled activation of each latent (see `pooling`)            |
| n_tokens        | int32         | tokens read (after truncation)                              |
| truncated       | bool          | the text was longer than max_length and was cut             |

File-level schema metadata (keys prefixed `qscope.`): model, sae, layer, pooling, top_n, d_sae, version.
Read with polars: `pl.read_parquet(path)`; metadata with `pyarrow.parquet.read_schema(path).metadata`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qscope.errors import InputError
from qscope.paths import atomic_path

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("feature_ids", pa.list_(pa.int32())),
        ("feature_values", pa.list_(pa.float32())),
        ("n_tokens", pa.int32()),
        ("truncated", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class SignatureMeta:
    """What produced a signature file; two files are comparable only when these agree."""

    model: str
    sae: str
    layer: int
    pooling: str
    top_n: int
    d_sae: int
    version: str = "1"
    sae_hash: str = ""
    """`SAE.weights_hash()`: two SAEs with one id but other weights never share signatures ("" = unknown)."""
    max_length: int = 0
    """Tokens read per text (0 = unknown)."""
    hidden_mean: bool = False
    """Rows also carry `hidden_mean` (the mean residual: the dense view of classify's joint probe)."""

    def to_metadata(self) -> dict[bytes, bytes]:
        return {f"qscope.{k}".encode(): str(v).encode() for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, md: dict[bytes, bytes] | None, source: str = "") -> SignatureMeta:
        md = {k.decode(): v.decode() for k, v in (md or {}).items()}
        try:
            return cls(
                model=md["qscope.model"],
                sae=md["qscope.sae"],
                layer=int(md["qscope.layer"]),
                pooling=md["qscope.pooling"],
                top_n=int(md["qscope.top_n"]),
                d_sae=int(md["qscope.d_sae"]),
                version=md.get("qscope.version", "1"),
                sae_hash=md.get("qscope.sae_hash", ""),
                max_length=int(md.get("qscope.max_length", "0")),
                hidden_mean=md.get("qscope.hidden_mean", "False") == "True",
            )
        except KeyError as exc:
            raise InputError(f"{source}: not a qscope signature file (schema metadata lacks {exc})") from exc

    def check_compatible(self, other: SignatureMeta, what: str = "signatures") -> None:
        """Same feature space: model, SAE (and its weights, when both record them), layer and pooling."""
        keys = ["model", "sae", "layer", "pooling"] + (["sae_hash"] if self.sae_hash and other.sae_hash else [])
        for key in keys:
            if getattr(self, key) != getattr(other, key):
                raise InputError(
                    f"{what} were built with {key}={getattr(other, key)!r}, expected {getattr(self, key)!r}"
                )

    REUSE_KEYS = ("model", "sae", "sae_hash", "layer", "pooling", "top_n", "max_length", "d_sae", "hidden_mean")

    def reuse_mismatch(self, stored: SignatureMeta) -> str | None:
        """The first setting in which stored signatures differ from what this run would compute (None: reusable)."""
        for key in self.REUSE_KEYS:
            if getattr(self, key) != getattr(stored, key):
                return f"{key}={getattr(stored, key)!r} (this run: {getattr(self, key)!r})"
        return None


def check_batch_meta(table: pa.Table, expect: SignatureMeta, op: str) -> None:
    """Batches that carry signature metadata must come from `expect`'s feature space (InputError otherwise);
    a batch without it (a user's own table) passes."""
    md = table.schema.metadata or {}
    if b"qscope.sae" in md:
        expect.check_compatible(SignatureMeta.from_metadata(md, op), f"{op} input signatures")


def signature_table(
    ids: Sequence[str],
    signatures: Iterable[tuple[np.ndarray, np.ndarray]],
    n_tokens: Sequence[int],
    truncated: Sequence[bool],
    meta: SignatureMeta,
) -> pa.Table:
    sigs = list(signatures)
    if not (len(ids) == len(sigs) == len(n_tokens) == len(truncated)):
        raise InputError("ids, signatures, n_tokens and truncated must have the same length")
    table = pa.table(
        {
            "id": pa.array([str(i) for i in ids], pa.string()),
            "feature_ids": pa.array([np.asarray(f, np.int32) for f, _ in sigs], pa.list_(pa.int32())),
            "feature_values": pa.array([np.asarray(v, np.float32) for _, v in sigs], pa.list_(pa.float32())),
            "n_tokens": pa.array(n_tokens, pa.int32()),
            "truncated": pa.array(truncated, pa.bool_()),
        },
        schema=SCHEMA,
    )
    return table.replace_schema_metadata(meta.to_metadata())


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write a Parquet file so that `path` exists only once it is complete."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_signatures(path: str | Path) -> tuple[pa.Table, SignatureMeta]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"signature file {path} does not exist")
    table = pq.read_table(path)
    return table, SignatureMeta.from_metadata(table.schema.metadata, str(path))
