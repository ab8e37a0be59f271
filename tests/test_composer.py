import pytest

from lib_stylus.composer import CHARACTERS_TAG, MADE_OF, NAMED_SERIES, SERIES_OF, Composer, split_tasks
from lib_stylus.prompt import TAG_RE, parse_tags
from compose_fixtures import build_library


@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    return Composer(build_library(str(tmp_path_factory.mktemp("lib"))))


def task_of(comp, stem):
    return next(t.plain for t in comp.tasks if stem in [a.stem for a in t.adapters])


# ------------------------------------------------------------------------------------------ task splitting

def test_tasks_follow_webui_syntax():
    prompt = ("(masterpiece:1.2), best quality, a (street musician:1.1) playing [guitar] BREAK with a robot "
              "companion AND cyberpunk style:0.7 <lora:foo:0.5>, __animals__, \\(escaped\\)")
    tasks = split_tasks(prompt)
    assert [t.plain for t in tasks] == ["a street musician playing guitar", "with a robot companion",
                                        "cyberpunk style", "__animals__", "(escaped)"]
    for t in tasks:  # spans index the original prompt
        assert prompt[t.span[0]:t.span[1]] == t.text


def test_boilerplate_and_bare_tags_make_no_task():
    assert split_tasks("masterpiece, best quality, <lora:x:1>, <lyco:y:0.5>") == []


# -------------------------------------------------------------------------------------------------- rules

def test_each_concept_gets_its_adapter_and_the_scene_gets_none(composer):
    comp = composer.compose("a musician playing guitar on a street, with a robot, watercolor painting", "sd1")
    assert "robot_mech" in comp.stems and "watercolor" in comp.stems
    assert task_of(comp, "robot_mech") == "with a robot"
    scene = comp.tasks[0]
    assert scene.adapters == []  # "guitar_hero" only mentions the scene in its description
    assert "guitar_hero" not in comp.stems


def test_adapter_used_once_and_at_most_three_per_task(composer):
    comp = composer.compose("cyberpunk style, (cyberpunk style:1.2)", "sd1")
    assert len(comp.stems) == len(set(comp.stems))
    assert all(len(t.adapters) <= 3 for t in comp.tasks)
    assert any(d.reason == "already picked for another task" for d in comp.drops)


def test_sharing_one_word_is_not_enough(composer):
    comp = composer.compose("a street food stall", "sd1")
    assert comp.stems == []  # 'street' is one word of 'Street Fighter', not the adapter's purpose
    assert "sf_style" in composer.compose("street fighter", "sd1").stems


def test_character_needs_its_name(composer):
    eager = Composer(composer.retriever, margin=0.0, per_task=3)  # no margin: every candidate meets the rules
    unnamed = eager.compose("street fighter", "sd1")
    assert "chun_li" not in unnamed.stems
    assert any(d.stem == "chun_li" and d.reason.startswith("character not named") for d in unnamed.drops)
    assert "sf_style" in unnamed.stems
    named = eager.compose("Chun-Li from Street Fighter", "sd1")
    assert "chun_li" in named.stems


def test_a_task_asking_for_a_franchise_character_may_get_one(composer):
    asked = composer.compose("a girl at the beach, Street Fighter character", "sd1")
    assert "chun_li" in asked.stems


def test_at_most_two_style_adapters(composer):
    comp = composer.compose("watercolor, pixel art, cyberpunk style, ink wash", "sd1")
    styles = [a for a in comp.picks if a.entry.refined.topic == "style"]
    assert len(styles) == 2
    assert any(d.reason.startswith("style limit") for d in comp.drops)


def test_wrong_base_model_is_reported_never_picked(composer):
    comp = composer.compose("in knight armor", "sd1")
    assert "knight_armor" in comp.stems and "sdxl_armor" not in comp.stems
    assert any(d.stem == "sdxl_armor" and d.reason == "wrong base model" for d in comp.drops)
    assert "sdxl_armor" in composer.compose("in knight armor", "sdxl").stems


def test_existing_lora_counts_as_chosen(composer):
    prompt = "with a robot, watercolor painting <lora:watercolor:0.6>"
    comp = composer.compose(prompt, "sd1")
    assert "watercolor" not in comp.stems
    assert comp.existing == ["watercolor"]
    assert any(d.stem == "watercolor" and d.reason == "already in the prompt" for d in comp.drops)
    res = comp.rewrite(prompt, seed=1, masking=False)
    assert [t.name for t in parse_tags(res.prompt)].count("watercolor") == 1


def test_no_match_gives_a_reason(composer):
    comp = composer.compose("a boy fishing at a lake", "sd1")
    assert comp.stems == []
    assert comp.tasks[0].note


def test_every_pick_is_explained(composer):
    comp = composer.compose("with a robot, cyberpunk style", "sd1")
    assert comp.picks and all(a.reason and a.score > 0 and 0 < a.coverage for a in comp.picks)
    data = comp.to_dict()
    assert data["tasks"][0]["adapters"][0]["reason"]


def test_max_adapters(composer):
    comp = composer.compose("with a robot, cyberpunk style, watercolor, in knight armor", "sd1",
                            max_adapters=2)
    assert len(comp.picks) == 2
    assert any(d.reason.startswith("adapter limit") for d in comp.drops)


