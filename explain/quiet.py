"""Keep third-party readers quiet while a file loads, and keep what they said.

nibabel, pydicom and Pillow report oddities through `logging` (nibabel even installs
its own stderr handler) and `warnings`. Printed, those lines would reach the user
before our own `error:` line, in a library's words. `reader_messages()` captures both
for the duration of a load. `meaningful()` then keeps what changes how the data should
be read, as sentences for `Volume.warnings`:

- nibabel's header notes (it repairs a field, e.g. a zero pixdim set to 1): kept, since
  geometry may rest on the repair;
- pydicom's notes on pixel data (longer than the image needs): kept;
- everything else is dropped on purpose: pydicom's value-format complaints (a UID or a
  name that breaks a VR rule) say nothing about the pixels, and Pillow's bomb warning is
  superseded by our own limit, checked before decoding.

`warnings.catch_warnings` and logger handlers are process-wide: a library message from
another thread during a load may be captured here too (and then dropped or kept by the
same rules), never printed.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_LOGGERS = ("nibabel", "nibabel.global", "pydicom", "PIL")


class _Collect(logging.Handler):
    def __init__(self, out: list[tuple[str, str]]):
        super().__init__(logging.DEBUG)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.out.append((record.name.split(".")[0], record.getMessage().splitlines()[0]))


@contextlib.contextmanager
def reader_messages() -> Iterator[list[tuple[str, str]]]:
    """Capture log records and warnings of the readers as (library, first line) pairs; print nothing."""
    out: list[tuple[str, str]] = []
    handler = _Collect(out)
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield out
            finally:
                for w in caught:
                    module = getattr(w, "filename", "") or ""
                    library = next((lib for lib in ("nibabel", "pydicom", "PIL") if lib in module), "other")
                    out.append((library, str(w.message).splitlines()[0] if str(w.message) else ""))
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate


def meaningful(messages: list[tuple[str, str]], name: str) -> tuple[str, ...]:
    """The captured messages that matter for reading the data, as sentences naming the file (deduplicated)."""
    kept: list[str] = []
    for library, text in messages:
        text = text.strip().rstrip(".")
        if not text:
            continue
        if library == "nibabel" or (library == "pydicom" and "pixel data" in text.lower()):
            sentence = f"{name}: the reader noted: {text}"
            if sentence not in kept:
                kept.append(sentence)
    return tuple(kept)
