"""s2sext's kernels as differentiable PyTorch operations, drop-in modules on top of them, and
conversion of PyTorch-trained weights into s2sext models.

Importing this module imports torch; ``import s2sext`` never does. CPU tensors of float32 or
float64 only: anything else raises instead of being copied to another device or dtype silently.

* Functions (``torch.autograd.Function``): :class:`LSTMFunction` (a padded sequence with lengths),
  :class:`LSTMCellFunction`, :class:`AttentionWeightFunction`, :class:`WeightSumFunction`; each
  forward and backward is one C++ kernel of :mod:`s2sext.ops`, and a backward asked for a graph
  (``create_graph=True``) is the same equations in torch ops, so gradients of gradients are right.
* Modules: :class:`LSTM` (``torch.nn.LSTM``'s constructor and argument checks, parameter names,
  shapes, attributes, inputs and outputs, ``PackedSequence`` and ``proj_size`` included, so
  ``load_state_dict(nn_lstm.state_dict())`` works; tests/test_torch_lstm_compat.py runs PyTorch's
  nn.LSTM cases against both) and :class:`Attention` (every score kind).
* Errors: :class:`ShapeError` (``ValueError`` and ``RuntimeError``) and :class:`DTypeError`
  (``TypeError``, ``ValueError`` and ``RuntimeError``), so code written for nn.LSTM or for s2sext
  catches them.
* Weights: :func:`seq2seq_from_state_dict` / :func:`seq2seq_to_state_dict` map a PyTorch model's
  state dict onto :class:`s2sext.Seq2Seq` and back (see ``DEFAULT_NAMES``), and
  :func:`convert_gate_order` converts LSTM weights from Keras's (i, f, c, o) or "Deep Learning from
  Scratch 2"'s (f, g, i, o, transposed) layouts to PyTorch's (i, f, g, o).
"""

from __future__ import annotations

import math
import numbers
import warnings

try:
    import torch
    from torch.autograd import forward_ad
    from torch.nn.utils.rnn import PackedSequence
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "s2sext.torch needs PyTorch: pip install torch (any version >= 2.1; the CPU build is enough)"
    ) from exc

import numpy as np

from . import ops
from .checks import check_bool, check_int, is_int
from .spec import ATTENTION_KINDS, attention_parameter_shapes
from .torch_equations import attention_reference, cell_reference, differentiable_grads, lstm_reference
from .torch_state_dict import DEFAULT_NAMES, convert_gate_order, seq2seq_from_state_dict, seq2seq_to_state_dict

__all__ = [
    "LSTMFunction",
    "LSTMCellFunction",
    "AttentionWeightFunction",
    "WeightSumFunction",
    "LSTM",
    "Attention",
    "ShapeError",
    "DTypeError",
    "convert_gate_order",
    "seq2seq_from_state_dict",
    "seq2seq_to_state_dict",
    "DEFAULT_NAMES",
]


# ---------------------------------------------------------------------------------------------
# Errors: s2sext's exception types and torch.nn.LSTM's at once


class ShapeError(ValueError, RuntimeError):
    """A wrong size, rank or length: a ``ValueError``, as s2sext raises elsewhere, and a
    ``RuntimeError``, as ``torch.nn.LSTM`` and torch's kernels raise, so code written for either
    catches it."""


class DTypeError(TypeError, ValueError, RuntimeError):
    """A wrong or mismatched dtype: a ``TypeError``, as s2sext raised before, a ``ValueError``, as
    ``torch.nn.LSTM`` raises for its input, and a ``RuntimeError``, as it (and torch's kernels)
    raise for ``h_0``/``c_0`` and mixed operands."""


# ---------------------------------------------------------------------------------------------
# Tensors <-> numpy, with the checks every Function makes


def _validate(name, t, dtype=None):
    """t, if the kernels take it: a CPU tensor of float32 or float64 (and of ``dtype`` if given)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}; s2sext's kernels run on the CPU (move it with .cpu())")
    if t.dtype not in (torch.float32, torch.float64):
        raise DTypeError(f"{name} has dtype {t.dtype}; s2sext's kernels take float32 or float64")
    if dtype is not None and t.dtype != dtype:
        raise DTypeError(f"{name} has dtype {t.dtype}, but the first input is {dtype}; use one dtype throughout")
    return t


def _kernel(fn, *args):
    """``fn(*args)`` (an :mod:`s2sext.ops` function) with its ValueErrors (wrong shapes or
    lengths) raised as :class:`ShapeError`, keeping the kernel's message."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise ShapeError(str(exc)) from None


