"""Deprecated: the target-feature scores of signatures live in `qscope.targets`."""

from qscope.deprecation import moved_names

__getattr__ = moved_names(
    __name__, {n: "qscope.targets" for n in ("signature_rows", "target_activations", "target_scores")}
)
