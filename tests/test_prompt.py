import re

import pytest

from lib_stylus.prompt import (
    Pick, added_problems, chunk_index, contains_phrase, format_tag, format_weight, has_tag, host_tags,
    lora_args_error, parse_tags, prompt_problems, remove_added, rewrite, split_segments, strip_syntax,
    tag_problem, tagged_names,
)
from tests.prompt_check import assert_clean, assert_parses

# The web UI's reading of a tag, restated here on purpose (not imported from prompt.py): if prompt.py's
# mirror drifted, these tests would still check against the real rule.
WEBUI_RE = re.compile(r"<(\w+):([^>]+)>")


def webui_read(prompt):
    """(kind, name, te weight) per tag, the way v1.10 extra_networks + the Lora network read them."""
    out = []
    for m in WEBUI_RE.finditer(prompt):
        items = m.group(2).split(":")
        positional = [i for i in items if len(i.split("=", 2)) != 2]
        out.append((m.group(1), positional[0], float(positional[1]) if len(positional) > 1 else 1.0))
    return out


# ------------------------------------------------------------------------------------------- parse_tags

def test_parse_tags_reads_lora_and_lyco_with_weights():
    tags = parse_tags("a cat <lora:Foo Bar:0.7> <lyco:x.y:0.5:0.25>, <hypernet:h:1> <lora:plain>")
    assert [(t.kind, t.name, t.te_weight, t.unet_weight) for t in tags] == [
        ("lora", "Foo Bar", 0.7, None), ("lyco", "x.y", 0.5, 0.25), ("lora", "plain", 1.0, None)]
    assert tags[0].span == (6, 24)


def test_parse_tags_named_te_and_unet_override_positional():
    (tag,) = parse_tags("<lora:n:0.3:te=0.9:unet=0.1>")
    assert (tag.name, tag.te_weight, tag.unet_weight) == ("n", 0.9, 0.1)


def test_parse_tags_all_kinds_when_kinds_is_none():
    assert [t.kind for t in parse_tags("<hypernet:h:1> <lora:l:1>", kinds=None)] == ["hypernet", "lora"]


def test_tagged_names_are_casefolded_and_has_tag_is_case_insensitive():
    prompt = "x <lora:MyStyle:1> <LyCo:Other:0.5>"
    assert tagged_names(prompt) == {"mystyle", "other"}
    assert has_tag(prompt, "MYSTYLE") and not has_tag(prompt, "mystyl")


# ------------------------------------------------------------------------------------------ strip_syntax

@pytest.mark.parametrize("prompt, plain", [
    ("(masterpiece:1.2), best quality", "masterpiece, best quality"),
    ("((red hair)), [blurry]", "red hair, blurry"),
    ("a (cat: 0.9 ) on a mat", "a cat on a mat"),
    ("[day:night:0.5] city", "day night city"),
    ("[snow:0.3], [rain::10]", "snow, rain"),
    ("[cat|dog|fox] plush", "cat dog fox plush"),
    ("girl BREAK forest", "girl, forest"),
    ("a cat :1.2 AND a dog:0.8", "a cat, a dog"),
    ("a cat AND a dog", "a cat, a dog"),
    ("nahida \\(genshin impact\\), \\[x\\]", "nahida (genshin impact), [x]"),
    ("<lora:x:1> a cat <lyco:y:0.5>", "a cat"),
    ("__animals__ in a {forest|desert}", "__animals__ in a {forest|desert}"),
    ("(style: anime) girl", "style: anime girl"),
    ("ANDROID, BREAKFAST, bread and butter", "ANDROID, BREAKFAST, bread and butter"),
    ("a:2 BREAK b", "a:2, b"),
    ("", ""),
])
def test_strip_syntax_keeps_only_plain_words(prompt, plain):
    assert strip_syntax(prompt) == plain


def test_strip_syntax_survives_unbalanced_brackets():
    assert strip_syntax("blue eyes:1.2), (open") == "blue eyes, open"


