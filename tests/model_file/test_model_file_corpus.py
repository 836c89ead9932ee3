"""One specification, two loaders: Seq2Seq.load (Python) and s2sext::Translator::load (C++, through
_core.check_model_file) must give the same verdict, accept or refuse, on every file, and every
refusal in Python must be a ModelFileError (docs/model-format.md is the specification).

The corpus is built from a few small valid models by structured mutations (every config key
missing, of the wrong type, out of range or huge; vocabulary shapes; the tensor table's lies;
duplicate keys, deep nesting, odd numbers; truncations, bad magic, header length and trailer
lies), the CRC recomputed wherever the mutation is meant to reach the checks behind it. A bounded
random fuzz run (fixed seed) composes the same mutations; a longer one is behind the `fuzz` marker:

    S2SEXT_FUZZ_ITERATIONS=20000 python -m pytest -m fuzz tests/model_file/test_model_file_corpus.py

The other cases of the same rule, one test each, are in test_model_file_rules.py.
"""
from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import pytest


from s2sext import Seq2Seq

from corpus_support import (
    ALL_CONFIG_KEYS, DELETE, Raw, VALUES, assemble, check_same_verdict, edited, nested, patched,
    set_config, set_meta, split, verdicts, with_head)


def meta_cases(raw):
    doc, _ = split(raw)
    config = doc["meta"]["config"]
    cases = {
        "unknown-config-key": (lambda d, _: d["meta"]["config"].update(extra_key=1), False),
        "config-as-pairs": (set_meta("config", [[k, v] for k, v in config.items()]), False),
        "config-reordered": (set_meta("config", dict(reversed(list(config.items())))), True),
        "unknown-meta-key": (set_meta("note", "kept"), True),
        "extra-anything": (set_meta("extra", {"history": [1.5, None, "x"], "epoch": 3}), True),
        "repeated-config-key": (set_meta("config", Raw(json.dumps(config)[:-1] + ', "num_layers": 1}')), False),
        "repeated-meta-key": (lambda d, _: d["meta"].update(extra=Raw('{"a": 1, "a": 1}')), False),
        "many-extra-keys": (set_meta("extra", {f"k{i}": i for i in range(5000)}), True),
        # meta is depth 2: extra = 62 arrays reaches the limit of 64
        "extra-depth-64": (set_meta("extra", nested(62)), True),
        "extra-depth-65": (set_meta("extra", nested(63)), False),
        "extra-depth-70": (set_meta("extra", nested(68)), False),
        "extra-depth-1000": (set_meta("extra", Raw("[" * 1000 + "]" * 1000)), False),
        "nan-in-extra": (set_meta("extra", Raw("NaN")), False),
        "lone-surrogate-in-extra": (set_meta("extra", Raw('"\\udfff"')), False),
    }
    for key in ("kind", "version", "config", "src_vocab", "tgt_vocab"):
        for i, value in enumerate([DELETE, None, 1, True, 1.0, Raw("1E0"), 2, "1", "s2sext-seq2seq", [], {}]):
            cases[f"meta-{key}-{i}"] = (set_meta(key, value), None)
    for side in ("src_vocab", "tgt_vocab"):
        for name, (value, expected) in vocab_cases(doc["meta"][side]).items():
            cases[f"{side}-{name}"] = (set_meta(side, value), expected)
    return cases


def vocab_cases(vocab):
    return {
        "as-object": ({t: i for i, t in enumerate(vocab)}, False),
        "as-string": ("".join(vocab), False),
        "duplicate-token": (vocab[:-1] + [vocab[4]], False),
        "duplicate-special": (vocab[:-1] + ["<unk>"], False),
        "empty-token": (vocab[:-1] + [""], False),
        "number-token": (vocab[:-1] + [7], False),
        "null-token": (vocab[:-1] + [None], False),
        "specials-swapped": ([vocab[1], vocab[0]] + vocab[2:], False),
        "too-short": (vocab[:-1], False),
        "too-long": (vocab + ["extra"], False),
        "nul-token": (vocab[:-1] + ["\x00"], True),
        "non-bmp-token": (vocab[:-1] + ["𝄞"], True),
        "lone-surrogate-token": (vocab[:-1] + [Raw('"\\ud800"')], False),
        "surrogate-pair-token": (vocab[:-1] + [Raw('"\\ud834\\udd1e"')], True),
    }


