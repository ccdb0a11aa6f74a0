"""The bundled nnU-Net sample: trained on synthetic brain lesion cases by nnU-Net's own planner and trainer.

    python -m sample_data.nnunet_sample [--epochs 40] [--cases 40]     (part of `make samples`)

Cases come from `sample_data.synth` (the MNI152 template with a bright and a dark lesion, bias field, gain, noise),
written at 2 mm as nnU-Net's raw dataset (labels: background, bright lesion, dark lesion). nnU-Net plans the
dataset, its plan is shrunk to what a CPU trains in minutes (patch 48^3, features 8-64, four stages), it
preprocesses, and `nnUNetTrainer` trains fold 0. The results folder is copied to
sample_data/models/nnunet_lesions/ as nnU-Net wrote it (plans.json, dataset.json, dataset_fingerprint.json,
fold_0/checkpoint_final.pth), except that the checkpoint's optimizer and grad-scaler states are dropped
(training state, not the model: they would double its size) and nnU-Net's logs and plots are left out.
Seeded; nnU-Net's data augmentation runs in one background process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "models" / "nnunet_lesions"
DATASET = "Dataset501_Lesions"


def write_cases(folder: Path, n: int, seed: int = 0) -> None:
    import nibabel as nib
    import numpy as np

    from sample_data.synth import make_case, template

    base, placement, affine = template()
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coarse = affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    for k in range(n):
        image, labels, _ = make_case(rng, base, placement, [1, 2])
        image, labels = _mean_pool(image), _max_pool(labels)  # 2 mm: the mean (labels: the max) of 2x2x2 blocks
        nib.save(
            nib.Nifti1Image(image.astype(np.float32), coarse), str(folder / "imagesTr" / f"case{k:03d}_0000.nii.gz")
        )
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), coarse), str(folder / "labelsTr" / f"case{k:03d}.nii.gz"))
    dataset = {"channel_names": {"0": "T1"}, "labels": {"background": 0, "bright lesion": 1, "dark lesion": 2},
               "numTraining": n, "file_ending": ".nii.gz", "name": "Synthetic brain lesions (camviewer sample)",
               "description": "A demo model, not a medical device: nnU-Net v2 trained on synthetic bright and dark "
                              "lesions in the MNI152 T1 template (sample_data/nnunet_sample.py)."}  # fmt: skip
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))


def _mean_pool(a):
    s = [d // 2 * 2 for d in a.shape]
    a = a[: s[0], : s[1], : s[2]]
    return a.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean(axis=(1, 3, 5))


def _max_pool(a):
    s = [d // 2 * 2 for d in a.shape]
    a = a[: s[0], : s[1], : s[2]]
    return a.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).max(axis=(1, 3, 5))


def train(root: Path, epochs: int, cases: int) -> Path:
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.manual_seed(0)
    write_cases(root / "raw" / DATASET, cases)
    extract_fingerprints([501], num_processes=1, check_dataset_integrity=False)
    plan_experiments([501], gpu_memory_target_in_gb=1)
    plans_file = root / "pre" / DATASET / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["3d_fullres"]
    config.update(patch_size=[48, 48, 48], batch_size=2)
    config["architecture"]["arch_kwargs"].update(
        n_stages=4, features_per_stage=[8, 16, 32, 64], kernel_sizes=[[3, 3, 3]] * 4,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2, 2, 2, 2],
        n_conv_per_stage_decoder=[2, 2, 2],
    )  # fmt: skip
    for name in [c for c in plans["configurations"] if c != "3d_fullres"]:
        del plans["configurations"][name]
    plans_file.write_text(json.dumps(plans, indent=1))
    preprocess([501], configurations=["3d_fullres"], num_processes=[1])
    dataset = json.loads((root / "pre" / DATASET / "dataset.json").read_text())
    plans["continue_training"] = False
    trainer = nnUNetTrainer(plans, "3d_fullres", 0, dataset, device=torch.device("cpu"))
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = epochs, 50, 5
    trainer.run_training()
    return Path(trainer.output_folder).parent


def ship(results: Path, out: Path = OUT) -> None:
    """Copy what inference needs; the checkpoint without optimizer and grad-scaler state."""
    import torch

    if out.exists():
        shutil.rmtree(out)
    (out / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copy(results / name, out / name)
    checkpoint = torch.load(results / "fold_0" / "checkpoint_final.pth", weights_only=False)  # our own training run
    for key in ("optimizer_state", "grad_scaler_state"):
        checkpoint.pop(key, None)
    checkpoint["init_args"].pop("device", None)
    torch.save(checkpoint, out / "fold_0" / "checkpoint_final.pth")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--cases", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for key, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "res")):
            os.environ[key] = str(root / sub)
        os.environ.update(nnUNet_def_n_proc="1", nnUNet_n_proc_DA="1")
        t0 = time.time()
        results = train(root, args.epochs, args.cases)
        ship(results)
        print(f"nnU-Net sample trained in {time.time() - t0:.0f} s -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