# ---------------------------------------------------------------------------------------- split_segments

def test_split_segments_spans_index_the_original_prompt():
    prompt = "a street musician, (robot companion:1.2) BREAK cyberpunk style AND night:0.5\nrain"
    segs = split_segments(prompt)
    assert [s.plain for s in segs] == ["a street musician", "robot companion", "cyberpunk style",
                                       "night", "rain"]
    for s in segs:
        assert prompt[s.start:s.end] == s.text


def test_split_segments_ignores_commas_inside_tags_and_drops_tag_only_segments():
    prompt = "cat, <lora:odd, name:0.5>, dog"
    assert [s.plain for s in split_segments(prompt)] == ["cat", "dog"]


def test_split_segments_splits_commas_inside_emphasis():
    assert [s.plain for s in split_segments("(red hair, blue eyes:1.2)")] == ["red hair", "blue eyes"]


def test_split_segments_of_a_prompt_split_before_is_the_same_and_a_list_of_its_own():
    prompt = "1girl, (silver hair:1.1), castle BREAK night"
    first = split_segments(prompt)
    first.append("a caller's own entry")  # (kept segments are shared: a caller may change only its list)
    again = split_segments(prompt)
    assert again == first[:-1] and again is not first
    assert [s.plain for s in again] == ["1girl", "silver hair", "castle", "night"]
    assert [s.plain for s in split_segments(prompt + ", moon")] == ["1girl", "silver hair", "castle", "night",
                                                                   "moon"]


# ----------------------------------------------------------------------------------------- tag writing

ALIASES = [
    "simple", "with space", "dots.v1.2", "ünïcødé 漢字 スタイル", "(brackets)", "[square] {curly}",
    "under_score-dash", "emoji 🎨", "a=b=c", "x" * 200, "trailing.", "back\\slash", "comma, inside",
    "BREAK", "AND", "1.5", "#hash!", "q?uote\"s'",
]


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("weight", [0.8, 0.8000000001, 1, 0.33333333, -0.5, 1.25, 0.0001])
def test_written_tag_round_trips_through_webui_regex(alias, weight):
    tag = format_tag(alias, weight)
    assert webui_read("a cat, " + tag + ", dog") == [("lora", alias, round(weight, 4))]


@pytest.mark.parametrize("alias", ["", "   ", "a:b", "a>b", "a<b", "a=b", "=x"])
def test_unwritable_aliases_are_reported(alias):
    assert tag_problem(alias) is not None
    with pytest.raises(ValueError):
        format_tag(alias, 1.0)


@pytest.mark.parametrize("weight, text", [
    (0.8000000001, "0.8"), (0.8, "0.8"), (1.0, "1"), (2, "2"), (0.33333333, "0.3333"), (-0.00001, "0"),
    (1e-5, "0"), (0.12345, "0.1235"), (-1.5, "-1.5"), (10.0, "10"), (0.1 + 0.2, "0.3"),
])
def test_format_weight_is_compact(weight, text):
    assert format_weight(weight) == text


# ------------------------------------------------------------------------------------------------ rewrite

def test_rewrite_appends_tag_and_triggers_keeping_prompt_bytes():
    prompt = "a (cat:1.2)  \\(x\\), [day:night:0.5]"
    res = rewrite(prompt, [Pick("cyber", 0.8000000001, ("neon glow",))])
    assert res.prompt == prompt + ", neon glow <lora:cyber:0.8>"
    assert res.prompt.startswith(prompt)
    assert res.skipped == ()


def test_rewrite_does_not_duplicate_triggers_already_in_prompt_case_insensitive():
    prompt = "Portrait, (Neon Glow:1.3), cyberpunk city"
    res = rewrite(prompt, [Pick("a", 1, ("neon glow", "CYBERPUNK CITY", "glowing eyes")),
                           Pick("b", 1, ("Glowing Eyes", "neon", "neo"))])
    # "neon" is a whole word of "(Neon Glow:1.3)"; "neo" is not.
    assert res.triggers == ("glowing eyes", "neo")
    assert res.prompt == prompt + ", glowing eyes, neo <lora:a:1> <lora:b:1>"


