import pytest

from lib_stylus.composer import Composer, split_tasks
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
    comp = composer.compose("cyberpunk style, cyberpunk", "sd1")
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
    comp = composer.compose("with a robot, cyberpunk style, watercolor, in knight armor", "sd1", max_adapters=2)
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
    assert "knight_girl" in Composer(retriever).compose("aria in light armor", "sd1").stems
