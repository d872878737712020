"""Errors a user can act on: each message names the file, flag or setting and the fix.

Every such error derives from UserError, and `assistant.cli.main` catches it once: it prints
`assistant VERB: message` on one line, no traceback, and exits 2. Library code raises; it never prints.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; str() is the one-line message."""


class TrainDataError(UserError):
    """The dataset cannot be trained on; the message names the file (and line) and the fix."""
