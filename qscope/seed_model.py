"""`SeedModel`: everything small that mining, classification and scoring need — built on the driver from the seeds
and a bounded sample of the corpus, broadcast to every actor, saved next to the output.

    seeds       the seed signatures (+ labels)                      `SeedSignatures`
    background  a fixed-size sample of corpus signatures            negatives of the one-class probe, IDF
    targets     contrastive target features (seeds vs background)   what expand steers and scores with

Its size does not depend on the corpus: a 10M-row corpus gives the same few megabytes as a 2k-row one.

    model = SeedModel.fit(seed_table, background_table, meta, n_targets=8)
    model.save("out/_seed_model"); SeedModel.load("out/_seed_model")

Its parts also stand alone, for operators built by hand: `SeedSignatures.from_table`, `background_sample` (the
bounded corpus sample), `background_idf` (document frequencies), `fit_seed_classifier`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from qscope.errors import InputError
from qscope.signatures import SignatureMeta


@dataclass
class SeedSignatures:
    """Seed signatures (+ optional labels) in plain lists, so they travel inside `fn_constructor_kwargs`."""

    ids: list[str]
    feature_ids: list[list[int]]
    feature_values: list[list[float]]
    meta: dict
    """`SignatureMeta` fields."""
    labels: list[str | None] = field(default_factory=list)
    hidden_mean: list[list[float]] | None = None
    """Each seed's mean hidden state, when the signatures were encoded with it (`SignatureMeta.hidden_mean`)."""
    texts: list[str] | None = None
    """Each seed's text, when the table had it: the probe's TF-IDF view (with the background's texts)."""

    @classmethod
    def from_table(cls, table: pa.Table, meta: SignatureMeta, label_column: str | None = "label") -> SeedSignatures:
        missing = [c for c in ("id", "feature_ids", "feature_values") if c not in table.column_names]
        if missing:
            raise InputError(f"SeedSignatures: table lacks column(s) {missing}")
        labels = table.column(label_column).to_pylist() if label_column and label_column in table.column_names else []
        return cls(
            table.column("id").to_pylist(),
            table.column("feature_ids").to_pylist(),
            table.column("feature_values").to_pylist(),
            asdict(meta),
            [None if x is None else str(x) for x in labels],
            _dense_column(table),
            _text_column(table),
        )

    @property
    def signature_meta(self) -> SignatureMeta:
        return SignatureMeta(**self.meta)

    def to_dict(self) -> dict:
        return self.__dict__.copy()

    @classmethod
    def coerce(cls, obj: SeedSignatures | dict) -> SeedSignatures:
        return obj if isinstance(obj, cls) else cls(**obj)

    def index(self, **kw):
        from qscope.index import SignatureIndex

        idx = SignatureIndex(self.signature_meta, **kw)
        idx.add(self.ids, self.feature_ids, self.feature_values)
        return idx


def select_targets(
    seeds: SeedSignatures,
    background: dict,
    n: int,
    method: str = "logodds",
    min_seed_fraction: float = 0.25,
    fixed: list[int] | None = None,
) -> list[dict]:
    """Contrastive target features (`qscope.targets.select_target_features`): present in many seeds, rarer in the
    background. [{feature, score, frac_seeds, frac_background, reference, background_mean}]; `reference` is the
    feature's mean pooled activation on the seeds that contain it (the level scores are measured against)."""
    from qscope.targets import select_target_features

    d_sae = seeds.signature_meta.d_sae
    args = (seeds.feature_ids, seeds.feature_values, background["feature_ids"], background["feature_values"], d_sae)
    if fixed:
        ranked = {
            t.feature_id: t for t in select_target_features(*args, top_k=d_sae, min_seed_coverage=0.0, method=method)
        }
        chosen = [(int(f), ranked.get(int(f))) for f in fixed]
    else:
        chosen = [
            (t.feature_id, t)
            for t in select_target_features(*args, top_k=n, min_seed_coverage=min_seed_fraction, method=method)
        ]
    return [
        {
            "feature": int(f),
            "score": None if t is None else round(float(t.score), 4),
            "frac_seeds": 0.0 if t is None else round(float(t.seed_coverage), 4),
            "frac_background": 0.0 if t is None else round(float(t.background_coverage), 4),
            "reference": 1.0 if t is None or t.seed_mean <= 0 else float(t.seed_mean),
            "background_mean": 0.0 if t is None else float(t.background_mean),
        }
        for f, t in chosen
    ]