# ------------------------------------------------------------------------------------- masking and rewrite

def test_mask_is_seeded_and_rewrite_round_trips(composer):
    comp = composer.compose("with a robot, cyberpunk style, in knight armor", "sd1")
    assert comp.mask(7).active == comp.mask(7).active
    schemes = {comp.mask(s).schemes for s in range(40)}
    assert len(schemes) > 3
    full = comp.mask(0, masking=False)
    assert set(full.keys) == {a.alias for a in comp.picks}
    res = comp.rewrite(seed=5, masking=False)
    assert res.prompt.startswith("with a robot, cyberpunk style, in knight armor")
    read = {m.group(2).split(":")[0] for m in TAG_RE.finditer(res.prompt)}
    assert read == {a.alias for a in comp.picks}
    assert "cyberpunk style" in res.prompt  # trigger word already there: not repeated
    assert res.prompt.count("cyberpunk style") == 1


def test_trigger_words_main_one_plus_those_about_the_task(composer):
    from lib_stylus.catalog.card import AdapterCard
    from lib_stylus.composer import Assigned, Composition, Task
    from lib_stylus.index import Entry
    from lib_stylus.refiner import Refined
    card = AdapterCard(path="/x", rel="x", stem="x", alias="x",
                       trigger_words=["xchar", "red dress", "school uniform", "armor", "blue dress", "hat"])
    entry = Entry(card, Refined("", "", 0.8, "character"), "")
    comp = Composition("xchar in a dress", "sd1", [Task("xchar in a dress", (0, 16), "xchar in a dress",
                                                         ["xchar", "dress"])], [])
    assert comp.triggers(Assigned(entry, 1.0, 1.0, "", 0)) == ("xchar", "red dress", "blue dress")


def test_an_outfit_trigger_does_not_name_a_character(tmp_path):
    outfit_char = dict(stem="knight_girl", title="Aria Knight Girl", tags=["character"],
                       triggers=["aria", "light armor"])
    retriever = build_library(str(tmp_path), extra=[outfit_char])
    comp = Composer(retriever, margin=0.0, per_task=3).compose("a girl wearing light armor", "sd1")
    assert "knight_girl" not in comp.stems
    assert "knight_girl" in Composer(retriever).compose("aria knight girl in light armor", "sd1").stems


def test_a_surname_several_characters_share_names_none_of_them_alone(tmp_path):
    """'Uzumaki' (Junji Ito's manga, in a prompt never seen in development) named Naruto and Kushina Uzumaki;
    with a given name or the franchise it still names the one meant."""
    clan = [dict(stem="naruto_uz", title="Naruto Uzumaki (Naruto)", tags=["character", "naruto", "uzumaki"],
                 triggers=["uzumaki naruto"]),
            dict(stem="kushina_uz", title="Kushina Uzumaki (Naruto)",
                 tags=["character", "naruto", "uzumaki", "kushina"], triggers=["kushina"]),
            dict(stem="himawari_uz", title="Himawari Uzumaki (Boruto)",
                 tags=["character", "boruto", "uzumaki", "himawari"], triggers=["himawari"])]
    composer = Composer(build_library(str(tmp_path), extra=clan))
    assert not {"naruto_uz", "kushina_uz", "himawari_uz"} & set(
        composer.compose("a spiral town, junji ito style, uzumaki, horror manga", "sd1").stems)
    assert "kushina_uz" in composer.compose("1girl, kushina uzumaki, red hair", "sd1").stems
    assert "himawari_uz" in composer.compose("uzumaki, boruto, 1girl", "sd1").stems


def test_a_phrase_asked_without_its_head_is_not_asked(tmp_path):
    """'linen curtains' asked for a 'Linen dress' LoRA (share 84%: 'dress' is a common word), 'a wool jumper'
    for a 'Jumper Dress' (prompts never seen in development): the modifier alone asks for no dress."""
    cards = [dict(stem="linen_dress", title="Linen dress", tags=["clothing"], triggers=["linen dress"]),
             dict(stem="jumper_dress", title="Jumper Dress", tags=["clothing"], triggers=["jumper dress"])]
    # 'dress' a common word, as in a real library
    composer = Composer(build_library(str(tmp_path), extra=cards, common="dress"))
    comp = composer.compose("a sunny room, linen curtains, a man in a wool jumper", "sd1")
    assert not {"linen_dress", "jumper_dress"} & set(comp.stems)
    assert any(d.stem == "linen_dress" and "qualifies its purpose" in d.reason for d in comp.drops)
    assert composer.compose("a woman in a linen dress, sunny room", "sd1").stems == ["linen_dress"]


def test_a_degree_word_in_a_purpose_is_part_of_it(tmp_path):
    """'Very Long Hair' shows more hair than 'long hair' asks: 'very' is part of its purpose, not a stop word
    (a very-long-hair LoRA was picked for every 'long hair' tag, judged only plausible)."""
    cards = [dict(stem="very_long_hair", title="Very Long Hair", tags=["hair"], triggers=["very long hair"])]
    composer = Composer(build_library(str(tmp_path), extra=cards, common="hair"))
    assert "very_long_hair" not in composer.compose("1girl, long hair, ponytail, classroom", "sd1").stems
    assert "very_long_hair" in composer.compose("1girl, very long hair, classroom", "sd1").stems


