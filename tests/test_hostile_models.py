"""Hostile nnU-Net folders and MONAI bundles, one test per attack: each is refused in one line, and a sentinel file
(created only if code from the folder ran) proves that nothing ran."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from explain.errors import InputError
from explain.models.load import load_model
from tests.bundles import write_bundle
from tests.hostile import Sentinel

CONFIG = "nnUNetTrainer__nnUNetPlans__3d_fullres"
ARCH = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {"n_stages": 2, "features_per_stage": [4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[3, 3, 3], [3, 3, 3]], "strides": [[1, 1, 1], [2, 2, 2]],
                    "n_conv_per_stage": [1, 1], "n_conv_per_stage_decoder": [1], "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}  # fmt: skip


def nnunet_folder(root: Path, plans_change=None, checkpoint_extra=None, trainer="nnUNetTrainer") -> Path:
    """A small valid nnU-Net results folder made by hand, with one thing changed by the attack."""
    folder = root / CONFIG
    (folder / "fold_0").mkdir(parents=True)
    config = {"patch_size": [16, 16, 16], "spacing": [1.0, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"],
              "use_mask_for_norm": [False], "resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                     "force_separate_z": None},
              "architecture": json.loads(json.dumps(ARCH))}  # fmt: skip
    plans = {"dataset_name": "Dataset001_Blobs", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
             "transpose_backward": [0, 1, 2], "image_reader_writer": "SimpleITKIO",
             "configurations": {"3d_fullres": config},
             "foreground_intensity_properties_per_channel": {"0": {"mean": 0.0, "std": 1.0}}}  # fmt: skip
    if plans_change:
        plans_change(plans)
    (folder / "plans.json").write_text(json.dumps(plans))
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "lesion": 1}, "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset))
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    kwargs = dict(ARCH["arch_kwargs"], conv_op=torch.nn.Conv3d, norm_op=torch.nn.InstanceNorm3d,
                  nonlin=torch.nn.LeakyReLU)  # fmt: skip
    net = PlainConvUNet(input_channels=1, num_classes=2, deep_supervision=False, **kwargs)
    checkpoint = {"network_weights": net.state_dict(), "trainer_name": trainer,
                  "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)}  # fmt: skip
    checkpoint.update(checkpoint_extra or {})
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def _refused(source, match: str, sentinel: Path | None = None, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as caught:
        load_model(source, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600, message
    if sentinel is not None:
        assert not sentinel.exists(), "code from the folder ran"
    return message


def test_the_hand_made_folder_itself_loads(tmp_path):
    model = load_model(nnunet_folder(tmp_path))
    assert model.kind == "nnunet" and model.card.class_names == ["background", "lesion"]


def test_a_pickled_object_in_a_checkpoint(tmp_path):
    sentinel = tmp_path / "ran"
    folder = nnunet_folder(tmp_path, checkpoint_extra={"logging": {"hook": Sentinel(sentinel)}})
    assert not sentinel.exists()
    _refused(folder, "would unpickle", sentinel)


def test_a_plans_file_naming_code_to_import(tmp_path, monkeypatch):
    """nnU-Net would `pydoc.locate` these names; a module on the path that writes the sentinel when imported."""
    sentinel = tmp_path / "imported"
    (tmp_path / "hostile_plans_module.py").write_text(f"open({str(sentinel)!r}, 'w')\nsystem = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def network(plans):
        plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "hostile_plans_module.system"

    _refused(nnunet_folder(tmp_path / "a", network), "refused, the plans name network", sentinel)

    def conv(plans):
        plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["conv_op"] = "os.system"

    _refused(nnunet_folder(tmp_path / "b", conv), "refused, the plans name 'os.system'", sentinel)
    assert "hostile_plans_module" not in sys.modules


def test_an_unknown_trainer_a_region_training_and_an_unknown_normalisation(tmp_path):
    _refused(nnunet_folder(tmp_path / "a", trainer="MyCustomTrainer"), "trainer 'MyCustomTrainer'")

    def scheme(plans):
        plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["my_package.Norm"]

    _refused(nnunet_folder(tmp_path / "b", scheme), "refused, normalisation")
    folder = nnunet_folder(tmp_path / "c")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"},
                                                     "labels": {"background": 0, "tumour": [1, 2]}}))  # fmt: skip
    _refused(folder, "region-based")


def test_a_bundle_expression_that_imports(tmp_path):
    sentinel = tmp_path / "evaluated"
    bundle = write_bundle(tmp_path, "spleen")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["network_def"]["out_channels"] = f"$__import__('os').system('touch {sentinel}') or 2"
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    _refused(bundle, "never code", sentinel)


def test_a_bundle_target_outside_the_allow_list(tmp_path):
    bundle = write_bundle(tmp_path, "spleen")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["network_def"]["_target_"] = "torch.hub.load"
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    _refused(bundle, "allow-listed MONAI")
    config["network_def"]["_target_"] = "UNet"
    config["preprocessing"]["transforms"].append({"_target_": "monai.transforms.Lambdad", "keys": "image",
                                                  "func": "$lambda x: x"})  # fmt: skip
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    _refused(bundle, "does not map onto")


def test_a_bundle_that_needs_its_scripts(tmp_path):
    sentinel = tmp_path / "script_ran"
    bundle = write_bundle(tmp_path, "spleen")
    (bundle / "scripts").mkdir()
    (bundle / "scripts" / "__init__.py").write_text(f"open({str(sentinel)!r}, 'w')\n")
    (bundle / "scripts" / "net.py").write_text("class Net: pass\n")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["network_def"] = {"_target_": "scripts.net.Net"}
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    _refused(bundle, "needs its own code", sentinel)


def test_a_bundle_with_torchscript_only(tmp_path):
    bundle = write_bundle(tmp_path, "spleen")
    (bundle / "models" / "model.pt").rename(bundle / "models" / "model.ts")
    _refused(bundle, "only TorchScript")


@pytest.mark.parametrize("kind", ["nnunet", "bundle"])
def test_a_zip_that_climbs_out(tmp_path, kind):
    folder = nnunet_folder(tmp_path) if kind == "nnunet" else write_bundle(tmp_path, "spleen")
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in folder.rglob("*"):
            if p.is_file():
                z.write(p, Path(folder.name) / p.relative_to(folder))
        z.writestr("../../outside.txt", "x")
    _refused(archive.read_bytes(), "points outside the archive", name="model.zip")
    assert not (tmp_path.parent / "outside.txt").exists()
