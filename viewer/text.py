"""User-controlled text made safe for Streamlit's markdown (errors, warnings, captions).

File names, card fields and header values come from uploads. Streamlit renders
most text as markdown, so `![x](http://...)` in a file name would make the
browser fetch an image, and `[x](javascript:...)` would draw a link. Every ASCII
punctuation character is backslash-escaped (CommonMark allows that for all of
them), and control characters are dropped; what remains shows literally.
"""

from __future__ import annotations

import string

_ESCAPE = {c: "\\" + c for c in string.punctuation}


def plain(text: object, limit: int = 2000) -> str:
    """`text` as literal markdown: punctuation escaped, control characters removed, at most `limit` characters."""
    s = "".join(c for c in str(text) if c.isprintable() or c in "\n\t")[:limit]
    return "".join(_ESCAPE.get(c, c) for c in s)
