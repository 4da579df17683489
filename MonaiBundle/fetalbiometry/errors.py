"""Errors that a user can act on.

Every module raises a subclass of :class:`FetalBiometryError` for bad input. The command
line and the Slicer module print its message as one line and exit non-zero, with no
traceback; anything else is a bug and keeps its traceback.
"""


NO_RESULT_EXIT_CODE = 3
"""Exit status of a command that ran but has no trustworthy number to give: ``measure`` without a
measurement, ``segment`` with an empty or implausible head (the output says why). Not 2, which is
argparse's usage error, nor 1, bad input."""


class FetalBiometryError(Exception):
    """Base class: bad input or a result that cannot be measured. The message is one line."""


class InputError(FetalBiometryError):
    """A file is missing, corrupt, of the wrong dimensionality, or holds NaN/Inf values."""


class GeometryMismatchError(FetalBiometryError):
    """Two images that must share a grid (size, spacing, origin, direction) do not."""


class EmptyMaskError(FetalBiometryError):
    """A mask that must hold a structure is empty."""


class NoMeasurementError(FetalBiometryError):
    """No trustworthy measurement exists (implausible ellipse, structure cut by the border...)."""


def require_bool(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``, else an :class:`InputError`.

    A bundle command-line override such as ``--keep_largest_component false`` arrives as the string
    ``'false'``, which Python takes as true; this refuses it instead (``False`` is the boolean).
    """
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False; got {value!r}")
    return value
