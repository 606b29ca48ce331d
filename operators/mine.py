"""MineBySignature and Classify: score corpus rows against seed signatures (no model needed: rows are encoded)."""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import pyarrow as pa

from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, require_columns, set_column
from qscope.operators.index import SeedSignatures
from qscope.operators.scoring import signature_rows, target_activations, target_scores
from qscope.signatures import SignatureMeta


def _vectorizer(seeds: SeedSignatures, background_df: Sequence[int] | None, background_n: int, transform: str):
    from qscope.index import SignatureVectorizer

    meta = seeds.signature_meta
    vec = SignatureVectorizer(meta.d_sae, transform, use_idf=background_df is not None)
    if background_df is not None:
        vec.df = np.asarray(background_df, np.int64)
        vec.n_docs = int(background_n)
    return vec


def background_idf(table: pa.Table, d_sae: int) -> tuple[list[int], int]:
    """Document frequencies of every latent over a corpus's signatures: the IDF background mining weighs with."""
    from qscope.index import SignatureVectorizer, as_ragged

    vec = SignatureVectorizer(d_sae).partial_fit(as_ragged(table.column("feature_ids"), table.column("feature_values"), d_sae))
    return vec.df.tolist(), vec.n_docs


def _check_meta(table: pa.Table, expect: SignatureMeta, op: str) -> None:
    md = table.schema.metadata or {}
    if b"qscope.sae" in md:  # batches that carry signature metadata must come from the same SAE
        expect.check_compatible(SignatureMeta.from_metadata(md, op), f"{op} input signatures")


class MineBySignature(Operator):
    """Score encoded corpus rows by how much they look like the seeds.

    Adds `seed_similarity` (mean cosine to the `k` most similar seeds; IDF from the corpus background),
    `nearest_seed`, and, when `targets` are given, `target_score` / `target_coverage` (see `scoring.target_scores`)
    and `mine_score` (= `seed_similarity`, or their mean with `target_score` when `combine=True`). Rows below
    `min_score` are dropped when `drop_below=True`.

        from qscope.operators import MineBySignature, SeedSignatures
        seeds = SeedSignatures.from_table(encoded_seeds, meta)
        op = MineBySignature(seeds=seeds.to_dict(), targets=[812, 77], target_reference=[3.1, 2.2], k=3)
        scored = op(encoded_corpus)                              # without Ray
        ds.map_batches(MineBySignature, fn_constructor_kwargs={"seeds": seeds.to_dict()},
                       concurrency=1, num_cpus=0.5, batch_format="pyarrow")   # in Ray Data
    """

    name: ClassVar[str] = "mine_by_signature"

    def __init__(
        self,
        seeds: SeedSignatures | dict,
        targets: Sequence[int] = (),
        target_reference: Sequence[float] = (),
        background_df: Sequence[int] | None = None,
        background_n: int = 0,
        k: int = 3,
        transform: str = "sqrt",
        combine: bool = True,
        min_score: float = 0.0,
        drop_below: bool = False,
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        self.seeds = SeedSignatures.coerce(seeds)
        if not self.seeds.ids:
            raise InputError("MineBySignature needs at least one seed signature")
        self.targets, self.reference = [int(t) for t in targets], [float(r) for r in target_reference]
        if self.targets and len(self.reference) != len(self.targets):
            self.reference = [1.0] * len(self.targets)
        self.background_df, self.background_n = background_df, background_n
        self.k, self.transform, self.combine = int(k), transform, combine
        self.min_score, self.drop_below = float(min_score), drop_below

    def setup(self) -> None:
        from qscope.index import as_ragged

        self.vec = _vectorizer(self.seeds, self.background_df, self.background_n, self.transform)
        d = self.seeds.signature_meta.d_sae
        self.seed_matrix = self.vec.transform_csr(as_ragged(self.seeds.feature_ids, self.seeds.feature_values, d))

    def similarities(self, table: pa.Table) -> np.ndarray:
        """[n_rows, n_seeds] cosine similarities."""
        from qscope.index import as_ragged

        q = self.vec.transform_csr(
            as_ragged(table.column("feature_ids"), table.column("feature_values"), self.seeds.signature_meta.d_sae)
        )
        return np.asarray((q @ self.seed_matrix.T).todense(), np.float32)

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, "feature_ids", "feature_values", op=self.name)
        _check_meta(table, self.seeds.signature_meta, self.name)
        n = table.num_rows
        sims = self.similarities(table) if n else np.zeros((0, len(self.seeds.ids)), np.float32)
        k = min(self.k, sims.shape[1])
        top = -np.sort(-sims, axis=1)[:, :k] if n else np.zeros((0, k), np.float32)
        seed_sim = top.mean(1).astype(np.float32) if n else np.zeros(0, np.float32)
        nearest = [self.seeds.ids[int(j)] for j in sims.argmax(1)] if n else []
        table = set_column(table, "seed_similarity", pa.array(seed_sim, pa.float32()))
        table = set_column(table, "nearest_seed", pa.array(nearest, pa.string()))
        score = seed_sim
        if self.targets:
            acts = target_activations(signature_rows(table), self.targets)
            ts, cov = target_scores(acts, self.reference)
            table = set_column(table, "target_score", pa.array(ts, pa.float32()))
            table = set_column(table, "target_coverage", pa.array(cov, pa.float32()))
            if self.combine:
                score = ((seed_sim + ts) / 2).astype(np.float32)
        table = set_column(table, "mine_score", pa.array(score, pa.float32()))
        if self.drop_below:
            table = table.filter(pa.array(score >= self.min_score))
        return table


