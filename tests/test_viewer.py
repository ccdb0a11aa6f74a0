"""viewer/: windowing, colour maps, figures. numpy only, no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from tests.conftest import ROOT
from viewer.colormap import NAMES, lut
from viewer.figures import probability_bars
from viewer.windowing import CT_PRESETS, apply_window, auto_window, default_window


def test_viewer_never_imports_torch_or_explain():
    code = (
        "import sys, viewer.windowing, viewer.colormap, viewer.figures, viewer.publish, "
        "viewer.status, viewer.nifti, viewer.component; "
        "print(any(m == 'torch' or m.startswith(('torch.', 'explain')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ct_presets_and_window_mapping():
    assert CT_PRESETS["CT brain"] == (80.0, 40.0) and CT_PRESETS["CT lung"] == (1500.0, -600.0)
    grey = apply_window(np.array([0.0, 40.0, 80.0, -1000.0, 3000.0]), 80.0, 40.0)
    np.testing.assert_array_equal(grey, [0, 127, 255, 0, 255])
    ct = np.full((20, 20, 20), -1000.0)
    ct[5:15, 5:15, 5:15] = 40
    assert default_window(ct)[0] == "CT soft tissue"
    mr = np.random.default_rng(0).uniform(0, 500, (20, 20, 20))
    preset, width, level = default_window(mr)
    assert preset == "Auto (percentiles)" and (width, level) == auto_window(mr) and 0 < level < 500


def test_colour_maps_put_high_importance_at_the_hot_end():
    for name in NAMES:
        table = lut(name).astype(float)
        luminance = table @ [0.299, 0.587, 0.114]
        assert table.shape == (256, 3) and luminance[-1] > luminance[0] + 100, name


def test_probability_bars_are_html_with_escaped_names():
    bars = probability_bars(["bright lesion", "<b>x</b>"], np.array([0.3, 0.7]), "probability")
    assert bars.count('class="cv-bar-row"') == 2
    assert 'style="width:30.0%"' in bars and 'style="width:70.0%"' in bars and ">70.0%<" in bars
    assert "&lt;b&gt;x&lt;/b&gt;" in bars and "<b>x</b>" not in bars  # a hostile card's names stay text


def test_auto_window_of_a_flat_foreground_spans_the_whole_range():
    data = np.full((20, 20, 20), 100, np.int16)
    data[5, 5, 5] = data[10, 10, 10] = 1000  # two bright dots: the foreground is constant
    width, level = auto_window(data)
    assert (level - width / 2, level + width / 2) == (100.0, 1000.0)
    assert auto_window(np.full((4, 4), 7.0))[0] == 1.0