# ----------------------------------------------------------------- issue 10: the failure classes, each pinned
# Each test builds a small library where the wrong pick exists next to the right one (or alone), so the test
# fails if the composer's old behaviour comes back.

ISSUE_CARDS = [
    # purpose vs attribute triggers: a character whose trigger list describes her looks
    dict(stem="akari", title="Akari Mizuno", tags=["character"],
         triggers=["akari mizuno", "red eyes", "long hair"]),
    # 211 characters start their triggers with "1girl"
    dict(stem="generic_girl_char", title="Hoshimi Rin", tags=["character"],
         triggers=["1girl", "hoshimi rin"]),
    dict(stem="generic_girl_char2", title="Kisaragi Mei", tags=["character"],
         triggers=["1girl", "kisaragi mei"]),
    # a name in the other order
    dict(stem="naruto_uz", title="Uzumaki Naruto", tags=["character"], triggers=["uzumaki naruto"]),
    # one word of a place name is not its purpose
    dict(stem="rehearsal_studio", title="Rehearsal Studio", tags=["background"],
         triggers=["rehearsal studio"]),
    dict(stem="cramped_alley", title="Cramped Alley", tags=["background"], triggers=["cramped alley"]),
    # a slider meant at a negative weight removes what it names
    dict(stem="blur_slider", title="Blur Slider", tags=["concept", "blur"], triggers=["motion blur"],
         prompts=["a city street"], weight=-1.6),
    # base-model words in a title
    dict(stem="cyber_xl_named", title="Cyberdelic Neon SDXL v1.5 LoRA", tags=["style"]),
    # plain-sentence concepts and plurals
    dict(stem="spaceship", title="Spaceship", tags=["vehicle"]),
    dict(stem="corgi", title="Corgi", tags=["animal"]),
    dict(stem="flower_lora", title="Flower", tags=["flower"]),
    dict(stem="light_pack", title="Light Pack", tags=["style"], triggers=["cinematic lighting"]),
]


def composer_with(tmp_path_factory, name: str, cards: list) -> Composer:
    return Composer(build_library(str(tmp_path_factory.mktemp(name)), extra=cards))


@pytest.fixture(scope="module")
def issue_composer(tmp_path_factory):
    return composer_with(tmp_path_factory, "issue10", ISSUE_CARDS)


def test_attribute_triggers_are_not_a_purpose(issue_composer):
    comp = issue_composer.compose("a girl with red eyes and long hair", "sd1")
    assert "akari" not in comp.stems
    assert "akari" in issue_composer.compose("akari mizuno, red eyes", "sd1").stems


def test_1girl_names_no_character(issue_composer):
    comp = issue_composer.compose("masterpiece, 1girl, solo, smile", "sd1")
    assert not {"generic_girl_char", "generic_girl_char2"} & set(comp.stems)
    assert "generic_girl_char" in issue_composer.compose("1girl, hoshimi rin", "sd1").stems


def test_a_name_in_the_other_order_is_found(issue_composer):
    assert "naruto_uz" in issue_composer.compose("naruto uzumaki, running", "sd1").stems


def test_one_word_of_a_purpose_is_not_a_match(issue_composer):
    comp = issue_composer.compose("portrait, studio lighting", "sd1")
    assert "rehearsal_studio" not in comp.stems
    comp = issue_composer.compose("a sofa and a bed cramped into a room", "sd1")
    assert "cramped_alley" not in comp.stems


def test_negative_weight_slider_never_contradicts_the_request(issue_composer):
    comp = issue_composer.compose("a runner, motion blur", "sd1")
    assert "blur_slider" not in comp.stems
    assert any(d.stem == "blur_slider" and "negative weight" in d.reason for d in comp.drops)


def test_base_model_and_version_words_do_not_dilute_a_title(issue_composer):
    comp = issue_composer.compose("a street, cyberdelic neon", "sd1")
    pick = next(a for a in comp.picks if a.stem == "cyber_xl_named")
    assert pick.coverage == pytest.approx(1.0)


def test_a_plain_sentence_is_not_diluted_by_its_scene_words(issue_composer):
    comp = issue_composer.compose("a corgi in a tiny helmet riding a spaceship over a quiet village at dusk",
                                  "sd1")
    assert {"corgi", "spaceship"} <= set(comp.stems)


def test_plurals_and_inflections_match(issue_composer):
    assert "flower_lora" in issue_composer.compose("a girl surrounded by flowers", "sd1").stems
    assert "light_pack" in issue_composer.compose("a knight, cinematic light", "sd1").stems


