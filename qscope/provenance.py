"""`Provenance`: the run-wide facts stamped on every output row (model, SAE, layer, engine, run id, version)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Provenance:
    """Run-wide facts stamped on every output row (per-row facts — seed_ids, strength... — come with the rows)."""

    model: str
    sae: str
    layer: int
    engine: str = ""
    run_id: str = ""
    qscope_version: str = ""

    def __post_init__(self):
        if not self.qscope_version:
            import qscope

            object.__setattr__(self, "qscope_version", qscope.__version__)

    def to_dict(self) -> dict:
        return asdict(self)


PROVENANCE_TYPES = {
    "seed_ids": pa.list_(pa.string()),
    "target_features": pa.list_(pa.int32()),
    "strength": pa.float32(),
    "engine": pa.string(),
    "model": pa.string(),
    "sae": pa.string(),
    "layer": pa.int32(),
    "run_id": pa.string(),
    "qscope_version": pa.string(),
}


def add_provenance(table: pa.Table, prov: Provenance | dict) -> pa.Table:
    """Fill the provenance columns: run-wide ones from `prov`, per-row ones (null when absent) kept as given."""
    prov = prov if isinstance(prov, Provenance) else Provenance(**prov)
    n = table.num_rows
    for col, typ in PROVENANCE_TYPES.items():
        if col in ("seed_ids", "target_features", "strength"):
            if col not in table.column_names:
                table = _set_column(table, col, pa.nulls(n, typ))
            else:
                table = _set_column(table, col, table.column(col).cast(typ))
        elif col == "engine" and col in table.column_names:
            table = _set_column(table, col, table.column(col).cast(typ))
        else:
            table = _set_column(table, col, pa.array([getattr(prov, col)] * n, typ))
    return table


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Replace a column in place (its position kept) or append it."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)
