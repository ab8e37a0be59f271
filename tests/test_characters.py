"""Character and franchise resolution (issue 10 item 2) on a small real library: names in any order, spacing,
escapes, weights, romanizations; never from '1girl', colours or everyday words; franchises asked generically;
the reasons a character LoRA is refused."""
import os

import pytest

from lib_stylus.characters import (ANOTHER_CHARACTER, GENERIC_SUBJECT, OTHER_COSPLAY, CharacterIndex,
                                   character_index)
from lib_stylus.index import LibraryIndex
from tests.compose_fixtures import write_lora

CHARACTER = ["anime", "character"]
CARDS = [
    dict(stem="naruto_v2", title="Naruto Uzumaki (Naruto) LoRA v2", tags=CHARACTER + ["naruto"],
         triggers=["uzumaki naruto", "orange jumpsuit"]),
    dict(stem="hutao1-000009", title="Hu Tao | Genshin Impact", tags=CHARACTER + ["genshin impact"],
         triggers=["hu tao \\(genshin impact\\)", "twintails", "porkpie hat"]),
    dict(stem="shogun-10", title="[Genshin Impact] Raiden Shogun LORA", tags=CHARACTER + ["genshinimpact"],
         triggers=["raiden shogun", "purple kimono"]),
    dict(stem="tifa_v2", title="Tifa Lockhart - Final Fantasy VII LoRA",
         tags=CHARACTER + ["final fantasy vii"],
         triggers=["tifa lockhart", "white tank top"]),
    dict(stem="megumin", title="Megumin (Konosuba)", tags=CHARACTER + ["konosuba"], triggers=["megumin"]),
    dict(stem="gotoh", title="Gotoh Hitori (Bocchi the Rock!)", tags=CHARACTER + ["bocchi the rock!"],
         triggers=["gotoh hitori"]),
    dict(stem="labiata", title="Labiata (Last Origin)", tags=CHARACTER + ["last origin"],
         triggers=["1girl", "red eyes", "long hair", "labiata"]),
    dict(stem="marisa", title="Kirisame Marisa (Touhou)", tags=CHARACTER + ["touhou"],
         triggers=["kirisame marisa", "witch hat", "witch"]),
    dict(stem="loid", title="Loid Forger - Spy x Family", tags=CHARACTER + ["spy x family"],
         triggers=["twilight \\(spy x family\\)", "suit"]),
    dict(stem="serena_pkmn", title="Serena (Pokemon)", tags=CHARACTER + ["pokemon"], triggers=["serena"]),
    dict(stem="serena_dq", title="Serena - Dragon Quest XI", tags=CHARACTER + ["dragon quest xi"],
         triggers=["serena"]),
    dict(stem="amiya", title="Amiya (Arknights)", tags=CHARACTER + ["arknights"], triggers=["amiya"]),
    dict(stem="texas", title="Texas (Arknights)", tags=CHARACTER + ["arknights"], triggers=["texas"]),
    dict(stem="black_cat", title="Black Cat (Marvel)", tags=CHARACTER + ["marvel"], triggers=["black cat"]),
    dict(stem="misty_pkmn", title="Misty (Pokemon)", tags=CHARACTER + ["pokemon"], triggers=["misty"]),
    dict(stem="illya", title="Ilya (Fate)", tags=CHARACTER + ["fate"], triggers=["ilya"]),
    dict(stem="chunli_cos", title="Chun-Li Cosplay (Street Fighter)",
         tags=["cosplay", "character", "street fighter"],
         triggers=["chun-li cosplay"]),
    dict(stem="jane_doe", title="Jane Doe", tags=["celebrity", "actress", "woman"], triggers=["jane doe"]),
    # filed under no Civitai category
    dict(stem="tifa_meenow", title="Tifa_meenow", tags=["final fantasy", "tifa lockhart"],
         triggers=["tifa lockhart", "red_eyes"]),
    dict(stem="pkmn_dawn", title="Pokemon - Dawn (Anime) [SD 1.5 Character LoRA]",
         tags=CHARACTER + ["pokemon"]),
    dict(stem="makima_style", title="Ke-Ta Anime Style Makima", tags=["anime", "style", "makima"]),
    dict(stem="takada", title="Akemi Takada (1980s)", tags=["retro artstyle", "takada akemi"],
         triggers=["takada akemi"]),
    dict(stem="takada_char", title="Takada Akemi (Artist)", tags=CHARACTER),
    dict(stem="gup_darjeeling", title="Girls und Panzer Darjeeling", tags=CHARACTER + ["girls und panzer"],
         triggers=["girls und panzer", "darjeeling"]),
    dict(stem="gup_kay", title="Girls und Panzer Kay", tags=CHARACTER + ["girls und panzer"],
         triggers=["girls und panzer", "kay"]),
    dict(stem="android18", title="Android 18 (Dragon Ball) LoRA", tags=CHARACTER + ["dragon ball"],
         triggers=["android 18", "android"]),
    dict(stem="shigure_ui", title="Shigure Ui / Vtuber", tags=CHARACTER + ["vtuber"],
         triggers=["shigure ui", "pom pom \\(clothes\\)", "school uniform"]),
    dict(stem="genshin_style", title="Genshin Impact Style", tags=["style", "genshin impact", "anime"]),
    dict(stem="arknights_style", title="Arknights Art Style", tags=["style", "arknights"]),
    dict(stem="kuvshinov", title="Ilya Kuvshinov Style", tags=["style", "artist"], triggers=["kuvshinov"]),
    dict(stem="knight_armor", title="Knight Armor", tags=["armor", "clothing"], triggers=["knight armor"]),
    dict(stem="witch_hat", title="Witch Hat", tags=["concept", "hat"], triggers=["witch hat"]),
    # filed under no category, "name (series)" only in a title that ends in packaging words
    dict(stem="neon-10", title="Neon (Valorant) Lora", tags=["anime"], triggers=["neonfx, neon_valorant"]),
    dict(stem="product_design", title="Product Design (minimalism) LoRA", tags=["objects", "product design"]),
]
# Everyday scenes in the filler cards' text, so the library's word statistics know 'black', 'misty',
# 'twilight' and 'lightning' as ordinary words.
SCENES = ["a black cat on a misty lake at twilight", "purple lightning over a black sea, misty hills",
          "a cat in a garden at twilight, black and white", "a misty forest, lightning, a black dog"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("chars"))
    for card in CARDS:
        write_lora(folder, **card)
    for i in range(24):
        write_lora(folder, f"filler_{i}", f"Landscape Helper {i}", tags=["landscape"],
                   description=SCENES[i % 4], prompts=[SCENES[(i + 1) % 4]])
    index = LibraryIndex([folder], os.path.join(folder, ".stylus"))
    index.refresh(save=False)
    snap = index.snapshot
    rows = {e.card.stem: i for i, e in enumerate(snap.entries)}
    return snap, character_index(snap), rows