def test_compose_reads_the_snapshot_once(issue_composer):
    """Issue 9 item 12: a refresh swapping the snapshot mid-compose must not mix two snapshots."""
    class CountingIndex:
        def __init__(self, index):
            self._index, self.reads = index, 0

        @property
        def snapshot(self):
            self.reads += 1
            return self._index.snapshot

        def __getattr__(self, name):
            return getattr(self._index, name)

    retriever = issue_composer.retriever
    counting = CountingIndex(retriever.index)
    retriever.index = counting
    try:
        comp = issue_composer.compose("naruto uzumaki, cyberdelic neon, with a robot", "sd1")
    finally:
        retriever.index = counting._index
    assert comp.stems and counting.reads == 1


def test_masks_never_drop_a_named_character_and_report_what_they_leave_out(issue_composer):
    comp = issue_composer.compose("naruto uzumaki, with a robot, watercolor painting", "sd1")
    assert "naruto_uz" in comp.stems
    named = next(a for a in comp.picks if a.stem == "naruto_uz")
    assert named.named
    seen_left = False
    for seed in range(60):
        mask = comp.mask(seed)
        assert named.alias in mask.keys
        left = comp.masked_out(seed)
        assert {m["alias"] for m in left} == {a.alias for a in comp.picks} - set(mask.keys)
        assert all(m["reason"].startswith(f"masked out for seed {seed}") for m in left)
        seen_left |= bool(left)
    data = comp.to_dict(seed=3)
    assert data["masked_out"] == comp.masked_out(3) and data["seed"] == 3
    assert seen_left  # the test library does give masks something to leave out


def test_config_is_one_object_with_overrides(issue_composer):
    from lib_stylus.composer import ComposerConfig
    c = Composer(issue_composer.retriever, ComposerConfig(threshold=0.9), per_task=1)
    assert c.config.threshold == 0.9 and c.config.per_task == 1


CONTENT_CARDS = [
    dict(stem="male_hanfu", title="Hanfu Robe", tags=["clothing", "man"], triggers=["hanfu robe"]),
    dict(stem="zenny_armor", title="Zenny Armor", tags=["clothing", "armor"],
         triggers=["*see description*", "lora:zenny", "zenny armor", "a long sentence about the armor of the "
                   "ancient kingdom and its many ornaments"]),
]


@pytest.fixture(scope="module")
def content_composer(tmp_path_factory):
    return composer_with(tmp_path_factory, "content", CONTENT_CARDS)


def test_an_adapter_of_another_gender_is_refused(content_composer):
    comp = content_composer.compose("1girl, hanfu robe", "sd1")
    assert "male_hanfu" not in comp.stems
    assert any(d.stem == "male_hanfu" and d.reason.startswith("another gender") for d in comp.drops)
    assert "male_hanfu" in content_composer.compose("1boy, hanfu robe", "sd1").stems


def test_placeholder_syntax_and_sentence_triggers_are_never_written(content_composer):
    comp = content_composer.compose("a knight, zenny armor", "sd1")
    assert "zenny_armor" in comp.stems
    pick = next(a for a in comp.picks if a.stem == "zenny_armor")
    assert comp.triggers(pick) == ("zenny armor",)
    prompt = comp.rewrite(masking=False).prompt
    assert "see description" not in prompt and "ancient kingdom" not in prompt
    assert prompt == "a knight, zenny armor <lora:zenny_armor:0.64>"  # its trigger is there already


def test_named_characters_are_queued_in_the_same_order_whatever_the_dict_order():
    """The characters a prompt names came out in the order of a set of strings, which varies between
    processes (PYTHONHASHSEED): the same prompt could get other picks after a restart."""
    from types import SimpleNamespace
    import numpy as np
    from lib_stylus.composer import Task, _add_named
    tasks = [Task("nezuko", (0, 6), "nezuko", ["nezuko"])]
    orders = []
    for names in ({3: "nezuko", 1: "nezuko", 2: "nezuko"}, {2: "nezuko", 3: "nezuko", 1: "nezuko"}):
        queues = [[(0, 0.9, 0.9, 2, 5, 1.0)]]
        _add_named(SimpleNamespace(prompt_names=names), None, tasks, queues, np.ones(4, bool))
        orders.append([item[3] for item in queues[0]])
    assert orders[0] == orders[1] == [2, 1, 3]  # the one that matched first, then by row


def test_a_long_segment_may_be_split_into_its_phrases():
    plain = [t.plain
             for t in split_tasks("a knight in ornate plate armor kneeling in a ruined chapel, fog", 4)]
    assert plain == ["a knight", "ornate plate armor kneeling", "a ruined chapel", "fog"]
    assert ([t.plain for t in split_tasks("a knight in plate armor, fog")]
            == ["a knight in plate armor", "fog"])


# ------------------------------------------------------------------------ sparse matches, the same picks

def test_top_at_orders_equal_scores_as_top_over_every_card():
    """_top_at keeps _top's order of the dense scores exactly, ties included (copies of a card tie, and the
    order among them decides picks)."""
    import numpy as np
    from lib_stylus.composer import _top, _top_at
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 3000))
        docs = np.unique(rng.integers(0, n, int(rng.integers(0, 200))))
        levels = int(rng.integers(1, 6)) if trial % 2 else 10 ** 6  # few levels: many ties; else none
        values = (rng.integers(0, levels, len(docs)) / levels).astype(np.float32)
        dense = np.zeros(n, np.float32)
        dense[docs] = values
        for k in (1, 5, 30):
            assert _top_at(docs, values, n, k).tolist() == _top(dense, k).tolist()


