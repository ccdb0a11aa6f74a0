"""`python -m bench` (or `make bench`): run the benchmarks and refresh docs/benchmarks.md.

python -m bench                      # CAM engine on CPU (and GPU if present)
python -m bench --models vit-96      # a subset
python -m bench --viewer             # also the browser scrubbing benchmark
python -m bench --batch              # also cohort runs against a CLI loop, and the cohort table
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
    parser.add_argument("--viewer", action="store_true", help="also run the browser scrubbing benchmark")
    parser.add_argument("--batch", action="store_true", help="also time cohort runs against a CLI loop")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
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
    if args.batch:
        from bench import batch_speed

        body = batch_speed.main()
        if not args.no_docs:
            replace_section("batch-speed", body)
    if args.viewer:
        from bench import viewer_speed

        body = viewer_speed.main()
        if not args.no_docs:
            replace_section("viewer-speed", body)


if __name__ == "__main__":
    main()
