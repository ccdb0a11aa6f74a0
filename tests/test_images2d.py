"""PNG and JPEG as 2D volumes: values against hand-made pixels, type from content, limits before decoding."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from explain.errors import InputError
from explain.io.load import load_volume
from explain.io.probe import probe_volume

RAS_OF_IMAGE = np.diag([-1.0, -1.0, 1.0, 1.0])  # documented in explain.io.images2d


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path, format="PNG")
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_8_bit_grey_png_keeps_values_and_stored_layout(tmp_path):
    pixels = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4) * 10  # 6 rows, 4 columns
    vol = load_volume(_png(tmp_path / "g8.png", pixels))
    assert vol.ndim == 2 and vol.shape == (4, 6)  # (columns, rows): i along a row, j down the rows
    assert vol.data[3, 0] == pixels[0, 3] and vol.data[0, 5] == pixels[5, 0]
    np.testing.assert_array_equal(vol.data, pixels.T.astype(np.float32))
    np.testing.assert_array_equal(vol.affine, RAS_OF_IMAGE)
    assert vol.spacing == (1.0, 1.0)
    assert any("1 mm pixels are assumed" in w for w in vol.warnings)


def test_16_bit_grey_png_keeps_values_above_255(tmp_path):
    pixels = np.array([[0, 300, 65535], [1000, 4095, 12]], dtype=np.uint16)
    vol = load_volume(_png(tmp_path / "g16.png", pixels))
    np.testing.assert_array_equal(vol.data, pixels.T.astype(np.float32))


def test_colour_png_becomes_bt601_luminance_and_grey_rgb_is_exact(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, 2] = (10, 20, 30)
    vol = load_volume(_png(tmp_path / "colour.png", rgb))
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]  # by hand: 76.245, 149.685, ...
    np.testing.assert_allclose(vol.data, expected.T, rtol=1e-6)
    assert vol.data[0, 0] == pytest.approx(76.245, rel=1e-6)
    assert any("converted to luminance" in w for w in vol.warnings)
    grey = np.repeat(np.array([[7, 200], [13, 99]], dtype=np.uint8)[..., None], 3, axis=2)
    vol = load_volume(_png(tmp_path / "grey_rgb.png", grey))
    np.testing.assert_array_equal(vol.data, grey[..., 0].T)
    assert not any("luminance" in w for w in vol.warnings)


def test_transparency_is_reported(tmp_path):
    rgba = np.full((3, 3, 4), 128, dtype=np.uint8)
    rgba[0, 0, 3] = 0
    vol = load_volume(_png(tmp_path / "alpha.png", rgba))
    assert any("transparency is ignored" in w for w in vol.warnings)
    np.testing.assert_array_equal(vol.data, np.full((3, 3), 128.0))


def test_jpeg_greyscale_by_content_not_name(tmp_path):
    # Constant 8x8 blocks survive JPEG at quality 100 to within one grey level.
    pixels = np.kron(np.array([[20, 200], [120, 60]], dtype=np.uint8), np.ones((8, 8), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=100)
    jpeg = tmp_path / "really_jpeg.png"
    jpeg.write_bytes(buf.getvalue())
    vol = load_volume(jpeg)
    assert vol.shape == (16, 16)
    np.testing.assert_allclose(vol.data, pixels.T, atol=1)
    assert any("holds a JPEG image" in w for w in vol.warnings)
    (tmp_path / "plain.jpg").write_bytes(buf.getvalue())
    assert not any("holds a" in w for w in load_volume(tmp_path / "plain.jpg").warnings)


def test_text_named_png_is_refused(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all\n" * 30)
    with pytest.raises(InputError, match=r"^notes\.png: not a recognised"):
        load_volume(tmp_path / "notes.png")


def test_truncated_png_gives_one_sentence(tmp_path):
    raw = _png(tmp_path / "full.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"^cut\.png: the PNG data is truncated or corrupt") as err:
        load_volume(tmp_path / "cut.png")
    assert "\n" not in str(err.value)


def test_png_declaring_a_huge_image_is_refused_before_decoding(tmp_path):
    # A valid signature and IHDR for 100000 x 100000 grey pixels, and a tiny (invalid) image stream.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
    (tmp_path / "bomb.png").write_bytes(raw + _png_chunk(b"IEND", b""))
    with pytest.raises(InputError, match=r"^bomb\.png: 10,000,000,000 voxels .* voxel limit"):
        load_volume(tmp_path / "bomb.png")
    # Below Pillow's own bomb threshold, our limit still applies.
    small = _png(tmp_path / "small.png", np.zeros((50, 40), dtype=np.uint8))
    with pytest.raises(InputError, match="voxel limit"):
        load_volume(small, max_voxels=1000)


def test_jpeg_declaring_a_huge_image_is_refused_before_decoding(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buf, format="JPEG")
    raw = bytearray(buf.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # height, width
    (tmp_path / "huge.jpg").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"^huge\.jpg: 3,600,000,000 voxels"):
        load_volume(tmp_path / "huge.jpg")


def test_broken_jpeg_gives_one_sentence(tmp_path):
    (tmp_path / "stub.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(InputError, match=r"^stub\.jpg: a damaged JPEG file"):
        load_volume(tmp_path / "stub.jpg")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:400])
    with pytest.raises(InputError, match=r"^cut\.jpg: the JPEG data is truncated or corrupt"):
        load_volume(tmp_path / "cut.jpg")


def test_a_volume_index_on_an_image_is_refused(tmp_path):
    path = _png(tmp_path / "one.png", np.zeros((4, 4), dtype=np.uint8))
    assert load_volume(path, volume_index=0).shape == (4, 4)
    with pytest.raises(InputError, match="out of range; the file holds one volume"):
        load_volume(path, volume_index=1)


def test_probe_reads_the_declared_size_only(tmp_path):
    path = _png(tmp_path / "p.png", np.zeros((5, 7), dtype=np.uint8))
    info = probe_volume(path)
    assert (info.kind, info.ndim, info.shape, info.n_volumes) == ("PNG", 2, (7, 5), 1)