def named(lib, prompt) -> set:
    snap, ci, rows = lib
    return {snap.entries[r].card.stem for r in ci.named_in(prompt)}


def test_character_loras_are_told_from_styles_costumes_and_concepts(lib):
    snap, ci, rows = lib
    for stem in ("naruto_v2", "hutao1-000009", "labiata", "chunli_cos", "jane_doe", "loid"):
        assert ci.is_character(rows[stem]), stem
    for stem in ("genshin_style", "arknights_style", "kuvshinov", "knight_armor", "witch_hat", "filler_0",
                 "makima_style", "takada"):  # a style named after a character or tagged with a known name
        assert not ci.is_character(rows[stem]), stem
    # "Neon (Valorant) Lora": the packaging word after the series hid the "name (series)" form; a title
    # that names one of the card's own tags is a concept ('Product Design')
    assert ci.is_character(rows["neon-10"]) and not ci.is_character(rows["product_design"])
    # Civitai filed it under no category: a known character's name among its tags makes it hers
    assert ci.is_character(rows["tifa_meenow"]) and ("tifa", "lockhart") in ci.names(rows["tifa_meenow"])
    assert ci.is_cosplay(rows["chunli_cos"]) and not ci.is_cosplay(rows["megumin"])


def test_names_drop_franchise_version_and_packaging_words(lib):
    snap, ci, rows = lib
    assert ("naruto", "uzumaki") in ci.names(rows["naruto_v2"])
    assert ("tifa", "lockhart") in ci.names(rows["tifa_v2"])
    assert ("raiden", "shogun") in ci.names(rows["shogun-10"])
    for stem in ("naruto_v2", "tifa_v2", "shogun-10", "hutao1-000009"):
        words = {w for name in ci.names(rows[stem]) for w in name}
        assert not words & {"lora", "v2", "genshin", "impact", "final", "fantasy", "vii"}, stem
    assert all("1girl" not in name and ("red", "eye") != name for name in ci.names(rows["labiata"]))


def test_franchises_come_from_qualifiers_and_tags(lib):
    snap, ci, rows = lib
    assert ci.franchises(rows["hutao1-000009"]) == {"genshin impact"}
    assert ci.franchises(rows["shogun-10"]) == {"genshin impact"}  # tag written "genshinimpact"
    assert "genshin impact" in ci.franchises(rows["genshin_style"])
    assert ci.franchises(rows["amiya"]) == ci.franchises(rows["texas"]) == {"arknights"}
    # a title that starts with its series: the name is the next part
    assert ci.franchises(rows["pkmn_dawn"]) == {"pokemon"} and ci.names(rows["pkmn_dawn"]) == [("dawn",)]
    assert "witch" not in ci.franchise_names.values() and "hat" not in ci.franchise_names.values()


@pytest.mark.parametrize("prompt", ["1girl, naruto uzumaki, ramen", "uzumaki naruto, smiling",
                                    "a photo of Naruto Uzumaki eating ramen", "(naruto uzumaki:1.2), night"])
def test_a_name_in_any_order_and_through_weights(lib, prompt):
    assert named(lib, prompt) == {"naruto_v2"}


@pytest.mark.parametrize("prompt", ["1girl, hutao, ghost", "hu tao, ghost", "hu_tao, halloween",
                                    "hu tao \\(genshin impact\\), night"])
def test_spacing_underscores_and_escaped_series(lib, prompt):
    assert named(lib, prompt) == {"hutao1-000009"}


def test_escaped_series_romanization_and_one_edit(lib):
    assert named(lib, "raiden shogun \\(genshin impact\\), purple kimono") == {"shogun-10"}
    assert named(lib, "1girl, gotou hitori, guitar") == {"gotoh"}     # ou / oh long vowels
    assert named(lib, "1girl, goto hitori, guitar") == {"gotoh"}
    assert named(lib, "tifa lockheart, bar interior") == {"tifa_v2", "tifa_meenow"}  # one edit, long word
    assert named(lib, "tifa, bar interior") == set()  # one word of a two-word name, without its series
    assert named(lib, "1girl, (megumin:1.3), explosion") == {"megumin"}


def test_one_name_word_with_its_franchise(lib):
    assert named(lib, "1girl, raiden ei, genshin impact") == {"shogun-10"}
    assert named(lib, "1girl, raiden ei") == set()


@pytest.mark.parametrize("prompt", ["1girl, red eyes, long hair", "masterpiece, 1girl, solo, witch hat",
                                    "a witch flying over a village", "a black cat on a wall at night",
                                    "a misty lake at dawn", "twilight sky over the sea",
                                    "purple lightning, storm", "a knight in armor", "art by ilya kuvshinov",
                                    "serena, a calm lake"])
def test_never_named_by_attributes_generic_subjects_or_everyday_words(lib, prompt):
    assert named(lib, prompt) - {"serena_pkmn", "serena_dq"} == set()
    if "serena" not in prompt:
        assert named(lib, prompt) == set()


def test_a_series_written_before_several_names_is_a_series(lib):
    snap, ci, rows = lib
    assert ci.franchises(rows["gup_kay"]) == {"girls und panzer"}
    assert named(lib, "girls und panzer, tank, field") == set()
    assert ci.franchise_asked("girls und panzer, tank, field") == {"girls und panzer"}
    assert named(lib, "darjeeling, girls und panzer, tea") == {"gup_darjeeling"}


