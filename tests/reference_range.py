"""An independent numpy reference of the float32 range rule that the compiled decoder applies in C++
(src/cpp/engine/range_check.cpp, s2sext.decoding.check_float32_range): the same bounds summed in
float64 from the weights, the same messages."""

import numpy as np

# Bounds below this are safe in float32 whatever the order of a sum: float32's largest value,
# halved to cover rounding on the way and bfloat16 storage (weights up to 2**-8 larger).
_FLOAT32_SAFE = float(np.finfo(np.float32).max) / 2


def check_float32_range(config: dict, params: dict) -> None:
    """The rule of s2sext.decoding.check_float32_range, computed exactly (in float64) from the weights."""
    H, L = config["hidden_size"], config["num_layers"]
    ones = np.ones(H)
    # the version-2 keys of docs/model-format.md, absent from version-1 configuration dicts (the
    # version-3 lowercase keys change no weight's range)
    bridge_concat = config.get("bridge", "linear") == "concat"
    combine_tanh = config.get("combine_activation", "tanh") == "tanh"
    query_bias = config.get("attention_query_bias", False)
    He = H // 2 if bridge_concat else H  # one encoder direction's size

    def absolute(name):
        return np.abs(np.asarray(params[name], np.float64))

    def refuse_past_range(what, value, names):
        top = float(np.max(value, initial=0.0))
        if not top <= _FLOAT32_SAFE:  # NaN too
            raise ValueError(
                f"the model's {what} can reach {top:.3g} in absolute value ({', '.join(names)}), past float32's "
                f"range (largest {float(np.finfo(np.float32).max):.3g}): decoding would give inf or NaN; the "
                "weights are too large or not finite"
            )
        return value

    def bound(what, *terms):
        """sum of |W| @ x over the terms (|b| where x is None), each row's bound; checked."""
        total = sum(absolute(name) @ x if x is not None else absolute(name) for name, x in terms)
        return refuse_past_range(what, total, [name for name, _ in terms])

    directions = ("", "_reverse") if config["bidirectional"] else ("",)
    x = absolute("src_embed").max(axis=0, initial=0.0)
    for k in range(L):
        for suffix in directions:
            p = f"encoder.l{k}{suffix}"
            bound(f"{p} gates", (f"{p}.w_ih", x), (f"{p}.w_hh", np.ones(He)), (f"{p}.b", None))
        x = np.ones(len(directions) * He)
    h0 = memory = ones
    attention, bahdanau = config["attention"], config["attention_style"] == "bahdanau"
    if config["bidirectional"] and not bridge_concat:  # the bridge's outputs: the decoder's h0 and the attention memory
        h0 = np.maximum(ones, bound("bridge.h output", ("bridge.h.weight", x), ("bridge.h.bias", None)))
        if attention is not None:
            memory = bound("attention memory", ("bridge.memory.weight", x))
    query = h0 if bahdanau else ones  # Bahdanau's first query is the initial state
    if attention in ("dot", "scaled_dot"):
        refuse_past_range("attention scores", query @ memory, ["the attention memory"])
    elif attention == "general":  # the model sums (q W_a) . hs, the compiled decoder q . (W_a hs)
        w_a = absolute("attention.w_a")
        refuse_past_range("attention scores", np.concatenate([w_a @ memory, query @ w_a, [query @ w_a @ memory]]),
                          ["attention.w_a"])
    elif attention == "concat":  # the query bias is in the model's query, the compiled decoder's keys
        bias = [("attention.b_q", None)] if query_bias else []
        bound("attention query projection", ("attention.w_q", query), *bias)
        bound("attention keys", ("attention.w_k", memory), *bias)
        refuse_past_range("attention scores", absolute("attention.v").sum(), ["attention.v"])
    elif attention == "location":
        bound("attention scores", ("attention.w_a", query))
    o = ones  # the output layer's input: h, or the attentional state (tanh, or unbounded but by this)
    if attention is not None:
        combined = bound("combine layer", ("combine.weight", np.concatenate([memory, ones])), ("combine.bias", None))
        if not combine_tanh:
            o = np.maximum(ones, combined)
    extra = []
    if attention is not None and (bahdanau or config["input_feeding"]):
        extra = [memory if bahdanau else o]
    x = np.concatenate([absolute("tgt_embed").max(axis=0, initial=0.0)] + extra)
    for k in range(L):
        p = f"decoder.l{k}"
        bound(f"{p} gates", (f"{p}.w_ih", x), (f"{p}.w_hh", h0), (f"{p}.b", None))
        x = ones
    bound("logits", ("out.weight", o), ("out.bias", None))
