"""A BERT encoder's forward pass in numpy, for the few short texts a compose encodes.

A compose encodes a handful of prompt windows of a few words each (meaning.py). transformers runs them as a
padded batch through some 200 PyTorch modules and ops, whose fixed cost per op, on a CPU, is a good part of
the time; the padding adds work too. This forward reads the loaded model's own weights (shared, not copied)
and computes the same function as transformers' BertModel followed by the embedder's pooling: embeddings and
their LayerNorm, per layer self-attention and the feed-forward with its activation, each with its residual
LayerNorm, then the mean over the text's tokens and the L2 norm. Every per-token step runs on the texts' real
tokens packed end to end; only attention sees them padded, one row per text, the padding masked as
transformers masks it. The vectors equal the transformers forward's to float32 rounding (about 1e-7), so
nothing that compares them changes.

Only a plain BERT (model_type "bert", absolute positions, an encoder) is computed here; for anything else
`BertForward.of` says why not, and the caller keeps the transformers forward."""
from __future__ import annotations

import math

import numpy as np

SQRT_HALF = np.float32(math.sqrt(0.5))
SQRT_2_PI = np.float32(math.sqrt(2.0 / math.pi))


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26), in x's dtype: numpy has no erf, and float32
    rounding of the activations is of the same order. Computed in place in two buffers: a new array per
    step (a dozen of them, as wide as the feed-forward layer) cost more than the arithmetic."""
    a = np.abs(x)
    t = a * np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    a *= poly
    np.subtract(np.float32(1.0), a, out=a)
    return np.copysign(a, x, out=a)


def _gelu(x: np.ndarray) -> np.ndarray:
    """transformers' "gelu": torch.nn.functional.gelu, the exact (erf) form."""
    out = _erf(x * SQRT_HALF)
    out += np.float32(1.0)
    out *= x
    out *= np.float32(0.5)
    return out


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """transformers' "gelu_new" and "gelu_pytorch_tanh": the tanh approximation (the same function)."""
    return np.float32(0.5) * x * (1.0 + np.tanh(SQRT_2_PI * (x + np.float32(0.044715) * x * x * x)))


ACTIVATIONS = {"gelu": _gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh,
               "relu": lambda x: np.maximum(x, np.float32(0))}


def _array(param) -> np.ndarray:
    """A parameter as a float32 numpy array; a float32 CPU tensor's memory is shared, not copied."""
    return param.detach().float().cpu().numpy()


def _layer_norm(x: np.ndarray, norm) -> np.ndarray:
    weight, bias, eps = norm
    centred = x - x.mean(-1, keepdims=True)
    var = (centred * centred).mean(-1, keepdims=True)
    var += eps
    centred /= np.sqrt(var, out=var)
    centred *= weight
    centred += bias
    return centred


def _dense(x: np.ndarray, linear: tuple) -> np.ndarray:
    """x @ weight.T + bias for nn.Linear's (out, in) weight, computed as weight @ x.T: for the few tokens of a
    compose, BLAS reads the weight as it lies several times faster than as the transposed operand of x @ W.T
    (measured: 6 layers' products for 4 tokens in a quarter of the time, and faster for 30 tokens too)."""
    weight, bias = linear
    out = (weight @ x.T).T
    out += bias
    return out


