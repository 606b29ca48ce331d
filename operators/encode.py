"""EncodeSignatures: texts → per-document SAE feature signatures (an LM + SAE actor)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from qscope.operators.base import ModelSpec, Operator, Resources, load_model_and_sae, require_columns, set_column


class EncodeSignatures(Operator):
    """Add `feature_ids` (list<int32>), `feature_values` (list<float32>), `n_tokens`, `truncated` to each row.

    The signature is the document's pooled SAE activation (`pooling` max / sum / binary), top `top_n` latents,
    value-descending — the same schema as `qscope.signatures`. The LM runs only up to the SAE's layer.

    Without Ray:

        from qscope.operators import EncodeSignatures
        op = EncodeSignatures(model_spec={"sae": "smollm2-135m-l15"}, pooling="max", top_n=64)
        out = op({"id": ["a"], "text": ["APRS digipeater for packet radio"]})   # pyarrow Table
        out.column("feature_ids")

    In a Ray Data pipeline (one actor holds the model; fractional CPU so 2-core machines do not hang):

        ds = ray.data.read_json("corpus.jsonl")
        ds = ds.map_batches(**EncodeSignatures.map_batches_kwargs(
            {"model_spec": {"max_length": 128}}, {"num_cpus": 0.5, "concurrency": 1}, batch_size=32))
    """

    name: ClassVar[str] = "encode_signatures"
    uses_torch: ClassVar[bool] = True

    def __init__(
        self,
        model_spec: ModelSpec | dict | None = None,
        pooling: str = "max",
        top_n: int = 64,
        text_column: str = "text",
        batch_size: int = 16,
        hidden_mean: bool = False,
        resources: Resources | dict | None = None,
    ):
        super().__init__(resources)
        self.model_spec = ModelSpec.coerce(model_spec)
        self.pooling, self.top_n, self.text_column, self.batch_size = pooling, int(top_n), text_column, batch_size
        self.hidden_mean = bool(hidden_mean)
        """Also write `hidden_mean` (float32 list: the mean residual over the pooled tokens; null for rejected
        rows): the dense view `qscope.classify`'s probe can read next to the signature."""

    def setup(self) -> None:
        from qscope.features import FeatureExtractor

        self.lm, self.sae, self.layer = load_model_and_sae(self.model_spec, features_only=True)
        self.extractor = FeatureExtractor.single(
            self.lm, self.sae, self.layer, batch_size=self.batch_size, max_length=self.model_spec.max_length
        )

    def encode_texts(self, texts: list[str]):
        """DocumentFeatures of each text (per-token codes included)."""
        self.ensure_setup()
        return list(self.extractor.iter_documents(texts, self.layer))

    def signatures(self, texts: list[str]) -> list:
        """`qscope.features.DocumentSignature` of each text (pooled on the batch, no per-token objects)."""
        self.ensure_setup()
        # Batched by length: texts of similar length share a forward pass, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        sigs = list(
            self.extractor.iter_signatures(
                [texts[i] for i in order], self.pooling, self.top_n, self.layer, hidden_mean=self.hidden_mean
            )
        )
        out = [None] * len(texts)
        for i, sig in zip(order, sigs):
            out[i] = sig
        return out

    def process(self, table: pa.Table) -> pa.Table:
        require_columns(table, self.text_column, op=self.name)
        if table.num_rows == 0:
            return self._with_columns(table, [])
        texts = table.column(self.text_column).to_pylist()
        if "reject_reason" not in table.column_names:  # a plain batch (user ETL): every row must be text
            return self._with_columns(table, self.signatures(texts))
        # Corpus rows (`pipelines.sources`): rejected rows pass through unencoded, and a row the model cannot
        # read becomes a rejected row instead of failing its whole batch.
        reasons = table.column("reject_reason").to_pylist()
        sigs: list = [None] * len(texts)
        todo = [i for i in range(len(texts)) if reasons[i] is None]
        for i, sig in zip(todo, self._encode_each([texts[i] for i in todo])):
            if isinstance(sig, str):
                reasons[i] = sig
            else:
                sigs[i] = sig
        table = set_column(table, "reject_reason", pa.array(reasons, pa.string()))
        return self._with_columns(table, sigs)

    def _with_columns(self, table: pa.Table, sigs: list) -> pa.Table:
        """The signature columns (and `hidden_mean` when asked for); a None entry is a row left unencoded."""
        table = _with_signature_columns(
            table,
            [s.feature_ids if s is not None else [] for s in sigs],
            [s.feature_values if s is not None else [] for s in sigs],
            [s.n_tokens if s is not None else 0 for s in sigs],
            [s.truncated if s is not None else False for s in sigs],
        )
        if not self.hidden_mean:
            return table
        means = [None if s is None else np.asarray(s.hidden_mean, np.float32) for s in sigs]
        return set_column(table, "hidden_mean", pa.array(means, pa.list_(pa.float32())))

    def _encode_each(self, texts: list[str]) -> list:
        """DocumentFeatures per text; where the batch fails, each text alone — and the error text for those that
        still fail (reported as rejected rows)."""
        if not texts:
            return []
        try:
            return self.signatures(texts)
        except Exception:  # noqa: BLE001 - isolate the bad rows below; a systematic failure rejects them all
            out = []
            for t in texts:
                try:
                    out += self.signatures([t])
                except Exception as exc:  # noqa: BLE001
                    out.append(f"encode failed: {type(exc).__name__}: {str(exc)[:300]}")
            return out

    def signature_meta(self):
        """`SignatureMeta` of what this operator writes (model, SAE id, layer, pooling, top_n, d_sae)."""
        from qscope.signatures import SignatureMeta

        self.ensure_setup()
        return SignatureMeta(self.lm.name, self.sae.sae_id, self.layer, self.pooling, self.top_n, self.sae.d_sae)


def _with_signature_columns(table, ids, values, n_tokens, truncated) -> pa.Table:
    table = set_column(table, "feature_ids", pa.array([np.asarray(x, np.int32) for x in ids], pa.list_(pa.int32())))
    table = set_column(
        table, "feature_values", pa.array([np.asarray(x, np.float32) for x in values], pa.list_(pa.float32()))
    )
    table = set_column(table, "n_tokens", pa.array(n_tokens, pa.int32()))
    return set_column(table, "truncated", pa.array(truncated, pa.bool_()))