def test_rewrite_trigger_match_is_whole_phrase_not_substring():
    res = rewrite("tired woman, redhead", [Pick("a", 1, ("red", "tired"))])
    assert res.triggers == ("red",)


def test_rewrite_splits_comma_lists_of_trained_words_but_not_inside_brackets():
    res = rewrite("girl, sks", [Pick("a", 1, ("sks, style of x", "(soft, light:1.1)"))])
    assert res.triggers == ("style of x", "(soft, light:1.1)")


def test_rewrite_never_re_adds_a_lora_already_tagged():
    prompt = "cat <lora:MyStyle:0.6>"
    res = rewrite(prompt, [Pick("mystyle", 0.9, ("trig",)), Pick("other", 0.5, name="MYSTYLE"),
                           Pick("new", 0.5), Pick("NEW", 0.7)])
    assert res.prompt == prompt + " <lora:new:0.5>"
    assert [(p.alias, reason) for p, reason in res.skipped] == [
        ("mystyle", "already in the prompt"), ("other", "already in the prompt"),
        ("NEW", "already in the prompt")]


def test_rewrite_also_sees_lyco_tags_as_chosen():
    res = rewrite("cat <lyco:Loha:1>", [Pick("loha", 1)])
    assert res.written == () and res.skipped[0][1] == "already in the prompt"


def test_rewrite_unwritable_alias_falls_back_to_registry_name():
    res = rewrite("cat", [Pick("Style: Neon>", 0.7, name="style_neon_v2")])
    assert res.prompt == "cat <lora:style_neon_v2:0.7>"
    assert webui_read(res.prompt) == [("lora", "style_neon_v2", 0.7)]


def test_rewrite_unwritable_alias_without_usable_name_is_skipped_with_reason():
    res = rewrite("cat", [Pick("a:b", 0.7, ("trig",)), Pick("c>d", 0.7, name="e:f"), Pick("", 1)])
    assert res.prompt == "cat"
    reasons = [r for _, r in res.skipped]
    assert len(reasons) == 3 and "':'" in reasons[0] and "'e:f'" in reasons[1] and "empty" in reasons[2]


def test_rewrite_skips_zero_weight():
    res = rewrite("cat", [Pick("a", 0.00001)])
    assert res.prompt == "cat" and res.skipped[0][1] == "weight rounds to 0"


def test_rewrite_negative_text_goes_to_negative_prompt_once():
    res = rewrite("cat", [Pick("a", 1, negative="bad hands, Blurry"),
                          Pick("b", 1, negative="blurry, lowres")],
                  negative_prompt="blurry")
    assert res.negative_prompt == "blurry, bad hands, lowres"
    assert res.prompt == "cat <lora:a:1> <lora:b:1>"


def test_rewrite_leaves_negative_prompt_alone_when_not_given():
    res = rewrite("cat", [Pick("a", 1, negative="bad hands")])
    assert res.negative_prompt is None and res.negatives == ()


def test_rewrite_keeps_composable_weight_last():
    # "a cat AND a dog:0.5": the web UI reads 0.5 as the weight only while it ends the subprompt.
    res = rewrite("a cat AND a dog:0.5", [Pick("x", 1, ("fluffy",))])
    assert res.prompt == "a cat AND a dog, fluffy:0.5 <lora:x:1>"
    assert strip_syntax(res.prompt) == "a cat, a dog, fluffy"


def test_rewrite_separators_for_empty_and_comma_terminated_prompts():
    assert rewrite("", [Pick("x", 1, ("t",))]).prompt == "t <lora:x:1>"
    assert rewrite("cat,", [Pick("x", 1, ("t",))]).prompt == "cat, t <lora:x:1>"
    assert rewrite("cat, ", [Pick("x", 1, ("t",))]).prompt == "cat, t <lora:x:1>"
    assert rewrite("cat BREAK", [Pick("x", 1)]).prompt == "cat BREAK <lora:x:1>"


