"""nnU-Net v2 folders against nnU-Net itself: a model trained by nnU-Net's own planner and trainer, and folders made
by hand (two folds, two channels with CT normalisation, old plans). The oracle is `nnUNetPredictor` on the same
files read by nnU-Net's own SimpleITK reader (trusted here: its loader unpickles; ours never does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from explain.errors import InputError
from explain.io.load import load_case, load_volume
from explain.models.load import load_model
from explain.predict import predict_case
from tests.conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore")
CONFIG = "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The folder nnU-Net's trainer wrote (8 epochs of 20 iterations, about a minute on two cores)."""
    root = tmp_path_factory.mktemp("nnunet")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.nnunet_build", str(root), "8"], capture_output=True, text=True, cwd=ROOT,
        timeout=1200, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert (folder / "fold_0" / "checkpoint_final.pth").is_file()
    return folder


def _case(folder: Path, k: int = 3) -> Path:
    return folder.parent.parent.parent / "raw" / "Dataset001_Blobs" / "imagesTr" / f"case{k:03d}_0000.nii.gz"


def _nnunet(folder: Path, images: list[Path], folds=(0,), mirroring: bool = True):
    """nnU-Net's own prediction: (labels, probabilities) in our voxel order (SimpleITK's reversed)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    # nnU-Net's own folder loader finds trainers by importing every trainer module, some of which need timm
    # (not installed here), so the oracle is set up the way nnU-Net's trainer sets up its final validation.
    plans, dataset = (json.loads((folder / n).read_text()) for n in ("plans.json", "dataset.json"))
    checkpoints = [torch.load(folder / f"fold_{f}" / "checkpoint_final.pth", weights_only=False) for f in folds]
    manager = PlansManager(plans)
    config = manager.get_configuration(checkpoints[0]["init_args"]["configuration"])
    network = get_network_from_plans(
        config.network_arch_class_name, config.network_arch_init_kwargs, config.network_arch_init_kwargs_req_import,
        len(dataset["channel_names"]), len(dataset["labels"]), allow_init=True, deep_supervision=False,
    )  # fmt: skip
    predictor = nnUNetPredictor(use_mirroring=mirroring, device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        network, manager, config, [c["network_weights"] for c in checkpoints], dataset, checkpoints[0]["trainer_name"],
        checkpoints[0]["inference_allowed_mirroring_axes"],
    )  # fmt: skip
    data, props = SimpleITKIO().read_images([str(p) for p in images])
    seg, probs = predictor.predict_single_npy_array(data, props, None, None, True)
    return seg.transpose(2, 1, 0), probs.transpose(0, 3, 2, 1)


def _agree(ours, theirs, trivial_ok: bool = False) -> None:
    labels, probs = theirs
    fractions = np.bincount(labels.ravel(), minlength=3) / labels.size
    assert trivial_ok or (fractions[1:] >= 0.05).sum() >= 2, f"a trivial case: label fractions {fractions}"
    agreement = float((ours.labels == labels).mean())
    assert agreement >= 0.995, agreement
    # nnU-Net accumulates windows in fp16: near the image's edges, where only windows' far corners reach a voxel,
    # its Gaussian weights (down to 1e-6 of the peak) times the logits lose their digits, and its probabilities
    # drift (up to 0.2 measured on 0.4% of the voxels, all where the weights sum to less than 1e-3 of one peak).
    # Where windows cover a voxel with more weight than that, the probabilities must agree within 2e-2; the rest
    # may differ on at most 1% of the voxels.
    diff = np.abs(ours.probabilities - probs).max(axis=0)
    covered = _weight_sum(ours.probabilities.shape[1:]) >= 1e-3
    assert float(diff[covered].max()) <= 2e-2, float(diff[covered].max())
    assert float((diff > 2e-2).mean()) < 0.01


def _weight_sum(shape) -> np.ndarray:
    """The sum of nnU-Net's window weights (peak 1) per voxel, for these cases (no crop, no resampling, transpose
    identity: the model grid is the image's axes reversed)."""
    from explain.cam.windows import plan_windows

    plan = plan_windows(tuple(shape[::-1]), (24, 32, 32), overlap=0.5, layout="nnunet")
    total = np.zeros(plan.padded, np.float32)
    for start in plan.starts:
        total[plan.slices(start)] += plan.weights().numpy()
    return plan.crop(torch.from_numpy(total)).numpy().transpose(2, 1, 0)


