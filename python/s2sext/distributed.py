"""Data-parallel training over ``torch.distributed``: the gradient reducer that
:func:`s2sext.train.train` takes, and the rank/world helpers of the ``s2sext train`` command
under ``torchrun``.

Each process computes the gradients of its shard of every global batch; :class:`TorchReducer`
sums them, each weighted by its shard's share of the global batch's target tokens, so that every
process ends up with the gradient of the mean loss over the global batch's tokens, the gradient
one process computes for the whole batch. Clipping, the optimiser step and the learning-rate
schedule then run on the same numbers in every process, which keeps the parameters identical
without broadcasting them after each update.

The gradients and the step's loss, token and hit counts travel as one flat float64 buffer, one
all-reduce per update: float64 so the weighted sum loses nothing against the one-process mean,
and one buffer because the backward is one C++ call that returns every gradient at once (there
is no earlier gradient to overlap the reduction with).

The reducer and the process group need torch (imported when first used); the environment helpers
do not, so the command reads ``torchrun``'s variables without it, and a single-process run never
imports torch.
"""

from __future__ import annotations

import os

import numpy as np

from .checks import short_repr

__all__ = ["TorchReducer", "environment_world", "world_of", "init_from_environment", "default_threads"]

_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def environment_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_world_size)`` from the variables ``torchrun`` sets (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), or None outside ``torchrun``."""
    return world_of(os.environ)


def world_of(environ) -> tuple[int, int, int] | None:
    """:func:`environment_world` of the mapping ``environ``."""
    if not all(name in environ for name in _ENVIRONMENT):
        return None
    values = {}
    for name in (*_ENVIRONMENT, "LOCAL_WORLD_SIZE"):
        text = environ.get(name, environ["WORLD_SIZE"] if name == "LOCAL_WORLD_SIZE" else None)
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"the environment variable {name} must be an integer; got {short_repr(text)}") from None
    if not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE={values['WORLD_SIZE']}); got {values['RANK']}")
    return values["RANK"], values["WORLD_SIZE"], max(1, values["LOCAL_WORLD_SIZE"])


def default_threads(local_world_size: int, cpus: int | None = None) -> int:
    """Kernel threads per process when ``local_world_size`` processes share this machine's CPUs:
    an equal share, at least one (more threads than cores only make the processes fight)."""
    cpus = cpus if cpus is not None else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                          else os.cpu_count() or 1)
    return max(1, cpus // max(1, local_world_size))


def init_from_environment(backend: str = "gloo") -> bool:
    """Initialise the default process group from ``torchrun``'s environment unless one is already
    initialised; -> whether this call initialised it (the caller then destroys it)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group(backend)
    return True


class TorchReducer:
    """The gradient reducer of :func:`s2sext.train.train` over an initialised
    ``torch.distributed`` process group (``group``: the default one when None), any backend that
    all-reduces float64 CPU tensors (gloo; with NCCL the buffers would have to live on the GPU).

    ``rank`` takes rows ``shard(B)`` of every global batch of ``B`` rows; rank 0 validates, writes
    the files and logs, and :meth:`share` hands its decisions (validation scores, the time-budget
    stop) to the others so that every process runs the same epochs and updates."""

    def __init__(self, group=None):
        import torch
        import torch.distributed as dist

        self._torch, self._dist = torch, dist
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("TorchReducer needs an initialised torch.distributed process group "
                             "(torch.distributed.init_process_group); none is")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def shard(self, rows: int) -> slice:
        """This process's contiguous share of ``rows`` rows (sizes differ by at most one; a rank
        may get none when a batch has fewer rows than processes)."""
        return slice(rows * self.rank // self.world_size, rows * (self.rank + 1) // self.world_size)

    def agree(self, value, name: str) -> None:
        """ValueError in every process unless every process passes an equal ``value`` (what must be
        the same everywhere: the data's size, the parameters' shapes, the settings)."""
        values = [None] * self.world_size
        self._dist.all_gather_object(values, value, group=self.group)
        if any(v != values[0] for v in values):
            raise ValueError(f"the processes disagree on {name}: {short_repr(values, 200)} (rank order); "
                             "every process must train on the same data with the same settings")

    def broadcast_parameters(self, params: dict) -> None:
        """Overwrite every process's parameters with rank 0's, so training starts in step."""
        names = sorted(params)
        flat = self._torch.from_numpy(np.concatenate([params[k].ravel().astype(np.float64) for k in names]))
        self._dist.broadcast(flat, 0, group=self.group)
        offset = 0
        for k in names:
            size = params[k].size
            params[k][...] = flat[offset:offset + size].numpy().reshape(params[k].shape)
            offset += size

    def reduce(self, grads: dict, loss: float, tokens: int, correct: int):
        """Replace ``grads`` (the mean over this shard's ``tokens``) in place with the mean over the
        global batch's tokens; -> the global batch's mean loss, tokens and correct tokens."""
        names = sorted(grads)
        sizes = [grads[k].size for k in names]
        flat = np.empty(sum(sizes) + 3, np.float64)
        offset = 0
        for k, size in zip(names, sizes):
            np.multiply(grads[k].ravel(), tokens, out=flat[offset:offset + size], dtype=np.float64)
            offset += size
        flat[offset:] = (loss * tokens, tokens, correct)
        self._dist.all_reduce(self._torch.from_numpy(flat), group=self.group)
        loss_sum, total, hits = flat[offset:]
        if total > 0:
            flat[:offset] /= total
        offset = 0
        for k, size in zip(names, sizes):
            grads[k][...] = flat[offset:offset + size].reshape(grads[k].shape)
            offset += size
        return (loss_sum / total if total else 0.0), int(round(total)), int(round(hits))

    def share(self, value):
        """Rank 0's ``value`` in every process (a barrier as well)."""
        box = [value]
        self._dist.broadcast_object_list(box, 0, group=self.group)
        return box[0]
