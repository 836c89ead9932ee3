"""s2sext.spec is the one table of the model's parameters: docs/model.md's parameter table says the
same, row for row, and the modules that name kinds, specials and tokenizers take them from it."""

import itertools
import os
import re

import pytest

from s2sext import _core, ops, spec
from s2sext.config import Config
from s2sext.text import TOKENIZERS

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "model.md")


def doc_rows():
    """The (name, shape) pairs of docs/model.md's parameter table, names and shapes as written
    (``encoder.l{k}.w_ih``, ``[4He, I_k]``): a row's later names (``.w_hh``) replace the first one's
    last part, and "as above" repeats the row above's shapes."""
    with open(DOC, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = lines.index("| name | shape | when |") + 2
    rows, previous = [], None
    for line in itertools.takewhile(lambda l: l.startswith("|"), lines[start:]):
        name_cell, shape_cell, _ = [cell.strip() for cell in line.strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", name_cell)
        names = [names[0]] + [names[0].rsplit(".", 1)[0] + n if n.startswith(".") else n for n in names[1:]]
        shapes = previous if shape_cell == "as above" else re.findall(r"`([^`]+)`", shape_cell)
        assert len(shapes) == len(names), line
        rows += zip(names, shapes)
        previous = shapes
    return rows


def configs():
    """Configurations that between them have every row of the table."""
    base = dict(src_vocab_size=7, tgt_vocab_size=9, embed_size=5, hidden_size=6, num_layers=2,
                bidirectional=False, attention="dot", attention_style="luong", input_feeding=False,
                max_source_length=11, bridge="linear", combine_activation="tanh", attention_query_bias=False)
    for kind in (None,) + spec.ATTENTION_KINDS:
        for bidirectional, bridge in ((False, "linear"), (True, "linear"), (True, "concat")):
            yield {**base, "attention": kind, "bidirectional": bidirectional, "bridge": bridge}
    yield {**base, "attention": "concat", "attention_query_bias": True}


def test_the_parameter_table_of_docs_model_md_is_the_spec():
    ours = {(name, letters) for config in configs() for name, letters, _ in spec.iter_parameter_rows(config)}
    assert sorted(ours) == sorted(set(doc_rows()))


@pytest.mark.parametrize("config", list(configs()))
def test_parameter_table_gives_every_shape_of_a_config(config):
    table = spec.parameter_table(config)
    assert table == spec.parameter_table(Config(**config))
    assert len({name for name, _ in table}) == len(table)
    assert all(isinstance(d, int) and d > 0 for _, shape in table for d in shape)
    shapes = dict(table)
    H, E = config["hidden_size"], config["embed_size"]
    He = H // 2 if config["bridge"] == "concat" else H
    assert shapes["encoder.l1.w_ih"] == (4 * He, (2 if config["bidirectional"] else 1) * He)
    assert shapes["decoder.l0.w_ih"] == (4 * H, E)
    assert shapes["out.weight"] == (config["tgt_vocab_size"], H)


def test_names_come_from_the_spec():
    assert ops.ATTENTION_KINDS is spec.ATTENTION_KINDS
    assert tuple(TOKENIZERS) == spec.TOKENIZER_NAMES
    assert spec.SPECIALS[spec.PAD_ID] == spec.PAD and spec.SPECIALS[spec.SOS_ID] == spec.SOS
    assert spec.SPECIALS[spec.EOS_ID] == spec.EOS and spec.SPECIALS[spec.UNK_ID] == spec.UNK


def test_attention_parameters():
    assert spec.attention_parameter_names("dot") == ()
    assert spec.attention_parameter_names("concat", query_bias=True) == ("w_q", "w_k", "v", "b_q")
    assert spec.attention_parameter_shapes("concat", True, H=4, A=3) == [
        ("w_q", (3, 4)), ("w_k", (3, 4)), ("v", (3,)), ("b_q", (3,))]
    assert spec.attention_parameter_shapes("location", H=4, S_max=9) == [("w_a", (9, 4))]


# ---------------------------------------------------------------------------------------------
# The C++ core's spec (src/cpp/spec/model_spec.h) is the same table


@pytest.mark.parametrize("config", list(configs()))
def test_the_cpp_parameter_table_is_python_s(config):
    assert _core.parameter_table(config) == [(name, tuple(shape)) for name, shape in spec.parameter_table(config)]


def test_the_cpp_parameter_table_with_more_layers_and_feeding():
    base = {**next(configs()), "attention": "dot"}
    for changes in (dict(num_layers=3, bidirectional=True), dict(input_feeding=True),
                    dict(attention="concat", attention_style="bahdanau"), dict(attention=None, num_layers=1)):
        config = {**base, **changes}
        assert _core.parameter_table(config) == [(n, tuple(s)) for n, s in spec.parameter_table(config)]


def test_the_cpp_kinds_and_special_ids_are_python_s():
    assert tuple(_core.attention_kinds()) == spec.ATTENTION_KINDS
    assert _core.special_ids() == {token: i for i, token in enumerate(spec.SPECIALS)}
    assert tuple(_core.tokenizer_names()) == spec.TOKENIZER_NAMES
    assert [spec.PAD_ID, spec.SOS_ID, spec.EOS_ID, spec.UNK_ID] == [0, 1, 2, 3]


def test_the_cpp_configuration_reader_refuses_what_config_refuses():
    base = {**next(configs()), "attention": "dot"}
    for changes, match in [(dict(bridge="mlp"), r"config 'bridge' is 'mlp', not 'linear' or 'concat'"),
                           (dict(attention="luong"), r"config 'attention' is 'luong', not a known kind"),
                           (dict(attention="none"), r"config 'attention' must be null or the name of a kind"),
                           (dict(hidden_size=4.0), r"config 'hidden_size' must be an integer"),
                           (dict(bidirectional=1), r"config 'bidirectional' must be true or false"),
                           (dict(attention_style=None), r"config 'attention_style' must be a string"),
                           (dict(input_feeding=True, attention_style="bahdanau"), r"config: input_feeding needs")]:
        with pytest.raises(ValueError, match=match):
            _core.parameter_table({**base, **changes})
        with pytest.raises((TypeError, ValueError)):
            Config(**{**base, **changes}).validate()
    config = dict(base)
    del config["hidden_size"]
    with pytest.raises(ValueError, match="config lacks 'hidden_size'"):
        _core.parameter_table(config)
