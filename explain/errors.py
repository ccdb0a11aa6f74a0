"""The one error type users see.

Every problem caused by the caller's input (a corrupt file, a layer that does not
exist, a model that will not run) is raised as `InputError` with a sentence that
says what is wrong and what to do. The CLI prints it on one line; the app shows it
with `st.error`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message is meant for the user, and is complete on its own."""


class Cancelled(InputError):
    """The user stopped a computation; nothing half-done was kept (the message says so)."""
