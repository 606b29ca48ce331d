"""MineBySignature and Classify: score corpus rows against seed signatures (no model needed: rows are encoded)."""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import pyarrow as pa

from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, require_columns, set_column
from qscope.seed_model import SeedModel, SeedSignatures
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

    rows = as_ragged(table.column("feature_ids"), table.column("feature_values"), d_sae)
    vec = SignatureVectorizer(d_sae).partial_fit(rows)
    return vec.df.tolist(), vec.n_docs


def background_sample(table: pa.Table, n: int = 2000, seed: int = 0) -> dict:
    """A random sample of corpus signatures as plain lists: the negatives / IDF background the seed classifier
    contrasts with (small enough to ship inside `fn_constructor_kwargs`)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(table.num_rows, min(n, table.num_rows), replace=False)) if table.num_rows else []
    sub = table.take(pa.array(rows, pa.int64()))
    return {"feature_ids": sub.column("feature_ids").to_pylist(),
            "feature_values": sub.column("feature_values").to_pylist()}


def fit_seed_classifier(seeds: SeedSignatures, background: dict | None, method: str = "probe", k: int = 5,
                        labels: Sequence[str] | None = None):
    """`qscope.classify.SignatureClassifier` fitted on the seeds (+ the background sample)."""
    from qscope.classify import SignatureClassifier

    labels = list(labels) if labels is not None else ["seed"] * len(seeds.ids)
    bg_ids = background["feature_ids"] if background else None
    bg_vals = background["feature_values"] if background else None
    return SignatureClassifier(seeds.signature_meta.d_sae, method=method, k=k).fit(
        seeds.feature_ids, seeds.feature_values, labels, bg_ids, bg_vals)


def _check_meta(table: pa.Table, expect: SignatureMeta, op: str) -> None:
    md = table.schema.metadata or {}
    if b"qscope.sae" in md:  # batches that carry signature metadata must come from the same SAE
        expect.check_compatible(SignatureMeta.from_metadata(md, op), f"{op} input signatures")


class MineBySignature(Operator):
    """Score encoded corpus rows by how much they look like the seeds.

    Adds `seed_similarity` (mean cosine to the `k` most similar seeds; IDF from the corpus background),
    `nearest_seed`, `mine_score` and, when `targets` are given, `target_score` / `target_coverage` (see
    `scoring.target_scores`). `mine_score` is the seed classifier's score (`qscope.classify.SignatureClassifier`,
    `method` probe / centroid / knn, the corpus `background` sample as negatives: for "probe" the probability
    that the row belongs with the seeds); without a background sample it is `seed_similarity`. Rows below
    `min_score` are dropped when `drop_below=True`.

        from qscope.operators import MineBySignature, SeedSignatures
        seeds = SeedSignatures.from_table(encoded_seeds, meta)
        op = MineBySignature(seeds=seeds.to_dict(), background=background_sample(encoded_corpus),
                             targets=[812, 77], target_reference=[3.1, 2.2])
        scored = op(encoded_corpus)                              # without Ray
        ds.map_batches(MineBySignature, fn_constructor_kwargs={"seeds": seeds.to_dict()},
                       concurrency=1, num_cpus=0.5, batch_format="pyarrow")   # in Ray Data
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
        if self.classifier is not None and n:
            score = self.classifier.decision_scores(table.column("feature_ids"),
                                                    table.column("feature_values")).scores[:, 0]
        if self.targets:
            acts = target_activations(signature_rows(table), self.targets)
            ts, cov = target_scores(acts, self.reference)
            table = set_column(table, "target_score", pa.array(ts, pa.float32()))
            table = set_column(table, "target_coverage", pa.array(cov, pa.float32()))
        table = set_column(table, "mine_score", pa.array(score, pa.float32()))
        if self.drop_below:
            table = table.filter(pa.array(score >= self.min_score))
        return table


class Classify(Operator):
    """Score / label encoded rows from (labelled) seed signatures with `qscope.classify.SignatureClassifier`.

    One class (no `label`, or a single label): adds `score` (for the default "probe": probability of belonging
    with the seeds, the `background` corpus sample serving as negatives). Several classes: adds `score_<class>`
    per class and `predicted_label` (the argmax).

        from qscope.operators import Classify, SeedSignatures, background_sample
        op = Classify(seeds=SeedSignatures.from_table(encoded_seeds, meta), background=background_sample(encoded))
        labelled = op(encoded_corpus)   # or ds.map_batches(Classify, fn_constructor_kwargs=..., num_cpus=0.25, ...)
    """

    name: ClassVar[str] = "classify"

    def __init__(
        self,
        seeds: SeedSignatures | dict | None = None,
        background: dict | None = None,
        method: str = "probe",
        k: int = 5,
        seed_model: SeedModel | None = None,
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        if seed_model is not None:
            seeds, background, method, k = seed_model.seeds, seed_model.background, seed_model.method, seed_model.k
        if seeds is None:
            raise InputError("Classify needs seeds (or a seed_model)")
        self.seeds = SeedSignatures.coerce(seeds)
        if not self.seeds.ids:
            raise InputError("Classify needs at least one seed signature")
        labels = self.seeds.labels or [None] * len(self.seeds.ids)
        if any(x is None for x in labels) and any(x is not None for x in labels):
            raise InputError("some seeds have a label and some do not; label every seed or none")
        self.labels = [x if x is not None else "seed" for x in labels]
        self.classes = sorted(set(self.labels))
        if len(self.classes) == 1 and not (background and background.get("feature_ids")):
            raise InputError("one class of seeds needs a background sample of the corpus to contrast with")
        self.background, self.method, self.k = background, method, int(k)

    def setup(self) -> None:
        self.classifier = fit_seed_classifier(self.seeds, self.background, self.method, self.k, self.labels)

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, "feature_ids", "feature_values", op=self.name)
        _check_meta(table, self.seeds.signature_meta, self.name)
        if table.num_rows:
            res = self.classifier.decision_scores(table.column("feature_ids"), table.column("feature_values"))
            scores, classes = res.scores, res.classes
        else:
            scores, classes = np.zeros((0, len(self.classes)), np.float32), self.classes
        if len(classes) == 1:
            return set_column(table, "score", pa.array(scores[:, 0].astype(np.float32), pa.float32()))
        for ci, c in enumerate(classes):
            table = set_column(table, f"score_{c}", pa.array(scores[:, ci].astype(np.float32), pa.float32()))
        pred = [classes[i] for i in scores.argmax(1)] if table.num_rows else []
        return set_column(table, "predicted_label", pa.array(pred, pa.string()))