def _out(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def _grad(t):
    return None if t is None else t.detach().contiguous().numpy()


def _numpy(t):
    """A validated tensor's data as a numpy array (no copy)."""
    return t.detach().numpy()


def _zeros_like(t):
    """A zero numpy array with a tensor's shape and dtype: the kernels check shapes on it where
    the tensor has no data to read (inside torch.func transforms)."""
    return np.zeros(tuple(t.shape), dtype=np.float64 if t.dtype == torch.float64 else np.float32)


def _lengths(lengths, B, S=None, minimum=0):
    """None, or the integers [B] of a tensor, array or list as int64 (TypeError for non-integers,
    ShapeError for a wrong shape or a value beyond int64; the kernels check the range
    ``minimum..S``). ``B`` None: the shape is left to the kernel (its input had a wrong rank)."""
    if lengths is None:
        return None
    if isinstance(lengths, torch.Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        # tolist, not numpy(): inside torch.func transforms a tensor has no storage to read
        arr = np.asarray(lengths.tolist(), dtype=np.int64 if lengths.numel() == 0 else None)
    else:
        arr = np.asarray(lengths)
    if arr.dtype == object:  # numpy keeps Python ints beyond int64 as objects
        items = arr.ravel().tolist()
        huge = [(i, v) for i, v in enumerate(items) if is_int(v)
                and not -2**63 <= v < 2**63]
        if huge and all(is_int(v) for v in items):
            i, v = huge[0]
            bound = f"<= S{'' if S is None else f' = {S}'}" if v > 0 else f">= {minimum}"
            raise ShapeError(f"lengths[{i}] = {v} is out of range; expected a length {bound}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if B is not None and arr.shape != (B,):
        raise ShapeError(f"lengths must have shape ({B},) (one per batch row), got shape {arr.shape}")
    return arr.astype(np.int64)


def _check_kind(kind):
    """An attention kind: TypeError for a non-str, ValueError (as Attention's constructor) for an
    unknown one."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a str, one of {', '.join(ATTENTION_KINDS)}, got {type(kind).__name__}")
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ATTENTION_KINDS)}, got {kind!r}")
    return kind


# ---------------------------------------------------------------------------------------------
# Functions


def _transformed(tensors):
    """True if a tensor is seen through a torch.func transform (grad, jacrev, jvp, vmap) or
    carries a forward-mode tangent: the kernels read raw memory, which such tensors do not have."""
    wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", lambda t: False)
    return any(isinstance(t, torch.Tensor) and (wrapped(t) or forward_ad.unpack_dual(t).tangent is not None)
               for t in tensors)


class _KernelFunction(torch.autograd.Function):
    """A Function whose forward and backward are s2sext kernels and whose ``reference`` (its
    equations in torch ops) serves wherever a kernel cannot: under torch.func transforms and
    forward-mode AD (``apply`` runs the reference instead), and in a backward asked for a graph
    (create_graph=True: see ``differentiable_grads``).

    ``apply`` first runs ``prepare`` (the arguments' types, device and dtypes, lengths and kind:
    the checks torch tensors need) and then, on either path, the kernel's own checks of shapes and
    lengths: the forward runs the kernel; the reference path runs it on zero arrays of the same
    shapes first (``kernel``). So both paths raise the same exceptions with the same messages (a
    fully masked attention row is an error, not NaN, on both)."""

    @classmethod
    def apply(cls, *args, **kwargs):
        args = cls.prepare(*args, **kwargs)
        if _transformed(args):
            cls.kernel(*(_zeros_like(a) if isinstance(a, torch.Tensor) else a for a in args))
            return cls.reference(*args)
        return super().apply(*args)


def _validate_all(names, tensors):
    """The tensors, validated, all of the first one's dtype."""
    first = _validate(names[0], tensors[0])
    return [first, *(_validate(n, t, first.dtype) for n, t in zip(names[1:], tensors[1:]))]


_LSTM_NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b")


class LSTMFunction(_KernelFunction):
    """``hs, hT, cT = LSTMFunction.apply(x [B,S,I], h0 [B,H], c0 [B,H], w_ih [4H,I], w_hh [4H,H],
    b [4H], lengths [B] or None)`` with :func:`s2sext.ops.lstm_forward`'s semantics (state carried
    past a length, outputs zero there). Differentiable to any order."""

    @staticmethod
    def prepare(x, h0, c0, w_ih, w_hh, b, lengths=None):
        x, *rest = _validate_all(_LSTM_NAMES, (x, h0, c0, w_ih, w_hh, b))
        B, S = x.shape[:2] if x.dim() == 3 else (None, None)  # a wrong rank: the kernel's error
        return (x, *rest, _lengths(lengths, B, S))

    @staticmethod
    def kernel(x, h0, c0, w_ih, w_hh, b, lengths):
        return _kernel(ops.lstm_forward, x, h0, c0, w_ih, w_hh, b, lengths)

    @staticmethod
    def reference(x, h0, c0, w_ih, w_hh, b, lengths=None):
        return lstm_reference(x, h0, c0, w_ih, w_hh, b, lengths)

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b, lengths):
        hs, hT, cT, cache = LSTMFunction.kernel(*map(_numpy, (x, h0, c0, w_ih, w_hh, b)), lengths)
        ctx.lengths, ctx.cache = lengths, cache
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b)
        return _out(hs), _out(hT), _out(cT)

    @staticmethod
    def backward(ctx, dhs, dhT, dcT):
        if torch.is_grad_enabled():  # create_graph=True
            grads = differentiable_grads(lambda *t: LSTMFunction.reference(*t, ctx.lengths), ctx.saved_tensors,
                                          ctx.needs_input_grad[:6], (dhs, dhT, dcT))
            return (*grads, None)
        dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_backward(_grad(dhs), _grad(dhT), _grad(dcT), ctx.cache)
        return _out(dx), _out(dh0), _out(dc0), _out(dw_ih), _out(dw_hh), _out(db), None


class LSTMCellFunction(_KernelFunction):
    """``h1, c1 = LSTMCellFunction.apply(x [B,I], h0 [B,H], c0 [B,H], w_ih, w_hh, b)``:
    ``torch.nn.LSTMCell``'s equations with one bias ``b = bias_ih + bias_hh``. Differentiable to
    any order."""

    @staticmethod
    def prepare(x, h0, c0, w_ih, w_hh, b):
        return tuple(_validate_all(_LSTM_NAMES, (x, h0, c0, w_ih, w_hh, b)))

    @staticmethod
    def kernel(x, h0, c0, w_ih, w_hh, b):
        return _kernel(ops.lstm_cell_forward, x, h0, c0, w_ih, w_hh, b)

    @staticmethod
    def reference(x, h0, c0, w_ih, w_hh, b):
        return cell_reference(x @ w_ih.T + b, h0, c0, w_hh)

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b):
        h1, c1, cache = LSTMCellFunction.kernel(*map(_numpy, (x, h0, c0, w_ih, w_hh, b)))
        ctx.cache = cache
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b)
        return _out(h1), _out(c1)

    @staticmethod
    def backward(ctx, dh1, dc1):
        if torch.is_grad_enabled():  # create_graph=True
            return tuple(differentiable_grads(LSTMCellFunction.reference, ctx.saved_tensors, ctx.needs_input_grad,
                                               (dh1, dc1)))
        grads = ops.lstm_cell_backward(_grad(dh1), _grad(dc1), ctx.cache)
        return tuple(_out(g) for g in grads)


