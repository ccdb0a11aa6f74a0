"""MONAI bundles written here with the structure and values of real Model Zoo configs (their `@` references and `$`
expressions included), seeded random weights and smaller rois, so that the tests stay fast:
- `spleen`: spleen_ct_segmentation's config (UNet, RAS, 1.5 x 1.5 x 2 mm, CT window, SlidingWindowInferer,
  softmax, Invertd, argmax after), its weight path an expression on @bundle_root;
- `wholebody`: wholeBody_ct_segmentation's (SegResNet, spacing and weight file chosen by a `$ ... if
  @displayable_configs#highres else ...` expression, NormalizeIntensity on non-zero, Gaussian windows, the argmax
  before Invertd with nearest interpolation);
- `brats`: brats_mri_segmentation's (SegResNet, four channels T1c/T1/T2/FLAIR, channel-wise normalisation,
  sigmoid TC/WT/ET);
- `classifier`: a 2D classifier as endoscopic_inbody_classification is laid out (a DenseNet121 here: SEResNet50
  is the same kind of network, only slower), its size chosen with `len()` and a conditional.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPLEEN = {
    "imports": ["$import glob", "$import numpy", "$import os"],
    "bundle_root": ".",
    "image_key": "image",
    "output_dir": "$@bundle_root + '/eval'",
    "dataset_dir": "/workspace/data/Task09_Spleen",
    "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                    "channels": [8, 16, 32, 64], "strides": [2, 2, 2], "num_res_units": 2, "norm": "batch"},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "@image_key"},
        {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
        {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": -57, "a_max": 164, "b_min": 0,
         "b_max": 1, "clip": True},
        {"_target_": "EnsureTyped", "keys": "@image_key"}]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 4, "overlap": 0.5},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "trans"}]},
    "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                         "load_dict": {"model": "@network"}},
    "initialize": ["$monai.utils.set_determinism(seed=123)", "$@checkpointloader(@evaluator)"],
}  # fmt: skip

WHOLEBODY = {
    "displayable_configs": {"highres": False, "sw_overlap": 0.25, "sw_batch_size": 1},
    "imports": ["$import glob", "$import numpy", "$import os"],
    "bundle_root": ".",
    "image_key": "image",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "pixdim": "$[1.5, 1.5, 1.5] if @displayable_configs#highres else [3.0, 3.0, 3.0]",
    "modelname": "$'model.pt' if @displayable_configs#highres else 'model_lowres.pt'",
    "network_def": {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 4,
                    "init_filters": 8, "blocks_down": [1, 2, 2], "blocks_up": [1, 1], "dropout_prob": 0.2},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "@image_key"},
        {"_target_": "EnsureTyped", "keys": "@image_key"},
        {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
        {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "@image_key", "pixdim": "@pixdim", "mode": "bilinear"},
        {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True},
        {"_target_": "ScaleIntensityd", "keys": "@image_key", "minv": -1.0, "maxv": 1.0}]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [24, 24, 24],
                "sw_batch_size": "@displayable_configs#sw_batch_size", "overlap": "@displayable_configs#sw_overlap",
                "mode": "gaussian", "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')"},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
         "nearest_interp": True, "to_tensor": True}]},
    "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/' + @modelname",
                         "load_dict": {"model": "@network"}},
}  # fmt: skip

BRATS = {
    "imports": ["$import glob", "$import os"],
    "bundle_root": ".",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {"_target_": "SegResNet", "blocks_down": [1, 2, 2], "blocks_up": [1, 1], "init_filters": 8,
                    "in_channels": 4, "out_channels": 3, "dropout_prob": 0.2},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True}]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 24], "sw_batch_size": 1, "overlap": 0.5},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "meta_keys": "pred_meta_dict", "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
        {"_target_": "Lambdad", "keys": "pred", "func": "$lambda x: torch.where(x[[2]] > 0, 4, torch.where(x[[0]] > 0, 1, torch.where(x[[1]] > 0, 2, 0)))"}]},
    "handlers": [{"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                  "load_dict": {"model": "@network"}},
                 {"_target_": "StatsHandler", "iteration_log": False}],
}  # fmt: skip

CLASSIFIER = {
    "imports": ["$import os"],
    "bundle_root": ".",
    "small": True,
    "sizes": [[64, 64], [128, 128]],
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {"_target_": "DenseNet121", "spatial_dims": 2, "in_channels": 1, "out_channels": 2},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "ScaleIntensityd", "keys": "image"},
        {"_target_": "Resized", "keys": "image",
         "spatial_size": "$@sizes[0] if @small and len(@sizes) > 1 else @sizes[1]"}]},
    "inferer": {"_target_": "SimpleInferer"},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True}]},
    "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                         "load_dict": {"model": "@network"}},
}  # fmt: skip

METADATA = {
    "spleen": {"name": "Spleen CT segmentation (test)", "version": "0.5.0", "network_data_format": {
        "inputs": {"image": {"type": "image", "num_channels": 1, "channel_def": {"0": "image"}}},
        "outputs": {"pred": {"type": "image", "num_channels": 2, "channel_def": {"0": "background", "1": "spleen"}}}}},
    "wholebody": {"name": "Whole body CT (test)", "version": "0.2.0", "network_data_format": {
        "outputs": {"pred": {"type": "image", "num_channels": 4, "channel_def": None}}}},
    "brats": {"name": "BraTS MRI segmentation (test)", "version": "0.5.0", "network_data_format": {
        "inputs": {"image": {"type": "image", "num_channels": 4,
                             "channel_def": {"0": "T1c", "1": "T1", "2": "T2", "3": "FLAIR"}}},
        "outputs": {"pred": {"type": "image", "num_channels": 3,
                             "channel_def": {"0": "Tumor core", "1": "Whole tumor", "2": "Enhancing tumor"}}}}},
    "classifier": {"name": "A 2D classifier (test)", "version": "0.1.0", "network_data_format": {
        "outputs": {"pred": {"type": "probabilities", "num_channels": 2,
                             "channel_def": {"0": "outside", "1": "inside"}}}}},
}  # fmt: skip
CONFIGS = {"spleen": SPLEEN, "wholebody": WHOLEBODY, "brats": BRATS, "classifier": CLASSIFIER}
LABELS_FOR_WHOLEBODY = {"background": 0, "liver": 1, "kidney": 2, "spleen": 3}


def write_bundle(root: Path, kind: str, seed: int = 0, yaml_config: bool = False) -> Path:
    """A bundle folder `root/kind` with its configs, metadata and seeded random weights."""
    from monai.networks import nets

    folder = root / kind
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    config = dict(CONFIGS[kind])
    if kind == "wholebody":
        config["labels"] = LABELS_FOR_WHOLEBODY
    if yaml_config:
        import yaml

        (folder / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    else:
        (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    (folder / "configs" / "metadata.json").write_text(json.dumps(METADATA[kind], indent=2))
    spec = {k: v for k, v in config["network_def"].items() if k != "_target_"}
    torch.manual_seed(seed)
    network = getattr(nets, config["network_def"]["_target_"])(**spec)
    weights = "model_lowres.pt" if kind == "wholebody" else "model.pt"
    torch.save(
        {"model": network.state_dict()} if kind == "brats" else network.state_dict(), folder / "models" / weights
    )
    return folder
