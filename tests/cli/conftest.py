"""Fixtures of the ``s2sext`` command's tests (s2sext.cli).

Models are tiny (reverse task, 300 pairs, hidden 16, embed 8, one or two epochs). `model_path` is
one such model trained by the CLI once per test module and only read by the tests.
"""

import pytest

import s2sext
import s2sext.cli
from s2sext import Seq2Seq
from s2sext.cli import main

from cli_support import TINY


@pytest.fixture(autouse=True)
def _restore_threads():
    """--threads changes the process-wide kernel thread count; put it back after every test."""
    before = s2sext.get_num_threads()
    yield
    s2sext.set_num_threads(before)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A tiny dot-attention model trained for two epochs by the CLI (shared, read-only)."""
    path = tmp_path_factory.mktemp("model") / "tiny.s2s"
    assert main(["train", *TINY, "--epochs", "2", "--seed", "1", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return Seq2Seq.load(model_path)
