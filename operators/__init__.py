"""Ray Data operators (callable classes for `ds.map_batches`); import path `qscope.operators`.

Each operator is a small class: `resources` (fractional CPUs by default — 2-core machines deadlock otherwise),
`setup()` (load the model once per actor; `ensure_setup()` runs it once), `__call__(batch) -> pyarrow.Table`. They
also run without Ray: `EncodeSignatures(...)(table)`. `Op.map_batches_kwargs(ctor_kwargs, resources)` gives the
`map_batches` kwargs. This package exports the operators and what builds one (`Operator`, `Resources`, `ModelSpec`);
the values they take live in the core library (`qscope.seed_model.SeedModel`, `qscope.provenance.Provenance`).

| operator              | needs model | adds / does                                                     |
|-----------------------|-------------|-----------------------------------------------------------------|
| EncodeSignatures      | LM + SAE    | feature_ids, feature_values, n_tokens, truncated                 |
| BuildSignatureIndex   | —           | aggregates rows into a `qscope.index.SignatureIndex`             |
| MineBySignature       | —           | seed_similarity, nearest_seed, target_score, mine_score          |
| Classify              | —           | score, or score_<class> + predicted_label                        |
| SteeredGenerate       | LM (+ SAE)  | text, finish_reason, n_new_tokens, engine (groups by intervention)|
| ScoreTargetFeatures   | LM + SAE    | signature + target_score, target_coverage, tokens, token_target_act |
| FilterByScore         | —           | drops rows below thresholds                                      |
| Dedup                 | —           | drops near-duplicates (and copies of seeds)                      |
| SampleByHash          | —           | keeps rows whose id hash is below a fraction (uniform sample)    |
| TopRows               | —           | keeps each batch's best k rows by a column                       |
| Project               | —           | selects output columns, stamps `qscope.*` schema metadata        |
| WriteParquetShards    | —           | atomic shards + provenance; `writer.finalize_shards` merges + `_SUCCESS` |
"""

from qscope.deprecation import moved_names
from qscope.operators.base import ModelSpec, Operator, Resources
from qscope.operators.classify import Classify
from qscope.operators.dedup import Dedup
from qscope.operators.encode import EncodeSignatures
from qscope.operators.filter import FilterByScore
from qscope.operators.generate import SteeredGenerate
from qscope.operators.index import BuildSignatureIndex
from qscope.operators.mine import MineBySignature
from qscope.operators.score_targets import ScoreTargetFeatures
from qscope.operators.select import Project, SampleByHash, TopRows
from qscope.operators.writer import WriteParquetShards

__all__ = [
    "BuildSignatureIndex",
    "Classify",
    "Dedup",
    "EncodeSignatures",
    "FilterByScore",
    "MineBySignature",
    "ModelSpec",
    "Operator",
    "Project",
    "Resources",
    "SampleByHash",
    "ScoreTargetFeatures",
    "SteeredGenerate",
    "TopRows",
    "WriteParquetShards",
]

# Helpers and data types this package used to export: they warn and keep working from here.
__getattr__ = moved_names(
    __name__,
    {
        "as_table": "qscope.operators.base",
        "load_model_and_sae": "qscope.operators.base",
        "load_index": "qscope.index:SignatureIndex.load",
        "Provenance": "qscope.provenance",
        "add_provenance": "qscope.provenance",
        **{
            n: "qscope.seed_model"
            for n in ("SeedModel", "SeedSignatures", "background_idf", "background_sample", "fit_seed_classifier")
        },
        **{
            n: "qscope.operators.writer"
            for n in ("finalize_shards", "is_complete", "mark_complete", "write_table_atomic")
        },
    },
)
