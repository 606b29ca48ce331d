"""Deprecated: `ScoreTargetFeatures` lives in `qscope.operators.score_targets`."""

from qscope.deprecation import moved_names

__getattr__ = moved_names(__name__, {"ScoreTargetFeatures": "qscope.operators.score_targets"})
