"""Ray Data operators (callable classes for `ds.map_batches`); import path `qscope.operators`.

Each operator is a small class: `resources` (fractional CPUs by default — 2-core machines deadlock otherwise),
`setup()` (load the model once per actor), `__call__(batch) -> pyarrow.Table`. They also run without Ray:
`EncodeSignatures(...)(table)`. `Op.map_batches_kwargs(ctor_kwargs, resources)` gives the `map_batches` kwargs.

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
| WriteParquetShards    | —           | atomic shards + provenance; `finalize_shards` merges + `_SUCCESS` |
"""

from qscope.operators.base import ModelSpec, Operator, Resources, as_table, load_model_and_sae
from qscope.operators.dedup import Dedup
from qscope.operators.encode import EncodeSignatures
from qscope.operators.filter import FilterByScore
from qscope.operators.generate import SteeredGenerate
from qscope.operators.index import BuildSignatureIndex, SeedSignatures, load_index
from qscope.operators.mine import Classify, MineBySignature, background_idf, background_sample, fit_seed_classifier
from qscope.operators.score import ScoreTargetFeatures
from qscope.operators.writer import (
    Provenance,
    WriteParquetShards,
    add_provenance,
    finalize_shards,
    is_complete,
    mark_complete,
    write_table_atomic,
)

__all__ = [
    "BuildSignatureIndex", "Classify", "Dedup", "EncodeSignatures", "FilterByScore", "MineBySignature", "ModelSpec",
    "Operator", "Provenance", "Resources", "ScoreTargetFeatures", "SeedSignatures", "SteeredGenerate",
    "WriteParquetShards", "add_provenance", "as_table", "background_idf", "background_sample",
    "fit_seed_classifier", "finalize_shards", "is_complete",
    "load_index", "load_model_and_sae", "mark_complete", "write_table_atomic",
]
