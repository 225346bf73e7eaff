"""Safe image reading and atomic writing."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from manga_pix2pix import imageio
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import (
    MAX_PIXELS,
    WRITE_SUFFIXES,
    atomic_path,
    decode_image,
    encode_image,
    image_size_from_header,
    list_images,
    read_image,
    write_bytes_atomic,
    write_image,
)


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk (8-bit RGB), with a valid CRC, and nothing else."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    )


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = png_header(100_000, 100_000) + b"\x00" * 100
    assert image_size_from_header(bomb) == (100_000, 100_000)
    with pytest.raises(UserError, match="over the limit"):
        decode_image(bomb, name="bomb.png")


def tiff_header(width: int, height: int, order: str = "<", big: bool = False) -> bytes:
    """A TIFF (or BigTIFF) header and a first directory with only ImageWidth and ImageLength."""
    magic = b"II" if order == "<" else b"MM"
    if big:
        head = magic + struct.pack(order + "HHHQ", 43, 8, 0, 16)
        entries = struct.pack(order + "HHQQ", 256, 16, 1, width)
        entries += struct.pack(order + "HHQQ", 257, 16, 1, height)
        return head + struct.pack(order + "Q", 2) + entries + struct.pack(order + "Q", 0)
    head = magic + struct.pack(order + "HI", 42, 8)
    entries = struct.pack(order + "HHIHH", 256, 3, 1, width, 0)  # SHORT, left-justified
    entries += struct.pack(order + "HHII", 257, 4, 1, height)  # LONG
    return head + struct.pack(order + "H", 2) + entries + struct.pack(order + "I", 0)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("big", [False, True])
def test_a_tiff_bomb_is_refused_from_its_header(order, big):
    bomb = tiff_header(60_000, 40_000, order, big) + b"\x00" * 100
    assert image_size_from_header(bomb) == (60_000, 40_000)
    with pytest.raises(UserError, match="60000x40000 is over the limit"):
        decode_image(bomb, name="bomb.tif")


def test_a_pnm_bomb_is_refused_from_its_header():
    bomb = b"P5\n# a comment\n30000 30000\n255\n" + b"\x00" * 100
    assert image_size_from_header(bomb) == (30_000, 30_000)
    with pytest.raises(UserError, match="over the limit"):
        decode_image(bomb, name="bomb.pgm")


def test_a_format_whose_size_is_not_read_first_is_not_decoded(make_natural_image):
    # OpenCV decodes Sun rasters too, but their size is not checked before decoding: refused.
    ok, data = cv2.imencode(".ras", make_natural_image(0, 20, 30))
    assert ok and cv2.imdecode(data, cv2.IMREAD_COLOR).shape == (20, 30, 3)
    assert image_size_from_header(data.tobytes()) is None
    with pytest.raises(UserError, match="not an image"):
        decode_image(data.tobytes(), name="sun.ras")


def test_the_pixel_cap_applies_to_tiffs_that_decode(make_natural_image):
    ok, data = cv2.imencode(".tiff", make_natural_image(0, 20, 30))
    assert image_size_from_header(data.tobytes()) == (30, 20)
    with pytest.raises(UserError, match="over the limit of 500 pixels"):
        decode_image(data.tobytes(), max_pixels=500)
    assert decode_image(data.tobytes()).shape == (20, 30, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".gif", ".bmp", ".tif", ".pgm",
                                    ".ppm"])
def test_header_sizes(suffix):
    ok, data = cv2.imencode(suffix, np.zeros((30, 41) if suffix == ".pgm" else (30, 41, 3),
                                             np.uint8))
    assert image_size_from_header(data.tobytes()) == (41, 30)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_truncated_file(suffix, tmp_path, make_natural_image):
    ok, data = cv2.imencode(suffix, make_natural_image(1, 32, 32))
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        read_image(path)


def test_empty_missing_directory_and_text(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(UserError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(UserError, match="directory"):
        read_image(tmp_path)
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(UserError, match="not an image"):
        read_image(tmp_path / "text.jpg")
    assert MAX_PIXELS >= 4096 * 4096


def test_formats_decode_to_rgb(tmp_path, make_natural_image, write_encoded_file):
    image = make_natural_image(2, 24, 40)
    write_encoded_file(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), image)
    write_encoded_file(tmp_path / "g.png", image[..., 0])
    gray = read_image(tmp_path / "g.png")
    assert gray.shape == (24, 40, 3)
    np.testing.assert_array_equal(gray[..., 2], image[..., 0])
    deep = image.astype(np.uint16) * 257
    write_encoded_file(tmp_path / "d.png", deep)
    np.testing.assert_array_equal(read_image(tmp_path / "d.png"), image)


def test_alpha_is_kept_or_composited_on_white(tmp_path, make_natural_image, write_encoded_file):
    rgb = make_natural_image(3, 16, 16)
    alpha = np.zeros((16, 16), np.uint8)
    alpha[:, 8:] = 255
    write_encoded_file(tmp_path / "a.png", np.dstack([rgb, alpha]))
    kept = read_image(tmp_path / "a.png", keep_alpha=True)
    assert kept.shape == (16, 16, 4)
    np.testing.assert_array_equal(kept[..., 3], alpha)
    flat = read_image(tmp_path / "a.png")
    assert flat.shape == (16, 16, 3)
    assert np.all(flat[:, :8] == 255)
    np.testing.assert_array_equal(flat[:, 8:], rgb[:, 8:])


def test_write_image_round_trip_and_no_leftovers(tmp_path, make_natural_image):
    image = make_natural_image(4, 20, 30)
    write_image(tmp_path / "out.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "out.png"), image)
    write_image(tmp_path / "one.png", image[..., :1])
    assert cv2.imread(str(tmp_path / "one.png"), cv2.IMREAD_UNCHANGED).shape == (20, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "out.png"]


def test_a_failed_atomic_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


def test_a_failed_rename_leaves_no_temp_file(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(UserError, match="taken: is a directory"):
        write_bytes_atomic(tmp_path / "taken", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_only_regular_files_of_a_bounded_size_are_read(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not a regular file"):
        read_image("/dev/zero")  # endless: it would never finish reading
    image = np.full((40, 40, 3), 200, np.uint8)
    write_image(tmp_path / "big.bmp", image)  # uncompressed: 4,854 bytes
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 4096)
    with pytest.raises(UserError, match="over the limit of 4096 bytes"):
        read_image(tmp_path / "big.bmp")
    write_image(tmp_path / "small.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "small.png"), image)


def test_bad_writes(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_bytes_atomic(tmp_path / "nope" / "x.png", b"data")
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_encode_image_formats(make_natural_image):
    image = make_natural_image(5, 16, 16)
    for suffix in WRITE_SUFFIXES:
        assert decode_image(encode_image(image, suffix)).shape == (16, 16, 3)
    for suffix in (".xyz", ".gif", ""):
        with pytest.raises(UserError, match="cannot write an image as"):
            encode_image(image, suffix)


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.webp", "notes.txt", ".hidden"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]
