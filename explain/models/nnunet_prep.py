"""nnU-Net's preprocessing and its way back, with nnU-Net's own functions: the same numbers as nnU-Net's predictor.

Forward, as `DefaultPreprocessor.run_case_npy` does it: the image as nnU-Net's reader presents it (SimpleITK and
nibabel readers: the file's voxel axes reversed; `NibabelIOWithReorient`: RAS first), `transpose_forward`, crop to
the non-zero box, per-channel normalisation (nnU-Net's classes, chosen from a fixed table), resampling to the
configuration's spacing (`resample_data_or_seg_to_shape`, order 3, separate z when anisotropic). Back, as
`convert_predicted_logits_to_segmentation_with_correct_shape`: resample (order 1), put into the box, transpose back.
Maps go back the same way as probabilities. The scheme and function names were checked against fixed tables when
the folder was read (`explain.models.nnunet`); nothing here resolves a name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from explain.io.volume import Volume, ras_orientation, to_ras
from explain.models.nnunet import NnunetSpec


def _normaliser(name: str):
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as schemes

    return {
        "ZScoreNormalization": schemes.ZScoreNormalization,
        "CTNormalization": schemes.CTNormalization,
        "NoNormalization": schemes.NoNormalization,
        "RescaleTo01Normalization": schemes.RescaleTo01Normalization,
    }[name]


def _resample(data: np.ndarray, shape, current, target, kwargs: dict) -> np.ndarray:
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    return resample_data_or_seg_to_shape(data, [int(s) for s in shape], current, target, **kwargs)


@dataclass(frozen=True)
class NnunetGrid:
    """An image's voxel grid <-> an nnU-Net model grid (transposed, cropped, resampled), with the way back."""

    volume_shape: tuple[int, ...]  # our voxel order (i, j, k)
    model_shape: tuple[int, ...]
    reorient: tuple[tuple[int, int], ...] | None  # nibabel ornt applied first (NibabelIOWithReorient)
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    shape_before_cropping: tuple[int, ...]  # transposed order
    bbox: tuple[tuple[int, int], ...]  # half open, transposed order
    spacing_cropped: tuple[float, ...]  # the image's spacing, transposed order
    spacing_model: tuple[float, ...]
    resample_back_kwargs: dict  # nnU-Net's kwargs for probabilities
    kind: str = "nnunet"

    @property
    def ndim(self) -> int:
        return len(self.volume_shape)

    @property
    def cropped_shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in self.bbox)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NnunetGrid:
        tup = lambda v: tuple(tuple(x) if isinstance(x, list) else x for x in v)  # noqa: E731
        return cls(
            tuple(d["volume_shape"]), tuple(d["model_shape"]), tup(d["reorient"]) if d.get("reorient") else None,
            tuple(d["transpose_forward"]), tuple(d["transpose_backward"]), tuple(d["shape_before_cropping"]),
            tup(d["bbox"]), tuple(d["spacing_cropped"]), tuple(d["spacing_model"]), dict(d["resample_back_kwargs"]),
        )  # fmt: skip

    # -- the way back (maps, logits, masks) ----------------------------------------------------------------------
    def back_to_volume(self, values: np.ndarray, fill: float | list[float] = 0.0) -> np.ndarray:
        """(B, *model_shape) -> (B, *volume_shape): resampled as nnU-Net resamples probabilities, put back into the
        crop box (`fill` outside: one value, or one per channel), transposed back, voxel order restored."""
        return self.place(self.resample_back(values), fill)

    def resample_back(self, values: np.ndarray) -> np.ndarray:
        """(B, *model_shape) -> (B, *cropped): nnU-Net's resampling of probabilities (order 1, separate z)."""
        values = np.asarray(values, dtype=np.float32)
        return _resample(
            values, self.cropped_shape, self.spacing_model, self.spacing_cropped, self.resample_back_kwargs
        )

    def logits_to_volume(self, logits: np.ndarray, output: str = "softmax") -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) on the image grid, in nnU-Net's order: logits resampled, then the nonlinearity and
        the argmax (or > 0.5 for sigmoid), then uncropped (background, probability 1, outside the box)."""
        cropped = torch.from_numpy(self.resample_back(logits))
        if output == "sigmoid":
            probs = torch.sigmoid(cropped)
            labels, fill = (probs > 0.5).float(), 0.0
        else:
            probs = torch.softmax(cropped.float(), 0)
            labels, fill = cropped.argmax(0)[None].float(), [1.0] + [0.0] * (probs.shape[0] - 1)
        probabilities = self.place(probs.numpy(), fill)
        placed = self.place(labels.numpy(), 0.0)
        return (placed[0] if output != "sigmoid" else placed).astype(np.uint16), probabilities

    def place(self, values: np.ndarray, fill: float | list[float] = 0.0) -> np.ndarray:
        """(B, *cropped) -> (B, *volume_shape): into the crop box (`fill` outside), transposed back, our order."""
        fills = np.broadcast_to(np.asarray(fill, dtype=np.float32), (values.shape[0],))
        full = np.empty((values.shape[0], *self.shape_before_cropping), dtype=np.float32)
        full[:] = fills.reshape(-1, *(1,) * len(self.shape_before_cropping))
        full[(slice(None), *(slice(a, b) for a, b in self.bbox))] = values
        full = full.transpose(0, *(t + 1 for t in self.transpose_backward))
        out = full.transpose(0, *range(full.ndim - 1, 0, -1))  # nnU-Net's (k, j, i) -> our (i, j, k)
        if self.reorient is not None:
            out = np.stack([from_ras_order(v, self.reorient) for v in out])
        return np.ascontiguousarray(out)

    def to_volume(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps on the model grid (B, *model_shape) -> (B, *volume_shape), as nnU-Net maps probabilities back."""
        return torch.from_numpy(self.back_to_volume(maps.detach().float().cpu().numpy()))

    def region_to_model(self, region: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """A mask on the image grid -> the model grid (the forward geometry, order 1, then > 0.5)."""
        arr = self._forward_array(np.asarray(region, dtype=np.float32)[None])
        cropped = arr[(slice(None), *(slice(a, b) for a, b in self.bbox))]
        kwargs = {**self.resample_back_kwargs, "order": 1}
        resampled = _resample(cropped, self.model_shape, self.spacing_cropped, self.spacing_model, kwargs)
        return torch.as_tensor(resampled[0] > 0.5, device=device)

    def _forward_array(self, data: np.ndarray) -> np.ndarray:
        """(C, *volume) in our order -> (C, *transposed) as nnU-Net's reader and transpose_forward give it."""
        if self.reorient is not None:
            data = np.stack([to_ras_order(c, self.reorient) for c in data])
        data = data.transpose(0, *range(data.ndim - 1, 0, -1))
        return data.transpose(0, *(t + 1 for t in self.transpose_forward))

    def model_affine(self, volume_affine: np.ndarray) -> np.ndarray:
        """4x4: model-grid index -> world mm. Resampling maps voxel centres as skimage does (align_corners=False)."""
        n = 3
        scale = np.asarray(self.cropped_shape, float) / np.asarray(self.model_shape, float)
        step = np.eye(4)
        step[:n, :n] = np.diag(scale)
        step[:n, 3] = scale / 2 - 0.5 + np.asarray([a for a, _ in self.bbox], float)  # into the uncropped box
        untranspose = np.zeros((4, 4))  # transposed index -> nnU-Net reader index
        untranspose[3, 3] = 1
        for axis, t in enumerate(self.transpose_forward):
            untranspose[t, axis] = 1
        reverse = np.zeros((4, 4))  # reader index (k, j, i) -> our index (i, j, k)
        reverse[3, 3] = 1
        for axis in range(n):
            reverse[axis, n - 1 - axis] = 1
        affine = np.asarray(volume_affine, float)
        if self.reorient is not None:
            _data, affine = to_ras(np.zeros(self.volume_shape, np.uint8), affine)
        return affine @ reverse @ untranspose @ step


def to_ras_order(data: np.ndarray, ornt) -> np.ndarray:
    from nibabel import orientations

    return np.ascontiguousarray(orientations.apply_orientation(data, np.asarray(ornt)))


def from_ras_order(data: np.ndarray, ornt) -> np.ndarray:
    """Undo `to_ras_order`: the inverse orientation sends each RAS axis back to the axis it came from."""
    from nibabel import orientations

    inverse = np.zeros((len(ornt), 2))
    for axis, (target, flip) in enumerate(ornt):
        inverse[int(target)] = (axis, flip)
    return np.ascontiguousarray(orientations.apply_orientation(data, inverse))


def prepare(spec: NnunetSpec, volume: Volume, device: torch.device | str = "cpu") -> tuple[NnunetGrid, torch.Tensor]:
    """The model input (1, C, *model_shape) and its grid, exactly as nnU-Net preprocesses a case."""
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    data = volume.stack().astype(np.float32)  # a copy, as run_case_npy makes
    affine = volume.affine
    reorient = None
    if spec.reader == "NibabelIOWithReorient":
        reorient = tuple((int(t), int(f)) for t, f in ras_orientation(affine))
        data = np.stack([to_ras_order(c, reorient) for c in data])
        _unused, affine = to_ras(np.zeros(volume.shape, np.uint8), affine)
    spacing_ours = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    spacing_reader = [float(s) for s in spacing_ours[::-1]]
    arr = data.transpose(0, *range(data.ndim - 1, 0, -1))
    arr = arr.transpose(0, *(t + 1 for t in spec.transpose_forward))
    original_spacing = [spacing_reader[t] for t in spec.transpose_forward]
    before = tuple(int(s) for s in arr.shape[1:])
    arr, seg, bbox = crop_to_nonzero(np.ascontiguousarray(arr), None)
    cropped = arr.shape[1:]
    new_shape = compute_new_shape(cropped, original_spacing, list(spec.spacing))
    for c in range(arr.shape[0]):
        normaliser = _normaliser(spec.normalisation[c])(
            use_mask_for_norm=spec.use_mask_for_norm[c], intensityproperties=dict(spec.intensity[c])
        )
        arr[c] = normaliser.run(arr[c], seg[0])
    arr = _resample(arr, new_shape, original_spacing, list(spec.spacing), spec.resample_data)
    grid = NnunetGrid(
        tuple(volume.shape), tuple(int(s) for s in arr.shape[1:]), reorient, spec.transpose_forward,
        spec.transpose_backward, before, tuple((int(a), int(b)) for a, b in bbox), tuple(original_spacing),
        tuple(spec.spacing), dict(spec.resample_probabilities),
    )  # fmt: skip
    return grid, torch.as_tensor(np.ascontiguousarray(arr), dtype=torch.float32, device=device)[None]


def prepare_bytes(volume: Volume) -> int:
    """What preparing takes at its worst: a float copy of every channel, its transposes, the crop, and the
    resampled copy at up to the same size again (float64 inside scikit-image's resize)."""
    return int(volume.stack().size * 4 * 6)


@dataclass(frozen=True)
class NnunetFramework:
    """How an nnU-Net model's inputs are made and its outputs go back (what the engine asks of a framework)."""

    spec: NnunetSpec
    name: str = "nnU-Net"

    def prepare(self, volume: Volume, device: torch.device | str = "cpu") -> tuple[NnunetGrid, torch.Tensor]:
        return prepare(self.spec, volume, device)

    def prepare_bytes(self, volume: Volume) -> int:
        return prepare_bytes(volume)

    @property
    def mirror_axes(self) -> tuple[int, ...] | None:
        return self.spec.mirror_axes
