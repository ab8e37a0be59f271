"""'The card's name says X, its images show Y' (issue 10, both ways): what a LoRA's own sample prompts show
must be asked for by the prompt - a small real library where some cards' samples show other content."""
import pytest

from lib_stylus.composer import Composer
from lib_stylus.shown import SHOWN_NOT_ASKED, SOMEONE_NOT_ASKED, card_shown, shown_of
from tests.compose_fixtures import build_library

STILL = ["still_life, no humans, simple background, vase, old, muted colors",
         "(still_life:1.3), no humans, simple background, glass, muted colors <lora:still_oil:0.8>"]
PANTS = ["1girl, standing, wearing black pants with white elephant pattern, <lora:elephant_pants:0.8>",
         "1girl, model pose, long hair, wearing purple pants with elephant pattern, in the room"]
EXTRA = [
    # its name says oil paintings, its images are still lifes
    dict(stem="still_oil", title="still life, Oil paintings, Flowers", tags=["still life", "background"],
         triggers=["still_life"], prompts=STILL),
    # the same card without samples, and with junk samples: nothing to go by, so no refusal
    dict(stem="fresco_bare", title="still life, Fresco murals", tags=["background"], triggers=["still_life"]),
    dict(stem="gouache_junk", title="still life, Gouache sketches", tags=["background"],
         triggers=["still_life"], prompts=["<lora:gouache_junk:0.7>", "masterpiece, best quality"]),
    # one sample prompt, posted twice: what one image shows is no evidence of what they all show
    dict(stem="tempera_once", title="still life, Tempera panels", tags=["background"],
         triggers=["still_life"], prompts=["still life, vase <lora:tempera_once:1>"] * 2),
    # a clothing LoRA tagged "elephant": its images show a girl in elephant-print trousers
    dict(stem="elephant_pants", title="Thai Harem Pants", tags=["clothing", "elephant", "pants"],
         triggers=["harem pants"], prompts=PANTS),
    # a character: its samples show the character, whom a "<franchise> character" prompt asks for
    # (named by an everyday word, as Power of Chainsaw Man is)
    dict(stem="power", title="Power | Street Fighter", tags=["character", "street fighter"],
         triggers=["power"], prompts=["1girl, power, sharp teeth, grin", "1girl, power, horns, blue jacket"]),
    # a style named by a made-up word its samples repeat: that word is the style, not other content
    dict(stem="zyd_ink", title="Zydink", tags=["sumi-e", "style"], triggers=["zydink"],
         prompts=["zydink, 1girl, mountains, mist", "zydink, 1girl, river, boat"]),
]
# "still", "life" and "power" are everyday words: the fillers' descriptions use them (a made-up word is on one
# card)
COMMON = "a still morning, city life, power lines"


@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    return Composer(build_library(str(tmp_path_factory.mktemp("shown")), EXTRA, common=COMMON))


def picks_and_drops(composer, prompt):
    comp = composer.compose(prompt, "sd1", max_adapters=4)
    return comp.stems, {d.stem: d.reason for d in comp.drops}


def test_a_card_whose_images_show_other_content_than_its_matched_name_is_refused(composer):
    stems, drops = picks_and_drops(composer, "oil painting of a sailing ship in a storm")
    assert "still_oil" not in stems
    assert drops["still_oil"].startswith(SHOWN_NOT_ASKED)
    assert "'still life'" in drops["still_oil"] and "Oil paintings" in drops["still_oil"]


def test_the_same_card_is_picked_when_the_prompt_asks_what_its_images_show(composer):
    stems, _ = picks_and_drops(composer, "oil painting of a still life with a vase")
    assert "still_oil" in stems


def test_one_sample_prompt_however_often_posted_says_nothing_of_what_the_images_show(composer):
    stems, drops = picks_and_drops(composer, "tempera panels of a harbor at dawn")
    assert "tempera_once" in stems, drops.get("tempera_once")


def test_no_or_junk_sample_prompts_say_nothing(composer):
    snap = composer.retriever.index.snapshot
    rows = {e.card.stem: i for i, e in enumerate(snap.entries)}
    assert card_shown(snap, rows["fresco_bare"]).samples == ()
    assert card_shown(snap, rows["gouache_junk"]).samples == ()
    assert "fresco_bare" in picks_and_drops(composer, "fresco murals of a harbour")[0]
    assert "gouache_junk" in picks_and_drops(composer, "gouache sketches of a harbour")[0]


def test_a_clothing_lora_whose_images_all_show_a_person_is_refused_for_a_scene_without_one(composer):
    stems, drops = picks_and_drops(composer, "three elephants walking along a dirt road at dusk")
    assert "elephant_pants" not in stems
    assert drops["elephant_pants"].startswith(SOMEONE_NOT_ASKED)
    # asked with its wearer, or by its own name, it is picked
    assert "elephant_pants" in picks_and_drops(composer, "1girl, elephant pattern harem pants")[0]
    assert "elephant_pants" in picks_and_drops(composer, "a mechanic wearing an elephant print")[0]
    assert "elephant_pants" in picks_and_drops(composer, "elephant print, white dress, outdoors")[0]


def test_who_a_character_lora_shows_is_left_to_the_character_rules(composer):
    stems, drops = picks_and_drops(composer, "street fighter character in a city at night")
    assert "power" in stems, drops.get("power")


def test_a_made_up_trigger_the_samples_repeat_is_the_style_itself(composer):
    stems, drops = picks_and_drops(composer, "sumi-e painting of a mountain village")
    assert "zyd_ink" in stems, drops.get("zyd_ink")


def test_shown_of_odd_sample_prompts():
    from types import SimpleNamespace
    assert shown_of(SimpleNamespace(sample_prompts=None)).samples == ()
    assert shown_of(SimpleNamespace(sample_prompts=[3, None, "", "   "])).samples == ()
    shown = shown_of(SimpleNamespace(sample_prompts=["1girl, red dress", "a woman in a garden"]))
    assert shown.person and len(shown.samples) == 2
    assert not shown_of(SimpleNamespace(sample_prompts=["1girl, red dress", "no humans, vase"])).person


def test_prepare_works_out_every_card_once_and_a_refresh_only_the_edited_one(monkeypatch):
    from types import SimpleNamespace
    from lib_stylus import shown as shown_mod

    def snapshot(cards):
        return SimpleNamespace(entries=[SimpleNamespace(card=c) for c in cards])
    cards = [SimpleNamespace(sample_prompts=[f"1girl, scene {i}"]) for i in range(3)]
    seen = []
    real = shown_mod.shown_of
    monkeypatch.setattr(shown_mod, "shown_of", lambda card: seen.append(card) or real(card))
    first = snapshot(cards)
    shown_mod.prepare(first)
    assert seen == cards and sorted(first._stylus_shown) == [0, 1, 2]
    edited = SimpleNamespace(sample_prompts=["no humans, vase"])
    seen.clear()
    second = snapshot([cards[0], edited, cards[2]])
    shown_mod.prepare(second)
    assert seen == [edited]  # the unchanged cards' Shown are the previous snapshot's
    assert card_shown(second, 0) is card_shown(first, 0) and not card_shown(second, 1).person
