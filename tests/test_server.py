"""The real server (`streamlit run app.py`, which serves it as an ASGI app): static headers, no traceback."""

from __future__ import annotations

import urllib.request

from bench.browser import streamlit_server
from tests.conftest import ROOT


def test_static_files_carry_our_headers_and_no_wildcard_cors(tmp_path):
    folder = ROOT / "static" / "cv"
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / "0123456789abcdef0123456789abcdef.test.gz"
    probe.write_bytes(b"\x1f\x8b probe")
    try:
        with streamlit_server({"CAMVIEWER_STATE_DIR": str(tmp_path / "state")}) as url:
            request = urllib.request.Request(
                f"{url}/app/static/cv/{probe.name}", headers={"Origin": "http://evil.test"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                assert response.read() == b"\x1f\x8b probe"
    finally:
        probe.unlink(missing_ok=True)
    assert "access-control-allow-origin" not in headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    assert headers["cache-control"].startswith("private")
