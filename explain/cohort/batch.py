"""Cohort runs: many cases, one model, on Ray (a local Ray by default, a cluster by address).

    python -m explain batch CASES --model M [--method gradcam ...] [--layer L ...] [--target K|all] --out DIR

CASES is a folder (each file or DICOM folder in it is a case) or a CSV with a `path`
column and optional `mask` and `label` columns. For every case and method it writes the
maps as NIfTI on the case's own grid (DIR/maps/) and one row per map to DIR/results.csv:
prediction, probabilities, scores, localisation (with a mask), sanity figures (with
--sanity), timings, content hashes and the worker's peak memory.

Each Ray worker loads the model once and takes cases from a queue. A case is skipped when
its content key (the case's bytes, its mask's bytes, the model's identity and the
choices) is already in the table, so a run can be resumed; one bad case is recorded as
failed with its error line and the run goes on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from explain import __version__
from explain.errors import InputError

COLUMNS = [
    "case", "status", "error", "method", "layer", "target", "target_name", "label", "predicted", "predicted_name",
    "probabilities", "scores", "raw_peak", "pointing_hit", "energy_in_mask", "iou", "sanity_spearman_top",
    "sanity_ssim_top", "sanity_depends", "map_file", "path", "mask", "case_key", "volume_hash", "model_hash",
    "request_key", "seconds_load", "seconds_compute", "worker", "worker_peak_mb",
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One case of a cohort: an image (file or DICOM folder), an optional mask and an optional label."""

    case: str
    path: str
    mask: str = ""
    label: str = ""


@dataclass(frozen=True)
class Choices:
    """What to compute for every case."""

    methods: tuple[str, ...]
    layers: tuple[str, ...]
    target: str  # "predicted", "all", "label" (each case's own label), or a class index
    threshold: float = 0.5
    sanity: bool = False


def read_cases(spec: str | Path) -> list[Case]:
    """Cases from a folder (sorted, hidden files skipped) or a CSV with path[, mask, label] columns."""
    spec = Path(spec)
    if spec.is_dir():
        items = sorted(p for p in spec.iterdir() if not p.name.startswith(".") and p.suffix.lower() != ".csv")
        return [Case(_case_id(p), str(p)) for p in items]
    if not spec.is_file():
        raise InputError(f"{spec.name}: no such folder or CSV of cases")
    with open(spec, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0]:
        raise InputError(f"{spec.name}: a cases CSV needs a 'path' column (and optionally 'mask' and 'label')")
    out = []
    for row in rows:
        path = _resolve(spec.parent, row["path"])
        mask = _resolve(spec.parent, row.get("mask") or "") if row.get("mask") else ""
        out.append(
            Case(row.get("case") or _case_id(Path(path.split(";")[0])), path, mask, (row.get("label") or "").strip())
        )
    return out


def _resolve(base: Path, value: str) -> str:
    """A path of the table relative to the table; several paths (channels, in order) are separated by ';'."""
    parts = [Path(v.strip()) for v in value.split(";") if v.strip()]
    return ";".join(str(p if p.is_absolute() else base / p) for p in parts)


