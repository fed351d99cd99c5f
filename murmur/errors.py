"""The one error family murmur raises for problems a user can act on.

The CLI prints ``MurmurError`` as a single line and exits with status 2; the HTTP server turns it
into an OpenAI-style ``{"error": {...}}`` body. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MurmurError(Exception):
    """Base class: a message a user can act on."""


class InputError(MurmurError):
    """Bad input data: a malformed file, a missing column, an empty source."""

    def __init__(self, message: str, path: object | None = None, line: int | None = None,
                 field: str | None = None):
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            if field is not None:
                where += f" (field {field!r})"
            where += ": "
        elif field is not None:
            where = f"field {field!r}: "
        super().__init__(where + message)
        self.path, self.line, self.field = path, line, field


class ConfigError(MurmurError):
    """A config key that does not exist, or a value of the wrong type."""


class CheckpointError(MurmurError):
    """A checkpoint that is missing, incomplete, or does not fit the model."""


class OutputError(MurmurError):
    """An output that cannot be written, or would replace something murmur did not write."""

    def __init__(self, message: str, path: object | None = None):
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = path
