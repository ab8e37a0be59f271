"""'Adds nothing the prompt does not ask for' (issue 10 items 3 and 8): sexual or revealing content, another
gender, an ethnicity, a real person's likeness - profiled from cards of a small real library."""
import os

import pytest

from lib_stylus.characters import character_index
from lib_stylus.content import (ANOTHER_MEDIUM, OTHER_GENDER, REAL_LIKENESS, UNASKED_ETHNICITY,
                                UNASKED_REVEALING, UNASKED_SEXUAL, UNASKED_SKIN, card_profile, conflict,
                                profile_card, profile_prompt)
from lib_stylus.index import LibraryIndex
from tests.compose_fixtures import write_lora

CARDS = [
    dict(stem="male_hanfu", title="Male Hanfu", tags=["clothing", "man", "male", "chinese"],
         triggers=["male hanfu"]),
    dict(stem="hanfu", title="Hanfu Dress", tags=["clothing", "woman", "chinese"], triggers=["hanfu"]),
    dict(stem="asian_man", title="Asian Man", tags=["man", "asian", "photorealistic", "character"],
         triggers=["asian man"]),
    dict(stem="ink_style", title="Chinese Ink Style", tags=["style", "chinese", "woman", "ink"]),
    dict(stem="underboob", title="Underboob Concept", tags=["concept", "sexy"], triggers=["underboob"]),
    dict(stem="lingerie", title="Lace Lingerie", tags=["clothing", "lingerie", "woman"],
         triggers=["lingerie"]),
    dict(stem="bikini", title="Beach Bikini", tags=["clothing", "bikini"], triggers=["bikini"]),
    dict(stem="nude_pose", title="Lying Pose", tags=["pose", "nsfw", "nude"], triggers=["lying"]),
    dict(stem="yor", title="Yor Briar (Spy x Family)", tags=["character", "sexy", "woman", "spy x family"],
         triggers=["yor briar", "cleavage"]),
    dict(stem="emma", title="Emma Stone", tags=["celebrity", "actress", "woman"], triggers=["emma stone"]),
    dict(stem="wonyoung", title="Jang Wonyoung", tags=["kpop", "korean woman", "kpop idol"],
         triggers=["jwy"]),
    dict(stem="armor", title="Knight Armor", tags=["clothing", "armor"], triggers=["knight armor"]),
    dict(stem="watercolor", title="Watercolor Style", tags=["style", "woman", "girls", "sexy"]),
    dict(stem="makima", title="Esthetic Makima (Chainsaw Man)", tags=["character", "chainsaw man"],
         triggers=["makima \\(chainsaw man\\)"]),
    dict(stem="kula", title="Kula Diamond - The King of Fighters", tags=["character", "the king of fighters"],
         triggers=["kula diamond"]),
    dict(stem="csm_style", title="Chainsaw Man Anime Style", tags=["style", "chainsaw man"]),
    dict(stem="fashion_wc", title="fashion watercolor", tags=["anime", "fashion", "style", "illustration"]),
    dict(stem="comic_cover", title="Comic Cover", tags=["style"]),
    dict(stem="soft_style", title="Soft - Style", tags=["anime", "style"]),
    dict(stem="film_look", title="Film Look", tags=["style", "photography", "realistic"]),
    dict(stem="xianxia", title="Immortal World", tags=["style", "photorealistic", "chinese ink painting"]),
    dict(stem="dark_fantasy", title="Dark Fantasy",
         tags=["concept", "fantasy", "art style", "dark skin", "tan"], triggers=["dark fantasy"]),
    dict(stem="elf_girl", title="Dark Elf Girl", tags=["character", "elf", "dark skin"],
         triggers=["dark elf"]),
    dict(stem="asuka", title="Asuka Langley", tags=["character", "anime", "evangelion"],
         triggers=["asuka langley"]),
    # a LoRA with modes, one of them explicit: its main trigger is safe, the author's list says the rest
    dict(stem="silver_suit", title="Bodysuit", tags=["anime", "clothes"],
         triggers=["white bodysuit, nsfw", "grey bodysuit, armor", "silver bodysuit, see-through"]),
    dict(stem="narmaya", title="Narmaya (Granblue Fantasy)", tags=["character", "granblue fantasy"],
         triggers=["narmaya \\(granblue fantasy\\)", "yukata, ver2costume", "NSFW, narunsfw"]),
    # safe words whose neighbours in the next trigger or tag would spell an explicit phrase ('camel toe',
    # 'spread legs'): each trigger and each tag is read on its own
    dict(stem="caravan", title="Desert Caravan", tags=["scenery", "camel", "toe ring"],
         triggers=["desert, camel", "toe ring, sand", "spread", "legs of a table"]),
]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("content"))
    for card in CARDS:
        write_lora(folder, **card)
    index = LibraryIndex([folder], os.path.join(folder, ".stylus"))
    index.refresh(save=False)
    snap = index.snapshot
    return snap, {e.card.stem: i for i, e in enumerate(snap.entries)}