def test_matches_at_scores_each_card_by_its_best_phrase_asked(composer):
    """matches_at against a card-by-card reading of asked(): a card scores its best phrase's strength x share
    among the phrases that count (rare enough, or most of the segment); a card no phrase asked is not
    listed."""
    import numpy as np
    from lib_stylus.purpose import prompt_words, purpose_index
    from lib_stylus.embedding import tokenize
    pidx = purpose_index(composer.retriever.index.snapshot)
    for text in ("a knight in plate armor", "cyberpunk city at night", "red dress, smile", "nothing here"):
        words = prompt_words(tokenize(text))
        units, rarity, share, got = pidx.asked(words)
        segment = sum(pidx.weights(list(dict.fromkeys(words))))
        docs, local = pidx.matches_at(words, (3.0, 0.0), 1.01)
        for (scores, best), min_rarity in zip(local, (3.0, 0.0)):
            expected: dict = {}
            for u, r, sh, g in zip(units.tolist(), rarity.tolist(), share.tolist(), got.tolist()):
                counts = r >= min_rarity or g >= 1.01 * segment
                value = float(np.float32(pidx.unit_strength[u]) * np.float32(sh)) if counts else 0.0
                doc = int(pidx.unit_doc[u])
                expected[doc] = max(expected.get(doc, 0.0), value)
            assert docs.tolist() == sorted(expected)
            assert scores.tolist() == pytest.approx([expected[d] for d in docs.tolist()])
            for doc, unit, score in zip(docs.tolist(), best.tolist(), scores.tolist()):
                assert (unit == -1) == (score <= 0)
                assert unit == -1 or int(pidx.unit_doc[unit]) == doc


def test_name_shares_of_many_cards_equal_each_cards_own(composer):
    """Over 32 cards, name_shares skips those with no name word in the prompt: each share is still the
    card's own name_share."""
    from lib_stylus.purpose import prompt_words, purpose_index
    from lib_stylus.embedding import tokenize
    pidx = purpose_index(composer.retriever.index.snapshot)
    assert pidx.n > 32
    docs = list(range(pidx.n))
    for text in ("a knight in plate armor", "cyberpunk city at night, neon", "nothing here"):
        words = set(prompt_words(tokenize(text)))
        assert pidx.name_shares(docs, words) == [pidx.name_share(d, words) for d in docs]
        assert any(pidx.name_shares(docs, words)) or text == "nothing here"


# Packaging in a card's name: a maker's series mark glued to the name ('SteampunkAI': 98 titles of the bench
# library, every topic), the format phrase "LoRA extraction" (9 titles), a maker's possessive ("Zovya's", 141
# titles): said about the file or its maker, so a prompt asking 'steampunk' asks the card's whole name.
PACKAGED_CARDS = [
    dict(stem="steampunkai", title="SteampunkAI [10MB] LoRA extraction", tags=["steampunk", "style"]),
    dict(stem="zovyas_wet_hair", title="Zovya's Wet Hair", tags=["wet hair", "concept"]),
    dict(stem="hoshino_ai", title="Hoshino Ai", tags=["character"], triggers=["hoshino ai"]),
    dict(stem="gothic_concept", title="Gothic Cathedral Concept", tags=["gothic", "concept"]),
    dict(stem="anime_style", title="Anime Style", tags=["anime", "style"]),
]


def test_packaging_words_are_no_part_of_a_cards_name(tmp_path):
    """issue 10 item 5: words about the file in a name dilute the match ('SteampunkAI [10MB] LoRA extraction'
    put 29 % of its name in a prompt asking 'steampunk'); a name's own 'Ai' stays."""
    from lib_stylus.embedding import tokenize
    from lib_stylus.purpose import latin_words, prompt_words, purpose_index, purpose_words
    assert purpose_words("SteampunkAI [10MB] LoRA extraction") == ["steampunk"]
    assert purpose_words("Zovya's Wet Hair") == ["zovya", "wet", "hair"]
    assert purpose_words("Hoshino Ai") == ["hoshino", "ai"]
    assert latin_words(purpose_words("RedAI_玖芊柒_中国女孩")) == ["red", "ai"]  # '_' joins one name
    # the Latin part of a CJK word is a number there ('6合1': 6 in 1, '12套外观': 12 outfits; 44 cards), not a
    # word of the name: 'Light 6 in 1' was 16 % asked by 'light' for its '61'
    assert latin_words(purpose_words("Light 6 in 1 光照技能包6合1")) == ["light"]
    pidx = purpose_index(build_library(str(tmp_path), PACKAGED_CARDS).index.snapshot)
    doc = pidx.stems.index("steampunkai")
    assert pidx.name_share(doc, set(prompt_words(tokenize("a steampunk airship")))) == 1.0
    assert pidx.name_share(pidx.stems.index("hoshino_ai"), {"hoshino"}) < 0.9
    # the kind of file a name says ('Concept', 'Style': Civitai's categories, in 68 and 664 titles) is no
    # purpose of it, unless the name says nothing else
    asked = set(prompt_words(tokenize("a gothic cathedral, anime")))
    assert pidx.name_share(pidx.stems.index("gothic_concept"), asked) == 1.0
    assert pidx.name_share(pidx.stems.index("anime_style"), asked) > 0.5