def test_things_and_numbers_in_names(lib):
    assert named(lib, "android 18, dragon ball, city") == {"android18"}
    assert named(lib, "1girl, android, cyborg, city") == set()  # 'android' beside '18' is no name alone
    assert named(lib, "cheerleader, pom pom, school uniform") == set()  # "pom pom (clothes)" is a thing
    assert named(lib, "shigure ui, beret") == {"shigure_ui"}


def test_everyday_names_count_with_their_series(lib):
    assert named(lib, "black cat, marvel, rooftop") == {"black_cat"}
    assert named(lib, "twilight \\(spy x family\\), suit") == {"loid"}
    assert named(lib, "misty \\(pokemon\\), beach") == {"misty_pkmn"}


def test_a_series_in_the_prompt_picks_its_own_character(lib):
    assert named(lib, "serena \\(pokemon\\), pink hat") == {"serena_pkmn"}
    assert named(lib, "serena, dragon quest xi") == {"serena_dq"}


def test_franchises_asked_generically(lib):
    snap, ci, rows = lib
    assert ci.franchise_asked("an Arknights operator in a city") == {"arknights"}
    assert ci.franchise_asked("genshin impact style, mountain village") == {"genshin impact"}
    assert ci.franchise_asked("amiya, arknights, city") == set()  # its character is named
    assert ci.franchises_in("amiya, arknights, city") == {"arknights"}
    assert ci.franchise_asked("a cat on a sofa") == set()
    styles = [snap.entries[r].card.stem for r in ci.franchise_rows("arknights") if not ci.is_character(r)]
    assert styles == ["arknights_style"]
    assert {snap.entries[r].card.stem for r in ci.franchise_rows("arknights")} == {"amiya", "texas",
                                                                                    "arknights_style"}


def test_refusal_reasons(lib):
    snap, ci, rows = lib
    names = ci.named_in("1girl, megumin, explosion")
    assert ci.refusal(rows["megumin"], names) == ""
    assert ci.refusal(rows["marisa"], names).startswith(ANOTHER_CHARACTER)
    cosplay = ci.named_in("megumin cosplay, convention")
    assert ci.refusal(rows["chunli_cos"], cosplay).startswith(OTHER_COSPLAY)
    generic = ci.named_in("a witch flying over a village")
    assert ci.refusal(rows["marisa"], generic).startswith(GENERIC_SUBJECT)
    assert ci.refusal(rows["jane_doe"], ci.named_in("portrait of a woman")).startswith(GENERIC_SUBJECT)
    assert ci.refusal(rows["witch_hat"], generic) == ""
    assert ci.refusal(rows["genshin_style"], ci.named_in("arknights operator")) == ""


def test_odd_cards_and_prompts_never_break_it():
    from lib_stylus.catalog.card import AdapterCard
    from types import SimpleNamespace
    odd = [AdapterCard(path="a", rel="a", stem="", alias=""),
           AdapterCard(path="b", rel="b", stem="x", alias="x", title="(((", tags=["", "()", "character"],
                       trigger_words=["", "\\(", "<lora:x:1>"]),
           AdapterCard(path="c", rel="c", stem="c", alias="c", title="初音ミク | 【】",
                       tags=["character", "初音ミク"])]
    ci = CharacterIndex([SimpleNamespace(card=c, refined=SimpleNamespace(topic="character")) for c in odd])
    for prompt in ("", "((((", "<lora:x:1>", "BREAK AND", "初音ミク", "a, " * 500, "\\(\\)"):
        assert ci.named_in(prompt) == {} or prompt == "初音ミク"
        assert isinstance(ci.franchise_asked(prompt), set)
    assert [ci.refusal(r, {}) for r in range(3)]


def test_a_rebuild_reuses_unchanged_cards_and_sees_edited_ones(lib):
    import dataclasses
    from types import SimpleNamespace
    snap, ci, rows = lib
    again = CharacterIndex(snap.entries)  # the cards cut by the last build
    for row in range(len(snap.entries)):
        assert again.names(row) == ci.names(row) and again.franchises(row) == ci.franchises(row)
        assert again.is_character(row) == ci.is_character(row)
    edited = list(snap.entries)
    old = edited[rows["megumin"]]
    card = dataclasses.replace(old.card, title="Yunyun (Konosuba)", trigger_words=["yunyun"])
    edited[rows["megumin"]] = SimpleNamespace(card=card, refined=old.refined)
    after = CharacterIndex(edited)
    assert after.named_in("yunyun, konosuba") == {rows["megumin"]: "yunyun"}
    assert after.named_in("megumin, explosion") == {}


def test_index_is_kept_on_the_snapshot_and_works_without_bm25(lib):
    snap, ci, rows = lib
    assert character_index(snap) is ci
    bare = CharacterIndex(snap.entries)
    assert bare.is_character(rows["naruto_v2"])
    assert {snap.entries[r].card.stem for r in bare.named_in("uzumaki naruto")} == {"naruto_v2"}


def test_a_popular_character_in_other_cards_sample_prompts_is_still_a_name(tmp_path):
    """Hundreds of style LoRAs show their style on Hatsune Miku: her name fills other cards' sample prompts.
    That makes it frequent in the library's text, not an everyday word: 'hatsune miku' still names her."""
    folder = str(tmp_path)
    write_lora(folder, "miku_v4", "Hatsune Miku | Vocaloid", tags=CHARACTER + ["vocaloid", "hatsune miku"],
               triggers=["hatsune miku", "twintails"])
    for i in range(40):
        write_lora(folder, f"style_{i}", f"Painterly Style {i}", tags=["style"],
                   prompts=[f"1girl, hatsune miku, twintails, painterly {i}"])
    index = LibraryIndex([folder], os.path.join(folder, ".stylus"))
    index.refresh(save=False)
    snap = index.snapshot
    ci = character_index(snap)
    for prompt in ("hatsune miku, concert", "Hatsune Miku singing at a concert",
                   "1girl, miku hatsune, smile"):
        assert {snap.entries[r].card.stem for r in ci.named_in(prompt)} == {"miku_v4"}, prompt


