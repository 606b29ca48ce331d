"""Errors users see. Each message names the problem and, where possible, the fix."""


class QscopeError(Exception):
    """Base class for every error qscope raises on bad input or configuration."""


class ModelLoadError(QscopeError):
    """A language model could not be resolved or loaded."""


class SAELoadError(QscopeError):
    """An SAE path, id or file could not be resolved or loaded."""


class ShapeMismatchError(QscopeError):
    """Two objects that must agree in size (SAE d_in vs model width, ...) do not."""


class InputError(QscopeError):
    """User-provided data (texts, files, configs) is empty or malformed."""
