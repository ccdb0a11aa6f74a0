"""Memory known before it is spent: the estimate (explain.cam.cost) against the real peak of the same computation.

Each model runs in a fresh process: the model and the volume are built, the peak resident memory is reset to the
current one (`/proc/self/clear_refs`), the map is computed, and the increase in peak (VmHWM) is compared with the
estimate made beforehand on fake tensors. Three kinds of network, as the engine meets them: a CNN classifier
(MONAI DenseNet121), a segmentation UNet (MONAI UNet) and a ViT classifier (MONAI ViT).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CHILD = r"""
import json, sys
import numpy as np, torch
from monai.networks import nets
from explain.cam.cost import peak_bytes
from explain.cam.layers import model_layers
from explain.io.volume import make_volume
from explain.models.cards import ModelCard
from explain.models.loaded import LoadedModel
from explain.request import explain

torch.manual_seed(0)
torch.set_num_threads(1)
kind = sys.argv[1]
if kind == "cnn":
    module, shape, task, layer = nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2), (1, 160, 160, 160), "classification", "features.denseblock2"
elif kind == "unet":
    module = nets.UNet(3, 1, 3, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
    shape, task, layer = (1, 128, 128, 128), "segmentation", "model.1.submodule.1.submodule.0"
else:
    module = nets.ViT(in_channels=1, img_size=(160, 160, 160), patch_size=(16, 16, 16), hidden_size=384, mlp_dim=1536,
                      num_layers=8, num_heads=12, classification=True, num_classes=2, spatial_dims=3)
    shape, task, layer = (1, 160, 160, 160), "classification", "blocks.3"
module = module.eval()
card = ModelCard(task=task, input_shape=shape, class_names=None)
model = LoadedModel(module, card, f"cost-{kind}", kind, "weights", shape)
volume = make_volume(np.random.default_rng(0).random(shape[1:], dtype=np.float32), np.eye(4), "random")
estimate = peak_bytes(module, shape, task=task, method="hirescam", layers=[layer]).peak
model_layers(model, "cpu")  # listed before, as the page lists layers before any map
status = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
import ctypes, gc
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap goes back to the system, so new allocations show in RSS
open("/proc/self/clear_refs", "w").write("5")  # the peak is now the current resident memory
before = status("VmRSS:")
explain(model, volume, "hirescam", [layer], target=1, device="cpu")
print(json.dumps({"estimate": estimate, "measured": status("VmHWM:") - before}))
"""


@pytest.mark.parametrize("kind", ["cnn", "unet", "vit"])
def test_estimate_is_within_half_and_twice_the_measured_peak(kind):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind], capture_output=True, text=True, cwd=ROOT, timeout=900,
        env={"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = figures["estimate"] / figures["measured"]
    print(f"\n{kind}: estimate {figures['estimate'] / 2**20:.0f} MiB, measured {figures['measured'] / 2**20:.0f} MiB")
    assert figures["measured"] > 200 * 2**20, figures  # large enough for the ratio to mean something
    assert 0.5 <= ratio <= 2.0, figures
