"""Exceptions and warnings raised on purpose; the CLI prints them as one line."""


class AbscopalError(Exception):
    """Raised on purpose; the CLI prints it as one line, without a traceback."""


class IngestError(AbscopalError, ValueError):
    """An input cannot be read safely; the message names the file, the tag or field, and the fix."""


class GeometryError(AbscopalError, ValueError):
    """Two grids share no frame of reference and no registration links them."""


class CriteriaError(AbscopalError, ValueError):
    """A response criterion received input it cannot assess (not the same as NE)."""


class IngestWarning(UserWarning):
    """An input was repaired or tolerated; the message says what and why it is safe."""
