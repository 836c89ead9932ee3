"""s2sext.opennmt's file handling: safetensors weights, every refusal (each names the option or
tensor s2sext cannot express), the loader's safety, ``s2sext import-opennmt`` and its arguments.
"""
import copy
import json
import os
import types
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn

from s2sext import Seq2Seq
from s2sext.opennmt import from_opennmt, load_checkpoint, read_safetensors

from opennmt_twin import E, H, SRC_TOKENS, TGT_TOKENS, TwinNMT, VS, VT, _drop_opt, checkpoint, needs_safe_load


# ---------------------------------------------------------------------------------------------
# safetensors weights (-save_format safetensors: the .pt holds vocab/opt/optim only)


def write_safetensors(path, tensors, dtypes=None, header_edit=None, raw=None):
    """A .safetensors file written by hand from the format's description; dtypes[name] picks the
    stored dtype ("F32", "F16", "BF16", "F64")."""
    codes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        code = (dtypes or {}).get(name, "F32")
        t = t.to(codes[code])
        data = (t.view(torch.int16) if code == "BF16" else t).numpy().tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if header_edit:
        header_edit(header)
    text = raw if raw is not None else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(chunks))


@needs_safe_load
def test_safetensors_weights_match_the_pt_weights(tmp_path):
    twin = TwinNMT(2, "general", True, seed=7)
    full = checkpoint(twin)
    state = {**full["model"], **{f"generator.{k}": v for k, v in full["generator"].items()}}
    kinds = ["F32", "F16", "BF16", "F64"]
    dtypes = {name: kinds[i % 4] for i, name in enumerate(state)}
    write_safetensors(tmp_path / "w.safetensors", state, dtypes)
    pt = {k: v for k, v in full.items() if k not in ("model", "generator")}
    torch.save(pt, tmp_path / "ck.pt")
    model = from_opennmt(tmp_path / "ck.pt", weights=tmp_path / "w.safetensors")
    # The same tensors rounded through each dtype by torch, in a .pt: identical parameters.
    codes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    rounded = copy.deepcopy(full)
    for part in ("model", "generator"):
        for k in rounded[part]:
            key = k if part == "model" else f"generator.{k}"
            rounded[part][k] = rounded[part][k].to(codes[dtypes[key]])
    expected = from_opennmt(rounded)
    for name, value in expected.params.items():
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)


def _good_state():
    return {"a": torch.ones(2, 3), "b": torch.arange(4.0)}


@pytest.mark.parametrize("edit,raw,match", [
    (lambda h: h["a"].update(dtype="I64"), None, r"'a' has dtype 'I64'; expected a float dtype"),
    (lambda h: h["a"].update(shape=[3, 3]), None, r"'a': shape \[3, 3\] of F32 needs 36 bytes"),
    (lambda h: h["b"].update(data_offsets=[24, 10**12]), None, r"'b' has data_offsets .* within the 40 data bytes"),
    (lambda h: h["b"].update(data_offsets=[20, 36]), None, r"'b' starts at byte 20, expected 24"),
    (lambda h: h["a"].update(shape=[2, True]), None, r"shape \[2, True\]; expected a list of integers"),
    (lambda h: h.update(extra=[1]), None, r"'extra' must be an object with exactly dtype, shape and data_offsets"),
    (lambda h: h.update(__metadata__={"k": 1}), None, r"__metadata__ must map str to str"),
    (None, b"[" * 100000 + b"]" * 100000, r"header is not valid JSON \(RecursionError"),
    (None, b'{"a": 1, "a": 2}', r"header is not valid JSON .*key 'a' repeated"),
    (None, b"\xff\xfe", r"header is not valid JSON"),
    (None, b"[]", r"must be a JSON object, got list"),
])
def test_malformed_safetensors_are_refused(tmp_path, edit, raw, match):
    path = tmp_path / "bad.safetensors"
    write_safetensors(path, _good_state(), header_edit=edit, raw=raw)
    with pytest.raises(ValueError, match=match):
        read_safetensors(path)


