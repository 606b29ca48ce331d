"""Steering: activate / suppress / clamp SAE features during generation (see `intervention` for the units).

from qscope.steering import activate, suppress
iv = activate(123, 4.0) + suppress(77, 1.0, positions="generated")
make_engine("hf", lm=lm, saes={15: sae}).generate(["Tell me a story"], intervention=iv)
"""

from qscope.steering.calibration import CALIBRATION_TEXTS, StrengthCalibration
from qscope.steering.compiled import LayerSteering, PlannedEdit, SteeringPlan, compile_plan
from qscope.steering.errors import (
    InterventionError,
    InvalidStrengthError,
    MissingSAEError,
    SAEMismatchError,
    UnknownFeatureError,
)
from qscope.steering.intervention import FeatureEdit, Intervention, activate, clamp, suppress
from qscope.steering.sweep import DEFAULT_STRENGTHS, SweepResult, strength_sweep

__all__ = [
    "CALIBRATION_TEXTS",
    "FeatureEdit",
    "Intervention",
    "InterventionError",
    "InvalidStrengthError",
    "LayerSteering",
    "MissingSAEError",
    "PlannedEdit",
    "SAEMismatchError",
    "SteeringPlan",
    "StrengthCalibration",
    "UnknownFeatureError",
    "activate",
    "clamp",
    "compile_plan",
    "suppress",
    "DEFAULT_STRENGTHS",
    "SweepResult",
    "strength_sweep",
]
