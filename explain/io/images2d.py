"""PNG and JPEG images as 2D `Volume`s, through Pillow.

The type comes from the magic bytes (`explain.io.sniff`), and the pixel count the header declares
is checked against the voxel limit before any pixel is decoded: PNG's IHDR and JPEG's
start-of-frame marker are parsed here, so Pillow's decompression-bomb guard is only a second line.

Values: 8-bit and 16-bit greyscale are read as stored. Colour (RGB, RGBA, palette, CMYK) is
converted to luminance, 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, as Pillow's own "L" mode but
without rounding), with a warning, unless the three channels are equal (then it is exact grey).
Transparency is dropped, with a warning when some pixels are not opaque.

Geometry: the file stores no pixel size and no patient orientation, so pixels are 1 mm and the
image is placed as a DICOM image with the default orientation (rows to the patient's left,
columns to the back, origin 0): in RAS the affine is diag(-1, -1, 1, 1). Shown the radiological
way, the picture appears as stored. A warning says so.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from explain.errors import InputError
from explain.io.sniff import PNG_MAGIC
from explain.io.volume import Volume, make_volume
from explain.limits import check_voxels

_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NAMES = {"png": "PNG", "jpeg": "JPEG"}
IMAGE_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def declared_size(path: Path, kind: str) -> tuple[int, int, int]:
    """(width, height, bits per sample) from the header, reading no pixel data."""
    with open(path, "rb") as f:
        if kind == "png":
            head = f.read(29)
            if len(head) < 29 or not head.startswith(PNG_MAGIC) or head[12:16] != b"IHDR":
                raise InputError(f"{path.name}: a damaged PNG file (no image header); export it again")
            width, height, depth = struct.unpack(">IIB", head[16:25])
            return width, height, depth
        return _jpeg_size(f, path.name)


def _jpeg_size(f, name: str) -> tuple[int, int, int]:
    """Walk the JPEG segments from the start-of-image marker to the first start-of-frame."""
    damaged = InputError(f"{name}: a damaged JPEG file (no readable image header); export it again")
    f.seek(2)
    while True:
        if f.read(1) != b"\xff":  # every segment starts with 0xFF
            raise damaged
        code = 0xFF
        while code == 0xFF:  # fill bytes may repeat 0xFF
            byte = f.read(1)
            if not byte:
                raise damaged
            code = byte[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:
            continue  # markers without a length
        if code in (0xD9, 0xDA):  # end of image, or scan data, before any frame header
            raise damaged
        raw = f.read(2)
        if len(raw) < 2 or struct.unpack(">H", raw)[0] < 2:
            raise damaged
        if code in _SOF:
            body = f.read(5)
            if len(body) < 5:
                raise damaged
            precision, height, width = struct.unpack(">BHH", body)
            return width, height, precision
        f.seek(struct.unpack(">H", raw)[0] - 2, 1)


def load_image_2d(path: Path, *, kind: str, max_voxels: int) -> Volume:
    """A PNG or JPEG file as a 2D `Volume` (`kind` from `explain.io.sniff`: 'png' or 'jpeg')."""
    from PIL import Image

    fmt = _NAMES[kind]
    width, height, depth = declared_size(path, kind)
    if width == 0 or height == 0:
        raise InputError(f"{path.name}: the {fmt} header declares an empty image ({width} x {height})")
    check_voxels((width, height), path.name, max_voxels)
    warnings: list[str] = []
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("png", "jpg", "jpeg") and {"jpg": "jpeg"}.get(suffix, suffix) != kind:
        warnings.append(f"{path.name}: named .{suffix} but holds a {fmt} image; read as {fmt}")
    try:
        with Image.open(path, formats=[fmt]) as img:
            img.load()
            pixels = _grey(img, path.name, warnings, sixteen_bit_colour=kind == "png" and depth == 16)
            if img.getexif().get(0x0112, 1) not in (1, None):
                warnings.append(f"{path.name}: its EXIF rotation tag is ignored; the image is shown as stored")
    except Image.DecompressionBombError as e:
        raise InputError(f"{path.name}: {width} x {height} pixels is more than the image reader accepts") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{path.name}: the {fmt} data is truncated or corrupt ({e}); export the image again") from e
    if pixels.shape != (height, width):
        raise InputError(f"{path.name}: decoded {pixels.shape[::-1]} pixels where the header says {width} x {height}")
    warnings.append(
        f"{path.name}: a {fmt} file gives no pixel size or patient orientation; 1 mm pixels are assumed, "
        "and left and right are unknown"
    )
    # pixels are [row, column]; i runs along a row (the column index), j down the rows.
    return make_volume(pixels.T, IMAGE_AFFINE, path.name, tuple(warnings))


def _grey(img, name: str, warnings: list[str], *, sixteen_bit_colour: bool) -> np.ndarray:
    """The image as a float32 [row, column] array of grey values."""
    mode = img.mode
    if mode in ("L", "I", "F", "1") or mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32)
    if mode in ("LA", "La"):
        _alpha_note(np.asarray(img.getchannel("A")), name, warnings)
        return np.asarray(img.getchannel("L")).astype(np.float32)
    if "A" in mode or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        _alpha_note(np.asarray(rgba.getchannel("A")), name, warnings)
        rgb = np.asarray(rgba)[..., :3]
    else:
        rgb = np.asarray(img.convert("RGB"))
    if sixteen_bit_colour:
        warnings.append(f"{name}: a 16-bit colour PNG is read with 8 bits per channel")
    rgb = rgb.astype(np.float32)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    warnings.append(f"{name}: a colour image, converted to luminance (0.299 R + 0.587 G + 0.114 B)")
    return rgb @ _BT601


def _alpha_note(alpha: np.ndarray, name: str, warnings: list[str]) -> None:
    if alpha.size and int(alpha.min()) < 255:  # Pillow gives 8-bit alpha
        warnings.append(f"{name}: transparency is ignored; transparent pixels show their stored values")