# A small franchise whose cards write it first ('Elden Ring (Malenia)', 'Elden Ring Ranni The Witch'), and
# one that character cards carry only as a tag (no title writes "Name (Super Mario)"), next to a LoRA whose
# title is the franchise's name.
FRANCHISE_FIRST = [
    dict(stem="malenia_v3", title="Elden Ring (Malenia)", tags=CHARACTER + ["elden ring", "malenia"],
         triggers=["malenia blade of miquella"]),
    dict(stem="ranni_v1", title="Elden Ring Ranni The Witch", tags=CHARACTER + ["elden ring", "woman"],
         triggers=["ranni the witch", "witch hat", "fur cloak"]),
    dict(stem="peach_1499", title="Princess Peach | Character Lora 1499",
         tags=CHARACTER + ["mario", "super mario", "woman"]),
    dict(stem="rosalina_1077", title="Rosalina | Character Lora 1077", tags=CHARACTER + ["super mario"]),
    dict(stem="daisy_1179", title="Princess Daisy | Character Lora 1179",
         tags=CHARACTER + ["mario", "super mario"]),
    dict(stem="super_mario", title="Super Mario LoRA", tags=["nintendo", "mario", "super mario", "cartoon"],
         triggers=["supermario"]),
    dict(stem="hood_witch", title="Witch Hood Outfit", tags=["clothing", "witch"], triggers=["witch hood"]),
    # a tag characters of several series carry is a kind of character, not their franchise
    dict(stem="alucard", title="Alucard (Hellsing)", tags=CHARACTER + ["hellsing", "vampire"],
         triggers=["alucard"]),
    dict(stem="remilia", title="Remilia Scarlet (Touhou)", tags=CHARACTER + ["touhou", "vampire"],
         triggers=["remilia scarlet"]),
    dict(stem="dracula", title="Dracula (Castlevania)", tags=CHARACTER + ["castlevania", "vampire"],
         triggers=["dracula"]),
    # "name (series)" though another card writes the name as if it were a series ('Esthetic' + her name)
    dict(stem="faye_v3", title="Faye Valentine (Cowboy Bebop)",
         tags=CHARACTER + ["cowboy bebop", "faye valentine"],
         triggers=["faye valentine"]),
    dict(stem="faye_esthetic", title="Esthetic Faye Valentine",
         tags=CHARACTER + ["cowboy bebop", "faye valentine"], triggers=["faye valentine"]),
]


def franchise_first_library(folder: str, cards=FRANCHISE_FIRST):
    for card in cards:
        write_lora(folder, **card)
    for i in range(24):
        write_lora(folder, f"filler_{i}", f"Landscape Helper {i}", tags=["landscape"],
                   description=SCENES[i % 4] + ", a gold ring, a super moon", prompts=[SCENES[(i + 1) % 4]])
    index = LibraryIndex([folder], os.path.join(folder, ".stylus"))
    index.refresh(save=False)
    return index


def resolved(folder: str, cards=FRANCHISE_FIRST) -> tuple:
    """franchise_first_library's snapshot, its character index and each stem's row (what named() reads)."""
    snap = franchise_first_library(folder, cards).snapshot
    return snap, character_index(snap), {e.card.stem: i for i, e in enumerate(snap.entries)}


@pytest.fixture(scope="module")
def first_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("first")))


def test_a_franchise_written_first_in_titles_is_the_franchise(first_lib):
    """'Elden Ring (Malenia)' writes the franchise where other titles write the name: the library says which
    is which (several characters carry 'elden ring'; only Malenia's cards say 'malenia')."""
    snap, ci, rows = first_lib
    assert ci.franchises(rows["malenia_v3"]) == {"elden ring"}
    assert ci.franchises(rows["ranni_v1"]) == {"elden ring"}
    assert ("malenia",) in ci.names(rows["malenia_v3"])
    assert ("ranni", "witch") in ci.names(rows["ranni_v1"])
    for stem in ("malenia_v3", "ranni_v1"):
        assert not {w for name in ci.names(rows[stem]) for w in name} & {"elden", "ring"}, stem
    assert named(first_lib, "ranni the witch, elden ring, moonlight") == {"ranni_v1"}
    assert named(first_lib, "malenia, elden ring, red hair") == {"malenia_v3"}
    # the franchise alone names no single character: it is a franchise phrasing
    assert named(first_lib, "elden ring, castle, night") == set()
    assert ci.franchise_asked("elden ring, castle, night") == {"elden ring"}


def test_a_tag_several_characters_with_other_names_carry_is_a_franchise(first_lib):
    snap, ci, rows = first_lib
    for stem in ("peach_1499", "rosalina_1077", "daisy_1179"):
        assert "super mario" in ci.franchises(rows[stem]), stem
    assert "super mario" in ci.franchises(rows["super_mario"])
    assert named(first_lib, "princess peach, super mario bros., castle") == {"peach_1499"}
    # tags several characters carry that are no franchise: attributes, kinds of person
    assert not {"woman", "anime", "character"} & set(ci.franchise_names.values())


def test_a_tag_characters_of_several_series_carry_is_a_kind_not_a_franchise(first_lib):
    snap, ci, rows = first_lib
    assert "vampire" not in ci.franchise_names.values()
    assert ci.franchises(rows["alucard"]) == {"hellsing"}
    assert named(first_lib, "a vampire in a castle, night") == set()


def test_a_name_written_first_stays_the_name(first_lib):
    """'Faye Valentine (Cowboy Bebop)' is in the usual order: her main trigger says her name."""
    snap, ci, rows = first_lib
    for stem in ("faye_v3", "faye_esthetic"):
        assert ci.franchises(rows[stem]) == {"cowboy bebop"}, stem
        assert ("faye", "valentine") in ci.names(rows[stem]), stem
    assert named(first_lib, "faye valentine, spaceship") == {"faye_v3", "faye_esthetic"}