def background_sample(table: pa.Table, n: int = 2000, seed: int = 0, text: bool = False) -> dict:
    """A random sample of corpus signatures as plain lists: the negatives / IDF background the seed classifier
    contrasts with (small enough to ship inside `fn_constructor_kwargs`). text=True keeps the rows' `text` too:
    the probe then reads a TF-IDF view as well (when the seeds have texts), and every scored batch needs `text`."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(table.num_rows, min(n, table.num_rows), replace=False)) if table.num_rows else []
    sub = table.take(pa.array(rows, pa.int64()))
    out = {
        "feature_ids": sub.column("feature_ids").to_pylist(),
        "feature_values": sub.column("feature_values").to_pylist(),
    }
    if text:
        texts = _text_column(sub)
        if texts is None:
            raise InputError("background_sample(text=True): the table has no complete `text` column")
        out["text"] = texts
    return out


def background_idf(table: pa.Table, d_sae: int) -> tuple[list[int], int]:
    """Document frequencies of every latent over a corpus's signatures, and their count: the IDF background
    mining weighs with."""
    return _document_frequencies(table.column("feature_ids"), table.column("feature_values"), d_sae)


def _document_frequencies(feature_ids: Any, feature_values: Any, d_sae: int) -> tuple[list[int], int]:
    from qscope.index import SignatureVectorizer, as_ragged

    vec = SignatureVectorizer(d_sae).partial_fit(as_ragged(feature_ids, feature_values, d_sae))
    return vec.df.tolist(), vec.n_docs


def fit_seed_classifier(
    seeds: SeedSignatures,
    background: dict | None,
    method: str = "probe",
    k: int = 5,
    labels: Sequence[str] | None = None,
):
    """`qscope.classify.SignatureClassifier` fitted on the seeds (+ the background sample as negatives)."""
    from qscope.classify import SignatureClassifier

    labels = list(labels) if labels is not None else ["seed"] * len(seeds.ids)
    bg_ids = background["feature_ids"] if background else None
    bg_vals = background["feature_values"] if background else None
    views = probe_views(seeds, background, method)
    return SignatureClassifier(seeds.signature_meta.d_sae, method=method, k=k, **probe_settings(views)).fit(
        seeds.feature_ids, seeds.feature_values, labels, bg_ids, bg_vals, **views
    )


JOINT_PROBE_C = 3.0
"""The probe's C over signature + hidden state (bench/efficacy.py, "joint sig+hidden probe"; the signature alone: 1).
The text view, when read, is a probe of its own (`qscope.classify.SignatureClassifier._fit_probe`)."""


def probe_views(seeds: SeedSignatures, background: dict | None, method: str) -> dict:
    """The extra views the probe reads, as `SignatureClassifier.fit` keywords: the hidden means (dense= /
    background_dense=) and the texts (texts= / background_texts=), each only where the seeds and the background
    both have it."""
    if method != "probe":
        return {}
    views = {}
    bg = background if background and background.get("feature_ids") else None
    if seeds.hidden_mean is not None and (bg is None or bg.get("hidden_mean") is not None):
        views["dense"] = np.asarray(seeds.hidden_mean, np.float32)
        views["background_dense"] = None if bg is None else np.asarray(bg["hidden_mean"], np.float32)
    if seeds.texts is not None and (bg is None or bg.get("text") is not None):
        views["texts"] = list(seeds.texts)
        views["background_texts"] = None if bg is None else list(bg["text"])
    return views


def probe_settings(views: dict) -> dict:
    """The probe's C for the views it reads (measured for them)."""
    return {"C": JOINT_PROBE_C if "dense" in views else 1.0}


