"""The one base class of errors meant for the operator, not for a traceback."""

from __future__ import annotations


class CamtopoError(RuntimeError):
    """An error whose message says what is wrong and what to do; ``camtopo`` prints it as one
    line and exits 2 (a worker's restart policy then stops on it, not loops on a traceback)."""
