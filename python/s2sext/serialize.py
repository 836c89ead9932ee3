"""The s2sext model file: one file holding a JSON header and named numpy tensors.

The format is specified byte by byte in ``docs/model-format.md``; this module is its only Python
reader and writer. In short::

    [0, 24)            preamble: magic b"S2SXMDL\\0", u32 version (1, or 2 with int8 tensors),
                       u32 reserved (0),
                       u64 json_length                                (integers little-endian)
    [24, 24+J)         UTF-8 JSON: {"tensors": [{name, dtype, shape, offset, nbytes}, ...],
                                    "meta": <the caller's header>}
    [D, E)             data section, D = 24+J rounded up to 64; tensor data at D + offset,
                       every offset a multiple of 64, zero padding in between
    [E, E+16)          trailer: u64 E, u32 CRC-32 of bytes [0, E), end magic b"S2SX"

Loading never runs code (no pickle): the header is JSON and the tensors are raw little-endian
numbers. Writing is atomic: a reader sees either the previous file or the complete new one.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import stat
import struct
import zlib
from typing import Any, BinaryIO, Callable, Dict, Mapping, Tuple

import numpy as np

from .checks import is_int
# object_without_repeated_keys is importable from here, where it lived before
from .strict_json import MAX_JSON_DEPTH, object_without_repeated_keys, quoted, strict_loads  # noqa: F401

__all__ = ["ModelFileError", "write_model_file", "read_model_file", "FORMAT_VERSION", "INT8_FORMAT_VERSION",
           "FORMAT_VERSIONS"]

MAGIC = b"S2SXMDL\x00"
END_MAGIC = b"S2SX"
# The format version of a file without int8 tensors (every file before int8 existed, written byte
# for byte as before); a file with an int8 (``i8``) tensor is version 2, which readers of version 1
# refuse as "unsupported format version 2" before they look at its tensor table.
FORMAT_VERSION = 1
INT8_FORMAT_VERSION = 2
FORMAT_VERSIONS = (FORMAT_VERSION, INT8_FORMAT_VERSION)
ALIGNMENT = 64
MAX_NDIM = 32
# The JSON header's limit (it holds the vocabularies: about a million word tokens fit). A reader
# refuses a longer one from the preamble alone, before reading the file.
MAX_HEADER_BYTES = 2**24

# magic, version, reserved, json_length
_PREAMBLE = struct.Struct("<8sIIQ")
# body length, CRC-32 of the body, end magic
_TRAILER = struct.Struct("<QI4s")
_MIN_SIZE = _PREAMBLE.size + _TRAILER.size

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# The one table of stored dtypes: code in the file <-> little-endian numpy dtype.
_DTYPE_CODES = {
    "f32": np.dtype("<f4"),
    "f64": np.dtype("<f8"),
    "i32": np.dtype("<i4"),
    "i64": np.dtype("<i8"),
    "u16": np.dtype("<u2"),
    "u8": np.dtype("u1"),
    "i8": np.dtype("i1"),  # format version 2 only (INT8_FORMAT_VERSION)
}
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in _DTYPE_CODES.items()}
_TENSOR_KEYS = frozenset(("name", "dtype", "shape", "offset", "nbytes"))


class ModelFileError(ValueError):
    """A file is not a readable s2sext model file: foreign, truncated, corrupted or of an
    unsupported format version. The message names the file and what is wrong."""


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


# ----------------------------------------------------------------------------------------------
# Writing


def _check_header_value(value: Any, where: str, depth: int = 2) -> None:
    """Raise TypeError naming `where` unless `value` reads back from JSON as an equal object
    (ValueError if it is nested deeper than a reader accepts). `depth` is the JSON depth `value`
    would have as a container (the caller's header sits at 2, inside the file's top object).

    json.dumps alone accepts more than that (tuples become lists, int keys become strings, so two
    keys may collide), and its own error does not say where the bad value is.
    """
    if isinstance(value, (list, dict)) and depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"{where}: nested deeper than a model file allows ({MAX_JSON_DEPTH} levels of arrays "
            "and objects, counting the file's top-level object and the header itself)"
        )
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str):
            _check_utf8(value, where)
        return
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise TypeError(f"{where}: integer {value} is outside the int64 range of a model file")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: {value!r} cannot be stored (JSON has no NaN/Inf)")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_header_value(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                kind = type(key).__name__
                raise TypeError(f"{where}: key {key!r} is a {kind}; header keys must be str")
            _check_utf8(key, f"{where} key {key!r}")
            _check_header_value(item, f"{where}[{key!r}]", depth + 1)
        return
    hint = ""
    if isinstance(value, tuple):
        hint = " (use a list)"
    elif isinstance(value, np.generic):
        hint = " (convert numpy scalars with .item())"
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be stored in a model file header{hint}; "
        "allowed are dict (str keys), list, str, int, finite float, bool and None"
    )


def _check_utf8(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TypeError(f"{where}: string is not valid UTF-8 ({exc.reason})") from None


def _le_tensor(name: Any, value: Any) -> np.ndarray:
    """Validate one tensor argument; return it as a C-contiguous little-endian array."""
    if not isinstance(name, str):
        raise TypeError(f"tensor names must be str, got {type(name).__name__} {name!r}")
    if not name:
        raise ValueError("tensor names must be non-empty")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"tensor name {name!r} is not valid UTF-8 ({exc.reason})") from None
    if isinstance(value, np.generic):
        value = np.asarray(value)  # a numpy scalar is stored as a 0-d array
    if not isinstance(value, np.ndarray):
        raise TypeError(f"tensor {name!r}: expected a numpy.ndarray, got {type(value).__name__}")
    code = _CODE_OF.get((value.dtype.kind, value.dtype.itemsize))
    if code is None or value.dtype.fields is not None:
        raise TypeError(
            f"tensor {name!r}: dtype {value.dtype} cannot be stored; "
            "allowed are float32, float64, int32, int64, uint16, uint8 and int8"
        )
    if value.ndim > MAX_NDIM:
        raise ValueError(f"tensor {name!r}: {value.ndim} dimensions, at most {MAX_NDIM} allowed")
    # astype keeps 0-d arrays 0-d (np.ascontiguousarray would make them 1-d).
    return value.astype(_DTYPE_CODES[code], order="C", copy=False)


def write_model_file(
    path: str | os.PathLike, header: Mapping[str, Any], tensors: Mapping[str, np.ndarray]
) -> None:
    """Write a model file atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination. The file is written to a temporary file in the same directory, flushed to
        disk and renamed over `path`, so `path` is either left untouched (on any error) or holds
        the complete new file (see :func:`atomic_write`; a killed writer leaves no temporary file
        behind for long). An existing file's permission bits are kept; a symlink is kept and its
        target replaced.
    header : dict
        Anything JSON can hold exactly: dicts with str keys, lists, str, int (int64 range), finite
        float, bool, None, nested at most 62 levels below the header (``MAX_JSON_DEPTH`` counts
        the file's top-level object and the header too); with the tensor table at most
        ``MAX_HEADER_BYTES`` of JSON. ``read_model_file`` returns an equal dict.
    tensors : dict of str to ndarray
        Non-empty names; arrays of dtype float32, float64, int32, int64, uint16 (bfloat16 bits),
        uint8 (bytes, such as a sentencepiece model) or int8 (quantized weights: the file is then
        format version 2, ``INT8_FORMAT_VERSION``; without int8 it is version 1),
        any shape including 0-d and empty (numpy scalars are stored as 0-d arrays), any layout and
        byte order. They are stored as C-contiguous little-endian data, in the dict's order.

    Raises
    ------
    TypeError
        The header holds something JSON cannot hold exactly (the message gives its key path), or a
        tensor is not an ndarray or has another dtype (the message names the tensor and the dtype).
    ValueError
        An empty or non-UTF-8 tensor name, more than 32 dimensions, a header nested too deeply (the
        message gives its key path) or longer than ``MAX_HEADER_BYTES``; or `path` (through its
        symlinks) is a directory, FIFO, device or socket (:func:`output_target`), left as it is.
    OSError
        The file cannot be written; `path` is left as it was.
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(header, Mapping):
        raise TypeError(f"header: expected a dict, got {type(header).__name__}")
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a dict of ndarrays, got {type(tensors).__name__}")
    header = dict(header)
    _check_header_value(header, "header")

    # Everything is validated and laid out before the temporary file exists.
    arrays = []
    entries = []
    end = 0  # relative to the start of the data section
    for name, value in tensors.items():
        arr = _le_tensor(name, value)
        offset = _align(end)
        entries.append(
            {
                "name": name,
                "dtype": _CODE_OF[(arr.dtype.kind, arr.dtype.itemsize)],
                "shape": list(arr.shape),
                "offset": offset,
                "nbytes": arr.nbytes,
            }
        )
        arrays.append((offset, arr))
        end = offset + arr.nbytes
    doc = {"tensors": entries, "meta": header}
    head = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(
            f"header: {len(head)} bytes of JSON with the tensor table; a model file's header holds "
            f"at most {MAX_HEADER_BYTES} bytes (MAX_HEADER_BYTES)"
        )
    data_start = _align(_PREAMBLE.size + len(head))
    version = INT8_FORMAT_VERSION if any(e["dtype"] == "i8" for e in entries) else FORMAT_VERSION

    def write(f: BinaryIO) -> None:
        crc = 0
        pos = 0  # absolute position, tracked so padding and the trailer need no f.tell()

        def put(chunk: bytes) -> None:
            nonlocal crc, pos
            f.write(chunk)
            crc = zlib.crc32(chunk, crc)
            pos += len(chunk)

        put(_PREAMBLE.pack(MAGIC, version, 0, len(head)))
        put(head)
        for offset, arr in arrays:
            put(bytes(data_start + offset - pos))
            put(arr.tobytes())
        put(bytes(data_start + end - pos))  # the header's padding when there is no tensor
        f.write(_TRAILER.pack(pos, crc, END_MAGIC))

    atomic_write(path, write)


# Where the OS has it (Linux), the new file is written unnamed (O_TMPFILE) and gets a name only
# once it is complete, so a writer killed mid-write leaves nothing. Tests set this to 0 to run the
# fallback, a named temporary file.
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace the file `path` with what `write(f)` writes to the binary file `f`, so
    that `path` holds either its previous content or the complete new file, never a part.

    The data goes to a temporary file in the target's directory, is flushed and fsync'ed, then
    renamed over the target. Through a symlink the link's target is replaced and the link kept.
    The new file gets the old file's permission bits (else an ordinary open()'s). On any error the
    temporary file is removed. The temporary is unnamed while it is written where the OS allows
    (O_TMPFILE) and named ``.NAME.PID.XXXXXXXX.tmp`` for the instant before the rename (or the
    whole write elsewhere); such names left by a killed writer whose process is gone are removed
    by the next write of the same file.

    Raises
    ------
    ValueError
        `path` (or its symlink's target) exists and is not a regular file (see :func:`output_target`).
    OSError
        The directory is missing or the file cannot be written; `path` is left as it was.
    """
    target = output_target(path)
    directory, name = os.path.split(target)
    _remove_stale_temporaries(directory, name)
    fd, tmp = _create_temporary(directory, name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            _set_mode(f.fileno(), target)
            os.fsync(f.fileno())
            if tmp is None:
                tmp = _link_temporary(f.fileno(), directory, name)
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    _fsync_directory(directory)


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def output_target(path: str | os.PathLike) -> str:
    """The file that writing `path` creates or replaces: `path` with its symlinks resolved (a write
    goes through a link to its target and keeps the link). The one check of an output path, shared
    by :func:`atomic_write` and the command line's check of its outputs before any work.

    Raises
    ------
    ValueError
        The target exists and is not a regular file (a directory, FIFO, device or socket): the
        rename would replace it, so that, say, ``--out /dev/null`` would put a regular file in
        place of the device.
    FileNotFoundError, NotADirectoryError
        The target's directory does not exist, or is not a directory (``strerror`` says which).
    """
    path = os.fsdecode(os.fspath(path))
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = next((what for test, what in _NOT_REGULAR if test(mode)), "a special file")
        if kind == "a directory":
            raise ValueError(f"{path}: is a directory")
        raise ValueError(f"{path}: is {kind}, not a regular file")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise NotADirectoryError(errno.ENOTDIR, f"the directory {directory} is not a directory", path)
        raise FileNotFoundError(errno.ENOENT, f"the directory {directory} does not exist", path)
    return target


def _temporary_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _create_temporary(directory: str, name: str) -> Tuple[int, str | None]:
    """(fd, path) of a new temporary file for `name`; path None for an unnamed (O_TMPFILE) one."""
    if _O_TMPFILE and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(directory, _O_TMPFILE | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600), None
        except OSError as exc:
            # this file system or kernel has no O_TMPFILE (old kernels read it as O_DIRECTORY)
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(directory, _temporary_name(name))
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue


def _link_temporary(fd: int, directory: str, name: str) -> str:
    """Give the unnamed file `fd` a temporary name in `directory`; return its path."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        while True:
            tmp = _temporary_name(name)
            try:
                # dst_dir_fd makes os.link call linkat(), which follows the /proc link to the file
                os.link(f"/proc/self/fd/{fd}", tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
                return os.path.join(directory, tmp)
            except FileExistsError:
                continue
    finally:
        os.close(dir_fd)


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Remove the temporary files of `name` (our naming pattern only) whose writer has exited.

    A writer's process id is in the name, so a file of a writer still running (in this process or
    another one on this machine) is kept.
    """
    if os.name != "posix":
        return
    pattern = re.compile(r"\." + re.escape(name) + r"\.([0-9]{1,10})\.[0-9a-f]{8}\.tmp")
    try:
        entries = os.scandir(directory)
    except OSError:
        return  # creating the temporary file reports the problem
    with entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and not _process_exists(int(match.group(1))):
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only the check
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid < 2**31  # a process of another user exists; larger numbers are no process id
    return True


def _set_mode(fd: int, target: str) -> None:
    """Give the new file the mode an ordinary open() would: the old file's, else 0o666 & ~umask.

    Temporary files are created 0o600. The umask is read from /proc because os.umask() can only
    read it by changing it, which races with other threads creating files.
    """
    if os.name != "posix":
        return
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = 0o022
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("Umask:"):
                        umask = int(line.split()[1], 8)
                        break
        except OSError:
            pass
        mode = 0o666 & ~umask
    os.fchmod(fd, mode)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ----------------------------------------------------------------------------------------------
# Reading


def read_model_file(path: str | os.PathLike) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Read a model file written by :func:`write_model_file`.

    Returns
    -------
    header : dict
        Equal to the header that was written.
    tensors : dict of str to ndarray
        Fresh, writable, C-contiguous arrays in native byte order, in the order written.

    Raises
    ------
    ModelFileError
        (a ValueError) The file is not an s2sext model file, is truncated, is corrupted (checksum
        mismatch or an inconsistent header) or has an unsupported format version. The message
        names the file.
    OSError
        The file cannot be opened or read (FileNotFoundError etc.).
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    # Work bounded by the file: the magic and version are checked from the first 24 bytes, then
    # the header length against the size and the trailer, before the rest is read (once: model
    # files are a few MB). A pipe or a device has no size to check: after its first 24 bytes it
    # is refused, since reading it to its end could take without bound.
    with open(path, "rb") as f:
        head = f.read(_PREAMBLE.size)
        _check_ends(path, head, None, b"")
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _failure(path, "is not a regular file (a pipe or a device); a model is read from a file")
        size = info.st_size
        tail = b""
        if size >= _PREAMBLE.size + _TRAILER.size:
            f.seek(size - _TRAILER.size)
            tail = f.read(_TRAILER.size)
        _check_ends(path, head, size, tail)
        f.seek(0)
        data = bytearray(size)  # read in place: the file's size in memory, not twice
        del data[f.readinto(data) :]  # less if the file shrank meanwhile: then truncated
    header, entries, data_start = _parse(path, data)
    tensors = {}
    for e in entries:
        dtype = _DTYPE_CODES[e["dtype"]]
        count = e["nbytes"] // dtype.itemsize
        flat = np.frombuffer(data, dtype=dtype, count=count, offset=data_start + e["offset"])
        tensors[e["name"]] = flat.reshape(e["shape"]).astype(dtype.newbyteorder("="))
    return header, tensors


def _failure(path: str, message: str) -> ModelFileError:
    return ModelFileError(f"model file {path!r}: {message}")


def _check_ends(path: str, head: bytes, size: int | None, tail: bytes) -> None:
    """Checks 1-3 of docs/model-format.md: the magic, the version and the header length, from the
    first 24 bytes (`head`, fewer in a short file), the file size (None: not known yet) and the
    last 16 bytes (`tail`, when the file has at least 40)."""
    if head[: len(MAGIC)] != MAGIC:
        if len(head) < len(MAGIC) and MAGIC.startswith(head):
            raise _failure(path, f"truncated: {len(head)} bytes, a model file has at least {_MIN_SIZE}")
        raise _failure(path, f"not an s2sext model file (it does not start with {MAGIC!r})")
    if len(head) < _PREAMBLE.size:
        raise _failure(path, f"truncated: {len(head)} bytes, a model file has at least {_MIN_SIZE}")
    _, version, _, json_length = _PREAMBLE.unpack(head)
    if version not in FORMAT_VERSIONS:
        raise _failure(
            path,
            f"unsupported format version {version}; this reader supports versions "
            f"{' and '.join(map(str, FORMAT_VERSIONS))} (a newer s2sext wrote it, or the file is corrupted)",
        )
    if size is None:
        return
    needed = _PREAMBLE.size + json_length + _TRAILER.size
    if needed > size:
        if len(tail) == _TRAILER.size:
            body_length, _, end_magic = _TRAILER.unpack(tail)
            if end_magic == END_MAGIC and body_length == size - _TRAILER.size:
                raise _failure(path, f"corrupted: header length {json_length} runs past the end of the data")
        raise _failure(path, f"truncated: expected at least {needed} bytes, found {size}")
    if json_length > MAX_HEADER_BYTES:
        raise _failure(
            path, f"corrupted: header length {json_length} is over the limit of {MAX_HEADER_BYTES} bytes"
        )


def _parse(path: str, data: bytes) -> Tuple[Dict[str, Any], list, int]:
    """Check the whole file; return (meta, tensor entries, data_start)."""

    def fail(message: str) -> ModelFileError:
        return _failure(path, message)

    size = len(data)
    _check_ends(path, data[: _PREAMBLE.size], size, data[-_TRAILER.size :] if size >= _MIN_SIZE else b"")
    _, version, reserved, json_length = _PREAMBLE.unpack_from(data, 0)
    body_length, stored_crc, end_magic = _TRAILER.unpack_from(data, size - _TRAILER.size)
    if end_magic != END_MAGIC or body_length != size - _TRAILER.size:
        expected = _expected_size(data, json_length)
        if expected is None:
            raise fail(f"truncated or corrupted: no valid trailer at the end of the {size} bytes")
        expected_size, exact = expected
        if expected_size > size:
            at_least = "" if exact else "at least "
            raise fail(f"truncated: expected {at_least}{expected_size} bytes, found {size}")
        if expected_size < size:
            extra = size - expected_size
            raise fail(f"corrupted: {extra} unexpected bytes after the expected {expected_size}")
        raise fail("corrupted: the trailer (end marker or recorded length) is damaged")
    crc = zlib.crc32(memoryview(data)[:body_length])
    if crc != stored_crc:
        raise fail(
            f"corrupted (checksum mismatch: stored {stored_crc:#010x}, computed {crc:#010x})"
        )

    # The checksum matches, so what follows only fails for a file that a faulty writer produced.
    if reserved != 0:
        raise fail(f"corrupted: the reserved preamble field is {reserved}, must be 0")
    try:
        doc = strict_loads(data[_PREAMBLE.size : _PREAMBLE.size + json_length])
    except ValueError as exc:
        raise fail(f"corrupted: the header is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) != {"tensors", "meta"}:
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise fail(f"corrupted: the header must be an object with keys meta and tensors: {keys}")
    meta, entries = doc["meta"], doc["tensors"]
    if not isinstance(meta, dict):
        raise fail(f"corrupted: header 'meta' must be an object, got {type(meta).__name__}")
    if not isinstance(entries, list):
        raise fail(f"corrupted: header 'tensors' must be a list, got {type(entries).__name__}")

    data_start = _align(_PREAMBLE.size + json_length)
    data_length = body_length - data_start
    names = set()
    end = 0
    for i, e in enumerate(entries):
        problem = _entry_problem(e, data_length, version)
        if problem:
            raise fail(f"corrupted: tensor entry {i} {problem}")
        if e["name"] in names:
            raise fail(f"corrupted: tensor name {quoted(e['name'])} appears twice")
        names.add(e["name"])
        end = max(end, e["offset"] + e["nbytes"])
    if data_start + end != body_length:
        raise fail(
            f"corrupted: the data section is {data_length} bytes, the tensors account for {end}"
        )
    previous_end, previous_name = 0, None
    for e in sorted(entries, key=lambda e: (e["offset"], e["nbytes"])):
        if e["offset"] < previous_end:
            raise fail(f"corrupted: tensors {quoted(previous_name)} and {quoted(e['name'])} overlap")
        previous_end, previous_name = e["offset"] + e["nbytes"], e["name"]
    return meta, entries, data_start


def _entry_problem(e: Any, data_length: int, version: int) -> str | None:
    """What is wrong with one tensor entry, or None. Sizes are Python ints: no overflow."""
    if not isinstance(e, dict) or set(e) != _TENSOR_KEYS:
        return f"must be an object with keys {sorted(_TENSOR_KEYS)}, got {e!r:.200}"
    name, code, shape, offset, nbytes = e["name"], e["dtype"], e["shape"], e["offset"], e["nbytes"]
    if not isinstance(name, str) or not name:
        return f"has name {quoted(name)}; names are non-empty strings"
    if not isinstance(code, str) or code not in _DTYPE_CODES:
        return f"({quoted(name)}) has unknown dtype {quoted(code)}; known are {sorted(_DTYPE_CODES)}"
    if code == "i8" and version < INT8_FORMAT_VERSION:
        return f"({quoted(name)}) has dtype 'i8', which a version-{version} file cannot hold (int8 needs version 2)"
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_count(d) for d in shape):
        return f"({quoted(name)}) has shape {quoted(shape)}; expected at most {MAX_NDIM} non-negative ints"
    if not _is_count(offset) or offset % ALIGNMENT:
        return f"({quoted(name)}) has offset {quoted(offset)}; expected a non-negative multiple of {ALIGNMENT}"
    itemsize = _DTYPE_CODES[code].itemsize
    if math.prod(d for d in shape if d) * itemsize > _INT64_MAX:
        return f"({quoted(name)}) has shape {shape} too large to address"
    if not _is_count(nbytes) or nbytes != math.prod(shape) * itemsize:
        needed = math.prod(shape) * itemsize
        return f"({quoted(name)}) has nbytes {quoted(nbytes)}; shape {shape} of {code} needs {needed}"
    if offset + nbytes > data_length:
        return f"({quoted(name)}) ends at {offset + nbytes}, past the {data_length}-byte data section"
    return None


def _is_count(x: Any) -> bool:
    return is_int(x) and 0 <= x <= _INT64_MAX


def _expected_size(data: bytes, json_length: int) -> Tuple[int, bool] | None:
    """(the file size the header implies, whether exact), to tell a truncated file from a damaged
    one; None when the header cannot be read."""
    json_end = _PREAMBLE.size + json_length
    if json_end + _TRAILER.size > len(data):
        return json_end + _TRAILER.size, False  # the header itself is cut off
    try:
        entries = strict_loads(data[_PREAMBLE.size : json_end])["tensors"]
        end = max([e["offset"] + e["nbytes"] for e in entries], default=0)
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(end, int):
        return None
    return _align(json_end) + end + _TRAILER.size, True