# Characters who share a given name across franchises, a franchise written with a one-letter word ('K-ON!'),
# and a franchise whose title holds a character's name ('Mahou Shoujo Madoka Magica'), tagged on cards of
# its other characters that no Civitai category files as characters (as on Civitai).
SHARED = [
    dict(stem="yui_sao", title="Yui (Sword Art Online)", tags=CHARACTER + ["sword art online"],
         triggers=["yui"]),
    dict(stem="asuna_sao", title="Asuna (Sword Art Online)", tags=CHARACTER + ["sword art online"],
         triggers=["asuna"]),
    dict(stem="yui_pcr", title="Yui (Princess Connect!) Ceremonial", tags=CHARACTER + ["princess connect"],
         triggers=["yuicere"]),
    dict(stem="kokkoro_pcr", title="Kokkoro (Princess Connect!)", tags=CHARACTER + ["princess connect"],
         triggers=["kokkoro"]),
    dict(stem="yui_plain", title="Yui", tags=CHARACTER, triggers=["yui"]),
    dict(stem="mio_kon", title="Mio Akiyama (K-ON!) LoRA", tags=CHARACTER + ["mio akiyama", "k-on", "k-on!"],
         triggers=["mio akiyama"]),
    dict(stem="azusa_kon", title="Azusa Nakano (K-ON!) LoRA", tags=CHARACTER + ["azusa nakano", "k-on"],
         triggers=["nakano azusa"]),
    dict(stem="madoka_uniform", title="kaname_madoka (school uniform ver.)",
         tags=["character", "mahou shoujo madoka magica", "kaname_madoka"], triggers=["char_kaname_madoka"]),
    dict(stem="madoka_one", title="Madoka Kaname - Madoka Magica", tags=CHARACTER, triggers=["madoka"]),
    dict(stem="homura", title="akemi homura", tags=CHARACTER, triggers=["akemi homura"]),
    dict(stem="mami", title="tomoe_mami (school uniform ver.)",
         tags=["character", "mahou shoujo madoka magica", "tomoe mami"], triggers=["char_tomoe_mami"]),
    dict(stem="homura_2", title="Homura Akemi - Puella Magi Madoka Magica",
         tags=["anime", "magical girl", "mahou shoujo madoka magica"], triggers=["homura akemi"]),
    dict(stem="kyoko", title="Kyouko Sakura - Puella Magi Madoka Magica",
         tags=["anime", "magical girl", "mahou shoujo madoka magica"], triggers=["pmmmkyouko"]),
]


@pytest.fixture(scope="module")
def shared_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("shared")), SHARED)


def test_a_series_written_with_a_one_letter_word_is_a_franchise(shared_lib):
    """'K-ON!' is one word: its 'on' is no joining word and its 'k' is not a word of its own."""
    snap, ci, rows = shared_lib
    assert ci.franchises(rows["mio_kon"]) == ci.franchises(rows["azusa_kon"]) != set()
    assert ci.franchises(rows["mio_kon"]) <= ci.franchises_in("k-on!, club room")


@pytest.mark.parametrize("prompt", ["yui \\(k-on!\\), akiyama mio, k-on, club room",
                                    "yui (k-on), akiyama mio, guitar",
                                    "2girls, yui, akiyama mio, k-on, guitar"])
def test_a_given_name_of_another_franchise_does_not_name_its_character(shared_lib, prompt):
    """The prompt says which franchise its Yui belongs to (a '(series)' qualifier, or the series named beside
    her): the Yui of another known franchise is not named; a card whose franchise is unknown may be hers."""
    assert named(shared_lib, prompt) == {"mio_kon", "yui_plain"}


def test_given_names_in_crossovers_and_without_a_franchise(shared_lib):
    # both franchises named: each one's characters stay named
    assert named(shared_lib, "yui, asuna, sword art online, k-on, crossover") == {"yui_sao", "asuna_sao",
                                                                                  "yui_plain"}
    # a name only one character has is hers, whatever other franchise the prompt names
    assert named(shared_lib, "asuna, k-on, school uniform") == {"asuna_sao"}
    # no franchise named: the given name stays ambiguous, as before
    assert {"yui_sao", "yui_pcr", "yui_plain"} <= named(shared_lib, "yui, garden")
    assert named(shared_lib, "yui \\(princess connect!\\), garden") == {"yui_pcr", "yui_plain"}


def test_a_name_inside_the_franchise_title_the_prompt_writes_names_nobody(shared_lib):
    """'Mahou Shoujo Madoka Magica' holds Madoka's name: written as the series, it does not name her."""
    snap, ci, rows = shared_lib
    assert named(shared_lib, "homura akemi, mahou shoujo madoka magica, 1girl") == {"homura", "homura_2"}
    assert named(shared_lib, "mahou shoujo madoka magica, city at night") == set()
    # her own name still does, with the series or without
    assert {"madoka_uniform", "madoka_one"} <= named(shared_lib, "kaname madoka, mahou shoujo madoka magica")
    assert "madoka_one" in named(shared_lib, "madoka, pink hair")


def _of(stem: str, name: str, series: str, trigger: str, *more: str) -> dict:
    """A character card titled 'Name (Series)', tagged with its series (and ``more`` series)."""
    return dict(stem=stem, title=f"{name} ({series})", tags=CHARACTER + [series.casefold(), *more],
                triggers=[trigger])


def _naming(folder, cards):
    """prompt -> the stems it names, in a library of these cards and K-ON!'s."""
    index = franchise_first_library(str(folder), cards + [c for c in SHARED if c["stem"].endswith("_kon")])
    snap = index.snapshot
    ci = character_index(snap)
    return lambda prompt: {snap.entries[r].card.stem for r in ci.named_in(prompt)}


def test_a_given_name_of_one_character_whose_cards_name_several_franchises_is_hers(tmp_path):
    """Ahri's cards say 'league of legends', some also 'star guardian': one character, whatever style the
    prompt names ('Ahri cosplay, K-On anime style')."""
    stems = _naming(tmp_path, [_of("ahri_sg", "Ahri", "League of Legends", "ahri", "star guardian"),
                               _of("ahri_v1", "Ahri", "League of Legends", "ahri"),
                               _of("jinx", "Jinx", "League of Legends", "jinx"),
                               _of("lux_sg", "Lux", "Star Guardian", "lux")])
    assert stems("ahri cosplay, k-on anime style, a park") == {"ahri_sg", "ahri_v1"}


