import pytest

from lib_stylus.embedding import BM25, DenseEmbedder, bundled_minilm, tokenize
from lib_stylus.index import LibraryIndex
from lib_stylus.retriever import Retriever, query_text
from tests.loralib import card, make_library

CARDS = [
    card("watercolor", tags=["style", "watercolor"], trigger_words=["watercolor"],
         description="soft paint washes"),
    card("pixel_sd1", tags=["style", "pixel art"], trigger_words=["pixel art"], description="retro sprites"),
    card("pixel_xl", base="sdxl", tags=["style", "pixel art"], trigger_words=["pixel art"],
         description="retro sprites"),
    card("pixel_pony", base="sdxl", base_model="Pony", tags=["pixel art"], trigger_words=["pixel art"]),
    card("robot_buddy", tags=["robot"], trigger_words=["robot companion"],
         description="small friendly robots"),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    lib = make_library(root / "lora", [dict(c) for c in CARDS])
    (root / "lora" / "mystery.pt").write_bytes(b"\x80\x04not really a pickle")  # no metadata: unknown base
    (root / "lora" / "mystery.txt").write_text("pixel art sprites", encoding="utf-8")
    index = LibraryIndex([lib], str(root / "cache"), [BM25(), DenseEmbedder(bundled_minilm())])
    index.refresh()
    return index


def stems(cands):
    return [c.card.stem for c in cands]


def test_only_the_loaded_base_models_loras_are_returned(index):
    r = Retriever(index)
    assert set(stems(r.retrieve("pixel art knight", "sd1"))) <= {"pixel_sd1", "watercolor", "robot_buddy"}
    assert stems(r.retrieve("pixel art knight", "sd1"))[0] == "pixel_sd1"
    assert set(stems(r.retrieve("pixel art knight", "sdxl"))) == {"pixel_xl", "pixel_pony"}
    assert r.retrieve("pixel art knight", "sd2") == []


def test_unknown_base_only_when_allowed(index):
    r = Retriever(index)
    assert "mystery" not in stems(r.retrieve("pixel art sprites", "sd1", k=10))
    assert "mystery" in stems(r.retrieve("pixel art sprites", "sd1", k=10, allow_unknown=True))


def test_dense_ranking_finds_a_paraphrase_lexical_cannot(index):
    r = Retriever(index)
    (best,) = r.retrieve("a little mechanical friend", "sd1", k=1)
    assert best.card.stem == "robot_buddy" and best.lexical == 0.0 and best.dense > 0.3


def test_ranks_and_k(index):
    got = Retriever(index).retrieve("watercolor pixel art robot", "sd1", k=2)
    assert [c.rank for c in got] == [1, 2] and got[0].score >= got[1].score


def test_query_text_drops_webui_syntax():
    assert tokenize(query_text("(masterpiece:1.2), <lora:foo:0.7> [watercolor] BREAK robot")) == \
        ["masterpiece", "watercolor", "robot"]