# A small franchise written first in its titles, one carried only in tags, and a LoRA titled with the
# franchise's name (it shows Mario) - issue 10 item 2, "another character of the named one's franchise".
FRANCHISE_CARDS = [
    dict(stem="malenia_v3", title="Elden Ring (Malenia)", tags=["character", "elden ring", "malenia"],
         triggers=["malenia blade of miquella"]),
    dict(stem="ranni_v1", title="Elden Ring Ranni The Witch", tags=["character", "elden ring", "woman"],
         triggers=["ranni the witch", "witch hat", "fur cloak"]),
    dict(stem="peach_1499", title="Princess Peach | Character Lora 1499",
         tags=["character", "mario", "super mario", "woman"]),
    dict(stem="rosalina_1077", title="Rosalina | Character Lora 1077", tags=["character", "super mario"]),
    dict(stem="daisy_1179", title="Princess Daisy | Character Lora 1179",
         tags=["character", "mario", "super mario"]),
    dict(stem="super_mario", title="Super Mario LoRA", tags=["nintendo", "mario", "super mario", "cartoon"],
         triggers=["supermario"]),
    dict(stem="mario_style", title="Super Mario | Style", tags=["style", "super mario", "style art"]),
]


@pytest.fixture(scope="module")
def franchise_composer(tmp_path_factory):
    return Composer(build_library(str(tmp_path_factory.mktemp("franchise")), extra=FRANCHISE_CARDS))


def test_another_character_of_the_named_ones_franchise_is_not_picked(franchise_composer):
    """'Elden Ring (Malenia)' made 'elden ring' a name of Malenia: a prompt naming Ranni of Elden Ring got
    Malenia too. The franchise alone names nobody; with the franchise, Ranni is Ranni."""
    comp = franchise_composer.compose("ranni the witch, elden ring, moonlight", "sd1")
    assert "ranni_v1" in comp.stems and "malenia_v3" not in comp.stems
    comp = franchise_composer.compose("malenia, elden ring, red hair", "sd1")
    assert "malenia_v3" in comp.stems and "ranni_v1" not in comp.stems
    assert not {"malenia_v3", "ranni_v1"} & set(franchise_composer.compose("elden ring, castle", "sd1").stems)


@pytest.mark.parametrize("prompt", ["princess peach, super mario, castle", "princess peach, super mario bros",
                                    "princess peach from super mario bros. in a castle"])
def test_a_lora_asked_only_by_the_named_characters_series_is_not_picked(franchise_composer, prompt):
    """'Super Mario LoRA' shows Mario: for a prompt naming Peach, 'super mario (bros)' says whose Peach she is
    and asks for no LoRA of its own."""
    comp = franchise_composer.compose(prompt, "sd1")
    assert "peach_1499" in comp.stems
    assert not {"super_mario", "mario_style", "rosalina_1077", "daisy_1179"} & set(comp.stems)
    if "bros" in prompt:  # "super mario" alone is a task names_series_of_named drops before any match
        assert any(d.stem == "super_mario" and d.reason.startswith(NAMED_SERIES) for d in comp.drops)
        # the setting that keeps a segment of the named character's series keeps its matches too
        every = Composer(franchise_composer.retriever, skip_series=False)
        assert "super_mario" in every.compose(prompt, "sd1").stems


def test_the_named_characters_series_asked_for_more_than_who_she_is_may_get_its_lora(franchise_composer):
    """"super mario official art" asks the series' art: 'Super Mario | Style' (tagged 'style art') serves it;
    'Super Mario LoRA' holds nothing of it but the series."""
    comp = franchise_composer.compose("princess peach, super mario official art, castle", "sd1")
    assert {"peach_1499", "mario_style"} <= set(comp.stems) and "super_mario" not in comp.stems


SAID_OF_SERIES = [
    # a costume card of one character, said of her series in its title's bracket (held-out set 8: picked for
    # "rapi \\(nikke\\), goddess of victory: nikke" by its bracket 'Nikke' alone)
    dict(stem="sakura_outfits", title="Sakura 2 Outfits (Nikke) 樱 2套外观",
         tags=["anime", "character", "sexy", "female", "ninja", "game character", "nikke",
               "goddess of victory: nikke"], triggers=["NinjaSuit", "DefaultOutfit"]),
    # two characters' cards said of the series by name, which make it a series the library knows
    dict(stem="rapi", title="Rapi (Nikke)", tags=["anime", "character", "nikke", "goddess of victory: nikke"],
         triggers=["rapi"]),
    dict(stem="anis", title="Anis (Goddess of Victory: Nikke)",
         tags=["anime", "character", "nikke", "goddess of victory: nikke"], triggers=["anis"]),
]


@pytest.fixture(scope="module")
def series_composer(tmp_path_factory):
    return composer_with(tmp_path_factory, "said_of", SAID_OF_SERIES)


