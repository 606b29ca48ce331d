"""Errors raised while building or validating an intervention, always before any generation starts."""

from qscope.errors import InputError


class InterventionError(InputError):
    """An intervention is malformed or does not fit the loaded model/SAEs."""


class UnknownFeatureError(InterventionError):
    """A feature id is not a latent of the SAE it refers to (outside 0..d_sae-1, or not an int)."""


class MissingSAEError(InterventionError):
    """An edit targets a layer for which the engine has no SAE loaded (or the layer is ambiguous)."""


class InvalidStrengthError(InterventionError):
    """A strength / clamp value / scale is NaN, infinite, or outside its allowed range."""


class SAEMismatchError(InterventionError):
    """The intervention was built for another SAE (its recorded sae_id differs from the loaded one)."""
