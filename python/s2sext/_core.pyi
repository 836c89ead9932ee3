"""Type stub of the compiled core. Use s2sext.ops: these names are private."""
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike

class LSTMCellCache:
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    gates: np.ndarray
    c1: np.ndarray

class LSTMCache:
    x_tm: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: Optional[np.ndarray]
    gates: np.ndarray
    h_all: np.ndarray
    c_all: np.ndarray

class AttentionCache:
    kind: str
    one_step: bool
    hs: np.ndarray
    q: np.ndarray
    params: Tuple[np.ndarray, ...]
    lengths: Optional[np.ndarray]
    a: np.ndarray
    query_proj: Optional[np.ndarray]
    key_proj: Optional[np.ndarray]

def lstm_cell_forward(x: ArrayLike, h0: Optional[ArrayLike], c0: Optional[ArrayLike], w_ih: ArrayLike,
                      w_hh: ArrayLike, b: ArrayLike) -> Tuple[np.ndarray, np.ndarray, LSTMCellCache]: ...
def lstm_cell_backward(dh1: Optional[ArrayLike], dc1: Optional[ArrayLike], cache: LSTMCellCache
                       ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def lstm_forward(x: ArrayLike, h0: Optional[ArrayLike], c0: Optional[ArrayLike], w_ih: ArrayLike,
                 w_hh: ArrayLike, b: ArrayLike, lengths: Optional[ArrayLike]
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, LSTMCache]: ...
def lstm_backward(dhs: Optional[ArrayLike], dhT: Optional[ArrayLike], dcT: Optional[ArrayLike], cache: LSTMCache
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...
def attention_weight_forward(hs: ArrayLike, q: ArrayLike, kind: str, params: Sequence[ArrayLike],
                             lengths: Optional[ArrayLike]) -> Tuple[np.ndarray, AttentionCache]: ...
def attention_weight_backward(da: ArrayLike, cache: AttentionCache
                              ) -> Tuple[np.ndarray, np.ndarray, Tuple[np.ndarray, ...]]: ...
def weight_sum_forward(hs: ArrayLike, a: ArrayLike) -> np.ndarray: ...
def weight_sum_backward(dc: ArrayLike, hs: ArrayLike, a: ArrayLike) -> Tuple[np.ndarray, np.ndarray]: ...
def cpu_info() -> dict[str, Any]: ...
def set_kernel_path(name: str) -> str: ...
def set_num_threads(threads: int) -> int: ...
def get_num_threads() -> int: ...