class Classify(Operator):
    """Label encoded rows from labelled seed signatures (kNN over IDF-weighted cosine).

    One class (no `label`, or a single label): adds `score` = mean cosine to the `k` nearest seeds.
    Several classes: adds `score_<class>` per class (similarity-weighted kNN vote share, summing to 1) and
    `predicted_label` (the argmax). Uses `qscope.index.knn_classify`.

        from qscope.operators import Classify, SeedSignatures
        op = Classify(seeds=SeedSignatures.from_table(encoded_seeds, meta).to_dict(), k=5)
        labelled = op(encoded_corpus)   # or ds.map_batches(Classify, fn_constructor_kwargs=..., num_cpus=0.5, ...)
    """

    name: ClassVar[str] = "classify"

    def __init__(
        self,
        seeds: SeedSignatures | dict,
        k: int = 5,
        background_df: Sequence[int] | None = None,
        background_n: int = 0,
        transform: str = "sqrt",
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        self.seeds = SeedSignatures.coerce(seeds)
        if not self.seeds.ids:
            raise InputError("Classify needs at least one seed signature")
        self.k = int(k)
        labels = [x for x in self.seeds.labels if x is not None]
        self.classes = sorted(set(labels))
        if self.seeds.labels and any(x is None for x in self.seeds.labels) and len(self.classes) > 1:
            raise InputError("some seeds have a label and some do not; label every seed or none")
        self.background_df, self.background_n, self.transform = background_df, background_n, transform

    def setup(self) -> None:
        self.miner = MineBySignature(
            self.seeds, k=self.k, background_df=self.background_df, background_n=self.background_n,
            transform=self.transform,
        )
        self.miner.setup()
        self.miner._ready = True

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, "feature_ids", "feature_values", op=self.name)
        _check_meta(table, self.seeds.signature_meta, self.name)
        sims = self.miner.similarities(table) if table.num_rows else np.zeros((0, len(self.seeds.ids)), np.float32)
        if len(self.classes) <= 1:
            k = min(self.k, sims.shape[1])
            score = (-np.sort(-sims, axis=1)[:, :k]).mean(1) if table.num_rows else np.zeros(0)
            return set_column(table, "score", pa.array(np.asarray(score, np.float32), pa.float32()))
        labels = np.asarray(self.seeds.labels, dtype=object)
        k = min(self.k, sims.shape[1])
        votes = np.zeros((table.num_rows, len(self.classes)), np.float64)
        if table.num_rows:
            nn = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            nn_sims = np.take_along_axis(sims, nn, 1).clip(min=0) + 1e-6
            for ci, c in enumerate(self.classes):
                votes[:, ci] = (nn_sims * (labels[nn] == c)).sum(1)
        total = votes.sum(1, keepdims=True)
        shares = np.divide(votes, total, out=np.zeros_like(votes), where=total > 0).astype(np.float32)
        for ci, c in enumerate(self.classes):
            table = set_column(table, f"score_{c}", pa.array(shares[:, ci], pa.float32()))
        pred = [self.classes[i] for i in shares.argmax(1)] if table.num_rows else []
        return set_column(table, "predicted_label", pa.array(pred, pa.string()))