def why(lib, stem, prompt, character: bool = False) -> str:
    """``character``: as the composer asks for a character's card or one the prompt names."""
    snap, rows = lib
    row = rows[stem]
    characters = character_index(snap)
    named = characters.named_in(prompt)
    card = profile_card(snap.entries[row], row, characters)
    return conflict(card, profile_prompt(prompt, named), character)


def test_odd_input_gives_empty_profiles():
    from types import SimpleNamespace
    assert profile_prompt("") == profile_prompt(None) == profile_prompt("((((, <lora:x:1>, BREAK")
    bare = SimpleNamespace(title=None, stem=None, tags=None, trigger_words=None, nsfw=False)
    assert conflict(profile_card(bare), profile_prompt("1girl")) == ""


def test_prompt_profile():
    p = profile_prompt("masterpiece, 1girl, solo, (large breasts:1.2), korean woman, by the sea")
    assert p.genders == {"female"} and p.revealing and not p.explicit and p.nsfw
    assert p.ethnicities == {"korean"} and p.subject == "generic" and not p.real_person
    q = profile_prompt("1boy and 1girl, a man and a woman dancing, nsfw")
    assert q.genders == {"female", "male"} and q.explicit
    assert profile_prompt("a photo of a celebrity on the red carpet").real_person
    assert profile_prompt("a cat on a sofa").genders == frozenset()


def test_never_sexual_or_revealing_content_on_a_safe_prompt(lib):
    assert why(lib, "nude_pose", "1girl, lying on a bed, reading").startswith(UNASKED_SEXUAL)
    assert why(lib, "underboob", "1girl, white shirt, city").startswith(UNASKED_REVEALING)
    assert why(lib, "lingerie", "a woman in a lace dress").startswith(UNASKED_REVEALING)
    assert why(lib, "bikini", "a woman on a beach in a bikini") == ""     # asked for
    assert why(lib, "nude_pose", "1girl, lying, nude, nsfw") == ""
    assert why(lib, "nude_pose", "1girl, lying, bikini").startswith(UNASKED_SEXUAL)  # revealing is not nude


def test_an_explicit_mode_among_the_trigger_words_counts(lib):
    # Not only the main trigger: an author who lists 'nsfw' as one of the LoRA's modes trained it on such
    # images, and a SFW prompt's "blue bodysuit" must not get it...
    assert why(lib, "silver_suit", "1girl, blue bodysuit, city").startswith(UNASKED_SEXUAL)
    assert why(lib, "silver_suit", "1girl, bodysuit, nsfw") == ""
    # ...while a character the prompt names keeps her LoRA: she is what was asked, and her LoRA's safe modes
    # are hers (Narmaya's card lists an NSFW costume among eight)
    assert why(lib, "narmaya", "narmaya \\(granblue fantasy\\), yukata, festival", character=True) == ""


def test_an_explicit_phrase_is_read_within_one_trigger_or_tag(lib):
    # 'camel' ends one trigger and 'toe ring' starts the next: no trigger says 'camel toe'
    assert why(lib, "caravan", "a desert caravan at dusk, camels, sand dunes") == ""
    snap, rows = lib
    card = profile_card(snap.entries[rows["caravan"]], rows["caravan"], character_index(snap))
    assert not card.explicit and card.sexual_words == ()


def test_civitai_nsfw_flag_counts(lib):
    snap, rows = lib
    entry = snap.entries[rows["armor"]]
    entry.card.nsfw = True  # as read from model.nsfw in .civitai.info
    try:
        assert conflict(profile_card(entry), profile_prompt("a knight in armor")).startswith(UNASKED_SEXUAL)
    finally:
        entry.card.nsfw = False


def test_the_catch_all_sexy_tag_alone_is_not_revealing(lib):
    assert why(lib, "yor", "yor briar, black dress, city") == ""
    assert why(lib, "watercolor", "1girl, watercolor, flowers") == ""


def test_gender_from_name_and_tags_of_clothing_and_characters(lib):
    assert why(lib, "male_hanfu", "1girl, hanfu, lake").startswith(OTHER_GENDER)
    assert why(lib, "male_hanfu", "1boy, hanfu, lake") == ""
    assert why(lib, "hanfu", "1boy, hanfu, lake").startswith(OTHER_GENDER)
    assert why(lib, "hanfu", "1girl, hanfu, lake") == ""        # 'chinese' of a hanfu is no ethnicity
    assert why(lib, "hanfu", "a hanfu on a mannequin") == ""     # no gender asked: none contradicted
    assert why(lib, "watercolor", "1boy, watercolor") == ""      # a style tagged 'woman' has no gender
    assert why(lib, "ink_style", "an old man fishing, ink painting") == ""