def test_rewrite_output_tags_all_round_trip():
    picks = [Pick(a, 0.8 / (i + 1)) for i, a in enumerate(ALIASES)]
    res = rewrite("cat", picks)
    assert [(n, w) for _, n, w in webui_read(res.prompt)] == [(a, round(0.8 / (i + 1), 4))
                                                               for i, a in enumerate(ALIASES)]


def test_contains_phrase_ignores_syntax_and_never_crosses_commas():
    assert contains_phrase("(Blue  Hair:1.2), x", "blue hair")
    assert not contains_phrase("blue, hair", "blue hair")
    assert contains_phrase("__animals__, b", "__animals__")


# -------------------------------------------------------------------------------------------------- undo

@pytest.mark.parametrize("prompt", ["a cat", "", "a cat:1.2", "a (cat:1.1) AND dog <lora:mine:1>"])
def test_remove_added_restores_the_original_prompt_exactly(prompt):
    res = rewrite(prompt, [Pick("x", 0.8, ("sks style", "glow")), Pick("y y", 0.4, ("red",))], "bad",)
    assert res.prompt != prompt
    assert remove_added(res.prompt, res.tag_names, res.triggers) == prompt


def test_remove_added_restores_negative_prompt():
    res = rewrite("cat", [Pick("x", 1, negative="lowres, bad hands")], negative_prompt="ugly")
    assert remove_added(res.negative_prompt, (), res.negatives) == "ugly"


def test_remove_added_keeps_user_edits_and_user_copies_of_a_trigger():
    res = rewrite("glow, cat", [Pick("x", 1, ("sks",))])
    assert res.prompt == "glow, cat, sks <lora:x:1>"
    edited = "sks, " + res.prompt.replace("cat", "black cat")  # user typed their own "sks" too
    assert remove_added(edited, res.tag_names, res.triggers) == "sks, glow, black cat"


def test_rewrite_after_paste_does_not_tag_twice():
    first = rewrite("cat", [Pick("x", 1, ("sks",))])
    again = rewrite(first.prompt, [Pick("x", 1, ("sks",))])
    assert again.prompt == first.prompt and has_tag(first.prompt, "x")


# ------------------------------------------------------------------------ the web UI's grammar (issue 9.8)

@pytest.mark.parametrize("args, error", [
    ("x:0.5", None), ("x", None), ("x:0.5:0.2:4", None), ("x:te=0.3:unet=1e-1", None), ("x: 0.5 ", None),
    ("x:abc", "text-encoder weight 'abc'"), ("x:0.5:hi", "UNet weight 'hi'"), ("x:1:1:1.5", "dyn dim '1.5'"),
    ("te=1", "no name"), ("x:unet=y", "UNet weight 'y'"), ("evil:9 name <lora:mine:0.8", "text-encoder"),
])
def test_lora_args_error_follows_the_lora_networks_activate(args, error):
    got = lora_args_error(args)
    assert (got is None) if error is None else (error in got)


def test_prompt_problems_reports_broken_tags_swallowed_tags_and_stray_brackets():
    assert prompt_problems("cat <lora:a:0.5> <hypernet:h:x> a=b") == []
    (broken,) = prompt_problems("cat <lora:a:oops>")
    assert "drops every LoRA" in broken
    swallowed = prompt_problems("cat <lora:evil:9 name <lora:mine:0.8>")
    assert any("swallows a '<'" in p for p in swallowed) and any("does not parse" in p for p in swallowed)
    stray = ["stray '<' outside any tag"] * 2 + ["stray '>' outside any tag"]
    assert prompt_problems("a <3 heart >_<") == stray
    assert [t.text for t in host_tags("<LoRA:x:y> <lyco:z:1>")] == ["<LoRA:x:y>", "<lyco:z:1>"]
    assert host_tags("<LoRA:x:y>")[0].error is None  # the host's registry is case-sensitive: not a lora tag


