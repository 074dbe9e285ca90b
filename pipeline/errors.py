"""The one user-facing error type.

Anything raised as :class:`PipelineError` is a problem with the user's input, machine or board;
the CLI prints it as one line (plus a hint) and exits with code 2. Any other exception is a bug.
"""
from __future__ import annotations


class PipelineError(Exception):
    """A handled failure: ``message`` says what is wrong, ``hint`` what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, hint appended
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class SerialLinkError(PipelineError):
    """The serial connection to the board (real or emulated) failed: the fault is the link."""