def test_a_given_name_said_of_a_related_series_still_names_its_character(tmp_path):
    """Series of one family ('Fate/Grand Order', 'Fate/stay night') are not another franchise; a full name
    with a '(series)' qualifier is no shared given name; a name and its qualifier make no sentence (where a
    one-word name would need a capital)."""
    stems = _naming(tmp_path, [_of("saber_fgo", "Saber", "Fate/Grand Order", "saber"),
                               _of("jeanne_fgo", "Jeanne d'Arc", "Fate/Grand Order", "jeanne"),
                               _of("rin_fsn", "Tohsaka Rin", "Fate/stay night", "tohsaka rin"),
                               _of("shirou_fsn", "Emiya Shirou", "Fate/stay night", "emiya shirou"),
                               _of("saber_sw", "Saber", "Senran Wars", "saber"),
                               _of("asuka_sw", "Asuka", "Senran Wars", "asuka"),
                               _of("rin_ba", "Rin", "Blue Archive", "rin")])
    assert stems("saber, tohsaka rin, fate/stay night") == {"saber_fgo", "rin_fsn"}
    assert stems("saber \\(fate/stay night\\), sword") == {"saber_fgo"}
    assert stems("tohsaka rin \\(k-on!\\), guitar") == {"rin_fsn"}
    # the qualifier's words are the series, never a name: no Rin of 'kaoru hana wa rin to saku'
    assert stems("kaoruko waguri \\(kaoru hana wa rin to saku\\), smile") == set()
    assert stems("emiya shirou \\(fate/stay night\\), sword") == {"shirou_fsn"}


FULL_NAMES = [
    dict(stem="momo_mha", title="Momo Yaoyorozu - My Hero Academia",
         tags=CHARACTER + ["my hero academia", "momo", "yaoyorozu"], triggers=["MomoY"]),
    dict(stem="eli_ll", title="Ayase Eli (Love Live!)", tags=CHARACTER + ["love live!"],
         triggers=["ayase eli"]),
    dict(stem="ochaco_mha", title="Ochaco Uraraka (My Hero Academia)", tags=CHARACTER + ["my hero academia"],
         triggers=["uraraka ochaco"]),
    dict(stem="raiden_gi", title="Raiden Shogun (Genshin Impact)", tags=CHARACTER + ["genshin impact"],
         triggers=["raiden shogun", "raiden ei"]),
]


@pytest.fixture(scope="module")
def full_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("full")), FULL_NAMES)


@pytest.mark.parametrize("prompt", ["1girl, ayase momo \\(dandadan\\), red hair",
                                    "momo ayase, school uniform", "a photo of Ayase Momo in the rain"])
def test_one_name_word_of_another_persons_full_name_names_nobody(full_lib, prompt):
    """'Ayase Momo' (of a series the library lacks) is not Momo Yaoyorozu: the prompt writes a full name whose
    other word is a name word of the library (Ayase Eli's) that her names lack."""
    assert "momo_mha" not in named(full_lib, prompt)


# the language's common words, as a sentence encoder's vocabulary holds them (Selection passes its own)
EVERYDAY = frozenset("space art matte painting portrait style oil canvas school uniform hero costume sword "
                     "garden smiling".split())


@pytest.mark.parametrize("prompt", ["space art, Momo Kessler, matte painting",
                                    "a portrait in the style of Momo Kessler", "Kessler Momo, oil on canvas"])
def test_a_given_name_beside_a_capitalised_name_no_one_knows_names_nobody(full_lib, prompt):
    """'Chris Foss' (a painter; held-out set 9) is not Chris of Konosuba, nor is the tag 'misumi nagisa'
    (set 11) a Nagisa of another series: a one-word name written as one name with a word that is neither a
    word of the language nor one any card of the library says - both capitalised, or a tag of the two words -
    is someone else's full name."""
    snap, ci, rows = full_lib
    assert rows["momo_mha"] in ci.named_in(prompt)  # found by her given name...
    assert rows["momo_mha"] not in ci.unambiguous(prompt, ci.named_in(prompt), EVERYDAY)  # ...not hers


@pytest.mark.parametrize("prompt", [
    "2girls, Momo and Kessler, holding hands",  # 'and' between: two people, not one name (review, session 11)
    "Momo, Momo Kessler, space art",          # named alone in another segment
    "1girl, kessler momo, my hero academia",  # her franchise written: hers
    "1girl, chibi momo",                      # a two-word tag, but no other character is called Momo
    "Momo Yaoyorozu, hero costume",           # her own family name
    "Momo, Smiling",                          # another segment
    "a photo of momo kessler in the rain",    # a lowercase sentence: no sign of a name
    "Momo with a Sword in a Garden",          # capitalised words of the language
    "Momo Ayase",                             # a name word of the library: named_in's rule decides
])
def test_a_given_name_beside_words_someone_knows_still_names_her(full_lib, prompt):
    snap, ci, rows = full_lib
    names = ci.named_in(prompt)
    assert ci.unambiguous(prompt, names, EVERYDAY) == names
    if "Ayase" not in prompt and "photo" not in prompt:
        assert rows["momo_mha"] in names  # the case is about her being named
    assert ci.unambiguous(prompt, names) == names  # no vocabulary (words only): nothing to tell a name by


@pytest.mark.parametrize("prompt, expected", [
    ("momo, school uniform", {"momo_mha"}),                     # a given name alone still names her
    ("Momo Yaoyorozu, hero costume", {"momo_mha"}),             # her own family name
    ("Momo, Smiling", {"momo_mha"}),                            # another segment
    ("momo kessler", {"momo_mha"}),                             # lowercase tags: no sign of a name
    ("Momo with a Sword in a Garden", {"momo_mha"}),            # capitalised words the library writes
    ("yaoyorozu momo, red dress", {"momo_mha"}),
    ("2girls, Momo and Ayase Eli dancing", {"momo_mha", "eli_ll"}),  # 'ayase' is Eli's, named beside her
    ("ayase, momo, classroom", {"momo_mha"}),                   # another segment: not one name
    ("raiden ei, purple kimono", {"raiden_gi"}),                # 'ei' is one of her own names
])
def test_a_name_word_beside_the_characters_own_names_still_names_her(full_lib, prompt, expected):
    assert named(full_lib, prompt) == expected