@pytest.mark.parametrize("mirroring", [False, True])
def test_predict_equals_nnunets_own_predictor(trained, mirroring):
    model = load_model(trained, fold="0")
    image = _case(trained)
    ours = predict_case(model, load_volume(image), mirroring=mirroring, device="cpu")
    assert ours.mirrored is mirroring
    _agree(ours, _nnunet(trained, [image], mirroring=mirroring))
    # The case spans several windows along an axis: what is compared is the stitching, not one window.
    from explain.cam.plan import plan_run

    plan = plan_run(model, (36, 48, 40), method="predict", device=torch.device("cpu"), gradients=False)
    assert plan.windows is not None and len({s[1] for s in plan.windows.starts}) >= 2


def test_cli_predict_writes_nnunets_label_map_on_the_images_own_header(trained, tmp_path):
    image = _case(trained, 5)
    out, probs = tmp_path / "seg.nii.gz", tmp_path / "prob.nii.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "explain", "predict", str(trained), str(image), "--out", str(out), "--probabilities",
         str(probs), "--fold", "0", "--mirroring", "off", "--json", "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    import nibabel as nib

    seg, src = nib.load(out), nib.load(image)
    assert seg.shape == src.shape and np.allclose(seg.header.get_sform(), src.header.get_sform())
    assert np.allclose(seg.header.get_qform(), src.header.get_qform())
    assert nib.load(probs).shape == (*src.shape, 3)
    labels, _ = _nnunet(trained, [image], mirroring=False)
    assert float((np.asarray(seg.dataobj) == labels).mean()) >= 0.995
    assert summary["class_names"] == ["background", "bright", "dark"]
    assert summary["voxels"]["bright"] == int((np.asarray(seg.dataobj) == 1).sum())


def test_all_folds_are_averaged_as_nnunet_averages_them(trained, tmp_path):
    folder = tmp_path / CONFIG
    shutil.copytree(trained, folder)
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)  # the test's own file
    generator = torch.Generator().manual_seed(1)
    for _key, value in checkpoint["network_weights"].items():
        if value.is_floating_point():
            value.add_(torch.randn(value.shape, generator=generator) * 0.05 * value.std().nan_to_num(0.0))
    (folder / "fold_1").mkdir()
    torch.save(checkpoint, folder / "fold_1" / "checkpoint_final.pth")
    image = _case(trained, 7)
    model = load_model(folder)  # default: every fold
    assert model.framework.spec.folds == ("fold_0", "fold_1")
    ours = predict_case(model, load_volume(image), mirroring=False, device="cpu")
    _agree(ours, _nnunet(folder, [image], folds=(0, 1), mirroring=False))


