"""Classify: score / label encoded rows with a classifier fitted on (labelled) seed signatures (no model needed)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from qscope.errors import InputError
from qscope.operators.base import Operator, Resources, require_columns, set_column
from qscope.seed_model import SeedModel, SeedSignatures, fit_seed_classifier, seed_scores
from qscope.signatures import check_batch_meta


class Classify(Operator):
    """Score / label encoded rows from (labelled) seed signatures with `qscope.classify.SignatureClassifier`.

    One class (no `label`, or a single label): adds `score` (for the default "probe": probability of belonging
    with the seeds, the `background` corpus sample serving as negatives). Several classes: adds `score_<class>`
    per class and `predicted_label` (the argmax). When the seeds and the background carry texts, the probe also
    reads each row's `text` (TF-IDF): a score is then the logistic of the two probes' mixed, standardised
    log-odds, in (0, 1) and ranked like a probability, not calibrated as one.

        from qscope.operators import Classify
        from qscope.seed_model import SeedSignatures, background_sample
        op = Classify(seeds=SeedSignatures.from_table(encoded_seeds, meta), background=background_sample(encoded))
        # text=True: the probe also reads each row's text (TF-IDF), so scored batches need a `text` column
        op = Classify(seeds=..., background=background_sample(encoded, text=True))
        labelled = op(encoded_corpus)
        ds.map_batches(**Classify.map_batches_kwargs({"seed_model": model}, {"num_cpus": 0.25}))   # in Ray Data
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
        check_batch_meta(table, self.seeds.signature_meta, self.name)
        if table.num_rows:
            res = seed_scores(self.classifier, table)
            scores, classes = res.scores, res.classes
        else:
            scores, classes = np.zeros((0, len(self.classes)), np.float32), self.classes
        if len(classes) == 1:
            return set_column(table, "score", pa.array(scores[:, 0].astype(np.float32), pa.float32()))
        for ci, c in enumerate(classes):
            table = set_column(table, f"score_{c}", pa.array(scores[:, ci].astype(np.float32), pa.float32()))
        pred = [classes[i] for i in scores.argmax(1)] if table.num_rows else []
        return set_column(table, "predicted_label", pa.array(pred, pa.string()))
