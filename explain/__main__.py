"""Command line: `python -m explain layers MODEL` and `python -m explain cam MODEL VOLUME --out CAM.nii.gz`.

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
    p = argparse.ArgumentParser(prog="python -m explain", description="3D CAMs for PyTorch/MONAI models")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model", help=".pt2 program, or a weights file with --arch")
        sp.add_argument("--arch", help="MONAI network name for a weights file, e.g. DenseNet121")
        sp.add_argument("--arch-kwargs", default="{}", help="JSON kwargs, e.g. '{\"spatial_dims\": 3}'")
        sp.add_argument("--card", help="model card JSON file: its fields override the model's own card")
        sp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    layers = sub.add_parser("layers", help="list candidate layers with their output shapes")
    model_args(layers)
    layers.add_argument("--json", action="store_true")

    cam = sub.add_parser("cam", help="compute CAM(s) and write them as NIfTI on the input's grid")
    model_args(cam)
    cam.add_argument("volume", help="NIfTI, NRRD, MGH, DICOM folder or .zip, PNG/JPEG")
    cam.add_argument("--volume-index", type=int, help="which volume of a 4D file (default: the first)")
    cam.add_argument("--out", required=True, help="output .nii.gz (several maps: suffixed _<layer>_<target>)")
    cam.add_argument("--method", default="gradcam")
    cam.add_argument("--layer", action="append", help="dotted layer name; repeat for several")
    cam.add_argument("--target", default=None, help="class index or 'all' (default: predicted class)")
    cam.add_argument("--raw-out", help="write the layer-grid raw map(s) as .npy")
    cam.add_argument("--head", type=int, help="vit-attention: one head instead of the mean")
    cam.add_argument("--block", type=int, help="vit-attention: block index (default: last)")
    cam.add_argument("--json", action="store_true", help="print scores, target, layer, shapes and timings")
    return p


def _load(args: argparse.Namespace):
    from explain.models import load_model

    try:
        kwargs = json.loads(args.arch_kwargs)
    except json.JSONDecodeError as e:
        raise InputError(f"--arch-kwargs is not valid JSON: {e}") from e
    card = None
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text()[:1_000_000])
        except (OSError, ValueError, RecursionError) as e:
            raise InputError(f"--card {Path(args.card).name}: cannot read the JSON file ({type(e).__name__})") from e
    return load_model(args.model, arch=args.arch, arch_kwargs=kwargs, card=card)


def _paths(out: Path, suffix: str, n: int, names: list[str]) -> list[Path]:
    if n == 1:
        return [out]
    stem = out.name[: -len(suffix)] if out.name.endswith(suffix) else out.stem
    return [out.with_name(f"{stem}_{name}{suffix}") for name in names]


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from explain.engine import default_layer_for, explain, model_layers

    model = _load(args)
    if args.command == "layers":
        layers, _ = model_layers(model, args.device)
        default = default_layer_for(model, args.device)
        rows = [
            {"name": info.name, "shape": list(info.shape), "kind": info.kind, "default": info.name == default}
            for info in layers
        ]
        if args.json:
            print(json.dumps({"layers": rows, "default": default}, indent=2))
        else:
            for row in rows:
                mark = "  (default)" if row["default"] else ""
                print(f"{row['name']:50s} {'x'.join(map(str, row['shape']))}{mark}")
        return 0

    import numpy as np

    from explain.volumes import load_volume, save_nifti

    volume = load_volume(args.volume, volume_index=args.volume_index)
    target = args.target
    if target is not None and target != "all":
        if not target.lstrip("-").isdigit():
            raise InputError(f"--target must be a class index or 'all'; got {target!r}")
        target = int(target)
    result = explain(
        model,
        volume,
        method=args.method,
        layers=args.layer,
        target=target,
        device=args.device,
        head=args.head,
        block=args.block,
    )
    names = [f"{r.layer.replace('.', '-')}_{r.target}" for r in result.results]
    out = Path(args.out)
    suffix = ".nii.gz" if out.name.endswith(".nii.gz") else out.suffix or ".nii.gz"
    written = []
    for path, r in zip(_paths(out, suffix, len(result.results), names), result.results):
        save_nifti(r.cam, volume.affine, path)
        written.append(str(path))
    raw_written = []
    if args.raw_out:
        for path, r in zip(_paths(Path(args.raw_out), ".npy", len(result.results), names), result.results):
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, r.raw_map)
            raw_written.append(str(path))
    summary = result.summary()
    summary.update(
        outputs=written,
        raw_outputs=raw_written,
        volume=volume.source,
        volume_shape=list(volume.shape),
        volume_warnings=list(volume.warnings),
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for r, path in zip(result.results, written):
            print(f"{r.method} {r.layer} target {r.target} ({r.target_name}) -> {path}")
    return 0


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