def test_old_plans_give_the_same_logits_as_their_new_form(trained, tmp_path):
    from explain.cam.engine import predict_on_grid

    folder = tmp_path / CONFIG
    shutil.copytree(trained, folder)
    plans = json.loads((folder / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    arch = config.pop("architecture")["arch_kwargs"]
    config.update(
        UNet_class_name="PlainConvUNet", UNet_base_num_features=arch["features_per_stage"][0],
        unet_max_num_features=arch["features_per_stage"][-1], n_conv_per_stage_encoder=arch["n_conv_per_stage"],
        n_conv_per_stage_decoder=arch["n_conv_per_stage_decoder"], pool_op_kernel_sizes=arch["strides"],
        conv_kernel_sizes=arch["kernel_sizes"], num_pool_per_axis=[2, 2, 2],
    )  # fmt: skip
    (folder / "plans.json").write_text(json.dumps(plans))
    volume = load_volume(_case(trained))
    new = predict_on_grid(load_model(trained), volume, "cpu")[1].logits
    old = predict_on_grid(load_model(folder), volume, "cpu")[1].logits
    assert torch.equal(new, old)


def test_two_channels_with_ct_normalisation_without_mirroring(trained, tmp_path):
    """A folder made by hand: two channels (MRI z-score, CT clipped to its fingerprint), a NoMirroring trainer."""
    folder = tmp_path / CONFIG
    (folder / "fold_0").mkdir(parents=True)
    plans = json.loads((trained / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    config.update(normalization_schemes=["ZScoreNormalization", "CTNormalization"], use_mask_for_norm=[False, False])
    plans["foreground_intensity_properties_per_channel"] = {
        "0": plans["foreground_intensity_properties_per_channel"]["0"],
        "1": {"mean": 40.0, "std": 80.0, "percentile_00_5": -100.0, "percentile_99_5": 300.0},
    }
    dataset = json.loads((trained / "dataset.json").read_text()) | {"channel_names": {"0": "MRI", "1": "CT"}}
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    arch = dict(config["architecture"]["arch_kwargs"])
    arch.update(conv_op=torch.nn.Conv3d, norm_op=torch.nn.InstanceNorm3d, nonlin=torch.nn.LeakyReLU, dropout_op=None)
    torch.manual_seed(3)
    net = PlainConvUNet(input_channels=2, num_classes=3, deep_supervision=False, **arch)
    torch.save(
        {"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainerNoMirroring",
         "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": None},
        folder / "fold_0" / "checkpoint_final.pth",
    )  # fmt: skip
    import nibabel as nib

    first = nib.load(_case(trained))
    rng = np.random.default_rng(0)
    ct = (np.asarray(first.dataobj) * 100 + rng.normal(0, 30, first.shape)).astype(np.float32)
    images = [tmp_path / "c_0001.nii.gz", tmp_path / "c_0000.nii.gz"]  # given out of order: suffixes decide
    nib.save(nib.Nifti1Image(ct, first.affine), str(images[0]))
    shutil.copy(_case(trained), images[1])
    model = load_model(folder)
    assert model.card.channel_names == ["MRI", "CT"] and model.framework.mirror_axes is None
    case = load_case(images, channels=2, names=model.card.channel_names)
    ours = predict_case(model, case, device="cpu")
    _agree(ours, _nnunet(folder, sorted(images), mirroring=False), trivial_ok=True)  # random weights
    shifted = np.asarray(first.affine).copy()
    shifted[0, 3] += 2.0  # the second channel 2 mm to the side
    nib.save(nib.Nifti1Image(ct, shifted), str(tmp_path / "shifted_0001.nii.gz"))
    with pytest.raises(InputError, match="same grid"):
        load_case([images[1], tmp_path / "shifted_0001.nii.gz"], channels=2)


def test_a_map_of_the_trained_model_sits_on_its_class(trained):
    import nibabel as nib
    from scipy.ndimage import binary_dilation

    from explain.request import explain

    image = _case(trained, 4)
    truth = np.asarray(nib.load(str(image).replace("imagesTr", "labelsTr").replace("_0000", "")).dataobj)
    model = load_model(trained, fold="0")
    for target in (1, 2):
        cam = explain(model, load_volume(image), "hirescam", target=target, device="cpu").get()
        assert cam.windows > 1
        peak = np.unravel_index(np.argmax(cam.cam), cam.cam.shape)
        assert binary_dilation(truth == target, iterations=2)[peak], (target, peak)


def test_no_load_unpickles_beyond_weights_only(trained, monkeypatch, tmp_path):
    calls = []
    real = torch.load

    def recording(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    model = load_model(trained)
    predict_case(model, load_volume(_case(trained)), mirroring=False, device="cpu")
    archive = tmp_path / "upload.zip"  # the same folder as an upload
    with zipfile.ZipFile(archive, "w") as z:
        for p in trained.rglob("*"):
            if p.is_file() and p.suffix != ".png":
                z.write(p, Path(CONFIG) / p.relative_to(trained))
    load_model(archive.read_bytes(), name="model.zip")
    assert calls and all(c is True for c in calls)


def test_torchvision_and_timm_are_never_imported(trained):
    code = (
        "import sys, monai, monai.networks.nets, explain.request, explain.predict\n"
        "from explain.models.load import load_model\n"
        f"load_model({str(trained)!r})\n"
        "print(sorted(m for m in ('torchvision', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