def _case_id(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mgz", ".zip", ".dcm", ".png"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _file_digest(path: str) -> str:
    """A hash of a file's or a folder's bytes (a folder: every file, in name order)."""
    h = hashlib.blake2b(digest_size=16)
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        h.update(str(q.relative_to(p) if p.is_dir() else "").encode())
        with open(q, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def case_key(case: Case, model_identity: str, choices: Choices) -> str:
    """The content key a resumed run skips by: bytes of the case and mask, the model's identity, the choices."""
    try:
        parts = [*(_file_digest(p) for p in case.path.split(";")), _file_digest(case.mask) if case.mask else "",
                 case.label]  # fmt: skip
    except OSError:
        parts = ["unreadable", case.path, case.mask, case.label]  # failed rows keep the run going
    text = json.dumps([parts, model_identity, asdict(choices), __version__], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:80]


# ----------------------------------------------------------------------------- one worker


class CaseWorker:
    """Loads the model once; explains one case at a time. Runs inside a Ray actor (or in process)."""

    def __init__(self, model_spec: dict, out_dir: str, device: str, threads: int) -> None:
        import torch

        from explain.models.load import load_model

        torch.set_num_threads(max(int(threads), 1))
        self.model = load_model(model_spec["path"], **model_spec.get("options", {}))
        self.out, self.device = Path(out_dir), device
        (self.out / "maps").mkdir(parents=True, exist_ok=True)
        self.name = f"worker-{id(self) % 10_000:04d}"

    def run(self, case: Case, key: str, choices: Choices) -> list[dict[str, Any]]:
        from explain.io.load import load_case, load_volume

        base = {"case": case.case, "path": case.path, "mask": case.mask, "label": case.label, "case_key": key}
        base |= {"model_hash": self.model.identity, "worker": self.name}
        t0 = time.perf_counter()
        try:
            paths = case.path.split(";")
            channels = self.model.input_shape[0] if self.model.input_shape else 1
            if len(paths) > 1 or channels > 1:
                volume = load_case(paths, channels=channels, names=self.model.card.channel_names)
            else:
                volume = load_volume(paths[0])
            mask = load_volume(case.mask).data if case.mask else None
            loaded = time.perf_counter() - t0
            target = self._target(case, choices)
            rows = [row for m in choices.methods for row in self._explain(case, volume, mask, m, target, choices)]
        except InputError as e:
            return [base | {"status": "failed", "error": str(e), "worker_peak_mb": _peak_mb()}]
        except Exception as e:  # noqa: BLE001 - a bug on one case must not stop the cohort; it is recorded
            error = f"internal error ({type(e).__name__}: {str(e)[:200]})"
            return [base | {"status": "failed", "error": error, "worker_peak_mb": _peak_mb()}]
        for row in rows:
            row.update(base, status="ok", error="", volume_hash=volume.content_hash, seconds_load=round(loaded, 3))
            row["worker_peak_mb"] = _peak_mb()
        return rows

    def _target(self, case: Case, choices: Choices) -> int | str | None:
        """The class to explain: the predicted one, all, a fixed index, or the case's own label."""
        if choices.target == "predicted":
            return None
        if choices.target != "label":
            return choices.target
        names = self.model.card.class_names or []
        if case.label.isdigit():
            return int(case.label)
        if case.label in names:
            return names.index(case.label)
        raise InputError(f"{case.case}: label {case.label[:40]!r} is neither a class index nor a class name")

    def _explain(self, case: Case, volume, mask, method: str, target, choices: Choices) -> list[dict[str, Any]]:
        from explain.io.write import save_nifti
        from explain.policy import is_attention
        from explain.request import compute, make_request
        from explain.trust.localisation import localise, target_mask

        layers = None if is_attention(method) or not choices.layers else list(choices.layers)
        request = make_request(self.model, volume, method, layers, target, device=self.device)
        t0 = time.perf_counter()
        result, _ = compute(request, self.model, volume, device=self.device)
        seconds = time.perf_counter() - t0
        rows = []
        for r in result.results:
            stem = _safe(f"{case.case}__{method}__{r.layer}__{r.target}")
            path = self.out / "maps" / f"{stem}.nii.gz"
            save_nifti(r.cam, volume.affine, path)
            row = {
                "method": method, "layer": r.layer, "target": r.target, "target_name": r.target_name,
                "predicted": result.predicted, "predicted_name": result.class_names[result.predicted],
                "probabilities": json.dumps([round(float(p), 6) for p in result.probabilities]),
                "scores": json.dumps([round(float(s), 6) for s in result.scores]), "raw_peak": r.raw_peak,
                "map_file": str(path.relative_to(self.out)), "request_key": request.key(),
                "seconds_compute": round(seconds, 3),
            }  # fmt: skip
            if mask is not None:
                row |= localise(r.cam, target_mask(mask, r.target), choices.threshold).to_dict()
                row.pop("threshold"), row.pop("mask_voxels"), row.pop("ndim")
            if choices.sanity:
                from explain.trust.sanity import cascade

                report = cascade(self.model, volume, method, r.layer if layers else None, r.target, max_steps=1)
                top = report.steps[0] if report.steps else None
                row |= {
                    "sanity_spearman_top": round(top.spearman, 4) if top else "",
                    "sanity_ssim_top": round(top.ssim, 4) if top else "",
                    "sanity_depends": report.depends_on_weights,
                }
            rows.append(row)
        return rows


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM: not inherited from a parent, unlike ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            return round(int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024, 1)
    except (OSError, StopIteration, ValueError):
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ----------------------------------------------------------------------------- the run


def read_table(out: Path) -> list[dict[str, str]]:
    table = out / "results.csv"
    if not table.exists():
        return []
    with open(table, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _append(out: Path, rows: list[dict[str, Any]]) -> None:
    table = out / "results.csv"
    new = not table.exists()
    with open(table, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def run_batch(
    cases: list[Case],
    model_spec: dict,
    choices: Choices,
    out: str | Path,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    device: str = "auto",
    progress=None,
) -> dict[str, Any]:
    """Explain every case not yet in `out/results.csv`; returns counts, timings and peak memory."""
    import ray
    from ray.util import ActorPool

    from explain.models.load import load_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps({"model": model_spec, "choices": asdict(choices)}, indent=2))

    def plan() -> list[tuple[Case, str]]:
        """The cases not done yet, by content key (loading the model first: a bad one fails here, clearly)."""
        identity = load_model(model_spec["path"], **model_spec.get("options", {})).identity
        done = {row["case_key"] for row in read_table(out)}
        return [(case, key) for case in cases if (key := case_key(case, identity, choices)) not in done]

    started = time.perf_counter()
    summary: dict[str, Any] = {"cases": len(cases), "skipped": 0, "ok": 0, "failed": 0}
    # A fresh run has every case to do, so Ray and its workers start while the model is checked and the cases are
    # hashed (measured: about 2 s on 24 cases). A resumed run plans first, so a finished one starts nothing.
    fresh = not (out / "results.csv").exists()
    with ThreadPoolExecutor(1) as executor:
        planned = executor.submit(plan)
        if not fresh and not planned.result():
            return summary | {"skipped": len(cases), "seconds": 0.0, "peak_mb_per_worker": {}}
        workers = max(1, min(workers, len(cases) if fresh else len(planned.result())))
        if not ray.is_initialized():
            _connect(ray, ray_address, workers)
        gpu_share = 1.0 / workers if device != "cpu" and _cuda() else 0
        actor = ray.remote(num_cpus=1, num_gpus=gpu_share)(CaseWorker)
        threads = max(1, _cpus() // workers)
        actors = [actor.remote(model_spec, str(out), device, threads) for _ in range(workers)]
        todo: list[tuple[Case, str]] = []
        try:
            todo = planned.result()
        finally:
            if not todo:  # a bad model (raised) or nothing left to do: the workers are not needed
                for handle in actors:
                    ray.kill(handle)
    summary["skipped"] = len(cases) - len(todo)
    if not todo:
        return summary | {"seconds": 0.0, "peak_mb_per_worker": {}}
    report = progress or _progress_bar(len(todo))
    pool = ActorPool(actors)
    peaks: dict[str, float] = {}
    for rows in pool.map_unordered(lambda a, item: a.run.remote(item[0], item[1], choices), todo):
        _append(out, rows)
        failed = rows[0]["status"] == "failed"
        summary["failed" if failed else "ok"] += 1
        peaks[rows[0]["worker"]] = max(peaks.get(rows[0]["worker"], 0.0), float(rows[0]["worker_peak_mb"]))
        report(summary["ok"] + summary["failed"], rows[0]["case"], rows[0]["error"] if failed else "")
    return summary | {"seconds": round(time.perf_counter() - started, 2), "peak_mb_per_worker": peaks}


def _connect(ray, address: str | None, workers: int) -> None:
    """A local Ray for this run, or the cluster at `address`; a refused connection is said in one sentence.

    Ray's C++ client repeats its connection warnings on stderr for about 20 s before it gives up; they are
    held back here and only their gist reaches the user.
    """
    if not address:  # "local": a new Ray of our own, even where `ray start` left a cluster address behind
        ray.init("local", num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    with _stderr_held() as held:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as e:
            said = held()
            if "InvalidAuthToken" in said or "token" in str(e).lower():
                raise InputError(
                    f"the Ray cluster at {address[:80]} wants an authentication token, which Ray sends only when "
                    "asked: set RAY_AUTH_MODE=token (the token is read from ~/.ray/auth_token on this machine, or "
                    "from RAY_AUTH_TOKEN) and run again"
                ) from e
            raise InputError(
                f"cannot connect to a Ray cluster at {address[:80]}; give the head's address as `ray start "
                "--head` prints it (host:port), or leave --ray out to run on this machine"
            ) from e


@contextmanager
def _stderr_held():
    """Send file descriptor 2 to a temporary file for the block; yields a function returning what was written."""
    import os
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _progress_bar(total: int):
    def report(done: int, case: str, error: str) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        note = f"  {case}: failed: {error[:100]}" if error else ""
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {case[:30]:30s}{note}", file=sys.stderr,
              end="\n" if error or done == total else "", flush=True)  # fmt: skip

    return report