def test_safetensors_sizes_are_checked_before_reading(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="2 bytes, too short"):
        read_safetensors(path)
    path.write_bytes((10**15).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match=r"header size is 1000000000000000 bytes; the file has 2"):
        read_safetensors(path)
    write_safetensors(path, _good_state())
    with open(path, "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(ValueError, match="cover 40 of the 44 data bytes"):
        read_safetensors(path)


def test_weights_argument_must_fit_the_checkpoint(tmp_path):
    twin = TwinNMT(1, "dot", False)
    write_safetensors(tmp_path / "w.safetensors", _good_state())
    with pytest.raises(ValueError, match="holds its weights .*weights= is only for"):
        from_opennmt(checkpoint(twin), weights=tmp_path / "w.safetensors")
    without = {k: v for k, v in checkpoint(twin).items() if k not in ("model", "generator")}
    with pytest.raises(ValueError, match="holds no weights .*weights=<the .safetensors file>"):
        from_opennmt(without)


# ---------------------------------------------------------------------------------------------
# Refusals: each names the option (or the tensor) s2sext cannot express


def _with_keys(**tensors):
    def edit(ck):
        for name, shape in tensors.items():
            if name.startswith("generator."):
                ck["generator"][name.split(".", 1)[1]] = torch.zeros(shape)
            else:
                ck["model"][name.replace("__", ".")] = torch.zeros(shape)
    return edit


def _opt(**changes):
    def edit(ck):
        for k, v in changes.items():
            setattr(ck["opt"], k, v)
    return edit


def _vocab(side, tokens):
    def edit(ck):
        ck["vocab"][side] = tokens
    return edit


def _gru_encoder(ck):
    gru = nn.GRU(E, H, 2, batch_first=True)
    for k, v in gru.state_dict().items():
        ck["model"][f"encoder.rnn.{k}"] = v


REFUSALS = {
    # options
    "brnn option, rnn weights": (dict(), _opt(encoder_type="brnn"),
                                 r"encoder_type = 'brnn', but the encoder weights are unidirectional"),
    "rnn option, brnn weights": (dict(brnn=True), _opt(encoder_type="rnn"),
                                 r"encoder_type = 'rnn', but the encoder weights are bidirectional"),
    "mlp option, general weights": (dict(), _opt(global_attention="mlp"),
                                    r"global_attention = 'mlp', but the weights hold 'general'"),
    "gru": (dict(), _opt(rnn_type="GRU"), r"option rnn_type = 'GRU'.*LSTMs"),
    "transformer": (dict(), _opt(encoder_type="transformer"), r"option encoder_type = 'transformer'"),
    "decoder_type": (dict(), _opt(decoder_type="transformer"), r"option decoder_type = 'transformer'"),
    "lm": (dict(), _opt(model_task="lm"), r"option model_task = 'lm'.*not language models"),
    "sparsemax": (dict(), _opt(global_attention_function="sparsemax"), r"global_attention_function = 'sparsemax'"),
    "generator_function": (dict(), _opt(generator_function="sparsemax"), r"generator_function = 'sparsemax'"),
    "copy": (dict(), _opt(copy_attn=True), r"option copy_attn = True: copy attention"),
    "coverage": (dict(), _opt(coverage_attn=True), r"option coverage_attn = True: coverage attention"),
    "context_gate": (dict(), _opt(context_gate="both"), r"option context_gate = 'both': a context gate"),
    "bridge": (dict(), _opt(bridge=True), r"option bridge = True: a learned bridge"),
    "position_encoding": (dict(), _opt(position_encoding=True), r"option position_encoding = True"),
    "features": (dict(), _opt(n_src_feats=1), r"option n_src_feats = 1: source features"),
    "lora": (dict(), _opt(lora_layers=["linear_values"]), r"option lora_layers = \['linear_values'\]: LoRA"),
    "unknown attention": (dict(), _opt(global_attention="bogus"), r"global_attention = 'bogus'"),
    # tensors alone (no options saved): the shapes and keys give it away
    "mlp without v": (dict(attention="mlp"), lambda ck: ck["model"].pop("decoder.attn.v.weight"),
                      r"'decoder.attn.v.weight' is None"),
    "mlp without linear_out.bias": (dict(attention="mlp"), lambda ck: ck["model"].pop("decoder.attn.linear_out.bias"),
                                    r"no 'decoder.attn.linear_out.bias'"),
    "gru shapes": (dict(), lambda ck: (_drop_opt(ck), _gru_encoder(ck)), r"\(24, 8\).*3H rows.*GRU"),
    "coverage key": (dict(), _with_keys(decoder__attn__linear_cover__weight=(H, 1)), r"linear_cover.*coverage_attn"),
    "copy key": (dict(), _with_keys(**{"generator.linear_copy.weight": (1, H)}), r"copy attention \(copy_attn\)"),
    "copy attn key": (dict(), _with_keys(decoder__copy_attn__linear_out__weight=(H, 2 * H)), r"copy_attn"),
    "context gate key": (dict(), _with_keys(decoder__context_gate__gate__weight=(H, H)), r"context_gate"),
    "bridge key": (dict(), _with_keys(encoder__bridge__0__weight=(H, H)), r"a learned bridge \(bridge\)"),
    "feature key": (dict(), _with_keys(encoder__embeddings__make_embedding__emb_luts__1__weight=(3, 2)),
                    r"source features"),
    "pe key": (dict(), _with_keys(encoder__embeddings__make_embedding__pe__pe=(50, 1, E)), r"position_encoding"),
    "lora key": (dict(), _with_keys(decoder__rnn__layers__0__lora_A=(2, H)), r"LoRA"),
    "unknown key": (dict(), _with_keys(decoder__extra__weight=(2,)), r"no s2sext parameter takes: \['decoder.extra"),
    "lora generator": (dict(), lambda ck: ck.update(generator=None), r"generator is None: a LoRA checkpoint"),
    "feed without attention": (dict(attention="none", input_feed=True), None,
                               r"input_feed 1 with global_attention 'none'"),
    # options that disagree with the tensors
    "layers disagree": (dict(), _opt(enc_layers=3), r"enc_layers = 3, but the weights have L = 2"),
    "hidden disagrees": (dict(), _opt(dec_hid_size=16), r"dec_hid_size = 16, but the weights have H = 8"),
    "input_feed disagrees": (dict(), _opt(input_feed=0), r"input_feed = 0, but .*nn.LSTMCell layers"),
    "attention disagrees": (dict(), _opt(global_attention="dot"), r"global_attention = 'dot', but .*'general'"),
    "layer counts": (dict(), lambda ck: [ck["model"].pop(f"encoder.rnn.{w}_l1")
                                         for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")],
                     r"encoder has 1 layers and the decoder 2"),
    "missing bias": (dict(), lambda ck: ck["model"].pop("decoder.rnn.layers.1.bias_hh"),
                     r"no 'decoder.rnn.layers.1.bias_hh'"),
    "integer tensor": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.1.bias_hh": torch.zeros(32,
                       dtype=torch.int64)}), r"'decoder.rnn.layers.1.bias_hh' has dtype torch.int64"),
    # vocabularies
    "token clash": (dict(), _vocab("src", SRC_TOKENS[:-1] + ["<pad>"]), r"token 10 '<pad>' is an ordinary"),
    "eos clash": (dict(), _vocab("tgt", TGT_TOKENS[:-1] + ["<eos>"]), r"'tgt': token 12 '<eos>'"),
    "duplicate": (dict(), _vocab("tgt", TGT_TOKENS[:-1] + ["t0"]), r"'tgt': token 12 't0' repeats token 4"),
    "empty": (dict(), _vocab("src", SRC_TOKENS[:-1] + [""]), r"'src': token 10 is ''"),
    "no </s>": (dict(), _vocab("tgt", ["<unk>", "<blank>", "<s>"] + TGT_TOKENS[4:] + ["x"]),
                r"'tgt' has no '</s>'"),
    "size": (dict(), _vocab("src", SRC_TOKENS[:-1]), r"'src' has 10 tokens, but its embedding has 11 rows"),
    "data_task": (dict(), lambda ck: ck["vocab"].update(data_task="lm"), r"data_task = 'lm'"),
    "start token": (dict(), lambda ck: ck["vocab"].update(decoder_start_token="</s>"), r"decoder_start_token"),
    "src_feats": (dict(), lambda ck: ck["vocab"].update(src_feats=[["a"]]), r"src_feats: source features"),
    # malformed checkpoints
    "opt type": (dict(), lambda ck: ck.update(opt=["-layers", "2"]), r"checkpoint\['opt'\] must be an argparse"),
    "vocab pairs": (dict(), lambda ck: ck.update(vocab=[1, 2]), r"a list but not of \(side, field\) pairs"),
    "vocab sides": (dict(), lambda ck: ck["vocab"].pop("tgt"), r"must hold 'src' and 'tgt' vocabularies"),
    "field features": (dict(), _vocab("src", types.SimpleNamespace(fields=[("src", None), ("feat0", None)])),
                       r"'src' has 1 feature field\(s\): source features"),
    "field layout": (dict(), _vocab("src", types.SimpleNamespace(fields="src")), r"'src': unexpected field layout"),
    "field without itos": (dict(), _vocab("tgt", types.SimpleNamespace(vocab=None)), r"without a token list"),
    "model type": (dict(), lambda ck: ck.update(model=[1]), r"must be state dicts"),
    "key type": (dict(), lambda ck: ck["model"].update({1: torch.zeros(1)}), r"state-dict key 1 is not a str"),
    "value type": (dict(), lambda ck: ck["model"].update(x="text"), r"entry 'x' is a str; expected a float tensor"),
    "generator twice": (dict(), lambda ck: ck["generator"].update({"0.weight": torch.zeros(VT, H)}),
                        r"'generator.weight' twice"),
    "no generator": (dict(), lambda ck: ck.update(generator={}), r"no 'generator.weight': not an OpenNMT-py RNN"),
    "no encoder rnn": (dict(), lambda ck: [ck["model"].pop(k) for k in list(ck["model"]) if k.startswith("encoder.rnn")],
                       r"no 'encoder.rnn.weight_ih_l0': not an OpenNMT-py RNN encoder"),
    "1-D weight_hh": (dict(), lambda ck: ck["model"].update({"encoder.rnn.weight_hh_l1": torch.zeros(4 * H)}),
                      r"no 2-D 'encoder.rnn.weight_hh_l1'"),
    "hidden sizes": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.0.weight_hh": torch.zeros(16, 4)}),
                     r"encoder's hidden size is 8 and the decoder's 4"),
    "embedding sizes": (dict(), lambda ck: ck["model"].update({"decoder.embeddings.make_embedding.emb_luts.0.weight":
                                                               torch.zeros(VT, 5)}),
                        r"src_word_vec_size 6 and tgt_word_vec_size 5 differ"),
    # from a review: each of these ended in an IndexError, numpy's broadcast error, a silently
    # overwritten tensor, a string taken for a flag or a NotImplementedError
    "1-D embedding": (dict(), lambda ck: ck["model"].update({"encoder.embeddings.make_embedding.emb_luts.0.weight":
                                                             torch.zeros(VS)}),
                      r"emb_luts.0.weight' has shape \(11,\); expected 2 dimensions"),
    "generator rows": (dict(), lambda ck: ck["generator"].update(bias=torch.zeros(VT - 1)),
                       r"'generator.bias' has shape \(12,\); expected \(13,\)"),
    "generator in both": (dict(), lambda ck: ck["model"].update({"generator.weight": torch.zeros(VT, H)}),
                          r"'generator.weight' both in 'model' and in 'generator'"),
    "input_feed text": (dict(), lambda ck: setattr(ck["opt"], "input_feed", "0"),
                        r"input_feed must be the integer 0 or 1; got '0'"),
    "bias length": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.1.bias_hh": torch.zeros(4 * H - 1)}),
                    r"'decoder.rnn.layers.1.bias_hh' has shape \(31,\)"),
    "meta tensor": (dict(), lambda ck: ck["model"].update({"decoder.rnn.layers.1.bias_hh":
                                                           torch.empty(4 * H, device="meta")}),
                    r"'decoder.rnn.layers.1.bias_hh' cannot be read as float32"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_option(case):
    twin_kwargs, edit, match = REFUSALS[case]
    twin = TwinNMT(**{"L": 2, "attention": "general", "input_feed": True, **twin_kwargs})
    ck = checkpoint(twin)
    if edit is not None:
        edit(ck)
    with pytest.raises(ValueError, match=match):
        from_opennmt(ck)


# ---------------------------------------------------------------------------------------------
# Safe loading


class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@needs_safe_load
def test_a_pickle_with_another_global_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    ck = checkpoint(TwinNMT(1, "dot", False))
    ck["opt"] = _RunsACommand(f"touch {marker}")
    torch.save(ck, path)
    for load in (load_checkpoint, from_opennmt):
        with pytest.raises(ValueError, match=r"refers to '(posix|nt)\.system'.*nothing from the file was run"):
            load(path)
    assert not marker.exists()


@needs_safe_load
def test_files_that_are_not_checkpoints(tmp_path):
    path = tmp_path / "text.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not an OpenNMT-py checkpoint that can be read safely"):
        load_checkpoint(path)
    torch.save([torch.ones(1)], path)
    with pytest.raises(ValueError, match="is a dict; this file holds a list"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with zipfile.ZipFile(path, "w") as z:  # a zip, but not one torch.save wrote
        z.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


@needs_safe_load
def test_cli_import_opennmt(tmp_path, capsys):
    from s2sext.cli import main

    twin = TwinNMT(2, "general", True, seed=1)
    torch.save(checkpoint(twin, transforms=["onmt_tokenize"]), tmp_path / "ck.pt")
    out = tmp_path / "imported.s2s"
    assert main(["import-opennmt", str(tmp_path / "ck.pt"), str(out)]) == 0
    captured = capsys.readouterr()
    assert "rnn encoder, 2 layer(s), hidden 8, attention general, input feeding on, vocabularies 11/13" in captured.out
    assert "s2sext: note:" in captured.err and "onmt_tokenize" in captured.err
    text = "s3 s0 zzz s5 s5"
    assert Seq2Seq.load(out).translate([text], max_length=8) == from_opennmt(
        checkpoint(twin)).translate([text], max_length=8)
    torch.save(checkpoint(TwinNMT(1, "mlp", True, brnn=True)), tmp_path / "mlp.pt")
    assert main(["import-opennmt", str(tmp_path / "mlp.pt"), str(tmp_path / "mlp.s2s")]) == 0
    assert "brnn encoder, 1 layer(s), hidden 8, attention mlp (concat with query bias" in capsys.readouterr().out
    # a refusal is one error line, and no model file is written
    torch.save(checkpoint(TwinNMT(1, "dot", False), encoder_type="brnn"), tmp_path / "bad.pt")  # opt vs weights
    assert main(["import-opennmt", str(tmp_path / "bad.pt"), str(tmp_path / "bad.s2s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s2sext: error: ") and err.count("\n") == 1
    assert not (tmp_path / "bad.s2s").exists()


def test_path_arguments_are_checked_by_name():
    for call, name in ((lambda: from_opennmt(42), "checkpoint"), (lambda: load_checkpoint(None), "path"),
                       (lambda: read_safetensors(3.5), "path"),
                       (lambda: from_opennmt({**checkpoint(TwinNMT(1, "dot", False)), "model": None}, weights=7),
                        "weights")):
        with pytest.raises(TypeError, match=rf"^{name}.* must be a path \(str or os.PathLike\), got "):
            call()
