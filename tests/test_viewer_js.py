"""The viewer's JavaScript modules tested without a browser: `node --test tests/js/` (geometry, compose, store)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None and not os.environ.get("CAMVIEWER_REQUIRE_BROWSER"), reason="Node.js not installed")
def test_node_unit_tests():
    if NODE is None:
        raise RuntimeError("Node.js is required here (CI) for the viewer's JavaScript tests")
    out = subprocess.run([NODE, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout


@pytest.mark.skipif(NODE is None and not os.environ.get("CAMVIEWER_REQUIRE_BROWSER"), reason="Node.js not installed")
def test_the_bundle_the_page_loads_is_a_working_module(tmp_path):
    from viewer.component.assets import bundle

    (tmp_path / "camviewer.js").write_text(bundle())
    script = f"import('{(tmp_path / 'camviewer.js').as_uri()}').then((m) => console.log(typeof m.mount))"
    out = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "function", out.stderr
