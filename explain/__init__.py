"""camviewer's backend: volumes, models and CAM computation.

Kept light on purpose: importing `explain` or `explain.io.volume` must not import
torch, so the viewer and the command line start fast. Import `explain.cam.engine`
for the computation.
"""

from __future__ import annotations

__version__ = "0.1.0"
