"""Id sequences and padding: lists of token ids -> one padded int64 array ``[B, max_len]`` with the
lengths ``[B]`` (positions at or past a row's length hold ``pad_id``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .checks import check_int
from .spec import PAD_ID

__all__ = ["pad_batch"]

def _id_array(sequence, name: str, allow_empty: bool) -> np.ndarray:
    """``sequence`` (ints or a 1-D integer array) as a 1-D int64 array, or TypeError/ValueError naming it."""
    if isinstance(sequence, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of int ids, got {type(sequence).__name__}")
    try:
        array = np.asarray(sequence)
    except (ValueError, OverflowError) as error:
        raise ValueError(f"{name} must be a sequence of int ids: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (a sequence of int ids), got shape {array.shape}")
    if array.size == 0:
        if not allow_empty:
            raise ValueError(
                f"{name} is empty; sequences must hold at least one id (or pass allow_empty=True)"
            )
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold int ids, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds ids too large for int64, max {array.max()}")
    return array.astype(np.int64, copy=False)


def _pad_arrays(arrays: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked 1-D int64 arrays -> (``ids`` [B, max_len], ``pad_id`` past each length; ``lengths`` [B])."""
    lengths = np.fromiter((array.size for array in arrays), dtype=np.int64, count=len(arrays))
    ids = np.full((len(arrays), int(lengths.max())), pad_id, dtype=np.int64)
    for row, array in enumerate(arrays):
        ids[row, : array.size] = array
    return ids, lengths


def pad_batch(sequences, pad_id: int = PAD_ID, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``B`` id sequences of different lengths into one array.

    Parameters
    ----------
    sequences : sequence of B sequences of int (or 1-D integer arrays)
    pad_id : int, default PAD_ID
        The value at positions at or past a row's length.
    allow_empty : bool, default False
        Whether a sequence may have no ids (its row is all ``pad_id``).

    Returns
    -------
    ids : (B, max_len) int64 ndarray, C-contiguous
    lengths : (B,) int64 ndarray

    Raises
    ------
    ValueError
        ``sequences`` is empty, or ``sequences[i]`` is empty (without ``allow_empty``) or not 1-D.
    TypeError
        An id is not an integer (floats and bools are refused).
    """
    pad_id = check_int(pad_id, "pad_id", minimum=np.iinfo(np.int64).min, maximum=np.iinfo(np.int64).max)
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"sequences must be a sequence of id sequences, got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError("sequences is empty; a batch needs at least one sequence")
    arrays = [_id_array(sequence, f"sequences[{i}]", allow_empty) for i, sequence in enumerate(sequences)]
    return _pad_arrays(arrays, pad_id)