class AttentionWeightFunction(_KernelFunction):
    """``a = AttentionWeightFunction.apply(hs [B,S,H], q [B,H] or [B,T,H], kind, lengths, *params)``:
    the masked softmax of :func:`s2sext.ops.attention_weight_forward`'s scores. Differentiable to
    any order."""

    @staticmethod
    def prepare(hs, q, kind, lengths, *params):
        hs, q, *params = _validate_all(("hs", "q", *(f"params[{i}]" for i in range(len(params)))), (hs, q, *params))
        B, S = hs.shape[:2] if hs.dim() == 3 else (None, None)  # a wrong rank: the kernel's error
        return (hs, q, _check_kind(kind), _lengths(lengths, B, S, minimum=1), *params)

    @staticmethod
    def kernel(hs, q, kind, lengths, *params):
        return _kernel(ops.attention_weight_forward, hs, q, kind, params, lengths)

    @staticmethod
    def reference(hs, q, kind, lengths, *params):
        return attention_reference(hs, q, kind, lengths, *params)

    @staticmethod
    def forward(ctx, hs, q, kind, lengths, *params):
        a, cache = AttentionWeightFunction.kernel(_numpy(hs), _numpy(q), kind, lengths, *map(_numpy, params))
        ctx.kind, ctx.lengths, ctx.cache = kind, lengths, cache
        ctx.save_for_backward(hs, q, *params)
        return _out(a)

    @staticmethod
    def backward(ctx, da):
        if torch.is_grad_enabled():  # create_graph=True
            needs = (*ctx.needs_input_grad[:2], *ctx.needs_input_grad[4:])
            grads = differentiable_grads(
                lambda hs, q, *p: AttentionWeightFunction.reference(hs, q, ctx.kind, ctx.lengths, *p),
                ctx.saved_tensors, needs, (da,))
            return (grads[0], grads[1], None, None, *grads[2:])
        dhs, dq, dparams = ops.attention_weight_backward(_grad(da), ctx.cache)
        return (_out(dhs), _out(dq), None, None, *(_out(d) for d in dparams))


