"""Reading and writing image files safely.

Images are decoded with OpenCV after a pixel-count check on the header, so a decompression
bomb is refused before it is decoded. Writes go to a temporary file in the destination's
directory and are renamed into place, so a failed or interrupted write never leaves a
half-written file behind.

Arrays are `uint8` and channel-last in RGB(A) order (OpenCV's BGR is converted at the edge).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from manga_pix2pix.errors import UserError

# Decoding failures are reported as UserErrors; OpenCV's own messages (e.g. "PNG input buffer
# is incomplete", "imdecode_: Unexpected end of input stream") would only add noise above it.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

#: Largest image accepted, in pixels (about 8192 x 8192).
MAX_PIXELS = 64 * 1024 * 1024

#: Largest image file read, in bytes: room for an uncompressed 8192 x 8192 RGBA image at 16
#: bits a channel (512 MiB of pixels) and its headers.
MAX_FILE_BYTES = 640 * 1024 * 1024

# Read once at import: os.umask can only be read by setting it, which is not thread-safe later.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: The suffixes `write_image` writes (not GIF: 256 colours are too few for a colouring).
WRITE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_format(data: bytes) -> str | None:
    """The format of image bytes by their magic number: `png`, `jpeg`, `gif`, `webp`, `bmp`,
    `tiff` or `pnm`; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data[:1] == b"P" and data[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6"):
        return "pnm"
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first image directory of a TIFF or BigTIFF, else None."""
    order = {b"II": "little", b"MM": "big"}[data[:2]]

    def number(start: int, size: int) -> int:
        return int.from_bytes(data[start : start + size], order)

    big = number(2, 2) == 43
    offset_size, count_size, entry_size = (8, 8, 20) if big else (4, 2, 12)
    ifd = number(8 if big else 4, offset_size)
    if ifd + count_size > len(data):
        return None
    entries = number(ifd, count_size)
    size: dict[int, int] = {}
    for i in range(min(entries, 4096)):
        entry = ifd + count_size + i * entry_size
        if entry + entry_size > len(data):
            break
        tag, kind = number(entry, 2), number(entry + 2, 2)
        if tag in (256, 257) and kind in (3, 4, 16):  # SHORT, LONG, LONG8
            value = entry + 4 + (count_size if big else 4)
            size[tag] = number(value, {3: 2, 4: 4, 16: 8}[kind])
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PBM, PGM or PPM header (P1 to P6), else None."""
    fields = []
    for line in data[2:1024].splitlines():
        fields += line.split(b"#", 1)[0].split()
        if len(fields) >= 2:
            break
    if len(fields) < 2 or not (fields[0].isdigit() and fields[1].isdigit()):
        return None
    return int(fields[0]), int(fields[1])


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF, WebP, BMP, TIFF or PNM header, else None.

    `decode_image` decodes nothing whose size this cannot read, so every format OpenCV would
    decode is either checked against the pixel limit first or refused.
    """
    kind = image_format(data)
    if kind == "tiff" and len(data) >= 16:
        return _tiff_size(data)
    if kind == "pnm":
        return _pnm_size(data)
    if kind == "png" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if kind == "gif" and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if kind == "webp" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            w = int.from_bytes(data[24:27], "little") + 1
            h = int.from_bytes(data[27:30], "little") + 1
            return w, h
        if chunk == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 " and len(data) >= 30:
            return (
                int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF,
            )
    if kind == "bmp" and len(data) >= 26:
        if int.from_bytes(data[14:18], "little") == 12:  # OS/2 header: 16-bit sizes
            return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
        # BITMAPINFOHEADER: signed 32-bit width and height (negative height = top-down).
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(w), abs(h)
    if kind == "jpeg":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
                h = int.from_bytes(data[i + 5 : i + 7], "big")
                w = int.from_bytes(data[i + 7 : i + 9], "big")
                return w, h
            i += 2 + length
    return None


def decode_image(
    data: bytes, *, name: str = "image", keep_alpha: bool = False, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decodes image bytes to a uint8 RGB (or RGBA with `keep_alpha`) array.

    Grayscale and palette images become RGB; 16-bit images are scaled to 8 bits. Without
    `keep_alpha`, a transparent image is composited on white.

    Raises:
        UserError: the data is empty, not an image, truncated, or over `max_pixels`.
    """
    if not data:
        raise UserError(f"{name}: the file is empty")
    size = image_size_from_header(data)
    if size is None:
        raise UserError(f"{name}: not an image, or the image is truncated or corrupt")
    if size[0] * size[1] > max_pixels:
        raise UserError(
            f"{name}: {size[0]}x{size[1]} is over the limit of {max_pixels} pixels"
        )
    buf = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise UserError(f"{name}: not an image, or the image is truncated or corrupt")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise UserError(f"{name}: {image.shape[1]}x{image.shape[0]} is over the pixel limit")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGBA if keep_alpha else cv2.COLOR_GRAY2RGB)
    elif channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGBA if keep_alpha else cv2.COLOR_BGR2RGB)
    elif channels == 4 and keep_alpha:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    elif channels == 4:
        # Transparent pixels often hold black: show them as the white paper they stand for.
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB).astype(np.float32)
        alpha = image[:, :, 3:].astype(np.float32) / 255.0
        image = np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    else:
        raise UserError(f"{name}: unsupported image with {channels} channels")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise UserError(f"{name}: the image is too small ({image.shape[1]}x{image.shape[0]})")
    return np.ascontiguousarray(image)