def test_a_card_asked_only_by_the_series_its_title_says_it_is_of_is_not_picked(series_composer):
    """'Sakura 2 Outfits (Nikke)' is about Sakura's outfits: a prompt that writes only the series asks for
    something of the series, not for her costumes; one that writes her name asks for them."""
    assert "sakura_outfits" not in series_composer.compose(
        "1girl, rapi, goddess of victory: nikke", "sd1").stems
    comp = series_composer.compose("1girl, goddess of victory: nikke, red jacket", "sd1")
    assert comp.stems == []
    reasons = {d.stem: d.reason for d in comp.drops}
    assert (reasons["sakura_outfits"].startswith(SERIES_OF)
            and "'Sakura 2 Outfits'" in reasons["sakura_outfits"])
    assert "sakura_outfits" in series_composer.compose("sakura outfits, nikke, ninja", "sd1").stems


@pytest.mark.parametrize("title, phrase, task, expected", [
    ("Sakura 2 Outfits (Nikke)", "nikke", "goddess of victory: nikke", "Sakura 2 Outfits"),
    ("Sakura 2 Outfits (Nikke)", "goddess of victory: nikke", "goddess of victory: nikke",
     "Sakura 2 Outfits"),
    ("Sakura 2 Outfits (Nikke)", "nikke", "sakura, nikke", ""),         # her name is asked too
    ("Sakura 2 Outfits (Nikke)", "ninja", "ninja", ""),                 # a phrase of no series
    ("Anime Style (Nikke)", "nikke", "nikke", ""),                      # only a kind of card: the series'
    ("[Ukiyo-e] Kawase Hasui Painting Style", "ukiyo-e", "ukiyo-e", ""),  # a category before the name
    ("Hasui", "hasui", "hasui", ""),
    ("Taiikukan (Japanese school gymnasium)", "gymnasium", "gymnasium", ""),  # a translation, no series
])
def test_the_series_a_cards_name_is_said_to_be_of(title, phrase, task, expected):
    from types import SimpleNamespace
    from lib_stylus.composer import Task, _of_series_only
    from lib_stylus.embedding import tokenize
    from lib_stylus.purpose import purpose_words
    card = SimpleNamespace(title=title)
    t = Task(task, (0, len(task)), task, tokenize(task))
    series = {"nikke", "goddess of victory: nikke"}  # the franchises of this library
    is_series = lambda text: text.casefold() in series  # noqa: E731
    assert _of_series_only(card, frozenset(purpose_words(phrase)), t, is_series) == expected


def test_a_franchise_lora_is_still_picked_when_the_franchise_is_asked(franchise_composer):
    assert "super_mario" in franchise_composer.compose("super mario, castle, night", "sd1").stems


def test_a_prompt_asking_another_kind_of_the_cards_thing_asks_nothing_of_it(tmp_path):
    """'desaturated blue-grey palette' asked for a 'Neon Palette' LoRA by its tag 'palette': the card's name
    is one kind of palette (its modifier 'neon' unasked) and the prompt names another kind ('desaturated').
    Without a modifier of its own the prompt still asks it, and so does the card's own kind."""
    cards = [dict(stem="neon_palette", title="Neon Palette", tags=["neon", "palette", "color"]),
             dict(stem="wedding_dress", title="Wedding dress", tags=["clothing", "dress"]),
             dict(stem="simple_chibi", title="simple chibi artstyle", tags=["chibi"])]
    composer = Composer(build_library(str(tmp_path), extra=cards))
    _refused_unless_switched_off(composer, "1girl, desaturated blue-grey palette", "neon_palette",
                                 "another kind", "contrast")
    assert composer.compose("1girl, neon palette", "sd1").stems == ["neon_palette"]
    assert composer.compose("1girl, glowing neon colour palette", "sd1").stems == ["neon_palette"]
    assert composer.compose("1girl, palette", "sd1").stems == ["neon_palette"]
    assert composer.compose("1girl, lace wedding dress", "sd1").stems == ["wedding_dress"]
    # queries-dev: 'cute chibi proportions' lost 'simple chibi artstyle': 'simple' is how it draws, not a kind
    # of chibi the card is about (not among its tags)
    assert composer.compose("a man in the park, cute chibi proportions", "sd1").stems == ["simple_chibi"]


def test_a_card_tagging_its_own_name_is_not_about_the_names_modifier(tmp_path):
    """queries-dev: 'soft watercolor style' lost a 'Vivid Watercolors' LoRA (judged relevant) to the rule
    above: its tag 'vivid watercolors' only repeats its name; a kind it is about is one it tags on its own
    ('neon')."""
    cards = [dict(stem="vivid_gouache", title="Vivid Gouache", tags=["gouache", "vivid gouache"]),
             dict(stem="neon_palette", title="Neon Palette", tags=["neon", "palette", "color"])]
    composer = Composer(build_library(str(tmp_path), extra=cards))
    assert composer.compose("soft gouache style, a train station at dusk", "sd1").stems == ["vivid_gouache"]
    assert composer.compose("1girl, desaturated palette", "sd1").stems == []


