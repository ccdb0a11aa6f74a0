"""Command line: layers, cam, sanity and batch.

    python -m explain layers MODEL
    python -m explain cam MODEL IMAGE [IMAGE ...] --out CAM.nii.gz [--mask MASK]
    python -m explain predict MODEL IMAGE [IMAGE ...] [--out SEG] [--probabilities PROB] [--fold K|all]
    python -m explain sanity MODEL IMAGE [IMAGE ...] [--method gradcam] [--json]
    python -m explain batch CASES --model MODEL --out DIR [--method ...] [--ray ADDRESS]

Bad input prints one line on stderr (`error: ...`) and exits with status 2. Even a
bug prints one line (status 1) rather than a traceback; set CAMVIEWER_DEBUG=1 to
see the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from explain.errors import InputError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explain", description="CAMs for PyTorch/MONAI models, 3D and 2D")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser, positional: bool = True) -> None:
        if positional:
            sp.add_argument("model", help=".pt2 program, or a weights file with --arch")
        else:
            sp.add_argument("--model", required=True, help=".pt2 program, or a weights file with --arch")
        sp.add_argument("--arch", help="MONAI network name for a weights file, e.g. DenseNet121")
        sp.add_argument("--arch-kwargs", default="{}", help="JSON kwargs, e.g. '{\"spatial_dims\": 3}'")
        sp.add_argument("--card", help="model card JSON file: its fields override the model's own card")
        sp.add_argument("--fold", default="all", help="nnU-Net folders: one fold K, or 'all' averaged (default)")
        sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    def map_args(sp: argparse.ArgumentParser, many: bool = False) -> None:
        sp.add_argument("--method", action="append" if many else "store", help="gradcam (default), gradcampp, ...")
        sp.add_argument("--layer", action="append", help="dotted layer name; repeat for several")
        sp.add_argument("--target", default=None, help="class index or 'all' (batch: also 'label'); default: predicted")

    layers = sub.add_parser("layers", help="list candidate layers with their output shapes")
    model_args(layers)
    layers.add_argument("--json", action="store_true")

    cam = sub.add_parser("cam", help="compute map(s) and write them as NIfTI on the input's grid")
    model_args(cam)
    cam.add_argument(
        "volume", nargs="+", help="NIfTI, NRRD, MGH, DICOM folder or file, .zip, PNG/JPEG; several: channels in order"
    )
    cam.add_argument("--volume-index", type=int, help="which volume of a 4D file (default: the first)")
    cam.add_argument("--out", required=True, help="output .nii.gz (several maps: suffixed _<layer>_<target>)")
    map_args(cam)
    cam.add_argument("--raw-out", help="write the layer-grid raw map(s) as .npy")
    cam.add_argument("--head", type=int, help="vit-attention: one head instead of the mean")
    cam.add_argument("--block", type=int, help="vit-attention: block index (default: last)")
    cam.add_argument("--mask", help="a mask on the volume's grid: adds pointing game, energy in mask and IoU")
    cam.add_argument("--threshold", type=float, default=0.5, help="map threshold for IoU (0..1, default 0.5)")
    cam.add_argument("--json", action="store_true", help="print scores, target, layer, shapes, timings, scores")

    predict = sub.add_parser(
        "predict", help="the model's prediction on the image's own grid, as its framework writes it"
    )
    model_args(predict)
    predict.add_argument("volume", nargs="+", help="the image(s) of one case; several: channels in the model's order")
    predict.add_argument("--out", help="label map (segmentation; sigmoid outputs: one 0/1 volume per output, 4D)")
    predict.add_argument("--probabilities", help="class probabilities as a 4D NIfTI, last axis = class")
    predict.add_argument("--mirroring", choices=["on", "off"], help="default: on when the model allows it")
    predict.add_argument("--json", action="store_true", help="print class names and probabilities or voxel counts")

    sanity = sub.add_parser("sanity", help="cascading parameter randomisation (Adebayo et al. 2018)")
    model_args(sanity)
    sanity.add_argument("volume", nargs="+")
    map_args(sanity)
    sanity.add_argument("--steps", type=int, help="stop after this many blocks")
    sanity.add_argument("--json", action="store_true")

    batch = sub.add_parser("batch", help="a cohort on Ray: maps as NIfTI and one table of results")
    batch.add_argument("cases", help="a folder of cases, or a CSV with path[, mask, label] columns")
    model_args(batch, positional=False)
    map_args(batch, many=True)
    batch.add_argument("--out", required=True, help="output folder (results.csv, maps/); rerun to resume")
    batch.add_argument("--workers", type=int, default=2, help="Ray workers (each loads the model once)")
    batch.add_argument("--ray", help="address of a Ray cluster (default: a local Ray on this machine)")
    batch.add_argument("--threshold", type=float, default=0.5)
    batch.add_argument("--sanity", action="store_true", help="also randomise the top block and report it")
    return p


class ProgressBar:
    """Windows done, as a bar on stderr: `[#########.....] windows 9/15`. Stages of a one-pass run print nothing."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream, self.width, self.open = stream or sys.stderr, width, False

    def __call__(self, stage: str, done: int = 0, total: int = 0) -> None:
        if stage != "windows" or total < 1:
            return
        filled = int(self.width * done / total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] windows {done}/{total}")
        self.open = done < total
        self.stream.write("" if self.open else "\n")
        self.stream.flush()