ARTIST_WORDS = [
    dict(stem="pieck_aot", title="Pieck (Attack on titan) LoRA", tags=CHARACTER + ["attack on titan"],
         triggers=["pieck finger"]),
]


@pytest.fixture(scope="module")
def artist_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("artist")), ARTIST_WORDS)


@pytest.mark.parametrize("prompt, expected", [
    ("storybook illustration, gouache, by Anton Pieck, intricate details", set()),  # the painter's name
    ("a toy shop at night, art by pieck", set()),
    ("pieck, attack on titan, 1girl", {"pieck_aot"}),
    ("Pieck by the window, attack on titan", {"pieck_aot"}),  # the name is before 'by', not after it
])
def test_a_name_written_after_by_is_an_artists(artist_lib, prompt, expected):
    assert named(artist_lib, prompt) == expected


SAID_SERIES = [
    dict(stem="riko_pokemon", title="Riko(Pokemon) LoRA", tags=CHARACTER + ["girl", "pokemon"],
         triggers=["riko_pokemon"]),
    dict(stem="saber_fate", title="Saber - Fate/stay night", tags=CHARACTER + ["fate/stay night"],
         triggers=["saber"]),
    dict(stem="saber_alter", title="Saber Alter", tags=CHARACTER + ["fate/stay night"],
         triggers=["saber \\(alter\\)"]),
    dict(stem="kiki_ghibli", title="Kiki", tags=CHARACTER, triggers=["kiki"]),
]


@pytest.fixture(scope="module")
def said_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("said")), SAID_SERIES)


@pytest.mark.parametrize("prompt, expected", [
    ("1girl, riko \\(made in abyss\\), helmet", set()),             # another series than the card's Pokemon
    ("1girl, riko \\(pokemon\\), cap", {"riko_pokemon"}),
    ("1girl, riko, pokemon", {"riko_pokemon"}),
    ("saber \\(senran kagura\\)", set()),                           # not the Saber of Fate
    ("saber \\(fate/stay night\\)", {"saber_fate"}),
    ("saber \\(alter\\), black armor", {"saber_alter"}),             # a version the library knows
    ("kiki \\(majo no takkyuubin\\), broom", {"kiki_ghibli"}),  # her card says no series: it may be it
])
def test_a_name_said_of_another_series_names_no_card_of_a_series_it_does_not_say(said_lib, prompt, expected):
    """'riko (made in abyss)' is not Riko of Pokemon (issue 10, held-out set 7: riko_pokemon judged wrong); a
    full name said of another series is still hers (test_a_given_name_said_of_a_related_series_...)."""
    assert named(said_lib, prompt) == expected


SHARED_WORD = [
    dict(stem="cure_peace", title="Cure Peace (Precure)", tags=CHARACTER + ["precure", "cure peace"],
         triggers=["cure peace"]),
    dict(stem="cure_flora", title="cure flora (Precure)", tags=CHARACTER + ["precure"],
         triggers=["cure flora"]),
    dict(stem="cure_spicy", title="Cure Spicy (Precure)", tags=CHARACTER + ["precure"],
         triggers=["cure spicy"]),
    dict(stem="nagisa_cl", title="Nagisa", tags=CHARACTER, triggers=["nagisa"]),
    dict(stem="nagisa_doa", title="Nagisa LoRA", tags=CHARACTER + ["sexy"], triggers=["nagisa", "1girl"]),
    dict(stem="shogun_a", title="Shogun Raiden (Genshin Impact)", tags=CHARACTER + ["genshin impact"],
         triggers=["shogun raiden"]),
    dict(stem="shogun_b", title="Raiden Shogun - Genshin Impact", tags=CHARACTER + ["genshin impact"],
         triggers=["raiden shogun"]),
]


@pytest.fixture(scope="module")
def cure_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("shared_word")), SHARED_WORD)


@pytest.mark.parametrize("prompt, expected", [
    # 'cure' of Cure Peace and Cure Flora (held-out set 11: both picked for Cure Black and Cure White)
    ("2girls, cure black, cure white, futari wa precure", set()),
    ("cure peace, precure, smile", {"cure_peace"}),                   # her whole name
    # one word of one character's names, her franchise written: the cards of the one Raiden, in either order
    ("1girl, raiden, genshin impact, purple kimono", {"shogun_a", "shogun_b"}),
])
def test_a_word_several_characters_names_share_names_none_of_them_with_the_franchise(cure_lib, prompt,
                                                                                     expected):
    assert named(cure_lib, prompt) == expected


def test_a_two_word_tag_with_a_word_no_one_knows_is_someone_elses_name_given_several_have(cure_lib):
    """'misumi nagisa' (held-out set 11) is no Nagisa of the library's two: a given name several characters
    have, in a tag with a word neither the language nor the library knows."""
    snap, ci, rows = cure_lib
    everyday = frozenset(["girl", "smile"])
    prompt = "1girl, misumi nagisa, smile"
    assert {rows["nagisa_cl"], rows["nagisa_doa"]} <= set(ci.named_in(prompt))
    assert not {rows["nagisa_cl"], rows["nagisa_doa"]} & set(ci.unambiguous(prompt, ci.named_in(prompt),
                                                                            everyday))


COSTUMES = [
    dict(stem="aqua", title="Minato Aqua (Hololive)", tags=CHARACTER + ["hololive", "vtuber"],
         triggers=["aaaqua", "twintails"]),
    dict(stem="aqua_uniform", title="Minato Aqua 7th Costume School Uniform",
         tags=["anime", "character", "female", "vtuber", "virtual youtuber"],
         triggers=["aqua7", "collared shirt", "plaid skirt"]),
    dict(stem="plain_uniform", title="School Uniform Costume", tags=["anime", "clothing"],
         triggers=["school uniform"]),
]


@pytest.fixture(scope="module")
def costume_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("costumes")), COSTUMES)


