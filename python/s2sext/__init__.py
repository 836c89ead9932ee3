"""s2sext: sequence-to-sequence models with attention, on C++ LSTM and attention kernels.

The kernels live in :mod:`s2sext.ops` (numpy in, numpy out, forward and backward).
"""

from . import ops
from ._core import cpu_info, get_num_threads, set_kernel_path, set_num_threads

__version__ = "0.1.0"

__all__ = ["ops", "cpu_info", "set_kernel_path", "set_num_threads", "get_num_threads", "__version__"]