class WeightSumFunction(_KernelFunction):
    """``c = WeightSumFunction.apply(hs [B,S,H], a [B,S] or [B,T,S])``: ``c = sum_s a_s hs_s``.
    Differentiable to any order."""

    @staticmethod
    def prepare(hs, a):
        return tuple(_validate_all(("hs", "a"), (hs, a)))

    @staticmethod
    def kernel(hs, a):
        return _kernel(ops.weight_sum_forward, hs, a)

    @staticmethod
    def reference(hs, a):
        return (a.unsqueeze(1) @ hs).squeeze(1) if a.dim() == 2 else a @ hs

    @staticmethod
    def forward(ctx, hs, a):
        ctx.save_for_backward(hs, a)
        return _out(WeightSumFunction.kernel(_numpy(hs), _numpy(a)))

    @staticmethod
    def backward(ctx, dc):
        if torch.is_grad_enabled():  # create_graph=True
            return tuple(differentiable_grads(WeightSumFunction.reference, ctx.saved_tensors, ctx.needs_input_grad,
                                               (dc,)))
        hs, a = ctx.saved_tensors
        dhs, da = ops.weight_sum_backward(_grad(dc), hs.detach().numpy(), a.detach().numpy())
        return _out(dhs), _out(da)


# ---------------------------------------------------------------------------------------------
# Modules


def _reverse_within(x, lengths):
    """x [B, S, ...] with each row reversed within its length (padding in place); its own inverse."""
    B, S = x.shape[0], x.shape[1]
    t = torch.arange(S).unsqueeze(0)
    L = torch.as_tensor(lengths, dtype=torch.long).unsqueeze(1)
    index = torch.where(t < L, L - 1 - t, t)
    return x[torch.arange(B).unsqueeze(1), index]


# PackedSequence <-> padded in torch ops, not torch's pack_padded_sequence/pad_packed_sequence:
# those read raw memory, which tensors inside torch.func transforms do not have. The layout is
# torch's: data holds step 0 of every (sorted) row, then step 1 of the rows still running, ...


def _packed_index(batch_sizes):
    """For a PackedSequence's batch_sizes [T]: ``valid`` [B, T] (row j of the sorted batch runs at
    step t) and ``index`` [B, T] (that step's row in data; len(data) where it does not run)."""
    sizes = torch.as_tensor(batch_sizes.tolist(), dtype=torch.long)
    B, N = int(sizes[0]) if len(sizes) else 0, int(sizes.sum())
    rows = torch.arange(B).unsqueeze(1)
    valid = rows < sizes.unsqueeze(0)
    starts = torch.cumsum(sizes, 0) - sizes
    return valid, torch.where(valid, starts.unsqueeze(0) + rows, N)


def _unpack(seq):
    """A PackedSequence as ``(x [B, T, .], lengths [B])``, rows in the original order (as
    ``pad_packed_sequence(seq, batch_first=True)``)."""
    valid, index = _packed_index(seq.batch_sizes)
    data = torch.cat([seq.data, seq.data.new_zeros((1, *seq.data.shape[1:]))])  # the padding row
    x, lengths = data[index], valid.sum(1)
    if seq.unsorted_indices is not None:
        x, lengths = x[seq.unsorted_indices], lengths[seq.unsorted_indices]
    return x, lengths