class BertForward:
    """`forward(ids, types)` -> L2-normalised mean-pooled vectors, one per token-id list."""

    @classmethod
    def of(cls, model) -> tuple["BertForward | None", str]:
        """The numpy forward of a loaded transformers model, or (None, why it cannot be computed here)."""
        cfg = model.config
        kind = getattr(cfg, "model_type", "?")
        if kind != "bert":
            return None, f"a {kind!r} model, not a BERT encoder"
        if getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
            return None, "a BERT decoder"
        positions = getattr(cfg, "position_embedding_type", "absolute") or "absolute"
        if positions != "absolute":
            return None, f"{positions!r} position embeddings"
        act = getattr(cfg, "hidden_act", None)
        if not isinstance(act, str) or act not in ACTIVATIONS:
            return None, f"the activation {act!r}"
        try:
            return cls(model, ACTIVATIONS[act]), ""
        except (AttributeError, TypeError, IndexError, RuntimeError) as e:  # not BertModel's modules
            return None, f"an unexpected layout ({e.__class__.__name__}: {str(e)[:120]})"

    def __init__(self, model, activation):
        cfg = model.config
        emb = model.embeddings
        self.heads = cfg.num_attention_heads
        self.width = cfg.hidden_size
        self.act = activation
        self.word = _array(emb.word_embeddings.weight)
        self.position = _array(emb.position_embeddings.weight)
        self.types = _array(emb.token_type_embeddings.weight)
        self.norm = self._norm(emb.LayerNorm)
        self.layers = [self._layer(layer) for layer in model.encoder.layer]
        if not self.layers or self.width % self.heads:
            raise TypeError("no layers, or a width the heads do not divide")

    def _layer(self, layer) -> dict:
        attention = layer.attention
        return dict(q=self._linear(attention.self.query), k=self._linear(attention.self.key),
                    v=self._linear(attention.self.value), o=self._linear(attention.output.dense),
                    norm1=self._norm(attention.output.LayerNorm),
                    up=self._linear(layer.intermediate.dense), down=self._linear(layer.output.dense),
                    norm2=self._norm(layer.output.LayerNorm))

    @staticmethod
    def _linear(module) -> tuple:
        return _array(module.weight), _array(module.bias)  # (out, in), as nn.Linear keeps it: see _dense

    @staticmethod
    def _norm(module) -> tuple:
        return _array(module.weight), _array(module.bias), np.float32(module.eps)

    def __call__(self, ids: list, types: list | None = None) -> np.ndarray:
        if not ids:
            return np.zeros((0, self.width), np.float32)
        lengths = np.array([len(s) for s in ids], np.int64)
        n, longest = len(ids), int(lengths.max())
        tokens = np.concatenate([np.asarray(s, np.int64) for s in ids])
        position = np.concatenate([np.arange(k) for k in lengths])
        kinds = np.concatenate([np.asarray(t, np.int64) for t in types]) if types else np.zeros_like(tokens)
        # The order of the sums is transformers': words + token types, then + positions.
        x = _layer_norm(self.word[tokens] + self.types[kinds] + self.position[position], self.norm)
        # Attention reads the tokens as (text, position) rows, padded; a padded key gets transformers' mask
        # (the float32 minimum), so its weight is exactly 0 and the real tokens' results do not see it. A
        # single text has no padding: its rows are used as they are, with no mask (adding 0 changes nothing).
        slot = np.repeat(np.arange(n), lengths) * longest + position
        padding = np.arange(longest)[None, :] >= lengths[:, None]
        mask = np.where(padding, np.finfo(np.float32).min, np.float32(0))[:, None, None, :] if n > 1 else None
        head = self.width // self.heads
        scale = np.float32(1.0 / math.sqrt(head))

        def by_head(t: np.ndarray) -> np.ndarray:
            if n > 1:
                padded = np.zeros((n * longest, self.width), np.float32)
                padded[slot] = t
                t = padded
            return t.reshape(n, longest, self.heads, head).transpose(0, 2, 1, 3)

        for p in self.layers:
            q, k, v = (by_head(_dense(x, p[name])) for name in ("q", "k", "v"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale
            if mask is not None:
                scores += mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * longest, self.width)
            if n > 1:
                context = context[slot]
            x = _layer_norm(_dense(context, p["o"]) + x, p["norm1"])
            hidden = self.act(_dense(x, p["up"]))
            x = _layer_norm(_dense(hidden, p["down"]) + x, p["norm2"])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        pooled = np.add.reduceat(x, starts, axis=0) / lengths[:, None].astype(np.float32)
        norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
        return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
