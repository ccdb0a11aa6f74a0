"""The real server (`streamlit run app.py`, which serves it as an ASGI app): static headers, no traceback."""

from __future__ import annotations

import urllib.request

from bench.browser import streamlit_server
from tests.conftest import ROOT


def _get(url: str) -> tuple[dict, bytes]:
    request = urllib.request.Request(url, headers={"Origin": "http://evil.test"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def test_static_files_carry_our_headers_and_no_wildcard_cors(tmp_path):
    folder = ROOT / "static" / "cv"
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / "0123456789abcdef0123456789abcdef.test.gz"
    status = folder / "0123456789abcdef0123456789abcdef.status.json"
    probe.write_bytes(b"\x1f\x8b probe")
    status.write_text('{"stage": "queued"}')
    try:
        with streamlit_server({"CAMVIEWER_STATE_DIR": str(tmp_path / "state")}) as url:
            headers, body = _get(f"{url}/app/static/cv/{probe.name}")
            status_headers, _ = _get(f"{url}/app/static/cv/{status.name}")
    finally:
        probe.unlink(missing_ok=True)
        status.unlink(missing_ok=True)
    assert body == b"\x1f\x8b probe"
    assert "access-control-allow-origin" not in headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    # named by content: kept by this browser only, for good; a status file, rewritten as work moves on: never kept
    assert headers["cache-control"] == "private, max-age=31536000, immutable"
    assert status_headers["cache-control"] == "no-store"