def _repack(x, like):
    """x [B, T, .] (rows in the original order) as a PackedSequence laid out as ``like``."""
    valid, _ = _packed_index(like.batch_sizes)
    steps, rows = valid.T.nonzero(as_tuple=True)  # step-major, as data
    sorted_x = x if like.sorted_indices is None else x[like.sorted_indices]
    return PackedSequence(sorted_x[rows, steps], like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def _nn_int(name, value, allow_bool=False):
    """As nn.LSTM checks a size's type (``isinstance(value, int)``: a numpy integer is refused, and
    a bool accepted only where nn.LSTM takes one), a TypeError otherwise. Not checks.check_int,
    which accepts numpy integers and refuses bools."""
    if not isinstance(value, int) or (isinstance(value, bool) and not allow_bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__} ({value!r})")
    return value


def _nn_positive_int(name, value, allow_bool=False):
    """As nn.LSTM checks its sizes: a TypeError for a non-int, a ValueError for one below 1."""
    if _nn_int(name, value, allow_bool) <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")
    return value


def _positive_int(name, value):
    """A size of s2sext's own modules (Attention): the project's int check (a bool is not an int)."""
    return check_int(value, name, minimum=1)


def _shape(t):
    return tuple(t.shape)


class LSTM(torch.nn.Module):
    """A drop-in for ``torch.nn.LSTM`` running on s2sext's kernels.

    Same constructor (``input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0``) with ``nn.LSTM``'s argument checks and
    exception types, same parameters (``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``,
    ...; in the same order, so one seed gives the same initial weights), same attributes (``mode``,
    ``all_weights``, ``_flat_weights_names``, ``_all_weights``), same inputs (a tensor, batched or
    not, or a ``PackedSequence``; optional ``(h_0, c_0)``) and outputs (``output, (h_n, c_n)``).
    Gradients are differentiable again (``create_graph=True``). With ``proj_size > 0`` a layer runs
    as torch ops (the kernels have no projection). Wrong sizes raise :class:`ShapeError` (a
    ``ValueError`` and a ``RuntimeError``), dtypes :class:`DTypeError`, with the shapes passed.
    CPU and float32/float64 only.
    """

    mode = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        # torch.nn.LSTM's checks (RNNBase.__init__), in its order and with its exception types
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             f"element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          stacklevel=2)
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__} ({value!r})")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            _nn_positive_int(name, value, allow_bool=True)  # nn.LSTM takes True as 1 here
        _nn_int("proj_size", proj_size)
        if proj_size < 0:
            raise ValueError(f"proj_size should be a positive integer or zero to disable projections, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and "
                             f"hidden_size={hidden_size}")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"s2sext.torch.LSTM runs on the CPU; got device={device}")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise DTypeError(f"s2sext.torch.LSTM supports float32 and float64; got dtype={dtype}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        kw = {"dtype": dtype or torch.get_default_dtype()}
        G, H_out = 4 * hidden_size, proj_size or hidden_size
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            for suffix in self._suffixes():
                shapes = {"weight_ih": (G, input_size if layer == 0 else H_out * len(self._suffixes())),
                          "weight_hh": (G, H_out)}
                if bias:
                    shapes.update(bias_ih=(G,), bias_hh=(G,))
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    names.append(f"{kind}_l{layer}{suffix}")
                    setattr(self, names[-1], torch.nn.Parameter(torch.empty(shape, **kw)))
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    @property
    def all_weights(self):
        """Per layer and direction, its parameters (``w_ih, w_hh[, b_ih, b_hh][, w_hr]``), as nn.LSTM's."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    @property
    def _flat_weights(self):
        return [getattr(self, name) for name in self._flat_weights_names]

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            torch.nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """A no-op, for code written for torch.nn.LSTM (whose cuDNN path wants one weight buffer)."""

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = (("proj_size", 0), ("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0),
                    ("bidirectional", False))
        for name, default in defaults:  # nn.LSTM's repr: the arguments that differ from its defaults
            value = getattr(self, name)
            if (value != default) if name in ("proj_size", "num_layers", "dropout") else (value is not default):
                s += f", {name}={value}"
        return s

    def _weights(self, layer, suffix):
        w_ih = getattr(self, f"weight_ih_l{layer}{suffix}")
        w_hh = getattr(self, f"weight_hh_l{layer}{suffix}")
        w_hr = getattr(self, f"weight_hr_l{layer}{suffix}") if self.proj_size else None
        if self.bias:
            b = getattr(self, f"bias_ih_l{layer}{suffix}") + getattr(self, f"bias_hh_l{layer}{suffix}")
        else:
            b = torch.zeros(w_ih.shape[0], dtype=w_ih.dtype)
        return w_ih, w_hh, b, w_hr

    def _check_features(self, x, dtype):
        """nn.LSTM's check_input: the input's dtype is the weights', its last size input_size."""
        if x.dtype != dtype:
            raise DTypeError(f"input has dtype {x.dtype}, which does not match the weights' dtype {dtype}. Convert "
                             f"input: input.to({dtype}), or convert model: model.to({x.dtype})")
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"input has {x.shape[-1]} features (shape {_shape(x)}); this LSTM was built with "
                             f"input_size={self.input_size} (input.size(-1) must be equal to input_size)")

    def _initial_state(self, hx, B, batched, dtype):
        """(h_0, c_0) as [L*D, B, .], checked against the shapes the caller had to pass."""
        LD, H, H_out = self.num_layers * len(self._suffixes()), self.hidden_size, self.proj_size or self.hidden_size
        if hx is None:
            return torch.zeros(LD, B, H_out, dtype=dtype), torch.zeros(LD, B, H, dtype=dtype)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2 or not all(isinstance(t, torch.Tensor) for t in hx):
            raise TypeError(f"hx must be a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}")
        rank = 3 if batched else 2
        if hx[0].dim() != rank or hx[1].dim() != rank:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise ShapeError(f"For {kind} input, hx and cx should also be {rank}-D but got ({hx[0].dim()}-D, "
                             f"{hx[1].dim()}-D) tensors")
        last = "proj_size" if self.proj_size else "hidden_size"
        for name, t, size, size_name in (("h_0", hx[0], H_out, last), ("c_0", hx[1], H, "hidden_size")):
            want = (LD, B, size) if batched else (LD, size)
            if _shape(t) != want:
                letters = f"(num_layers * num_directions, {'batch, ' if batched else ''}{size_name})"
                raise ShapeError(f"{name} has shape {_shape(t)}; expected {want} = {letters}")
            if t.dtype != dtype:
                raise DTypeError(f"{name} has dtype {t.dtype}; expected the weights' dtype {dtype}")
        return hx if batched else tuple(t.unsqueeze(1) for t in hx)

    def _dropout(self, x, packed, lengths):
        """Dropout of a layer's output x [B, S, .] as nn.LSTM draws it, so that one seed gives
        its masks: over the time-major [S, B, .] tensor, or over a packed sequence's data."""
        p = self.dropout
        if packed is None:
            return torch.nn.functional.dropout(x.transpose(0, 1).contiguous(), p, training=True).transpose(0, 1)
        seq = _repack(x, packed)
        seq = PackedSequence(torch.nn.functional.dropout(seq.data, p, training=True), seq.batch_sizes,
                             seq.sorted_indices, seq.unsorted_indices)
        return _unpack(seq)[0]

    def forward(self, input, hx=None):
        dtype = self.weight_ih_l0.dtype
        packed = isinstance(input, PackedSequence)
        if packed:
            if input.data.dim() != 2:
                raise ShapeError(f"input must have 2 dimensions, got {input.data.dim()} (a PackedSequence's data)")
            self._check_features(input.data, dtype)
            x, lengths = _unpack(input)  # rows in the original order
            batched = True
        else:
            if not isinstance(input, torch.Tensor):
                raise TypeError(f"input must be a torch.Tensor or a PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            self._check_features(input, dtype)
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(0 if self.batch_first else 1)  # unbatched [S, I]: one row
            x = x if self.batch_first else x.transpose(0, 1)
            lengths = None
        B, S = x.shape[0], x.shape[1]
        h0, c0 = self._initial_state(hx, B, batched, dtype)
        if S == 0:
            raise ShapeError(f"Expected sequence length to be larger than 0 in RNN (input has shape {_shape(input)})")
        _validate("input", x)
        x = x.contiguous()
        D = len(self._suffixes())
        h_n, c_n = [], []
        lengths_list = None if lengths is None else lengths.tolist()
        # the kernels, or torch ops for a projection (differentiable to any order either way)
        run = lstm_reference if self.proj_size else LSTMFunction.apply
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(self._suffixes()):
                w_ih, w_hh, b, w_hr = self._weights(layer, suffix)
                extra = (w_hr,) if self.proj_size else ()
                index = layer * D + d
                if d == 0:
                    hs, hT, cT = run(x, h0[index], c0[index], w_ih, w_hh, b, lengths_list, *extra)
                else:
                    lens = lengths if lengths is not None else torch.full((B,), S, dtype=torch.long)
                    x_rev = _reverse_within(x, lens)
                    hs, hT, cT = run(x_rev, h0[index], c0[index], w_ih, w_hh, b, lengths_list, *extra)
                    hs = _reverse_within(hs, lens)
                outputs.append(hs)
                h_n.append(hT)
                c_n.append(cT)
            x = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = self._dropout(x, input if packed else None, lengths)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if packed:
            return _repack(x, input), (h_n, c_n)
        out = x if self.batch_first else x.transpose(0, 1)
        if not batched:
            return out.squeeze(0 if self.batch_first else 1), (h_n.squeeze(1), c_n.squeeze(1))
        return out, (h_n, c_n)


class Attention(torch.nn.Module):
    """Attention on s2sext's kernels: ``context, weights = attention(hs [B,S,H], q [B,H] or
    [B,T,H], lengths=None)``; kinds ``dot``, ``scaled_dot``, ``general`` (``w_a [H,H]``), ``concat``
    (``w_q, w_k [A,H]``, ``v [A]``; with ``query_bias=True`` also ``b_q [A]``:
    ``v . tanh(W_q q + b_q + W_k hs)``), ``location`` (``w_a [max_source_length, H]``).
    Differentiable to any order; wrong sizes raise :class:`ShapeError`, dtypes :class:`DTypeError`."""

    def __init__(self, kind, hidden_size, attention_size=None, max_source_length=None, dtype=None,
                 query_bias=False):
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ATTENTION_KINDS)}, got {kind!r}")
        _positive_int("hidden_size", hidden_size)
        if attention_size is not None:
            _positive_int("attention_size", attention_size)
        if kind == "location":
            if max_source_length is None:
                raise ValueError("location attention needs max_source_length")
            _positive_int("max_source_length", max_source_length)
        check_bool(query_bias, "query_bias")
        if query_bias and kind != "concat":
            raise ValueError(f"query_bias is concat's option; got kind={kind!r}")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise DTypeError(f"s2sext.torch.Attention supports float32 and float64; got dtype={dtype}")
        self.kind, self.hidden_size = kind, hidden_size
        kw = {"dtype": dtype or torch.get_default_dtype()}
        bound = 1.0 / math.sqrt(hidden_size)
        shapes = attention_parameter_shapes(kind, query_bias, H=hidden_size, A=attention_size or hidden_size,
                                            S_max=max_source_length)
        for name, shape in shapes:
            setattr(self, name, torch.nn.Parameter(torch.empty(*shape, **kw).uniform_(-bound, bound)))
        self._param_names = tuple(name for name, _ in shapes)
        self.query_bias = query_bias

    def params(self):
        return tuple(getattr(self, name) for name in self._param_names)

    def forward(self, hs, q, lengths=None):
        for name, t, ranks in (("hs", hs, (3,)), ("q", q, (2, 3))):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() not in ranks or t.shape[-1] != self.hidden_size:
                want = " or ".join({2: "[B, H]", 3: "[B, T, H]" if name == "q" else "[B, S, H]"}[r] for r in ranks)
                raise ShapeError(f"{name} has shape {_shape(t)}; expected {want} with H = hidden_size = "
                                 f"{self.hidden_size}")
        params = self.params()
        if params and hs.dtype != params[0].dtype:
            raise DTypeError(f"hs has dtype {hs.dtype}, but this Attention's parameters are {params[0].dtype}")
        lengths_np = None if lengths is None else _lengths(lengths, hs.shape[0])
        a = AttentionWeightFunction.apply(hs, q, self.kind, lengths_np, *params)
        return WeightSumFunction.apply(hs, a), a
