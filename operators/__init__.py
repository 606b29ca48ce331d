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
| SampleByHash          | —           | keeps rows whose id hash is below a fraction (uniform sample)    |
| TopRows               | —           | keeps each batch's best k rows by a column                       |
| Project               | —           | selects output columns, stamps `qscope.*` schema metadata        |
| WriteParquetShards    | —           | atomic shards + provenance; `finalize_shards` merges + `_SUCCESS` |
"""

from qscope.operators.base import ModelSpec, Operator, Resources, as_table, load_model_and_sae
from qscope.operators.dedup import Dedup
from qscope.operators.encode import EncodeSignatures
from qscope.operators.filter import FilterByScore
from qscope.operators.generate import SteeredGenerate
from qscope.operators.index import BuildSignatureIndex, load_index
from qscope.operators.mine import Classify, MineBySignature, background_idf, background_sample, fit_seed_classifier
from qscope.operators.score import ScoreTargetFeatures
from qscope.operators.select import Project, SampleByHash, TopRows
from qscope.operators.writer import (
    Provenance,
    WriteParquetShards,
    add_provenance,
    finalize_shards,
    is_complete,
    mark_complete,
    write_table_atomic,
)
from qscope.seed_model import SeedModel, SeedSignatures

__all__ = [
    "BuildSignatureIndex", "Classify", "Dedup", "EncodeSignatures", "FilterByScore", "MineBySignature", "ModelSpec",
    "Operator", "Project", "Provenance", "Resources", "SampleByHash", "ScoreTargetFeatures", "SeedModel",
    "SeedSignatures", "SteeredGenerate", "TopRows",
    "WriteParquetShards", "add_provenance", "as_table", "background_idf", "background_sample",
    "fit_seed_classifier", "finalize_shards", "is_complete",
    "load_index", "load_model_and_sae", "mark_complete", "write_table_atomic",
]
