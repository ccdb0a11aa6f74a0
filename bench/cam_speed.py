"""CAM engine speed and memory against the floor and MONAI, same model and input, one run.

Each (model, variant) runs in a fresh subprocess, so its peak memory is its own:
peak RSS above the RSS after the model and input were built (CPU), or
`torch.cuda.max_memory_allocated` (GPU).

Variants:
- floor: `model(x)` under no_grad + the backward from the class score to the
  layer's output only (autograd.grad on a leaf made at the layer). Nothing can
  be cheaper and still give d(score)/d(activations).
- ours: `explain()` end to end: input mapping, forward, gradients, method,
  ReLU, trilinear upsampling to the full grid, numpy out.
- ours-all3: the same for all 3 classes in one call.
- monai-gradcam / monai-gradcampp: `monai.visualize` with an identity
  postprocessing (its default normaliser would be extra work, and inverted).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch

MODELS = {
    "densenet121-96": ("densenet", 96, "features.denseblock4"),
    "densenet121-128": ("densenet", 128, "features.denseblock4"),
    "vit-96": ("vit", 96, "blocks.10"),
}
VARIANTS = ("floor", "ours", "ours-all3", "monai-gradcam", "monai-gradcampp")


def _build(kind: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "densenet":
        from monai.networks.nets import DenseNet121

        return DenseNet121(spatial_dims=3, in_channels=1, out_channels=3).eval()
    from monai.networks.nets import ViT

    return ViT(
        in_channels=1,
        img_size=(size,) * 3,
        patch_size=(16,) * 3,
        hidden_size=768,
        mlp_dim=3072,
        num_layers=12,
        num_heads=12,
        classification=True,
        num_classes=3,
    ).eval()


class _LogitsOnly(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _floor(net: torch.nn.Module, x: torch.Tensor, layer: str) -> None:
    with torch.no_grad():
        net(x)
    module = dict(net.named_modules())[layer]
    store = {}

    def leaf(_m, _i, out):
        t = (out[0] if isinstance(out, tuple) else out).detach().requires_grad_(True)
        store["a"] = t
        return t

    for p in net.parameters():
        p.requires_grad_(False)
    handle = module.register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            out = net(x)
            logits = out[0] if isinstance(out, tuple) else out
            # only the backward part is counted: the forward above is the plain pass
            t0 = time.perf_counter()
            torch.autograd.grad(logits[:, 1].sum(), [store["a"]])
            store["backward"] = time.perf_counter() - t0
    finally:
        handle.remove()
        for p in net.parameters():
            p.requires_grad_(True)
    return store["backward"]


def run_one(model_name: str, variant: str, device: str, repeats: int) -> dict:
    """Time one variant (median of `repeats` after one warm-up) and report peak memory."""
    kind, size, layer = MODELS[model_name]
    dev = torch.device(device)
    net = _build(kind, size).to(dev)
    x = torch.randn(1, 1, size, size, size, device=dev)
    volume = x[0, 0].cpu().numpy()
    from explain.models.cards import ModelCard
    from explain.models.loaded import LoadedModel
    from explain.request import explain

    loaded = LoadedModel(net, ModelCard(), f"bench-{model_name}", model_name, "weights", (1, size, size, size))

    def call() -> float:
        t0 = time.perf_counter()
        if variant == "floor":
            t_fwd0 = time.perf_counter()
            with torch.no_grad():
                net(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            forward = time.perf_counter() - t_fwd0
            return forward + _floor(net, x, layer)
        if variant == "ours":
            explain(loaded, volume, "gradcam", [layer], target=1, device=dev)
        elif variant == "ours-all3":
            explain(loaded, volume, "gradcam", [layer], target="all", device=dev)
        else:
            from monai.visualize import GradCAM, GradCAMpp

            cls = GradCAM if variant == "monai-gradcam" else GradCAMpp
            target_net, target_layer = net, layer
            if kind == "vit":
                # MONAI's CAM classes index the model output as logits and fail on ViT's
                # (logits, hidden_states) tuple; time them on a logits-only wrapper. Their
                # map is then over (tokens, channels): timing only, not a usable 3D map.
                target_net, target_layer = _LogitsOnly(net), f"net.{layer}"
            cam = cls(nn_module=target_net, target_layers=target_layer, postprocessing=lambda m: m)
            if kind == "vit":
                cam.compute_map(x, class_idx=1)  # its upsampler cannot map (B, T, C) tokens to 3D
            else:
                cam(x, class_idx=1).detach().cpu().numpy()
            for _, module in net.named_modules():  # MONAI leaves its hooks on; clear them between repeats
                module._forward_hooks.clear()
                module._backward_hooks.clear()
                module._forward_pre_hooks.clear()
            net.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    base = _rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    times = []
    try:
        call()
        times = [call() for _ in range(repeats)]
    except Exception as e:  # noqa: BLE001 - a competitor failing on a model is a result to report
        return {"model": model_name, "variant": variant, "error": f"{type(e).__name__}: {e}"[:200]}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    if dev.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    return {
        "model": model_name,
        "variant": variant,
        "device": device,
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_mb": round(peak_mb, 1),
    }


def run_all(device: str, repeats: int, models: list[str]) -> list[dict]:
    rows = []
    for model_name in models:
        for variant in VARIANTS:
            cmd = [sys.executable, "-m", "bench.cam_speed", model_name, variant, device, str(repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"model": model_name, "variant": variant, "error": proc.stderr.strip()[-300:]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per model, times and the three ratios the issue asks for."""
    by = {(r["model"], r["variant"]): r for r in rows}
    lines = [
        "| model | floor s | ours s | ours / floor | all 3 classes / one | MONAI GradCAM s | MONAI / ours | "
        "MONAI GradCAM++ s | MONAI++ / ours | peak MB: floor / ours / MONAI |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):

        def get(variant: str, model: str = model) -> dict:
            return by.get((model, variant), {})

        t = {v: get(v).get("median_s") for v in VARIANTS}

        def fmt(value: float | None, digits: int = 3) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        def ratio(a: float | None, b: float | None) -> str:
            return "n/a" if a is None or b is None else f"{a / b:.2f}x"

        mem = " / ".join(fmt(get(v).get("peak_mb"), 0) for v in ("floor", "ours", "monai-gradcam"))
        lines.append(
            f"| {model} | {fmt(t['floor'])} | {fmt(t['ours'])} | {ratio(t['ours'], t['floor'])} | "
            f"{ratio(t['ours-all3'], t['ours'])} | {fmt(t['monai-gradcam'])} | {ratio(t['monai-gradcam'], t['ours'])} | "
            f"{fmt(t['monai-gradcampp'])} | {ratio(t['monai-gradcampp'], t['ours'])} | {mem} |"
        )
    errors = [f"- {r['model']} {r['variant']}: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else []))


if __name__ == "__main__":
    name, variant, device, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(torch.get_num_threads())
    print(json.dumps(run_one(name, variant, device, repeats)))
