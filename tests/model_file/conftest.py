"""Fixtures of the model-file tests: `model_path`, a small file of every tensor kind (test_serialize*),
and `bases`, the small valid models the loader corpus is built from (test_model_file_*), the last of
them with int8 matrices.
"""
from __future__ import annotations

import pytest

from s2sext import Seq2Seq
from s2sext.serialize import write_model_file

from corpus_support import BASES, INT8_BASES
from serialize_support import HEADER, make_tensors


@pytest.fixture
def model_path(tmp_path, rng):
    path = tmp_path / "model.s2sx"
    write_model_file(path, HEADER, make_tensors(rng))
    return path


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bases")
    files = {}
    models = {}
    for name, options in BASES.items():
        model = Seq2Seq(list("abcd"), ["w", "x", "y", "z", "🙂"], embed_size=3, hidden_size=4, seed=0, **options)
        model.save(directory / name)
        files[name] = (directory / name).read_bytes()
        models[name] = model
    for name, base in INT8_BASES.items():
        models[base].save(directory / name, dtype="int8")
        files[name] = (directory / name).read_bytes()
    return files