def test_added_problems_counts_only_what_the_rewrite_added():
    assert added_problems("a <3", "a <3, b <lora:x:1>") == []
    assert added_problems("a", "a <b") == ["stray '<' outside any tag"]


@pytest.mark.parametrize("trigger", ["<lora:evil:9 name", "evil>", "<b>bold</b>", "x <lora:y:1>", "<"])
def test_card_trigger_with_angle_brackets_is_dropped_and_reported(trigger):
    res = rewrite("a fox", [Pick("mine", 0.8, (trigger, "sks"))])
    assert res.prompt == "a fox, sks <lora:mine:0.8>"
    assert_clean(res.prompt)
    assert webui_read(res.prompt) == [("lora", "mine", 0.8)]
    (note,) = res.notes
    assert note.startswith("mine: ") and repr(trigger) in note and ("'<'" in note or "'>'" in note)


def test_card_negative_text_with_angle_brackets_is_dropped_and_reported():
    pick = Pick("mine", 0.8, negative="lowres, <lora:bad:1>, ugly>")
    res = rewrite("a fox", [pick], negative_prompt="blurry")
    assert res.negative_prompt == "blurry, lowres"
    assert len(res.notes) == 2 and all(n.startswith("mine: negative text") for n in res.notes)


def test_card_trigger_that_would_split_or_weight_the_prompt_is_dropped():
    triggers = ("salt AND pepper", "x BREAK y", "sks:0.5", "(sks:1.2)", "and")
    res = rewrite("a fox", [Pick("mine", 0.8, triggers)])
    assert res.triggers == ("(sks:1.2)", "and") and len(res.notes) == 3
    assert strip_syntax(res.prompt) == "a fox, sks, and"


def test_card_trigger_with_unbalanced_brackets_is_dropped():
    res = rewrite("a fox", [Pick("mine", 0.8, ("(glowing", "neon]", "(soft, light:1.1)"))])
    assert res.triggers == ("(soft, light:1.1)",) and len(res.notes) == 2 and "unbalanced" in res.notes[0]


@pytest.mark.parametrize("prompt", ["a fox <lora:red_fox:0.5", "a fox, <lora:red_fox:0.5 ", "<lora:red_fox:",
                                    "a fox <b:c BREAK night"])
def test_unterminated_tag_in_the_prompt_never_swallows_what_stylus_writes(prompt):
    res = rewrite(prompt, [Pick("mine", 0.8, ("sks",))])
    assert_parses(res.prompt, prompt)
    assert ("lora", "mine", 0.8) in webui_read(res.prompt)
    assert "sks" in strip_syntax(res.prompt)
    opener = prompt.rfind("<")
    assert res.prompt.endswith(prompt[opener:])  # the user's unclosed text stays last, untouched


def test_a_prompt_with_a_broken_tag_of_its_own_is_left_as_the_user_wrote_it():
    """The user's own '<lora:x:oops>' already makes the web UI drop every LoRA: Stylus adds to the prompt
    (its tags would be dropped along with the user's) but says why they will not load."""
    res = rewrite("cat <lora:x:oops>", [Pick("mine", 1)])
    assert_parses(res.prompt, "cat <lora:x:oops>")
    assert res.written and any("<lora:x:oops>" in note for note in res.notes)


def test_every_rewrite_here_parses():
    prompts = ["", "cat", "a (cat:1.2) AND dog:0.5", "x <lora:mine:1> BREAK y", "a <3 b", "[a:b:0.5] <c:d"]
    for prompt in prompts:
        for picks in ([Pick("x", 0.7, ("t1", "<bad"))], [Pick("y", 1, negative="n>1"), Pick("z z", 0.3)]):
            res = rewrite(prompt, picks, negative_prompt="lowres <x")
            assert_parses(res.prompt, prompt)
            assert_parses(res.negative_prompt, "lowres <x")


# -------------------------------------------------------------------------- negative merge is linear (9.9)