def test_a_costume_titled_with_a_known_characters_full_name_is_hers(costume_lib):
    """'Minato Aqua 7th Costume School Uniform' is Aqua's costume (held-out set 10: picked by its tag 'virtual
    youtuber' for a prompt naming another VTuber): a character's card, named by her name, refused for
    others."""
    snap, ci, rows = costume_lib
    assert ci.is_character(rows["aqua_uniform"])
    assert ("minato", "aqua") in ci.names(rows["aqua_uniform"])
    assert named(costume_lib, "minato aqua, school uniform, classroom") == {"aqua", "aqua_uniform"}
    assert "aqua_uniform" not in named(costume_lib, "lize helesta, virtual youtuber, school uniform")
    assert not ci.is_character(rows["plain_uniform"])  # a costume of no one's name stays a costume


def test_the_cached_segments_of_a_prompt_cannot_be_changed_by_a_reader():
    """A compose reads one prompt's segments several times from a cache: a reader that edited a field would
    change what the next one sees, so every field is immutable."""
    from lib_stylus.characters import _segments_of
    prompt = "Maka Albarn \\(soul eater\\), art by Okubo, red hair, a girl smiling in the rain"
    segs = _segments_of(prompt)
    for seg in segs:
        for field in ("words", "tokens", "capitalized", "qualifier", "artist", "described"):
            value = getattr(seg, field)
            assert isinstance(value, (tuple, frozenset)), field
    assert segs is _segments_of(prompt)
    assert segs[0].qualifier == ("sol", "eater")  # folded as names are: 'soul' and 'sol' are one
    assert segs[1].artist == {"okubo"} and segs[2].described == {"hair"}


SERIES_TITLED = [
    # characters' cards titled with their series as well as their name, as the library's cards are (held-out
    # sets 1 and 7: 'David Martinez' picked for "cyberpunk edgerunners", 'Serri Glaus' for "atelier ryza"),
    # and a card titled by the series alone
    dict(stem="david", title=" David Martinez - Cyberpunk Edgerunner - ",
         tags=["anime", "character", "boy", "cyberpunk", "man"],
         triggers=["1boy", "david \\(cyberpunk\\)", "jacket"]),
    dict(stem="lucy", title="Lucy / Cyberpunk Edgerunners",
         tags=["anime", "character", "cyberpunk edgerunners", "anime character", "anime girl", "lora"],
         triggers=["lu1", "cyborg", "multicolored hair", "makeup"]),
    dict(stem="lila", title="Lila Decyrus 3 outfits (Atelier Ryza) 莱莎的炼金工房 莉拉",
         tags=["anime", "character", "sexy", "female", "azur lane", "atelier_ryza", "woman", "azur_lane",
               "game character", "girls", "azurlane"], triggers=["OfficialOutfit", "Default Clothing"]),
    dict(stem="reisalin", title="Reisalin Stout 9 outfits (Atelier Ryza 1-3 ) 莱莎的炼金工房 1-3 莱莎琳·斯托特",
         tags=["anime", "character", "sexy", "female", "azur lane", "atelier_ryza", "woman", "azur_lane",
               "game character", "girls", "azurlane"], triggers=["1stDefault", "First Clothing"]),
    dict(stem="serri", title="Atelier Ryza (Azur Lane) -Serri Glaus/ ライザのアトリエ-セリ・グロース",
         tags=["anime", "character", "atelier_ryza", "azur_lane", "game character", "azurlane",
               "serri_glaus"],
         triggers=["original outfit"]),
    dict(stem="ryza_pack", title="atelier ryza  莱莎", tags=["anime", "character", "girl", "atelier_ryza"]),
    # characters' cards titled "name / series", and one that says its series first in its trigger word only
    # (held-out set 11: 'Angewomon' picked for "digimon")
    dict(stem="angewomon", title="Angewomon天女獸-Digimon數碼寶貝",
         tags=["anime", "character", "sexy", "female", "angewomon", "digimon", "woman", "game character"],
         triggers=["Digimon\\(Angewomon\\)"]),
    dict(stem="angewomon_b", title="Angewomon - Digimon (Realistic/Anime)",
         tags=["anime", "character", "female", "angewomon", "digimon", "woman"], triggers=["Angewomon"]),
    dict(stem="renamon", title="Renamon / Digimon", tags=["character", "sexy", "female", "woman", "furry"],
         triggers=["renamon"]),
    dict(stem="beelstarmon", title="Beelstarmon / BelleStarmon - Digimon (Anime and Realistic)",
         tags=["anime", "character", "female", "digimon", "woman", "demon", "gunslinger", "bellestarmon"],
         triggers=["beelstarmon"]),
    # one character's cards whose titles start with her name and go on differently: the name stays hers
    dict(stem="miku_a", title="Hatsune Miku - Magical Mirai", tags=CHARACTER + ["vocaloid"],
         triggers=["hatsune miku"]),
    dict(stem="miku_b", title="Hatsune Miku / Append", tags=CHARACTER + ["vocaloid"],
         triggers=["hatsune miku"]),
]


@pytest.fixture(scope="module")
def series_titled_lib(tmp_path_factory):
    return resolved(str(tmp_path_factory.mktemp("series_titled")), SERIES_TITLED)


@pytest.mark.parametrize("prompt, expected", [
    # a name that several characters' cards carry beside names of their own is their series: alone it names
    # none of them...
    ("2girls, cyberpunk edgerunners, night city, neon", set()),
    # (a card titled with that name alone is about it: the library's 'atelier ryza' card shows its heroine)
    ("1girl, atelier ryza, alchemist workshop", {"ryza_pack"}),
    # ...and with a card's own words it names that card
    ("lucy, cyberpunk edgerunners, night city", {"lucy"}),
    ("david martinez, cyberpunk edgerunners", {"david"}),
    ("lila decyrus, atelier ryza, forest", {"ryza_pack"}),  # Lila's card gives no name of hers to read
    ("1girl, hatsune miku, stage", {"miku_a", "miku_b"}),
    ("1girl, digimon, digital world", set()),
    ("angewomon, digimon, wings", {"angewomon", "angewomon_b"}),
])
def test_a_series_several_characters_cards_are_titled_with_names_none_of_them(series_titled_lib, prompt,
                                                                              expected):
    assert named(series_titled_lib, prompt) == expected