def _model_options(args: argparse.Namespace) -> dict:
    try:
        kwargs = json.loads(args.arch_kwargs)
    except ValueError as e:
        raise InputError(f"--arch-kwargs is not valid JSON: {e}") from e
    card = None
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text()[:1_000_000])
        except (OSError, ValueError, RecursionError) as e:
            raise InputError(f"--card {Path(args.card).name}: cannot read the JSON file ({type(e).__name__})") from e
    return {"arch": args.arch, "arch_kwargs": kwargs, "card": card, "fold": args.fold}


def _load(args: argparse.Namespace):
    from explain.models.load import load_model

    return load_model(args.model, **_model_options(args))


def _target(value: str | None):
    if value is None or value == "all":
        return value
    if not value.lstrip("-").isdigit():
        raise InputError(f"--target must be a class index or 'all'; got {value!r}")
    return int(value)


def _paths(out: Path, suffix: str, n: int, names: list[str]) -> list[Path]:
    if n == 1:
        return [out]
    stem = out.name[: -len(suffix)] if out.name.endswith(suffix) else out.stem
    return [out.with_name(f"{stem}_{name}{suffix}") for name in names]


def _layers(args: argparse.Namespace) -> int:
    from explain.cam.layers import default_layer_for, model_layers

    model = _load(args)
    layers, _ = model_layers(model, args.device)
    default = default_layer_for(model, layers)
    rows = [{"name": i.name, "shape": list(i.shape), "kind": i.kind, "default": i.name == default} for i in layers]
    if args.json:
        print(json.dumps({"layers": rows, "default": default}, indent=2))
    else:
        for row in rows:
            mark = "  (default)" if row["default"] else ""
            print(f"{row['name']:50s} {'x'.join(map(str, row['shape']))}{mark}")
    return 0


def _cam(args: argparse.Namespace) -> int:
    import numpy as np

    from explain.io.load import load_volume
    from explain.io.write import save_nifti
    from explain.request import explain

    model = _load(args)
    volume = _case(args, model)
    mask = load_volume(args.mask).data if args.mask else None
    result = explain(
        model, volume, method=args.method or "gradcam", layers=args.layer, target=_target(args.target),
        device=args.device, head=args.head, block=args.block, progress=ProgressBar(),
    )  # fmt: skip
    names = [f"{r.layer.replace('.', '-')}_{r.target}" for r in result.results]
    out = Path(args.out)
    suffix = ".nii.gz" if out.name.endswith(".nii.gz") else out.suffix or ".nii.gz"
    written = [
        str(save_nifti(r.cam, volume.affine, path))
        for path, r in zip(_paths(out, suffix, len(names), names), result.results)
    ]
    raw_written = []
    if args.raw_out:
        for path, r in zip(_paths(Path(args.raw_out), ".npy", len(names), names), result.results):
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, r.raw_map)
            raw_written.append(str(path))
    summary = result.summary()
    summary.update(outputs=written, raw_outputs=raw_written, volume=volume.source, volume_shape=list(volume.shape),
                   volume_warnings=list(volume.warnings))  # fmt: skip
    if mask is not None:
        from explain.trust.localisation import localise, target_mask

        for entry, r in zip(summary["maps"], result.results):
            entry["localisation"] = localise(r.cam, target_mask(mask, r.target), args.threshold).to_dict()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for r, path, entry in zip(result.results, written, summary["maps"]):
            scores = entry.get("localisation")
            extra = (
                f"  pointing {'hit' if scores['pointing_hit'] else 'miss'}, energy in mask {scores['energy_in_mask']:.2f}"
                if scores
                else ""
            )
            print(f"{r.method} {r.layer} target {r.target} ({r.target_name}) -> {path}{extra}")
    return 0