def test_negative_merge_of_many_phrases_is_correct_and_deduplicated():
    many = ", ".join(f"bad thing{i % 5000}" for i in range(20000))  # 20,000 phrases, 5,000 distinct
    res = rewrite("cat", [Pick("a", 1, negative=many), Pick("b", 1, negative="Bad Thing3, new one")],
                  negative_prompt="bad thing7, (bad thing8:1.2)")
    added = res.negative_prompt[len("bad thing7, (bad thing8:1.2), "):].split(", ")
    assert len(added) == 4999 and added[0] == "bad thing0" and added[-1] == "new one"
    assert "bad thing7" not in added and "bad thing8" not in added


def test_phrase_index_work_grows_linearly(monkeypatch):
    """Count the automaton's steps instead of timing: 10x the phrases must cost about 10x the steps (the old
    merge rescanned everything written so far for every phrase: 100x)."""
    import lib_stylus.prompt as prompt_mod
    steps = []
    real_extend = prompt_mod._PhraseIndex._extend

    def counting(self, symbol):
        steps.append(1)
        return real_extend(self, symbol)

    monkeypatch.setattr(prompt_mod._PhraseIndex, "_extend", counting)
    counts = []
    for n in (1000, 10000):
        steps.clear()
        negative = ", ".join(f"w{i} x{i % 7}" for i in range(n))
        rewrite("cat", [Pick("a", 1, negative=negative)], negative_prompt="")
        counts.append(len(steps))
    assert counts[1] < 12 * counts[0]


@pytest.mark.parametrize("text, phrase, found", [
    ("(Blue  Hair:1.2), x", "blue hair", True), ("blue, hair", "blue hair", False), ("a b c", "b c", True),
    ("a b c, d", "c d", False), ("abcab, cab", "b c", False), ("x y x y z", "x y z", True),
])
def test_phrase_index_agrees_with_contains_phrase(text, phrase, found):
    from lib_stylus.prompt import _PhraseIndex
    index = _PhraseIndex()
    index.add(text)
    assert index.contains(phrase) is found is contains_phrase(text, phrase)


# ------------------------------------------------------------------------- triggers in their chunk (9.10)

def test_trigger_goes_into_the_and_chunk_of_its_task():
    prompt = "a knight AND a dragon"
    res = rewrite(prompt, [Pick("armor", 1, ("sks armor",), chunk=0), Pick("wyrm", 1, ("wyrm",), chunk=1)])
    assert res.prompt == "a knight, sks armor AND a dragon, wyrm <lora:armor:1> <lora:wyrm:1>"
    assert strip_syntax(res.prompt) == "a knight, sks armor, a dragon, wyrm"


def test_trigger_goes_into_the_break_chunk_and_keeps_a_composable_weight_last():
    prompt = "a knight :0.7 AND a dragon BREAK night sky"
    res = rewrite(prompt, [Pick("k", 1, ("sks",), chunk=0), Pick("d", 1, ("wyrm",), chunk=1)])
    assert res.prompt == "a knight, sks :0.7 AND a dragon, wyrm BREAK night sky <lora:k:1> <lora:d:1>"


def test_chunk_index_and_clamping():
    prompt = "a, b BREAK c AND <lora:x AND y:1> d"
    # an AND inside a tag splits nothing
    assert [chunk_index(prompt, prompt.index(w)) for w in "abcd"] == [0, 0, 1, 2]
    res = rewrite("cat", [Pick("x", 1, ("t",), chunk=5)])  # fewer chunks than asked (e.g. a hires prompt)
    assert res.prompt == "cat, t <lora:x:1>"
    res = rewrite("cat,BREAK dog", [Pick("x", 1, ("t",), chunk=0)])
    assert res.prompt == "cat, t BREAK dog <lora:x:1>"


def test_remove_added_undoes_chunk_placed_triggers():
    prompt = "a knight AND a dragon"
    res = rewrite(prompt, [Pick("armor", 1, ("sks armor",), chunk=0)])
    assert remove_added(res.prompt, res.tag_names, res.triggers) == prompt
