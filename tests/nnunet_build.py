"""A small nnU-Net v2 model made by nnU-Net's own planner, preprocessor and trainer, for the oracle tests.

    python -m tests.nnunet_build ROOT [EPOCHS]

Twelve synthetic cases of 40 x 48 x 36 voxels (1 x 1 x 1.5 mm) with a bright and a dark sphere each (labels 1 and
2), a tiny plan (patch 24 x 32 x 32, features 8-32, three stages) so that CPU training takes seconds, and
nnUNetTrainer run for a few epochs of 20 iterations. It writes ROOT/raw, ROOT/pre and ROOT/res, and prints the
results folder. nnU-Net reads its paths from the environment when it is imported, so this runs as its own process.
"""

from __future__ import annotations

import json
import os
import sys


def cases(folder: str, n: int = 12, seed: int = 0) -> None:
    import nibabel as nib
    import numpy as np

    os.makedirs(f"{folder}/imagesTr", exist_ok=True)
    os.makedirs(f"{folder}/labelsTr", exist_ok=True)
    rng = np.random.default_rng(seed)
    shape, affine = (40, 48, 36), np.diag([1.0, 1.0, 1.5, 1.0])
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for k in range(n):
        image = rng.normal(1.0, 0.3, shape).astype(np.float32)
        labels = np.zeros(shape, np.uint8)
        for label, value, centre in ((1, 3.0, (12, 14, 10)), (2, -1.5, (28, 34, 24))):
            c = np.asarray(centre) + rng.integers(-3, 4, 3)
            radius = rng.uniform(11, 13)
            inside = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + ((xx - c[2]) * 1.5) ** 2) < radius**2
            image[inside] = value + rng.normal(0, 0.3, int(inside.sum()))
            labels[inside] = label
        nib.save(nib.Nifti1Image(image, affine), f"{folder}/imagesTr/case{k:03d}_0000.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), f"{folder}/labelsTr/case{k:03d}.nii.gz")
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "bright": 1, "dark": 2},
               "numTraining": n, "file_ending": ".nii.gz", "name": "Blobs",
               "description": "Synthetic bright and dark spheres, for tests"}  # fmt: skip
    with open(f"{folder}/dataset.json", "w") as f:
        json.dump(dataset, f)


def main(root: str, epochs: int) -> str:
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases(f"{root}/raw/Dataset001_Blobs")
    extract_fingerprints([1], num_processes=1, check_dataset_integrity=False)
    plan_experiments([1], gpu_memory_target_in_gb=0.3)
    plans_file = f"{root}/pre/Dataset001_Blobs/nnUNetPlans.json"
    with open(plans_file) as f:
        plans = json.load(f)
    config = plans["configurations"]["3d_fullres"]
    config.update(patch_size=[24, 32, 32], batch_size=2)
    config["architecture"]["arch_kwargs"].update(
        n_stages=3, features_per_stage=[8, 16, 32], kernel_sizes=[[3, 3, 3]] * 3,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2, 2, 2], n_conv_per_stage_decoder=[2, 2],
    )  # fmt: skip
    for name in ("2d", "3d_lowres", "3d_cascade_fullres"):
        plans["configurations"].pop(name, None)
    with open(plans_file, "w") as f:
        json.dump(plans, f, indent=1)
    preprocess([1], configurations=["3d_fullres"], num_processes=[1])
    with open(f"{root}/pre/Dataset001_Blobs/dataset.json") as f:
        dataset = json.load(f)
    plans["continue_training"] = False
    trainer = nnUNetTrainer(plans, "3d_fullres", 0, dataset, device=torch.device("cpu"))
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = epochs, 20, 2
    trainer.run_training()
    return os.path.dirname(trainer.output_folder)


if __name__ == "__main__":
    where = os.path.abspath(sys.argv[1])
    for key, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "res")):
        os.environ[key] = f"{where}/{sub}"
    os.environ.update(nnUNet_def_n_proc="1", nnUNet_n_proc_DA="1")
    print(main(where, int(sys.argv[2]) if len(sys.argv) > 2 else 8))
