"""Sliding windows: where they go (MONAI's and nnU-Net's own rules), what the stitched prediction equals (MONAI's
SlidingWindowInferer), and how a stitched map agrees with the one-pass map of the same model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.cam.engine import predict_only
from explain.cam.windows import nnunet_gaussian, nnunet_steps, plan_windows
from explain.errors import InputError
from explain.io.volume import make_volume
from explain.models.cards import ModelCard
from explain.models.loaded import LoadedModel
from explain.request import explain
from explain.trust.sanity import spearman


def _unet(classes: int = 3) -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    # Batch norm (eval): a voxel's activations do not depend on which window it sits in, except near borders.
    return UNet(3, 1, classes, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="batch").eval()


def _model(module, shape, **card) -> LoadedModel:
    card = ModelCard(task="segmentation", input_shape=shape, **card)
    return LoadedModel(module, card, f"unet-{sorted(card.to_dict().items())}", "test unet", "weights", shape)


def _brain(shape=(96, 96, 96)) -> np.ndarray:
    """The sample brain, 2 mm, cropped: real anatomy, so maps have structure."""
    import nibabel as nib

    from tests.conftest import SAMPLE

    data = np.asarray(nib.load(SAMPLE / "case_brain" / "t1_lesions.nii.gz").dataobj, dtype=np.float32)[::2, ::2, ::2]
    out = np.zeros(shape, np.float32)
    crop = tuple(slice(0, min(a, b)) for a, b in zip(data.shape, shape))
    out[crop] = data[crop]
    return out / out.max()


@pytest.mark.parametrize(
    "image,patch,overlap",
    [((96, 96, 96), (48, 48, 48), 0.25), ((100, 71, 33), (48, 32, 32), 0.5), ((64, 64, 40), (64, 64, 40), 0.25),
     ((130, 77, 64), (96, 96, 32), 0.6)],
)  # fmt: skip
def test_window_starts_are_monais_own(image, patch, overlap):
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = tuple(max(i, p) for i, p in zip(image, patch))
    interval = _get_scan_interval(padded, patch, 3, (overlap,) * 3)
    theirs = sorted(tuple(s.start for s in sl) for sl in dense_patch_slices(padded, patch, interval))
    ours = sorted(plan_windows(image, patch, overlap=overlap, layout="monai").starts)
    assert ours == theirs


def test_nnunet_steps_and_gaussian_by_hand():
    # 100 voxels, tile 48, step 0.5: ceil((100 - 48) / 24) + 1 = 4 windows, spread evenly: 0, 17.33, 34.67, 52.
    assert nnunet_steps((100,), (48,), 0.5) == [[0, 17, 35, 52]]
    assert nnunet_steps((48,), (48,), 0.5) == [[0]]
    g = nnunet_gaussian((16, 8)).numpy()
    # Separable, peak 1 at the centre (index // 2), sigma = size / 8: g[8 + 2, 4] = exp(-2^2 / (2 * 2^2)).
    assert g[8, 4] == pytest.approx(1.0) and g[10, 4] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert g.min() > 0


def test_stitched_prediction_equals_monais_sliding_window_inferer():
    from monai.inferers import sliding_window_inference

    module = _unet()
    volume = make_volume(_brain((80, 72, 60)), np.eye(4), "brain")
    model = _model(module, (1, 32, 32, 32), patch_size=(32, 32, 32), overlap=0.25, window_layout="monai")
    ours = predict_only(model, volume, "cpu").logits
    with torch.no_grad():
        theirs = sliding_window_inference(
            torch.as_tensor(volume.data)[None, None], (32, 32, 32), 4, module, overlap=0.25, mode="gaussian"
        )
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# The figures this measures are in docs/decisions.md ("Clinical-size maps"); HiResCAM's are enforced here.
@pytest.mark.parametrize("method", ["hirescam", "layercam", "gradcam"])
def test_stitched_map_against_the_one_pass_map(method, capsys):
    module = _unet()
    volume = make_volume(_brain(), np.diag([2.0, 2.0, 2.0, 1.0]), "brain")
    whole = _model(module, (1, 96, 96, 96))
    windowed = _model(module, (1, 48, 48, 48), patch_size=(48, 48, 48))
    layer = "model.0"  # the first encoder block: full resolution, the shortest way to the border
    one = explain(whole, volume, method, [layer], target=1, device="cpu").get()
    st = explain(windowed, volume, method, [layer], target=1, device="cpu").get()
    assert one.windows == 1 and st.windows == 27 and st.window == (48, 48, 48)
    diff = float(np.abs(one.model_map - st.model_map).max())
    rho = spearman(one.model_map, st.model_map)
    with capsys.disabled():
        print(f"\n{method}: stitched vs one pass, max |diff| {diff:.3f}, Spearman {rho:.3f}")
    if method == "hirescam":
        assert rho > 0.9 and diff < 0.35, (rho, diff)


def test_a_segmentation_net_over_the_budget_runs_in_windows_and_a_classifier_is_refused(monkeypatch):
    module = _unet()
    volume = make_volume(_brain(), np.eye(4), "brain")
    whole = _model(module, (1, 96, 96, 96))
    fits = explain(whole, volume, "hirescam", ["model.0"], target=1, device="cpu").get()
    assert fits.windows == 1  # fits the default budget: one pass, nothing refused
    monkeypatch.setenv("CAMVIEWER_MAX_BYTES", str(150 * 2**20))  # one pass needs about 210 MiB
    monkeypatch.setattr("explain.cam.device.resident_bytes", lambda: 0)  # the whole budget for this computation
    tight = explain(whole, volume, "hirescam", ["model.0"], target=1, device="cpu").get()
    assert tight.windows > 1 and tight.window is not None and max(tight.window) < 96
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 64, 3, padding=1), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(), torch.nn.Linear(64, 2)
    )  # fmt: skip
    card = ModelCard(task="classification", input_shape=(1, 96, 96, 96))
    classifier = LoadedModel(net.eval(), card, "clf", "clf", "weights", (1, 96, 96, 96))
    with pytest.raises(InputError, match="cannot run in windows"):
        explain(classifier, volume, "gradcam", ["0"], target=0, device="cpu")


def test_cancel_after_the_first_window_keeps_nothing_and_the_next_request_computes(tmp_path):
    from explain.cache import CamCache
    from explain.errors import Cancelled
    from explain.request import compute, make_request

    cache = CamCache(tmp_path / "cams")
    model = _model(_unet(), (1, 48, 48, 48), patch_size=(48, 48, 48))
    volume = make_volume(_brain(), np.eye(4), "brain")
    request = make_request(model, volume, "hirescam", ["model.0"], 1)
    done: list[int] = []

    def progress(stage: str, finished: int = 0, total: int = 0) -> None:
        if stage == "windows":
            done.append(finished)

    with pytest.raises(Cancelled, match="cancelled"):
        compute(request, model, volume, cache=cache, progress=progress, cancel=lambda: bool(done))
    assert len(done) == 1 and done[0] < 27  # stopped after the first batch of windows, not at the end
    assert cache.get(request.key()) is None and not list((tmp_path / "cams").iterdir())
    explanation, cached = compute(request, model, volume, cache=cache)
    assert not cached and explanation.get().windows == 27
    assert cache.get(request.key()) is not None


def test_the_cli_shows_windows_as_a_progress_bar(tmp_path):
    import json
    import subprocess
    import sys

    import nibabel as nib

    from tests.conftest import ROOT

    torch.save(_unet().state_dict(), tmp_path / "unet.pt")
    kwargs = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [8, 16, 32], "strides": [2, 2],
              "num_res_units": 1, "norm": "batch"}  # fmt: skip
    card = {"task": "segmentation", "input_shape": [1, 48, 48, 48], "patch_size": [48, 48, 48]}
    (tmp_path / "card.json").write_text(json.dumps(card))
    nib.save(nib.Nifti1Image(_brain(), np.eye(4)), str(tmp_path / "brain.nii.gz"))
    proc = subprocess.run(
        [sys.executable, "-m", "explain", "cam", str(tmp_path / "unet.pt"), str(tmp_path / "brain.nii.gz"), "--arch",
         "UNet", "--arch-kwargs", json.dumps(kwargs), "--card", str(tmp_path / "card.json"), "--method", "hirescam",
         "--target", "1", "--device", "cpu", "--out", str(tmp_path / "map.nii.gz"), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames = proc.stderr.replace("\r", "\n").split("\n")
    shown = [f for f in frames if "windows" in f]
    assert shown[0].startswith("[") and shown[-1].endswith("windows 27/27") and len(shown) >= 2, shown
    assert json.loads(proc.stdout)["maps"][0]["windows"] == 27


@pytest.mark.parametrize("patch", [(24, 32, 32), (96, 160, 160), (7, 13, 20)])
def test_nnunet_steps_and_gaussian_equal_nnunets_own(patch):
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    for image in ((100, 171, 160), tuple(p + 1 for p in patch), patch):
        assert nnunet_steps(image, patch, 0.5) == compute_steps_for_sliding_window(image, patch, 0.5)
    theirs = compute_gaussian(patch, sigma_scale=1 / 8, value_scaling_factor=1, dtype=torch.float32, device="cpu")
    torch.testing.assert_close(nnunet_gaussian(patch), theirs, rtol=1e-5, atol=1e-7)
