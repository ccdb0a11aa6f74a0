"""Does a model look untrained? Two signatures of weights that were never updated, read from the weights alone.

1. Every affine normalisation layer (batch, instance, group or layer norm) holds exactly its initial scale 1 and
   shift 0. Any training step moves them; a trained network with all of them exactly at 1 and 0 does not occur.
2. Every conv/linear weight has the spread an initialiser gives it: std·sqrt(fan_in) within 5% of PyTorch's
   default (1/sqrt(3), kaiming-uniform with a=sqrt(5)) or of kaiming-normal (sqrt(2), used by MONAI's nets).
   Training moves the spread of at least some layers well away from these.

Modules are told apart by their parameters, not their classes, so an exported program (whose modules lose their
types) is read the same way: a module with a 1-D weight and a 1-D bias of the same size is a normalisation.
A sanity check reports what the map does; this says why, before anything is computed.
"""

from __future__ import annotations

import math

import torch

INIT_SPREADS = {"PyTorch's default initialisation": 1 / math.sqrt(3), "kaiming-normal initialisation": math.sqrt(2)}
TOLERANCE = 0.05
MIN_WEIGHTS = 64  # tiny tensors say nothing about their distribution
MIN_TENSORS = 3  # one or two tensors near an initial spread is a coincidence a few training steps can leave


def _by_module(module: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, p in module.named_parameters():
        owner, _, leaf = name.rpartition(".")
        out.setdefault(owner, {})[leaf] = p.detach()
    return out


def untrained_reason(module: torch.nn.Module) -> str | None:
    """A sentence saying why the weights look untrained, or None when nothing suggests it."""
    groups = _by_module(module)
    norms = [
        g for g in groups.values()
        if "weight" in g and "bias" in g and g["weight"].ndim == 1 and g["weight"].shape == g["bias"].shape
    ]  # fmt: skip
    if norms and all(bool((g["weight"] == 1).all()) and bool((g["bias"] == 0).all()) for g in norms):
        return (
            f"its {len(norms)} normalisation layer{'s' if len(norms) > 1 else ''} hold exactly their initial values "
            "(scale 1, shift 0), which any training changes"
        )
    weights = [g["weight"].float() for g in groups.values() if "weight" in g and g["weight"].ndim >= 2]
    weights = [w for w in weights if w.numel() >= MIN_WEIGHTS]
    if len(weights) < MIN_TENSORS:
        return None
    spreads = [float(w.std()) * math.sqrt(w[0].numel()) for w in weights]
    for init, spread in INIT_SPREADS.items():
        if all(abs(s / spread - 1) <= TOLERANCE for s in spreads):
            return f"all {len(weights)} weight tensors have exactly the spread that {init} gives"
    return None


def untrained_warning(module: torch.nn.Module) -> str | None:
    """The page's warning for a model whose weights look untrained, or None."""
    reason = untrained_reason(module)
    if reason is None:
        return None
    return f"This model's weights look untrained: {reason}. Its maps show its architecture, not what it learned."