def test_a_series_name_says_nothing_about_gender(lib):
    snap, rows = lib
    ci = character_index(snap)
    for stem in ("makima", "kula", "csm_style"):
        assert why(lib, stem, "1girl, makima, kula diamond, office") == "", stem
        assert profile_card(snap.entries[rows[stem]], rows[stem], ci).genders == frozenset(), stem
        assert profile_card(snap.entries[rows[stem]], rows[stem]).genders == frozenset(), stem  # no index
    assert why(lib, "csm_style", "1boy, city") == ""


def test_card_profiles_are_kept_on_the_snapshot(lib):
    snap, rows = lib
    first = card_profile(snap, rows["emma"])
    assert first.real_person and first.row == rows["emma"]
    assert card_profile(snap, rows["emma"]) is first


def test_ethnicity_only_when_asked(lib):
    assert why(lib, "asian_man", "a man reading in a cafe").startswith(UNASKED_ETHNICITY)
    assert why(lib, "asian_man", "a japanese man reading in a cafe") == ""   # asian covers japanese
    assert why(lib, "asian_man", "an asian man reading") == ""


def test_real_likeness_only_for_the_named_person(lib):
    assert why(lib, "emma", "a portrait of a woman").startswith(REAL_LIKENESS)
    assert why(lib, "emma", "a portrait of emma stone, smiling") == ""
    assert why(lib, "wonyoung", "a korean woman in a cafe").startswith(REAL_LIKENESS)
    assert why(lib, "wonyoung", "a woman in a cafe").startswith(UNASKED_ETHNICITY)


def test_a_style_of_another_medium_than_the_prompt_asks(lib):
    """A watercolor or anime style spoils a photograph, and a photo style an oil painting: a style card's
    medium (its name, or its tags) must be one the prompt asks when the prompt asks one."""
    runway = "fashion photo of a model on a runway, 85mm, bokeh"
    assert why(lib, "fashion_wc", runway).startswith(ANOTHER_MEDIUM)
    cosplay = "cosplay photograph of a superhero, studio light"
    assert why(lib, "comic_cover", cosplay).startswith(ANOTHER_MEDIUM)
    assert why(lib, "soft_style", "RAW photo, a lynx in the snow, (photorealistic:1.3)").startswith(
        ANOTHER_MEDIUM)
    assert why(lib, "film_look", "oil painting of a harbour at dusk").startswith(ANOTHER_MEDIUM)
    assert why(lib, "film_look", "1girl, anime, city at night").startswith(ANOTHER_MEDIUM)
    # a lens or a film stock asks a photograph as plainly as the word does
    assert why(lib, "soft_style", "portrait of a cat on a velvet stool, 85mm, sharp focus").startswith(
        ANOTHER_MEDIUM)
    assert why(lib, "soft_style", "a harbour at dawn, kodak portra 400").startswith(ANOTHER_MEDIUM)


def test_no_medium_clash_when_the_prompt_asks_none_or_both(lib):
    assert why(lib, "fashion_wc", "1girl, fashion, long coat, city street") == ""       # none asked
    assert why(lib, "fashion_wc", "1girl, fashion, watercolor, flowers") == ""          # its own asked
    assert why(lib, "film_look", "a photo of an oil painting on an easel") == ""        # both asked
    assert why(lib, "soft_style", "semi-realistic, 1girl, garden") == ""                # between the two
    # a medium word that is the thing held or read asks no medium of the picture
    assert why(lib, "soft_style", "a man holding an old photograph, sitting in a park") == ""
    assert why(lib, "film_look", "a boy reading a manga on a train") == ""
    # nor does the name of an event or a place ('Comic-Con')
    assert why(lib, "comic_cover", "cosplay photo of a woman at Comic-Con, flash photography").startswith(
        ANOTHER_MEDIUM)


def test_only_a_style_or_a_name_says_a_medium(lib):
    # a card whose tags say both media says none; a character drawn in anime is still her on a photo
    assert why(lib, "xianxia", "a photo of misty mountains") == ""
    assert why(lib, "xianxia", "ink painting of misty mountains") == ""
    assert why(lib, "asuka", "cosplay photo of asuka langley, convention") == ""


def test_a_skin_tone_only_when_asked(lib):
    """A 'Dark Fantasy' concept tagged 'dark skin' and 'tan' darkened Geralt's and Guts's skin (unseen sets 1
    and 6): a LoRA that is not a character adds no skin tone the prompt does not ask."""
    assert why(lib, "dark_fantasy", "geralt of rivia, dark fantasy, foggy swamp").startswith(UNASKED_SKIN)
    assert why(lib, "dark_fantasy", "1girl, dark-skinned female, dark fantasy, castle") == ""
    assert why(lib, "dark_fantasy", "a tanned warrior, dark fantasy") == ""
    # a character's own skin is hers: the character rules decide on her
    assert conflict(profile_card(lib[0].entries[lib[1]["elf_girl"]]), profile_prompt("dark elf, forest"),
                    character=True) == ""
