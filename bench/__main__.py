"""`python -m bench` (or `make bench`): run the benchmarks and refresh docs/benchmarks.md.

python -m bench                      # CAM engine on CPU (and GPU if present)
python -m bench --models vit-96      # a subset
python -m bench --viewer             # also every viewer figure (real Chromium)
python -m bench --viewer-only        # only the viewer figures (or: make bench-viewer)
python -m bench --batch              # also cohort runs against a CLI loop, and the cohort table
python -m bench --batch-only         # only those
python -m bench --sanity-only        # only the sanity checks of the sample models, per method
python -m bench --clinical-only      # only a whole 512x512x300 CT in windows against MONAI's own prediction
python -m bench --first-view-only    # only the app's first view on a returning visit (real Chromium)
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
from pathlib import Path

import torch

from bench import cam_speed

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"


def replace_section(name: str, body: str) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` in docs/benchmarks.md."""
    text = DOCS.read_text()
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"docs/benchmarks.md has no {name} markers")
    DOCS.write_text(pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=list(cam_speed.MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--viewer", action="store_true", help="also measure the viewer in Chromium")
    parser.add_argument("--viewer-only", action="store_true", help="only the viewer figures")
    parser.add_argument("--batch", action="store_true", help="also time cohort runs against a CLI loop")
    parser.add_argument("--batch-only", action="store_true", help="only the cohort figures")
    parser.add_argument("--sanity-only", action="store_true", help="only the sanity checks per method")
    parser.add_argument("--clinical-only", action="store_true", help="only the whole-CT map against MONAI's prediction")
    parser.add_argument("--first-view-only", action="store_true", help="only the app's first view (Chromium)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.viewer_only:
        return viewer_figures(write_docs=not args.no_docs)
    if args.first_view_only:
        return first_view_figures(write_docs=not args.no_docs)
    if args.batch_only:
        return batch_figures(write_docs=not args.no_docs)
    if args.sanity_only:
        return sanity_figures(write_docs=not args.no_docs)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.clinical_only:
        return clinical_figures(devices, write_docs=not args.no_docs)
    for device in devices:
        rows = cam_speed.run_all(device, args.repeats, args.models)
        (RESULTS / f"cam_speed_{device}.json").write_text(json.dumps(rows, indent=2))
        name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine()
        stamp = datetime.date.today().isoformat()
        body = (
            f"Measured {stamp} on {device} ({name}, {torch.get_num_threads()} threads), torch "
            f"{torch.__version__}, median of {args.repeats} after one warm-up.\n\n{cam_speed.table(rows)}\n"
        )
        print(body)
        if not args.no_docs:
            replace_section(f"cam-speed-{device}", body)
    clinical_figures(devices, write_docs=not args.no_docs)
    if args.batch:
        batch_figures(write_docs=not args.no_docs)
    if args.viewer:
        viewer_figures(write_docs=not args.no_docs)


def clinical_figures(devices: list[str], write_docs: bool = True) -> None:
    """A whole 512x512x300 CT in windows: one map against MONAI's SlidingWindowInferer (bench/clinical.py)."""
    from bench import clinical

    stamp = datetime.date.today().isoformat()
    body = f"Measured {stamp} with `python -m bench --clinical-only`.\n\n{clinical.main(devices)}"
    print(body)
    if write_docs:
        replace_section("clinical", body)


def batch_figures(write_docs: bool = True) -> None:
    """The cohort section: batch on Ray against a loop of CLI calls, and the cohort table."""
    from bench import batch_speed

    body = batch_speed.main()
    if write_docs:
        replace_section("batch-speed", body)


def sanity_figures(write_docs: bool = True) -> None:
    """Cascading randomisation of every sample model, per method (bench/sanity_methods.py)."""
    from bench import sanity_methods

    body = sanity_methods.main()
    if write_docs:
        replace_section("sanity", body)


def viewer_figures(write_docs: bool = True) -> None:
    """The viewer section of docs/benchmarks.md: loads and steps, renderers side by side, NiiVue side by side."""
    from bench import viewer_niivue, viewer_renderers, viewer_speed

    for section, module in (
        ("viewer-speed", viewer_speed),
        ("viewer-renderers", viewer_renderers),
        ("viewer-niivue", viewer_niivue),
    ):
        body = module.main()
        if body and write_docs:
            replace_section(section, body)
    first_view_figures(write_docs)


def first_view_figures(write_docs: bool = True) -> None:
    """The app's first view on a returning visit, seen by screenshots, with where the time goes."""
    from bench import first_view

    stamp = datetime.date.today().isoformat()
    body = f"Measured {stamp} with `python -m bench --first-view-only`.\n\n{first_view.main()}"
    print(body)
    if write_docs:
        replace_section("first-view", body)


if __name__ == "__main__":
    main()