def tensor_cases(raw):
    doc, _ = split(raw)
    entries = doc["tensors"]
    cases = {}

    def entry_edit(i, key, value):
        def edit(d, _):
            if value is DELETE:
                del d["tensors"][i][key]
            else:
                d["tensors"][i][key] = value

        return edit

    for i, e in enumerate(entries):
        n = e["name"]
        cases[f"{n}-deleted"] = (lambda d, _, i=i: d["tensors"].pop(i), False)
        cases[f"{n}-renamed"] = (entry_edit(i, "name", n + "x"), False)
        cases[f"{n}-name-empty"] = (entry_edit(i, "name", ""), False)
        cases[f"{n}-name-of-another"] = (entry_edit(i, "name", entries[i - 1]["name"]), False)
        for dtype in ("f64", "i32", "u16", "f16", 32, None, [], {}):
            cases[f"{n}-dtype-{dtype}"] = (entry_edit(i, "dtype", dtype), False)
        shape = e["shape"]
        for label, value in [("reversed", shape[::-1]), ("extra-dim", shape + [1]), ("leading-1", [1] + shape),
                             ("floats", [float(x) for x in shape]), ("negative", [-x for x in shape]),
                             ("zero", [0] * len(shape)), ("huge", [2**62] + shape[1:]), ("none", None)]:
            if value != shape:
                cases[f"{n}-shape-{label}"] = (entry_edit(i, "shape", value), False)
        for delta in (1, 64, -64, 2**62):
            cases[f"{n}-offset{delta:+}"] = (entry_edit(i, "offset", e["offset"] + delta), False)
        for delta in (4, -4, 2**62):
            cases[f"{n}-nbytes{delta:+}"] = (entry_edit(i, "nbytes", e["nbytes"] + delta), False)
        cases[f"{n}-extra-key"] = (entry_edit(i, "note", 1), False)
        cases[f"{n}-no-nbytes"] = (entry_edit(i, "nbytes", DELETE), False)
    last = entries[-1]
    end = last["offset"] + last["nbytes"]

    def add_tensor(name, dtype, shape, itemsize):
        def edit(d, data):
            offset = -(-end // 64) * 64
            nbytes = int(np.prod(shape)) * itemsize
            d["tensors"].append({"name": name, "dtype": dtype, "shape": shape, "offset": offset, "nbytes": nbytes})
            return d, data + bytes(offset - end) + bytes(range(nbytes % 256)) * (nbytes // max(nbytes % 256, 1))

        return edit

    cases["extra-f32-tensor"] = (add_tensor("optim.m.out.bias", "f32", [3], 4), None)
    cases["extra-i64-tensor"] = (add_tensor("step", "i64", [], 8), None)
    cases["tensors-as-object"] = (lambda d, _: d.update(tensors={}), False)
    cases["entry-as-list"] = (lambda d, _: d["tensors"].__setitem__(0, [1, 2]), False)
    cases["no-tensors"] = (lambda d, data: ({**d, "tensors": []}, b""), False)
    return cases


def byte_cases(raw):
    (json_length,) = struct.unpack_from("<Q", raw, 16)
    size = len(raw)
    cases = {}
    for cut in sorted({0, 4, 8, 12, 23, 24, 39, 40, 24 + json_length, size // 2, size - 17, size - 16, size - 1}):
        cases[f"truncated-{cut}"] = (raw[:cut], False)
    for k in range(8):
        cases[f"magic-byte-{k}"] = (patched(raw, k, "<B", raw[k] ^ 0x20), False)
    cases["version-2"] = (patched(raw, 8, "<I", 2), True)  # the int8 version, which may also hold none
    cases["version-3"] = (patched(raw, 8, "<I", 3), False)
    cases["version-0"] = (patched(raw, 8, "<I", 0), False)
    cases["reserved-1"] = (patched(raw, 12, "<I", 1), False)
    for label, value in [("plus-1", json_length + 1), ("minus-1", json_length - 1), ("plus-64", json_length + 64),
                         ("zero", 0), ("over-cap", 2**24 + 1), ("2^40", 2**40), ("2^63", 2**63),
                         ("max", 2**64 - 1)]:
        cases[f"header-length-{label}"] = (patched(raw, 16, "<Q", value), False)
    cases["body-length-lie"] = (patched(raw, size - 16, "<Q", size - 15, fix_crc=False), False)
    cases["end-magic"] = (raw[:-4] + b"S2SY", False)
    cases["crc"] = (patched(raw, size - 8, "<I", zlib.crc32(raw[:-16]) ^ 1, fix_crc=False), False)
    cases["appended-byte"] = (raw + b"\x00", False)
    cases["appended-trailer"] = (raw + raw[-16:], False)
    padding = 24 + json_length
    if padding % 64:
        cases["nonzero-padding"] = (patched(raw, padding, "<B", 0x20), True)  # not checked, by either
    cases["data-byte-changed"] = (patched(raw, size - 20, "<B", raw[size - 20] ^ 0x40), True)
    cases["pretty-printed"] = (edited(raw, lambda d, _: None, indent=1), True)
    cases["ascii-escaped"] = (edited(raw, lambda d, _: None, ensure_ascii=True), True)
    cases["byte-order-mark"] = (with_head(raw, lambda text: b"\xef\xbb\xbf" + text), False)
    cases["leading-whitespace"] = (with_head(raw, lambda text: b" \t\r\n" + text + b"\n"), True)
    cases["form-feed"] = (with_head(raw, lambda text: b"\x0c" + text), False)
    cases["trailing-comma"] = (with_head(raw, lambda text: text[:-1] + b",}"), False)
    cases["invalid-utf8"] = (with_head(raw, lambda text: text.replace(b"\xf0\x9f\x99\x82", b"\xf0\x9f\x99")), False)
    cases["overlong-utf8"] = (with_head(raw, lambda text: text.replace(b'"w"', b'"\xc1\xb7"')), False)
    cases["encoded-surrogate"] = (with_head(raw, lambda text: text.replace(b'"w"', b'"\xed\xa0\x80"')), False)
    return cases


# the cases that test the parameter table itself, run on every base; the others on the first
TABLE_CASES = ("-deleted", "-renamed", "-dtype-i32", "-shape-reversed", "-shape-extra-dim")


def corpus(bases):
    """(id, file content, expected verdict or None) for every structured case. The first base
    gets every case; the others every value of every config key but a sample of the rest, to keep
    the run short."""
    for k, (base, raw) in enumerate(bases.items()):
        yield f"{base}/valid", raw, True
        values = VALUES if k == 0 else [DELETE] + VALUES[k::3]
        for key in ALL_CONFIG_KEYS:  # a key of a later version than the file's is one too many
            for i, value in enumerate(values):
                yield f"{base}/config-{key}-{i}", edited(raw, set_config(key, value)), None
        for name, (edit, expected) in meta_cases(raw).items():
            if k == 0 or name.startswith(("src_vocab", "tgt_vocab")):
                yield f"{base}/{name}", edited(raw, edit), expected
        for name, (edit, expected) in tensor_cases(raw).items():
            if k == 0 or name.endswith(TABLE_CASES):
                yield f"{base}/{name}", edited(raw, edit), expected
        if k < 2:
            for name, (content, expected) in byte_cases(raw).items():
                yield f"{base}/{name}", content, expected


def test_structured_corpus_gets_the_same_verdict(bases, tmp_path):
    path = tmp_path / "case.s2s"
    accepted = refused = 0
    for what, content, expected in corpus(bases):
        check_same_verdict(path, content, expected, what)
        python, _ = verdicts(path)
        accepted += python
        refused += not python
    assert accepted > 50 and refused > 1000, (accepted, refused)  # the corpus reaches both verdicts


# ---------------------------------------------------------------------------------------------
# Sentencepiece sides (docs/model-format.md, rule 5): the stored model and the vocabulary


def _varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def _piece_entry(piece: str, piece_type: int | None = None) -> bytes:
    """A ModelProto.pieces entry in protocol-buffer wire format (field 1, a SentencePiece message)."""
    body = b"\x0a" + _varint(len(piece.encode())) + piece.encode()
    if piece_type is not None:
        body += b"\x18" + _varint(piece_type)
    return b"\x0a" + _varint(len(body)) + body


def sentencepiece_cases(tmp_path):
    """(id, file content, expected verdict or None) of models with sentencepiece sides and their
    mutations. The C++ side here is the bindings' build, which has no sentencepiece library: it reads
    the pieces from the wire format, so the cases where the library alone would object are left out."""
    from s2sext.serialize import read_model_file, write_model_file
    from s2sext.text import SentencePieceTokenizer

    rng = np.random.default_rng(3)
    words = ["the", "cat", "sat", "on", "mat", "über", "naïve", "caterpillar", "sunset", "doghouse"]
    texts = [" ".join(words[i] for i in rng.integers(len(words), size=rng.integers(2, 7))) for _ in range(120)]
    unigram = SentencePieceTokenizer.train(texts, vocab_size=40)
    bpe = SentencePieceTokenizer.train(texts, vocab_size=40, model_type="bpe")
    other = SentencePieceTokenizer.train(texts[:40] + ["zebra quagga"] * 5, vocab_size=40)
    models = {
        "char-spm": Seq2Seq(list("abcd"), unigram.vocab(), embed_size=3, hidden_size=4, tgt_tokenizer=unigram),
        "spm-spm": Seq2Seq(bpe.vocab(), unigram.vocab(), embed_size=3, hidden_size=4, src_tokenizer=bpe,
                           tgt_tokenizer=unigram, attention="general"),
        "shared": Seq2Seq(unigram.vocab(), unigram.vocab(), embed_size=3, hidden_size=4, src_tokenizer=unigram,
                          tgt_tokenizer=unigram, reverse_source=True),
    }
    path = tmp_path / "spm-base.s2s"
    out = tmp_path / "spm-case.s2s"

    def variant(edit):
        header, tensors = read_model_file(path)
        edit(header, tensors)
        write_model_file(out, header, tensors)
        return out.read_bytes()

    def set_blob(name, value):
        def edit(header, tensors):
            if value is None:
                del tensors[name]
            else:
                tensors[name] = value(tensors[name]) if callable(value) else value
        return edit

    for base, model in models.items():
        model.save(path)
        yield f"{base}/valid", path.read_bytes(), True
        side = "tgt" if base == "char-spm" else "src"
        name = "tokenizer.sentencepiece" if base == "shared" else f"tokenizer.{side}.sentencepiece"
        blob = read_model_file(path)[1][name]
        n = blob.size
        for cut in (1, 2, 10, 100, n // 2, n - 100, n - 1):  # (after the pieces a cut breaks the wire format)
            yield f"{base}/blob-cut-{cut}", variant(set_blob(name, lambda b, cut=cut: b[:cut])), None
        for at in (0, 1, 3, 7, 30, 120, 300):  # in the pieces, which come first
            flipped = blob.copy()
            flipped[at] ^= 0x55
            yield f"{base}/blob-byte-{at}", variant(set_blob(name, flipped)), None
        for label, value, expected in [
                ("missing", None, False),
                ("empty", np.zeros(0, np.uint8), False),
                ("garbage", np.frombuffer(b"not a sentencepiece model", np.uint8), False),
                ("2-d", lambda b: b.reshape(1, -1), False),
                ("as-i32", lambda b: b.astype(np.int32), False),
                ("as-f32", lambda b: b.astype(np.float32), False),
                ("other-model", np.frombuffer(other.model, np.uint8), False),
                ("trailing-junk", lambda b: np.concatenate([b, np.frombuffer(b"\xff\xff", np.uint8)]), False),
                ("control-piece-appended",
                 lambda b: np.concatenate([b, np.frombuffer(_piece_entry("<ctl>", 3), np.uint8)]), True),
                ("unused-piece-appended",
                 lambda b: np.concatenate([b, np.frombuffer(_piece_entry("zz", 5), np.uint8)]), None),
                ("non-utf8-piece-appended",
                 lambda b: np.concatenate([b, np.frombuffer(b"\x0a\x03\x0a\x01\xff", np.uint8)]), False),
                ("normal-piece-appended",
                 lambda b: np.concatenate([b, np.frombuffer(_piece_entry("zz"), np.uint8)]), False),
                ("unknown-type-piece-appended",
                 lambda b: np.concatenate([b, np.frombuffer(_piece_entry("zz", 9), np.uint8)]), False),
                ("duplicate-piece-appended",
                 lambda b: np.concatenate([b, np.frombuffer(_piece_entry(model.tgt_vocab.tokens[5]), np.uint8)]),
                 False)]:
            yield f"{base}/blob-{label}", variant(set_blob(name, value)), expected

        def vocab_edit(key, change):
            def edit(header, tensors):
                header[key] = change(header[key])
            return edit

        key = f"{side}_vocab"
        yield f"{base}/vocab-piece-changed", variant(vocab_edit(key, lambda v: v[:5] + ["▁zz"] + v[6:])), False
        yield f"{base}/vocab-pieces-swapped", variant(vocab_edit(key, lambda v: v[:4] + [v[5], v[4]] + v[6:])), False
        config_key = f"{side}_tokenizer"
        yield f"{base}/{side}-tokenizer-char", variant(lambda h, t: h["config"].update({config_key: "char"})), True
    other_side = "tgt.sentencepiece"
    models["char-spm"].save(path)
    yield "char-spm/blob-renamed-to-src", variant(
        lambda h, t: t.update({"tokenizer.src.sentencepiece": t.pop(f"tokenizer.{other_side}")})), False
    yield "char-spm/blob-renamed-to-shared", variant(
        lambda h, t: t.update({"tokenizer.sentencepiece": t.pop(f"tokenizer.{other_side}")})), True
    yield "char-spm/src-tokenizer-sentencepiece", variant(
        lambda h, t: h["config"].update(src_tokenizer="sentencepiece")), False


def test_sentencepiece_cases_get_the_same_verdict(tmp_path):
    pytest.importorskip("sentencepiece", reason="the sentencepiece package makes these models")
    accepted = refused = 0
    for what, content, expected in sentencepiece_cases(tmp_path):
        check_same_verdict(tmp_path / "case.s2s", content, expected, what)
        python, _ = verdicts(tmp_path / "case.s2s")
        accepted += python
        refused += not python
    assert accepted >= 10 and refused >= 60, (accepted, refused)


def test_a_model_only_the_sentencepiece_library_refuses(tmp_path):
    """A second piece of type UNKNOWN: the pieces parse and the vocabulary matches (no unknown piece
    is a token), sentencepiece itself refuses the model ("unk is already defined"). Python (the package) refuses the file; the bindings' C++
    reader, built without the library, accepts it as docs/model-format.md says (only ids can be
    decoded with it; a C++ build with the library refuses it: tests/test_cpp_api.py)."""
    pytest.importorskip("sentencepiece", reason="the sentencepiece package makes these models")
    from s2sext import ModelFileError, _core
    from s2sext.serialize import read_model_file, write_model_file

    path = tmp_path / "m.s2s"
    for _, content, _ in sentencepiece_cases(tmp_path):  # the first is the valid char-spm base
        path.write_bytes(content)
        break
    header, tensors = read_model_file(path)
    tensors["tokenizer.tgt.sentencepiece"] = np.concatenate(
        [tensors["tokenizer.tgt.sentencepiece"], np.frombuffer(_piece_entry("<unk2>", 2), np.uint8)])
    write_model_file(path, header, tensors)
    with pytest.raises(ModelFileError, match="tokenizer.tgt.sentencepiece.*not a sentencepiece model"):
        Seq2Seq.load(path)
    _core.check_model_file(str(path))


# ---------------------------------------------------------------------------------------------
# Random compositions of the mutations (fixed seeds)

JSON_BYTES = b'{}[]":,-+.0123456789eE \\utrnfalse\x00\xff'


def random_value(rng):
    return VALUES[rng.integers(len(VALUES))]


def random_container(rng, doc):
    """A random object or array inside `doc` (walking down from the top)."""
    node = doc
    while True:
        children = [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, (dict, list))]
        if not children or rng.random() < 0.3:
            return node
        node = children[rng.integers(len(children))]


def mutate(rng, raw: bytes) -> bytes:
    if len(raw) < 40:
        return raw
    choice = rng.integers(7)
    if choice <= 3:
        try:
            doc, data = split(raw)
        except (ValueError, struct.error):  # an earlier mutation broke the JSON
            choice = 5
        else:
            if not isinstance(doc, (dict, list)):
                choice = 5
    if choice <= 3:  # structured: edit the document, recompute everything
        meta = doc.get("meta") if isinstance(doc, dict) else None
        if choice == 0 and isinstance(meta, dict) and isinstance(meta.get("config"), dict):
            keys = ALL_CONFIG_KEYS
            set_config(keys[rng.integers(len(keys))], random_value(rng))(doc, data)
        elif choice == 0:
            pass
        else:
            node = random_container(rng, doc)
            value = random_value(rng)
            if isinstance(node, dict) and node:
                key = list(node)[rng.integers(len(node))]
                if choice == 1 or value is DELETE:
                    del node[key]
                else:
                    node[key] = value
            elif isinstance(node, list) and node:
                i = int(rng.integers(len(node)))
                if choice == 1 or value is DELETE:
                    node.pop(i)
                else:
                    node[i] = value
        return assemble(doc, data)
    if choice == 4:  # a byte of the JSON text, the lengths and CRC recomputed

        def change(text: bytes) -> bytes:
            head = bytearray(text)
            i = int(rng.integers(len(head) + 1))
            new = JSON_BYTES[rng.integers(len(JSON_BYTES))]
            kind = rng.integers(3)
            if kind == 1 or i == len(head):
                head.insert(i, new)
            elif kind == 0:
                head[i] = new
            else:
                del head[i]
            return bytes(head)

        return with_head(raw, change)
    if choice == 5:  # any byte before the trailer, the CRC recomputed
        i = int(rng.integers(len(raw) - 16))
        return patched(raw, i, "<B", int(rng.integers(256)))
    return raw[: rng.integers(len(raw))]


def fuzz(bases, tmp_path, iterations: int, seed: int):
    rng = np.random.default_rng(seed)
    names = list(bases)
    path = tmp_path / "fuzz.s2s"
    for i in range(iterations):
        content = bases[names[i % len(names)]]
        for _ in range(rng.integers(1, 4)):
            content = mutate(rng, content)
            if len(content) < 40:
                break
        check_same_verdict(path, content, None, f"fuzz seed {seed} iteration {i}")


def test_fuzz_bounded(bases, tmp_path):
    fuzz(bases, tmp_path, iterations=1500, seed=10)


@pytest.mark.fuzz
@pytest.mark.skipif("S2SEXT_FUZZ_ITERATIONS" not in os.environ, reason="the long fuzz run: set S2SEXT_FUZZ_ITERATIONS")
def test_fuzz_long(bases, tmp_path):
    iterations = int(os.environ["S2SEXT_FUZZ_ITERATIONS"])
    fuzz(bases, tmp_path, iterations=iterations, seed=int(os.environ.get("S2SEXT_FUZZ_SEED", "11")))
