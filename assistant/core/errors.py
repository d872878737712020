"""Errors a user can act on: each message names the file, flag or setting and the fix."""
from __future__ import annotations


class TrainDataError(ValueError):
    """The dataset cannot be trained on; the message names the file (and line) and the fix."""