def seed_scores(classifier, table: pa.Table):
    """`classifier.decision_scores` of a batch of encoded rows, with their `hidden_mean` / `text` when it reads
    them."""
    dense = texts = None
    if classifier.uses_dense:
        dense = _dense_column(table)
        if dense is None:
            raise InputError("the seed classifier reads the mean hidden state: these rows lack `hidden_mean`")
    if classifier.uses_text:
        texts = _text_column(table)
        if texts is None:
            raise InputError("the seed classifier reads the texts (TF-IDF view): these rows lack `text`")
    return classifier.decision_scores(table.column("feature_ids"), table.column("feature_values"), dense, texts)


def _dense_column(table: pa.Table) -> list | None:
    if "hidden_mean" not in table.column_names:
        return None
    values = table.column("hidden_mean").to_pylist()
    return None if any(v is None for v in values) else values


def _view_columns(table: pa.Table) -> dict:
    """A background table's complete extra views for the probe: {"hidden_mean": ..., "text": ...}, each when present."""
    views = {"hidden_mean": _dense_column(table), "text": _text_column(table)}
    return {k: v for k, v in views.items() if v is not None}


def _text_column(table: pa.Table) -> list | None:
    if "text" not in table.column_names:
        return None
    values = table.column("text").to_pylist()
    return None if any(not isinstance(v, str) for v in values) else values