def _case(args: argparse.Namespace, model):
    """The image(s) given for one case, as the model's channels (a single file: one volume, or a 4D file's
    volumes when the model takes that many channels)."""
    from explain.io.load import load_case, load_volume

    channels = model.input_shape[0] if model.input_shape else 1
    if len(args.volume) == 1 and channels == 1:
        return load_volume(args.volume[0], volume_index=getattr(args, "volume_index", None))
    return load_case(args.volume, channels=channels, names=model.card.channel_names)


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from explain.io.write import save_like
    from explain.predict import predict_case

    model = _load(args)
    if model.card.task == "segmentation" and not args.out:
        raise InputError("--out is required for a segmentation model (the label map is written there)")
    if model.card.task != "segmentation" and (args.out or args.probabilities):
        raise InputError("a classifier writes no image: leave out --out and --probabilities, use --json")
    volume = _case(args, model)
    mirroring = None if args.mirroring is None else args.mirroring == "on"
    outcome = predict_case(model, volume, mirroring=mirroring, device=args.device, progress=ProgressBar())
    reference = Path(args.volume[0])
    written = {}
    if outcome.labels is not None:
        labels = np.moveaxis(outcome.labels, 0, -1) if outcome.output == "sigmoid" else outcome.labels
        dtype = np.uint8 if outcome.output == "sigmoid" or len(outcome.class_names) < 256 else np.uint16
        written["out"] = str(save_like(labels, reference, volume.affine, args.out, dtype))
        if args.probabilities:
            probs = np.moveaxis(outcome.probabilities, 0, -1)
            written["probabilities"] = str(save_like(probs, reference, volume.affine, args.probabilities, np.float32))
    summary = {"task": outcome.task, "output": outcome.output, "class_names": outcome.class_names,
               "mirroring": outcome.mirrored, **written}  # fmt: skip
    if outcome.task == "classification":
        summary["probabilities"] = [round(float(p), 6) for p in outcome.probabilities]
    else:
        summary["voxels"] = outcome.voxel_counts()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, value in (summary.get("voxels") or dict(zip(outcome.class_names, summary["probabilities"]))).items():
            print(f"{name:40s} {value}")
    return 0


def _sanity(args: argparse.Namespace) -> int:
    from explain.trust.sanity import cascade

    model = _load(args)
    volume = _case(args, model)
    target = _target(args.target)
    if target == "all":
        raise InputError("sanity checks one target at a time; give --target K")
    layer = args.layer[0] if args.layer else None
    report = cascade(model, volume, args.method or "gradcam", layer, target, max_steps=args.steps, device=args.device)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"{report.method} at {report.layer}, target {report.target}")
    print(f"{'randomised block':40s} {'Spearman':>9s} {'signed':>7s} {'SSIM':>7s}")
    for step in report.steps:
        print(f"{step.block:40s} {step.spearman:9.3f} {step.signed_spearman:7.3f} {step.ssim:7.3f}")
    print(report.verdict)
    return 0


def _batch(args: argparse.Namespace) -> int:
    from explain.cohort.batch import Choices, read_cases, run_batch

    target = "predicted" if args.target is None else "label" if args.target == "label" else str(_target(args.target))
    choices = Choices(tuple(args.method or ["gradcam"]), tuple(args.layer or ()), target, args.threshold, args.sanity)
    cases = read_cases(args.cases)
    spec = {"path": str(Path(args.model).resolve()), "options": _model_options(args)}
    summary = run_batch(cases, spec, choices, args.out, workers=args.workers, ray_address=args.ray, device=args.device)
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 3


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return {"layers": _layers, "cam": _cam, "predict": _predict, "sanity": _sanity, "batch": _batch}[args.command](args)


def main(argv: list[str] | None = None) -> int:
    # Library chatter (torch.export deprecations, nibabel/pydicom notes) must not come before our one line.
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; try a smaller volume or a lower CAMVIEWER_MAX_BYTES", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: still one line, the traceback only on request
        if os.environ.get("CAMVIEWER_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error ({type(e).__name__}); rerun with CAMVIEWER_DEBUG=1 for details", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