def _refused_unless_switched_off(composer, prompt: str, stem: str, why: str, switch: str) -> None:
    """The card is dropped for the prompt with a reason saying ``why``, and picked with the rule off."""
    comp = composer.compose(prompt, "sd1")
    assert stem not in comp.stems
    assert any(d.stem == stem and why in d.reason for d in comp.drops)
    assert Composer(composer.retriever, **{switch: False}).compose(prompt, "sd1").stems == [stem]


def test_a_name_modifier_that_only_praises_names_no_kind(tmp_path):
    """'Beautiful sky' is a sky LoRA, not one kind of sky: 'blue sky' still asks it."""
    cards = [dict(stem="nice_sky", title="Beautiful sky", tags=["sky", "scenery"])]
    composer = Composer(build_library(str(tmp_path), extra=cards))
    assert composer.compose("1girl, blue sky", "sd1").stems == ["nice_sky"]


def test_a_style_of_another_medium_is_refused_but_a_named_character_is_not(tmp_path):
    """A 'fashion watercolor' style picked for a runway photograph (unseen sets 1 and 6, judged wrong twice):
    the style's medium clashes with the one the prompt asks. A character the prompt names is hers to decide,
    whatever her LoRA's samples were drawn in."""
    cards = [dict(stem="fashion_wc", title="Fashion Watercolor",
                  tags=["anime", "fashion", "style", "illustration"], triggers=["fashion watercolor"]),
             dict(stem="nadia", title="Nadia (Blue Water) - anime style",
                  tags=["style", "character", "anime"], triggers=["nadia"])]
    composer = Composer(build_library(str(tmp_path), extra=cards))
    comp = composer.compose("fashion, runway photo of a model, 85mm, bokeh", "sd1")
    assert "fashion_wc" not in comp.stems
    assert any(d.stem == "fashion_wc" and "another medium" in d.reason for d in comp.drops)
    assert "fashion_wc" in composer.compose("fashion, a model in a long coat", "sd1").stems
    assert "nadia" in composer.compose("nadia, cosplay photo, convention hall, 35mm", "sd1").stems


def test_a_lora_that_makes_things_of_a_material_needs_a_thing_made_of_it(tmp_path):
    """A 'Smoke' LoRA 'designed to create people, animals, objects out of smoke' was picked for the smoke of
    a scene (4 prompts of the unseen sets, each judged wrong), and a 'Made of Ice' one for ice cream: a
    prompt asks such a LoRA only when it asks a thing made of that material."""
    cards = [dict(stem="smoke", title="Smoke", tags=["smoke", "style"], triggers=["smoke"],
                  description="This LoRa is designed to create people, animals, objects out of smoke."),
             dict(stem="ice", title="Made of Ice", tags=["ice", "style"], triggers=["made_of_ice"],
                  description="Recommended settings: weight 0.8")]
    composer = Composer(build_library(str(tmp_path), extra=cards))
    comp = composer.compose("a detective in a bar, cigarette smoke, neon light", "sd1")
    assert "smoke" not in comp.stems
    assert any(d.stem == "smoke" and MADE_OF in d.reason for d in comp.drops)
    assert "smoke" in composer.compose("a wolf made of smoke, dark background", "sd1").stems
    assert "ice" not in composer.compose("ice cream cone, sticker, white background", "sd1").stems
    assert "ice" in composer.compose("a rose made of ice, macro photo", "sd1").stems


def test_a_tag_nearly_only_characters_cards_carry_asks_no_other_card(tmp_path):
    """'virtual youtuber' tags 37 cards of the library, 35 of them characters' (held-out sets 10 and 12: a
    pose sheet and an artist's style picked for it): on another card it says who the pictures show. A
    franchise's tag still asks its style, and a card whose name holds the tag's words is about it."""
    def characters(stem, series, tag, n=10):
        return [dict(stem=f"{stem}_{i}", title=f"{stem.title()}{chr(97 + i)} ({series})",
                     tags=["character", tag], triggers=[f"{stem}{chr(97 + i)}"]) for i in range(n)]
    cards = characters("streamer", "Vtuber", "virtual youtuber", 18) + [
        dict(stem="poses", title="Pose Sheet 05", tags=["pose", "virtual youtuber"], triggers=["pose sheet"]),
        dict(stem="gear", title="Youtuber Gear", tags=["clothing", "virtual youtuber"]),
    ] + characters("shipgirl", "Kantai Collection", "kantai collection") + [
        dict(stem="kc_style", title="Yadokari Style", tags=["style", "kantai collection"])]
    # more cards of other things, so the tag's words are as rare as in a real library
    cards += [dict(stem=f"scene_{i}", title=f"Scenery Helper {i}", tags=["landscape"]) for i in range(260)]
    composer = Composer(build_library(str(tmp_path), extra=cards))
    comp = composer.compose("1girl, virtual youtuber, smile, stage", "sd1")
    assert "poses" not in comp.stems and "gear" in comp.stems
    assert any(d.stem == "poses" and d.reason.startswith(CHARACTERS_TAG) for d in comp.drops)
    off = Composer(composer.retriever, characters_tag=1.0).compose("1girl, virtual youtuber, smile", "sd1")
    assert "poses" in off.stems
    assert "kc_style" in composer.compose("1girl, kantai collection, sailor dress", "sd1").stems
