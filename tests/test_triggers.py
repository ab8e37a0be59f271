"""Trigger-word hygiene (issue 10 item 8): only triggers that name the purpose, never placeholders, syntax,
sentences, unasked sexual tags or variants that contradict the prompt; at most three."""
from types import SimpleNamespace

import pytest

from lib_stylus.triggers import MAX_TRIGGERS, clean_triggers, escape_qualifier, trigger_problem


def card(*triggers, title="", stem=""):
    return SimpleNamespace(trigger_words=list(triggers), title=title, stem=stem)


@pytest.mark.parametrize("text", ["*see description and examples*", "trigger word", "none", "n/a", "N/A", "",
                                  "see examples", "(no trigger needed)", "-"])
def test_placeholders_are_never_written(text):
    assert trigger_problem(text)
    assert clean_triggers(card(text, "zenny"), [], "a girl") == ("zenny",)


@pytest.mark.parametrize("text", ["lora:zenny", "<lora:zenny:1>", "(underboob:1.3)", "[red:blue:0.5]",
                                  "a | b", "red BREAK blue", "{red|blue}"])
def test_prompt_syntax_is_never_written(text):
    assert trigger_problem(text) == "prompt syntax"


def test_escaped_series_is_literal_text_and_kept():
    assert trigger_problem("makima \\(chainsaw man\\)") == ""
    written = "makima \\(chainsaw man\\)"
    assert clean_triggers(card(written), [], "1girl, makima") == (written,)


def test_a_bare_bracket_qualifier_is_written_escaped():
    assert escape_qualifier("hu tao(genshin impact)") == "hu tao\\(genshin impact\\)"
    assert clean_triggers(card("hu tao(genshin impact)", "boo tao"), [], "hu tao") == \
        ("hu tao\\(genshin impact\\)",)
    assert escape_qualifier("(red eyes:1.5)") == "(red eyes:1.5)" and trigger_problem("(red eyes:1.5)")
    assert trigger_problem("(underboob)") == "prompt syntax"  # bare emphasis, no qualifier


def test_the_main_trigger_says_the_cards_name():
    marisa = card("1girl", "blonde hair", "witch hat", "kirisame marisa", title="Kirisame Marisa (Touhou)")
    assert clean_triggers(marisa, ["marisa"], "kirisame marisa, forest") == ("kirisame marisa",)
    assert clean_triggers(marisa, ["marisa", "hat"], "marisa, witch hat") == ("kirisame marisa", "witch hat")
    made_up = card("mikudef", "mikurnd", title="Hatsune Miku | 23 Outfits")
    assert clean_triggers(made_up, ["miku"], "hatsune miku") == ("mikudef",)  # no trigger says her name


def test_sentences_and_long_descriptions_are_never_written():
    kitchen = "a cozy kitchen with wooden cabinets, a farmhouse sink and copper pots hanging " * 5
    assert trigger_problem(kitchen)
    assert trigger_problem("one two three four five six seven")
    assert trigger_problem("x" * 41)
    got = clean_triggers(card(kitchen, "kitchen interior"), ["kitchen"], "a kitchen")
    assert got == ("kitchen interior",)


def test_the_main_trigger_is_the_first_that_names_something():
    labiata = card("1girl", "red eyes", "long hair", "labiata", "black bodysuit", "holding sword")
    assert clean_triggers(labiata, ["labiata"], "labiata, city") == ("labiata",)
    # plus the triggers about the task, in the card's order, at most three
    assert clean_triggers(labiata, ["labiata", "bodysuit", "sword"], "labiata, bodysuit, sword") == \
        ("labiata", "black bodysuit", "holding sword")
    many = card("zenny", "zenny armor", "zenny cape", "zenny boots", "zenny sword")
    assert len(clean_triggers(many, ["zenny", "armor", "cape", "boots", "sword"], "zenny")) == MAX_TRIGGERS


def test_no_sexual_tags_on_a_safe_prompt():
    c = card("yor briar", "cleavage", "underboob", "large breasts", "black dress")
    assert clean_triggers(c, ["dress", "cleavage", "breasts"], "yor briar, black dress, city") == \
        ("yor briar", "black dress")
    # asked for: kept
    assert "cleavage" in clean_triggers(c, ["cleavage"], "yor briar, cleavage, nsfw")


@pytest.mark.parametrize("prompt,dropped", [("1girl, black dress", "white dress"),
                                            ("1girl, short hair, blue eyes", "long hair"),
                                            ("1girl, blue eyes", "red eyes")])
def test_variants_that_contradict_the_prompt_are_not_written(prompt, dropped):
    c = card("miku", "white dress", "long hair", "red eyes")
    got = clean_triggers(c, ["dress", "hair", "eyes"], prompt)
    assert got[0] == "miku" and dropped not in got


def test_a_variant_that_agrees_is_written():
    c = card("miku", "white dress", "black dress")
    assert clean_triggers(c, ["dress"], "miku, black dress") == ("miku", "black dress")