def read_image(
    path: str | os.PathLike, *, keep_alpha: bool = False, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Reads an image file into a uint8 RGB(A) array; see `decode_image`.

    Raises:
        UserError: the file is missing, unreadable or not a usable image.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UserError(f"{path}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise UserError(f"{path}: {info.st_size} bytes is over the limit of "
                                f"{MAX_FILE_BYTES} bytes for an image file")
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not an image file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if len(data) > MAX_FILE_BYTES:  # it grew while being read
        raise UserError(f"{path}: over the limit of {MAX_FILE_BYTES} bytes for an image file")
    return decode_image(data, name=str(path), keep_alpha=keep_alpha, max_pixels=max_pixels)


def encode_image(image: np.ndarray, suffix: str = ".png") -> bytes:
    """Encodes a uint8 RGB, RGBA or single-channel array in the format of `suffix`."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image: expected uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok = False
    if suffix.lower() in WRITE_SUFFIXES:
        ok, buf = cv2.imencode(suffix.lower(), image)
    if not ok:
        raise UserError(f"cannot write an image as {suffix!r}; use one of "
                        f"{', '.join(WRITE_SUFFIXES)}")
    return buf.tobytes()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path next to `path`; renames it onto `path` only on success."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except FileNotFoundError:
        raise UserError(f"{path}: the folder {directory} does not exist") from None
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror})") from None
    os.close(fd)
    # mkstemp creates the file private (0600); give it the mode a plain open() would have.
    os.chmod(tmp, 0o666 & ~_UMASK)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            os.replace(tmp_path, path)
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory; cannot write a file over it") from None
        except OSError as err:
            raise UserError(f"{path}: cannot write ({err.strerror})") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as err:
            raise UserError(f"{path}: cannot write ({err.strerror})") from None


def write_suffix(path: str | os.PathLike) -> str:
    """The format `write_image` writes `path` in: its suffix, PNG if none.

    Raises:
        UserError: a suffix it cannot write, so that callers can refuse it before any work.
    """
    suffix = Path(path).suffix.lower() or ".png"
    if suffix not in WRITE_SUFFIXES:
        raise UserError(f"{path}: cannot write an image as {suffix!r}; use one of "
                        f"{', '.join(WRITE_SUFFIXES)}")
    return suffix


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a uint8 image atomically; the format follows the suffix (PNG if none)."""
    write_bytes_atomic(path, encode_image(image, write_suffix(path)))


def check_output_folder(output: str | os.PathLike) -> None:
    """Checks that `output` is, or can be created as, a writable folder (creates nothing).

    Raises:
        UserError: it is a file, the nearest folder above it that exists is a file, or that
            folder is not writable.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: exists and is not a folder (an output folder is needed)")
    existing = output.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{output}: cannot create the output folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the output folder" if existing == output.absolute() else f"the folder {existing}"
        raise UserError(f"{output}: {what} is not writable")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder` (not recursive), sorted by name."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
