from lib_stylus.catalog.card import AdapterCard
from lib_stylus.refiner import clean_prompt, recommended_weight, refine, topic


def make(**kw):
    base = dict(path="/x/a.safetensors", rel="a.safetensors", stem="a", alias="a")
    base.update(kw)
    return AdapterCard(**base)


def test_weight_priority_sidecar_then_samples_then_description_then_default():
    assert recommended_weight(make(preferred_weight=0.55, sample_weights=[1.0],
                                   description="weight 0.2-0.4")) == 0.55
    assert recommended_weight(make(sample_weights=[0.6, 0.7, 0.9], description="weight 0.2-0.4")) == 0.7
    assert recommended_weight(
        make(description="Recommended weights for txt2img - 0.45-0.75, higher ...")) == 0.6
    assert recommended_weight(make(description="no advice here")) == 0.8


def test_topic_rules():
    assert topic(make(tags=["anime", "character", "genshin impact"])) == "character"
    assert topic(make(tags=["style", "watercolor"])) == "style"
    assert topic(make(tags=["clothing", "kimono"])) == "clothing"
    assert topic(make(tags=["vehicle", "car"])) == "vehicle"
    assert topic(make(tags=["animal", "cat"])) == "animal"
    assert topic(make(tags=["architecture", "cathedral"])) == "building"
    assert topic(make(tags=["lora"], title="Something")) == "concept"


def test_clean_prompt_removes_tags_emphasis_and_boilerplate():
    text = clean_prompt("masterpiece, best quality, (red dragon:1.3), <lora:dragon:0.7>, "
                        "[fire] BREAK mountains")
    assert text == "red dragon, fire, mountains"


def test_refined_text_has_no_html_and_keeps_the_telling_words():
    card = make(stem="neon_v2", title="Neon <b>Glow</b>", tags=["style", "neon"], trigger_words=["neon glow"],
                description="Strong rim light", tag_frequency={"masterpiece": 50, "glowing outline": 40},
                sample_prompts=["1girl, neon glow, <lora:neon_v2:0.8>"])
    r = refine(card, captioners=[lambda c: "a preview with pink light"])
    assert "glowing outline" in r.text and "masterpiece" not in r.text.split(" . ")[2]
    assert "<lora" not in r.text and "a preview with pink light" in r.text
    # The sentence encoder reads what the adapter is for: title and specific tags, not captions or
    # description.
    assert r.dense_text == "Neon Glow. neon"
    assert r.topic == "style" and r.weight == 0.8
