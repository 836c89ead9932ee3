"""The compiled core's type stub (python/s2sext/_core.pyi) matches what s2sext._core registers.

Both ways: every public name of the module is in the stub and every name of the stub is in the
module; a function is a function and a class a class on both sides; each class has the same public
members (a method is a method, a property or attribute a property); and each function and method
takes as many parameters as the compiled one, with the same names wherever the binding names its
parameters, and a default on the same ones. pybind11 writes the compiled signatures into __doc__
("name(a: type, b: type = default) -> type", one line per overload), which is parsed here.
"""
import ast
import re
from pathlib import Path

import pytest

import s2sext
from s2sext import _core

STUB = Path(s2sext.__file__).parent / "_core.pyi"
POSITIONAL = re.compile(r"arg\d+")  # the name pybind11 gives a parameter the binding leaves unnamed


def _stub():
    """{name: ast node} of the stub's top-level functions and classes."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def _stub_members(cls):
    """{name: "method", "property" or "attribute"} of a stub class's public members (and __init__)."""
    members = {}
    for item in cls.body:
        if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
            is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list)
            members[item.name] = "property" if is_property else "method"
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members[item.target.id] = "attribute"
    return members


def _stub_params(fn, method):
    """[(name, has_default)] of a stub function's parameters, without self."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [False] * (len(positional) - len(args.defaults)) + [True] * len(args.defaults)
    params = [(a.arg, d) for a, d in zip(positional, defaults)]
    params += [(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    assert args.vararg is None and args.kwarg is None, f"{fn.name}: *args/**kwargs in the stub"
    return params[1:] if method else params


def _split_top_level(text):
    """Splits at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:])
    return [p.strip() for p in parts]


def _compiled_signatures(obj, name, method):
    """[[(name, has_default)], ...]: one list per overload pybind11 lists in obj.__doc__."""
    doc = obj.__doc__ or ""
    lines = re.findall(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> .*$", doc, re.M)
    if doc.startswith(f"{name}(*args, **kwargs)"):  # overloaded: the numbered lines follow
        lines = lines[1:]
    assert lines, f"{name}: no signature in its __doc__: {doc[:200]!r}"
    signatures = []
    for line in lines:
        params = []
        for part in _split_top_level(line):
            pname, _, rest = part.partition(":")
            params.append((pname.strip(), "=" in rest))
        signatures.append(params[1:] if method else params)
    return signatures


def _compiled_members(cls):
    """{name: "method" or "property"} of a compiled class's public members, and __init__ where the
    binding defines a constructor (pybind11 gives a class without one an __init__ that raises)."""
    members = {}
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if name == "__init__" and not (value.__doc__ or "").startswith("__init__(self"):
            continue
        members[name] = "property" if isinstance(value, property) else "method"
    return members


def _functions():
    """(label, compiled callable, its name, stub FunctionDef, is a method) for every function and method."""
    out = []
    for name, node in _stub().items():
        if isinstance(node, ast.FunctionDef):
            out.append((name, getattr(_core, name, None), name, node, False))
        else:
            cls = getattr(_core, name, None)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and _stub_members(node).get(item.name) == "method":
                    out.append((f"{name}.{item.name}", vars(cls).get(item.name) if cls else None, item.name, item,
                                True))
    return out


def test_core_stub_lists_exactly_the_registered_names():
    """_core.pyi once listed LSTMCache.x_tm/h_all (long gone) and lacked Engine, linear_*,
    adam_update, grad_sum_squares and check_model_file."""
    stub = _stub()
    registered = {name for name in dir(_core) if not name.startswith("_")}
    assert set(stub) == registered, (sorted(set(stub) - registered), sorted(registered - set(stub)))
    for name, node in stub.items():
        if isinstance(node, ast.ClassDef):
            members = {m for m in _stub_members(node) if not m.startswith("_")}
            public = {m for m in dir(getattr(_core, name)) if not m.startswith("_")}
            assert members == public, (name, sorted(members - public), sorted(public - members))


def test_functions_and_classes_are_the_same_kind():
    for name, node in _stub().items():
        compiled = getattr(_core, name, None)
        assert compiled is not None, f"{name}: in the stub, not in _core"
        if isinstance(node, ast.ClassDef):
            assert isinstance(compiled, type), f"{name}: a class in the stub, {type(compiled).__name__} in _core"
        else:
            assert callable(compiled) and not isinstance(compiled, type), f"{name}: a function in the stub"


def test_classes_have_the_same_public_members():
    for name, node in _stub().items():
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(_core, name, None)
        assert cls is not None, f"{name}: in the stub, not in _core"
        stub = {m: ("property" if kind == "attribute" else kind) for m, kind in _stub_members(node).items()}
        compiled = _compiled_members(cls)
        assert set(stub) == set(compiled), (name, sorted(set(stub) - set(compiled)),
                                            sorted(set(compiled) - set(stub)))
        for member, kind in stub.items():
            assert kind == compiled[member], f"{name}.{member}: a {kind} in the stub, a {compiled[member]} in _core"


@pytest.mark.parametrize("label, compiled, name, node, method", [pytest.param(*f, id=f[0]) for f in _functions()])
def test_parameters_match(label, compiled, name, node, method):
    """As many parameters as the compiled function, defaults on the same ones, and the same names: every
    binding names its parameters (pybind11 would call an unnamed one arg0, arg1, ...)."""
    assert compiled is not None, f"{label}: not in _core"
    stub = _stub_params(node, method)
    signatures = _compiled_signatures(compiled, name, method)
    assert len(signatures) == 1, f"{label}: overloaded in _core ({len(signatures)} signatures); the stub has one"
    params = signatures[0]
    assert len(stub) == len(params), (label, [p for p, _ in stub], [p for p, _ in params])
    for (stub_name, stub_default), (compiled_name, compiled_default) in zip(stub, params):
        assert not POSITIONAL.fullmatch(compiled_name), f"{label}: the binding leaves {stub_name} unnamed"
        assert stub_name == compiled_name, (label, [p for p, _ in stub], [p for p, _ in params])
        assert stub_default == compiled_default, f"{label}({stub_name}): a default on one side only"
