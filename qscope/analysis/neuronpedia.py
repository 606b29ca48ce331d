"""Neuronpedia-compatible JSON for a feature.

Field names follow Neuronpedia's feature (`Neuron`) and `Activation` records as its API returns them
(`/api/feature/{modelId}/{layer}/{index}`) and as SAEDashboard's Neuronpedia runner writes them:
modelId, layer (the source id, "<layer>-<set>", e.g. "15-res-jb"), index (a string), maxActApprox, frac_nonzero,
pos_str / pos_values, neg_str / neg_values (promoted / suppressed tokens by direct logit effect),
freq_hist_data_bar_heights / _values (parallel lists: counts and bin centres — never n+1 edges),
logits_hist_data_bar_heights / _values, activations [{tokens, values, maxValue, maxValueTokenIndex, minValue,
binMin, binMax, binContains}], explanations [{description, explanationModelName, typeName}].
"""

from __future__ import annotations

NEURON_FIELDS = (
    "modelId",
    "layer",
    "index",
    "maxActApprox",
    "frac_nonzero",
    "pos_str",
    "pos_values",
    "neg_str",
    "neg_values",
    "freq_hist_data_bar_heights",
    "freq_hist_data_bar_values",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "activations",
    "explanations",
)
ACTIVATION_FIELDS = (
    "tokens",
    "values",
    "maxValue",
    "maxValueTokenIndex",
    "minValue",
    "binMin",
    "binMax",
    "binContains",
)
EXPLANATION_FIELDS = ("description", "explanationModelName", "typeName")


def source_id(layer: int, sae_id: str) -> str:
    """Neuronpedia's "layer" is a source id: "<layer>-<set name>"; the set is the SAE id, slug-ified."""
    slug = "".join(c if c.isalnum() else "-" for c in sae_id.split("/")[-1].lower()).strip("-")
    return f"{layer}-{slug or 'qscope'}"


def _activation(ex: dict, lo=None, hi=None) -> dict:
    values = [float(v) for v in ex["values"]]
    return {
        "tokens": list(ex["tokens"]),
        "values": values,
        "maxValue": float(ex["max_value"]),
        "maxValueTokenIndex": int(ex["max_index"]),
        "minValue": float(min(values)) if values else 0.0,
        "binMin": lo,
        "binMax": hi,
        "binContains": None,
    }


def to_neuronpedia(d: dict) -> dict:
    """Map `dashboard.feature_data(...)` to a Neuronpedia feature record."""
    acts = [_activation(ex, -1, None) for ex in d["top"]]  # Neuronpedia marks the top bin with binMin -1
    for q in d["quantiles"]:
        acts += [_activation(ex, q["lo"], q["hi"]) for ex in q["examples"]]
    explanations = [{"description": d["label"], "explanationModelName": "qscope-keywords", "typeName": "qscope-auto"}]
    if d.get("lm_label"):
        explanations.append(
            {"description": d["lm_label"], "explanationModelName": d.get("model") or "lm", "typeName": "qscope-lm"}
        )
    return {
        "modelId": d.get("model") or "unknown",
        "layer": source_id(d["layer"], d["sae"]),
        "index": str(d["feature"]),
        "maxActApprox": float(d["max_activation"]),
        "frac_nonzero": float(d["density"]),
        "pos_str": [t for t, _ in d["promoted"]],
        "pos_values": [float(v) for _, v in d["promoted"]],
        "neg_str": [t for t, _ in d["suppressed"]],
        "neg_values": [float(v) for _, v in d["suppressed"]],
        "freq_hist_data_bar_heights": list(d["histogram"]["heights"]),
        "freq_hist_data_bar_values": list(d["histogram"]["values"]),
        "logits_hist_data_bar_heights": list(d["logits_histogram"]["heights"]),
        "logits_hist_data_bar_values": list(d["logits_histogram"]["values"]),
        "activations": acts,
        "explanations": explanations,
    }