@dataclass
class SeedModel:
    seeds: SeedSignatures
    background: dict
    """{"ids", "feature_ids", "feature_values"} (+ "hidden_mean", "text" when the sample has them): the bounded
    corpus sample."""
    targets: list[dict] = field(default_factory=list)
    method: str = "probe"
    """Seed classifier (`qscope.classify`): probe, centroid or knn."""
    k: int = 3
    settings: dict = field(default_factory=dict)
    """How it was built (sample size, target settings...): provenance, shown in the plan and the report."""

    @classmethod
    def fit(
        cls,
        seeds: pa.Table,
        background: pa.Table,
        meta: SignatureMeta,
        *,
        n_targets: int = 0,
        target_method: str = "logodds",
        min_seed_fraction: float = 0.25,
        fixed_targets: list[int] | None = None,
        method: str = "probe",
        k: int = 3,
        label_column: str | None = "label",
    ) -> SeedModel:
        if seeds.num_rows == 0:
            raise InputError("no seed signatures to build a seed model from")
        seed_sigs = SeedSignatures.from_table(seeds, meta, label_column)
        bg = {
            "ids": background.column("id").to_pylist() if "id" in background.column_names else [],
            "feature_ids": background.column("feature_ids").to_pylist(),
            "feature_values": background.column("feature_values").to_pylist(),
        }
        bg.update(_view_columns(background))
        targets = []
        if n_targets or fixed_targets:
            if not bg["feature_ids"]:
                raise InputError("target features are chosen against the corpus: the corpus has no encoded rows")
            targets = select_targets(seed_sigs, bg, n_targets, target_method, min_seed_fraction, fixed_targets)
        settings = {
            "background_rows": len(bg["feature_ids"]),
            "n_targets": n_targets,
            "target_method": target_method,
            "min_seed_fraction": min_seed_fraction,
        }
        return cls(seed_sigs, bg, targets, method, int(k), settings)

    @property
    def meta(self) -> SignatureMeta:
        return self.seeds.signature_meta

    @property
    def target_ids(self) -> list[int]:
        return [t["feature"] for t in self.targets]

    @property
    def target_reference(self) -> list[float]:
        return [t["reference"] for t in self.targets]

    def background_idf(self) -> tuple[list[int], int]:
        """Document frequency of every latent over the background sample, and its size."""
        return _document_frequencies(self.background["feature_ids"], self.background["feature_values"], self.meta.d_sae)

    def classifier(self, labels: list | None = None):
        """`qscope.classify.SignatureClassifier` fitted on the seeds (the background sample as negatives)."""
        bg = self.background if self.background.get("feature_ids") else None
        return fit_seed_classifier(self.seeds, bg, self.method, self.k, labels)

    def heldout_scores(self, folds: int = 5, seed: int = 0):
        """Out-of-fold seed-classifier scores of the seeds and of the background sample (each scored by a
        classifier fitted without it): what `mining_cutoff` calibrates on. One-class seed models only."""
        from qscope.classify import heldout_scores

        if len({x for x in self.seeds.labels if x is not None}) > 1:
            raise InputError("held-out mining scores need one class of seeds")
        bg = self.background
        if not bg.get("feature_ids"):
            raise InputError("held-out mining scores need the background sample")
        views = probe_views(self.seeds, bg, self.method)
        return heldout_scores(
            self.seeds.feature_ids,
            self.seeds.feature_values,
            bg["feature_ids"],
            bg["feature_values"],
            self.meta.d_sae,
            folds=folds,
            seed=seed,
            method=self.method,
            k=self.k,
            **views,
            **probe_settings(views),
        )

    def mining_cutoff(self, target_precision: float = 0.8, folds: int = 5, seed: int = 0):
        """The seed-classifier score cut-off whose estimated precision on the corpus is >= `target_precision`
        (`qscope.classify.precision_cutoff` on `heldout_scores`), with the estimated precision, recall, prevalence
        and the share of the corpus expected to pass."""
        from qscope.classify import precision_cutoff

        pos, bg = self.heldout_scores(folds, seed)
        return precision_cutoff(pos, bg, target_precision)

    # --- persistence -----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """`<path>/seed_model.json` + `seeds.parquet` + `background.parquet`, replaced atomically."""
        import pyarrow.parquet as pq

        from qscope.paths import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            (tmp / "seed_model.json").write_text(
                json.dumps(
                    {
                        "meta": self.seeds.meta,
                        "targets": self.targets,
                        "method": self.method,
                        "k": self.k,
                        "settings": self.settings,
                    },
                    indent=1,
                )
            )
            pq.write_table(
                pa.table(
                    {
                        "id": pa.array(self.seeds.ids, pa.string()),
                        "label": pa.array(self.seeds.labels or [None] * len(self.seeds.ids), pa.string()),
                        **_sig_columns(
                            self.seeds.feature_ids, self.seeds.feature_values, self.seeds.hidden_mean, self.seeds.texts
                        ),
                    }
                ),
                tmp / "seeds.parquet",
            )
            bg = self.background
            pq.write_table(
                pa.table(
                    {
                        "id": pa.array(bg.get("ids") or [None] * len(bg["feature_ids"]), pa.string()),
                        **_sig_columns(bg["feature_ids"], bg["feature_values"], bg.get("hidden_mean"), bg.get("text")),
                    }
                ),
                tmp / "background.parquet",
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> SeedModel:
        import pyarrow.parquet as pq

        path = Path(path)
        if not (path / "seed_model.json").exists():
            raise InputError(f"{path}: not a saved seed model (no seed_model.json)")
        info = json.loads((path / "seed_model.json").read_text())
        seeds, bg = pq.read_table(path / "seeds.parquet"), pq.read_table(path / "background.parquet")
        labels = seeds.column("label").to_pylist()
        sig = SeedSignatures(
            seeds.column("id").to_pylist(),
            seeds.column("feature_ids").to_pylist(),
            seeds.column("feature_values").to_pylist(),
            info["meta"],
            labels if any(x is not None for x in labels) else [],
            _dense_column(seeds),
            _text_column(seeds),  # seed models saved before the text view have none: the probe goes without it
        )
        background = {
            "ids": bg.column("id").to_pylist(),
            "feature_ids": bg.column("feature_ids").to_pylist(),
            "feature_values": bg.column("feature_values").to_pylist(),
        }
        background.update(_view_columns(bg))
        return cls(sig, background, info["targets"], info["method"], info["k"], info.get("settings", {}))


def _sig_columns(ids: list, values: list, hidden_mean: list | None = None, texts: list | None = None) -> dict[str, Any]:
    out = {
        "feature_ids": pa.array(ids, pa.list_(pa.int32())),
        "feature_values": pa.array(values, pa.list_(pa.float32())),
    }
    if hidden_mean is not None:
        out["hidden_mean"] = pa.array(hidden_mean, pa.list_(pa.float32()))
    if texts is not None:
        out["text"] = pa.array(texts, pa.string())
    return out
