"""MineBySignature: score encoded corpus rows by how much they look like the seeds (no model needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pyarrow as pa

from qscope.deprecation import moved_names
from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, require_columns, set_column
from qscope.seed_model import SeedModel, SeedSignatures, fit_seed_classifier, seed_scores
from qscope.signatures import check_batch_meta
from qscope.targets import signature_rows, target_activations, target_scores


def _vectorizer(seeds: SeedSignatures, background_df: Sequence[int] | None, background_n: int, transform: str):
    from qscope.index import SignatureVectorizer

    meta = seeds.signature_meta
    vec = SignatureVectorizer(meta.d_sae, transform, use_idf=background_df is not None)
    if background_df is not None:
        vec.df = np.asarray(background_df, np.int64)
        vec.n_docs = int(background_n)
    return vec


class MineBySignature(Operator):
    """Score encoded corpus rows by how much they look like the seeds.

    Adds `seed_similarity` (mean cosine to the `k` most similar seeds; IDF from the corpus background),
    `nearest_seed`, `mine_score` and, when `targets` are given, `target_score` / `target_coverage` (see
    `qscope.targets.target_scores`). `mine_score` is the seed classifier's score (`qscope.classify.SignatureClassifier`,
    `method` probe / centroid / knn, the corpus `background` sample as negatives: for "probe" the probability
    that the row belongs with the seeds); without a background sample it is `seed_similarity`. Rows below
    `min_score` are dropped when `drop_below=True`.

        from qscope.operators import MineBySignature
        from qscope.seed_model import SeedSignatures, background_sample
        seeds = SeedSignatures.from_table(encoded_seeds, meta)
        op = MineBySignature(seeds=seeds.to_dict(), background=background_sample(encoded_corpus),
                             targets=[812, 77], target_reference=[3.1, 2.2])
        scored = op(encoded_corpus)                              # without Ray
        ds.map_batches(**MineBySignature.map_batches_kwargs({"seeds": seeds.to_dict()}))   # in Ray Data

    A pipeline's `SeedModel` gives all of it at once: `MineBySignature(seed_model=model)`.
    """

    name: ClassVar[str] = "mine_by_signature"

    def __init__(
        self,
        seeds: SeedSignatures | dict | None = None,
        targets: Sequence[int] = (),
        target_reference: Sequence[float] = (),
        background_df: Sequence[int] | None = None,
        background_n: int = 0,
        k: int = 3,
        transform: str = "sqrt",
        background: dict | None = None,
        method: str = "probe",
        min_score: float = 0.0,
        drop_below: bool = False,
        seed_model: SeedModel | None = None,
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        if seed_model is not None:  # everything from the pipeline's seed model (IDF from its background sample)
            seeds, targets, target_reference = seed_model.seeds, seed_model.target_ids, seed_model.target_reference
            background, method, k = seed_model.background, seed_model.method, seed_model.k
            background_df, background_n = seed_model.background_idf()
        if seeds is None:
            raise InputError("MineBySignature needs seeds (or a seed_model)")
        self.seeds = SeedSignatures.coerce(seeds)
        if not self.seeds.ids:
            raise InputError("MineBySignature needs at least one seed signature")
        self.targets, self.reference = [int(t) for t in targets], [float(r) for r in target_reference]
        if self.targets and len(self.reference) != len(self.targets):
            self.reference = [1.0] * len(self.targets)
        self.background_df, self.background_n = background_df, background_n
        self.k, self.transform = int(k), transform
        self.background, self.method = background, method
        self.min_score, self.drop_below = float(min_score), drop_below

    def setup(self) -> None:
        from qscope.index import as_ragged

        self.vec = _vectorizer(self.seeds, self.background_df, self.background_n, self.transform)
        d = self.seeds.signature_meta.d_sae
        self.seed_matrix = self.vec.transform_csr(as_ragged(self.seeds.feature_ids, self.seeds.feature_values, d))
        self.classifier = None
        if self.background and self.background.get("feature_ids"):
            self.classifier = fit_seed_classifier(self.seeds, self.background, self.method, self.k)

    def similarities(self, table: pa.Table) -> np.ndarray:
        """[n_rows, n_seeds] cosine similarities."""
        from qscope.index import as_ragged

        q = self.vec.transform_csr(
            as_ragged(table.column("feature_ids"), table.column("feature_values"), self.seeds.signature_meta.d_sae)
        )
        return np.asarray((q @ self.seed_matrix.T).todense(), np.float32)

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, "feature_ids", "feature_values", op=self.name)
        check_batch_meta(table, self.seeds.signature_meta, self.name)
        n = table.num_rows
        sims = self.similarities(table) if n else np.zeros((0, len(self.seeds.ids)), np.float32)
        k = min(self.k, sims.shape[1])
        top = -np.sort(-sims, axis=1)[:, :k] if n else np.zeros((0, k), np.float32)
        seed_sim = top.mean(1).astype(np.float32) if n else np.zeros(0, np.float32)
        nearest = [self.seeds.ids[int(j)] for j in sims.argmax(1)] if n else []
        table = set_column(table, "seed_similarity", pa.array(seed_sim, pa.float32()))
        table = set_column(table, "nearest_seed", pa.array(nearest, pa.string()))
        score = seed_sim
        if self.classifier is not None and n:
            score = seed_scores(self.classifier, table).scores[:, 0]
        if self.targets:
            acts = target_activations(signature_rows(table), self.targets)
            ts, cov = target_scores(acts, self.reference)
            table = set_column(table, "target_score", pa.array(ts, pa.float32()))
            table = set_column(table, "target_coverage", pa.array(cov, pa.float32()))
        table = set_column(table, "mine_score", pa.array(score, pa.float32()))
        if self.drop_below:
            table = table.filter(pa.array(score >= self.min_score))
        return table


# Old homes of names that moved: they warn and keep working.
__getattr__ = moved_names(
    __name__,
    {
        "Classify": "qscope.operators.classify",
        **{n: "qscope.seed_model" for n in ("background_idf", "background_sample", "fit_seed_classifier")},
    },
)
