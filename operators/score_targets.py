"""ScoreTargetFeatures: re-encode generated texts and measure how strongly they express the target features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pyarrow as pa

from qscope.operators.base import ModelSpec, Operator, Resources, require_columns, set_column
from qscope.operators.encode import EncodeSignatures, _with_signature_columns
from qscope.operators.mine import MineBySignature
from qscope.seed_model import SeedModel, SeedSignatures
from qscope.targets import target_activations, target_scores


class ScoreTargetFeatures(Operator):
    """Re-encode `text` with the LM + SAE and score it against the target features (and the seeds).

    Adds the signature columns (`feature_ids`, `feature_values`, `n_tokens`, `truncated`), `target_score`
    (mean over targets of min(1, activation / seed-typical activation)), `target_coverage` (fraction of targets
    that fire), `seed_similarity` (when `seeds` are given) and, for the review report, `tokens` (list<string>)
    with `token_target_act` (list<float32>: per token, the strongest target activation relative to its
    reference) — what the report highlights.

        from qscope.operators import ScoreTargetFeatures
        op = ScoreTargetFeatures(targets=[812, 77], target_reference=[3.1, 2.2])
        scored = op({"text": ["APRS tracker for amateur radio"]})
        ds.map_batches(**ScoreTargetFeatures.map_batches_kwargs({"targets": [812]}, {"num_cpus": 0.5}))
    """

    name: ClassVar[str] = "score_target_features"
    uses_torch: ClassVar[bool] = True

    def __init__(
        self,
        targets: Sequence[int] = (),
        target_reference: Sequence[float] = (),
        model_spec: ModelSpec | dict | None = None,
        pooling: str = "max",
        top_n: int = 64,
        seeds: SeedSignatures | dict | None = None,
        background_df: Sequence[int] | None = None,
        background_n: int = 0,
        text_column: str = "text",
        keep_tokens: bool = True,
        seed_model: SeedModel | None = None,
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        if seed_model is not None:  # targets, seeds and IDF background from the pipeline's seed model
            targets, target_reference, seeds = seed_model.target_ids, seed_model.target_reference, seed_model.seeds
            background_df, background_n = seed_model.background_idf()
        self.targets = [int(t) for t in targets]
        ref = [float(r) for r in target_reference]
        self.reference = ref if len(ref) == len(self.targets) else [1.0] * len(self.targets)
        self.encoder = EncodeSignatures(model_spec, pooling=pooling, top_n=top_n, text_column=text_column)
        self.seeds = SeedSignatures.coerce(seeds) if seeds is not None else None
        self.background_df, self.background_n = background_df, background_n
        self.text_column, self.keep_tokens = text_column, keep_tokens

    def setup(self) -> None:
        self.encoder.ensure_setup()
        self.miner = None
        if self.seeds is not None:
            self.miner = MineBySignature(self.seeds, background_df=self.background_df, background_n=self.background_n)
            self.miner.ensure_setup()

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, self.text_column, op=self.name)
        raw = table.column(self.text_column).to_pylist()
        ok = [i for i, t in enumerate(raw) if isinstance(t, str) and t.strip()]
        n = len(raw)
        ids, vals, ntok, trunc = [[]] * n, [[]] * n, [0] * n, [False] * n
        tokens, tok_act = [[]] * n, [[]] * n
        if ok:
            docs = self.encoder.encode_texts([raw[i] for i in ok])
            pos = {int(f): j for j, f in enumerate(self.targets)}
            ref = np.maximum(np.asarray(self.reference, np.float32), 1e-6)
            for i, d in zip(ok, docs):
                fid, fval = d.signature(self.encoder.pooling, self.encoder.top_n)
                ids[i], vals[i], ntok[i], trunc[i] = fid, fval, d.n_tokens, d.truncated
                if self.keep_tokens:
                    tokens[i] = d.tokens
                    acts = []
                    for t_idx, t_val in zip(d.token_indices, d.token_values):
                        best = 0.0
                        for f, v in zip(t_idx.tolist(), t_val.tolist()):
                            j = pos.get(f)
                            if j is not None:
                                best = max(best, v / ref[j])
                        acts.append(best)
                    tok_act[i] = acts
        table = _with_signature_columns(table, ids, vals, ntok, trunc)
        acts = target_activations(
            [(np.asarray(a, np.int64), np.asarray(b, np.float32)) for a, b in zip(ids, vals)], self.targets
        )
        score, cov = target_scores(acts, self.reference)
        table = set_column(table, "target_score", pa.array(score, pa.float32()))
        table = set_column(table, "target_coverage", pa.array(cov, pa.float32()))
        if self.miner is not None:
            sim = self.miner.process(table.select(["feature_ids", "feature_values"])).column("seed_similarity")
            table = set_column(table, "seed_similarity", sim)
        if self.keep_tokens:
            table = set_column(table, "tokens", pa.array(tokens, pa.list_(pa.string())))
            table = set_column(
                table,
                "token_target_act",
                pa.array([np.asarray(a, np.float32) for a in tok_act], pa.list_(pa.float32())),
            )
        return table
