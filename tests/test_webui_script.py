import copy
import json
import re

import gradio as gr
import pytest

from lib_stylus.webui.args import StylusArgs, field_names
from tests.loralib import card, make_library
from tests.prompt_check import assert_parses
from tests.webui_env import FakeP, load_script

TAG = re.compile(r"<(\w+):([^>]+)>")  # the web UI's extra-network tag regex
CARDS = [
    card("cyberpunk_city", tags=["style", "cyberpunk"], trigger_words=["cyberpunk city"],
         title="Cyberpunk City Style"),
    card("robot_buddy", tags=["robot", "concept"], trigger_words=["robot companion"],
         title="Robot Companion"),
    card("watercolor_paint", tags=["style", "watercolor"], trigger_words=["watercolor"],
         title="Watercolor Style"),
    card("xl_robot", base="sdxl", tags=["robot"], trigger_words=["robot companion"],
         title="Robot Companion XL"),
]
PROMPT = "a street musician, with a robot companion, cyberpunk style"


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    root = tmp_path_factory.mktemp("webui")
    lib = make_library(root / "Lora", [dict(c) for c in CARDS])
    module = load_script(lib, str(root / "cache"))
    from lib_stylus.webui.service import SERVICE
    SERVICE.refresh(wait=True)
    return module.StylusScript()


def args(**kw):
    a = StylusArgs(enabled=True)
    for k, v in kw.items():
        setattr(a, k, v)
    return [getattr(a, n) for n in field_names()]


def tags(prompt):
    return [m.group(2).split(":")[0] for m in TAG.finditer(prompt)]


def test_ui_components_are_in_api_order_and_paste_fields_exist(script):
    with gr.Blocks():
        comps = script.ui(False)
    assert len(comps) == len(field_names())
    assert comps[0].value is False  # disabled by default
    keys = [k for _, k in script.infotext_fields if isinstance(k, str)]
    assert "Stylus masking" in keys and "Stylus style strength" in keys
    restore_enabled, restore_lora = script.infotext_fields[0][1], script.infotext_fields[1][1]
    assert restore_enabled({"Stylus LoRAs": "x:0.5"}) is True and restore_enabled({}) is False
    # a pasted prompt already carries the LoRAs Stylus chose: auto-LoRA goes off so the image is reproduced
    assert restore_lora({"Stylus LoRAs": "x:0.5"}) is False and restore_lora({}) is None


def test_pasted_model_file_names_outside_the_list_are_kept(script):
    """Infotext from another machine, or a file added after start-up: the dropdowns keep the name (gradio 4
    warns about, and its page drops, a value outside the choices unless custom values are allowed)."""
    import warnings
    with gr.Blocks():
        by_name = dict(zip(field_names(), script.ui(False)))
    for name in ("ip_adapter", "image_encoder"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert by_name[name].postprocess("added_later.safetensors") == "added_later.safetensors"
        assert by_name[name].get_config()["allow_custom_value"] is True


def test_disabled_means_untouched(script):
    p = FakeP([PROMPT] * 2, [1, 2])
    before = copy.deepcopy(p.__dict__)
    script.process(p, *args(enabled=False))
    assert p.__dict__ == before


def test_prompts_get_tags_from_the_library_and_the_infotext_tells(script):
    p = FakeP([PROMPT], [7])
    script.process(p, *args(masking="off"))
    (prompt,) = p.all_prompts
    assert prompt.startswith(PROMPT)
    assert_parses(prompt, PROMPT)
    assert set(tags(prompt)) == {"robot_buddy", "cyberpunk_city"}
    assert "xl_robot" not in prompt  # an SDXL LoRA is never offered for an SD1 model
    from modules.processing import create_infotext
    applied = _infotext_parts(create_infotext(p, p.all_prompts, p.all_seeds, []))[1]["Stylus LoRAs"]
    assert set(x.split(":")[0] for x in applied.split(", ")) == {"robot_buddy", "cyberpunk_city"}


def test_one_adapter_set_per_batch(script):
    p = FakeP([PROMPT] * 4, [10, 11, 12, 13], batch_size=2)
    script.process(p, *args())
    assert (tags(p.all_prompts[0]) == tags(p.all_prompts[1])
            and tags(p.all_prompts[2]) == tags(p.all_prompts[3]))


def test_per_image_masks_are_reproducible_from_the_seed(script):
    seeds = list(range(100, 112))
    p1, p2 = FakeP([PROMPT] * 12, seeds), FakeP([PROMPT] * 12, seeds)
    script.process(p1, *args())
    script.process(p2, *args())
    assert p1.all_prompts == p2.all_prompts
    for prompt in p1.all_prompts:
        assert_parses(prompt, PROMPT)
    assert len({tuple(tags(x)) for x in p1.all_prompts}) > 1  # the paper's masking: a diverse batch


def test_hires_prompts_get_the_same_tags(script):
    p = FakeP([PROMPT], [3], hr=True)
    script.process(p, *args(masking="off"))
    assert tags(p.all_hr_prompts[0]) == tags(p.all_prompts[0])


@pytest.mark.parametrize("masking", ["off", "per image"])
def test_pasted_prompt_with_tags_is_not_tagged_twice(script, masking):
    for seed in range(6):
        p = FakeP([PROMPT], [seed])
        script.process(p, *args(masking=masking))
        again = FakeP(p.all_prompts, [seed])
        script.process(again, *args(masking=masking))  # auto-LoRA left on by hand
        first, second = tags(p.all_prompts[0]), tags(again.all_prompts[0])
        assert second[:len(first)] == first and len(second) == len(set(second))  # nothing written twice


def test_each_batch_infotext_names_that_batchs_loras(script):
    """Read the way the host writes them: per saved image (the batch's prompts, index in the batch) and
    through Processed.infotext (the job's prompts, job-wide index)."""
    from modules.processing import create_infotext
    p = FakeP([PROMPT] * 4, [1, 2, 3, 4], batch_size=2)
    script.process(p, *args())
    for batch in (0, 1):
        p.iteration = batch
        p.prompts = p.all_prompts[2 * batch:2 * batch + 2]
        script.process_batch(p, *args(), batch_number=batch, prompts=p.prompts)
        want = ", ".join(m.group(2) for m in TAG.finditer(p.all_prompts[2 * batch]))  # "alias:weight, ..."
        for i in (0, 1):
            text = create_infotext(p, p.prompts, p.all_seeds, [], index=i)
            assert want and _infotext_parts(text)[1]["Stylus LoRAs"] == want
            text = create_infotext(p, p.all_prompts, p.all_seeds, [], iteration=batch, position_in_batch=i)
            assert _infotext_parts(text)[1]["Stylus LoRAs"] == want


def test_api_args_json_friendly_and_the_object_form(script):
    p = FakeP([PROMPT], [5])
    script.process(p, True, True, 2)  # enabled, lora, max 2: the rest keep their defaults
    assert 1 <= len(tags(p.all_prompts[0])) <= 2
    padded = [{"enabled": True, "masking": "off"}] + args()[1:]  # the host pads API args with ui() defaults
    q = FakeP([PROMPT], [5])
    script.process(q, *padded)
    assert set(tags(q.all_prompts[0])) == {"robot_buddy", "cyberpunk_city"}


def test_a_failing_feature_is_reported_and_generation_goes_on(script, monkeypatch):
    from lib_stylus.webui import lora_job
    from modules import errors

    def boom(*a, **k):
        raise RuntimeError("index exploded")

    monkeypatch.setattr(lora_job, "rewrite_job", boom)
    p = FakeP([PROMPT], [5])
    script.process(p, *args())
    assert p.all_prompts == [PROMPT] and "Stylus LoRAs" not in p.extra_generation_params
    assert any("index exploded" in m for m in errors.reported)


def test_routes_status_and_compose(script):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from lib_stylus.webui import routes
    app = FastAPI()
    routes.register(app)
    client = TestClient(app)
    status = client.get("/stylus/v1/status").json()
    assert status["state"] == "ready" and status["cards"] == 4
    out = client.post("/stylus/v1/compose", json={"prompt": PROMPT}).json()
    assert set(out["picked"]) == {"robot_buddy", "cyberpunk_city"} and "<lora:" in out["prompt"]
    assert_parses(out["prompt"], PROMPT)
    assert out["notes"] == []
    assert json.dumps(out)  # JSON-friendly


def test_new_lora_files_listed_by_the_webui_are_indexed_before_composing(script, tmp_path):
    import networks
    from lib_stylus.webui.service import SERVICE
    lib = SERVICE.index().roots[0]
    make_library(lib, [card("pixel_sprites", tags=["pixel art", "style"], trigger_words=["pixel art"])])
    networks.available_networks["pixel_sprites"] = object()  # the user pressed Refresh in the Lora tab
    p = FakeP(["a castle, pixel art"], [1])
    script.process(p, *args(masking="off"))
    assert "<lora:pixel_sprites:" in p.all_prompts[0]


def test_preview_is_wired_to_the_tab_prompt_box_and_escapes_card_text(script):
    from lib_stylus.webui import hooks
    with gr.Blocks():
        box = gr.Textbox(elem_id="txt2img_prompt")
        script.after_component(box, elem_id="txt2img_prompt")  # the host creates the prompt box first
        script.ui(False)
    assert script.stylus_wired is script.stylus_preview
    html = hooks._preview("a robot companion <script>alert(1)</script>", 4, "local")
    assert "robot_buddy" in html and "<script>" not in html and "&lt;script&gt;" in html


def test_settings_are_registered_in_the_stylus_section(script):
    from modules import shared
    keys = [k for k in shared.options_templates if k.startswith("stylus_")]
    assert {"stylus_embedder", "stylus_top_k", "stylus_llm_url", "stylus_keep_models",
            "stylus_allow_unknown_base", "stylus_add_negative"} <= set(keys)
    assert {shared.options_templates[k].section for k in keys} == {("stylus", "Stylus")}
    assert shared.opts.stylus_embedder == "hybrid"  # the composer checks meaning by default


def test_infotext_round_trip_restores_every_written_field(script):
    """What process() writes, read back the way the host's paste does (string -> the component's value
    type)."""
    chosen = dict(max_adapters=3, weight_multiplier=0.65, masking="same for all images", add_triggers=False,
                  composer="local")
    p = FakeP([PROMPT], [9])
    script.process(p, *args(**chosen))
    with gr.Blocks():
        comps = script.ui(False)
    by_comp = {id(c): name for c, name in zip(comps, field_names())}
    restored = {}
    for comp, key in script.infotext_fields:
        if isinstance(key, str) and key in p.extra_generation_params:
            text = str(p.extra_generation_params[key])
            kind = type(comp.value)
            restored[by_comp[id(comp)]] = ((text == "True") if kind is bool
                                           else kind(float(text)) if kind in (int, float) else text)
    assert restored == chosen


def test_llm_composer_without_endpoint_falls_back_and_says_why(script):
    from lib_stylus.webui.service import SERVICE
    comp = SERVICE.compose(PROMPT, "sd1", 4, "LLM endpoint")
    assert comp.composer == "local" and "no LLM endpoint configured" in comp.fallback
    assert set(comp.stems) >= {"robot_buddy"}


def test_llm_endpoint_setting_builds_the_llm_composer_with_top_k(script):
    from modules import shared
    from lib_stylus.llm_composer import LLMComposer
    from lib_stylus.webui.service import SERVICE
    shared.opts.data.update(stylus_llm_url="http://127.0.0.1:9/v1", stylus_top_k=40, stylus_llm_timeout=1)
    try:
        composer = SERVICE.composer("LLM endpoint")
        assert isinstance(composer, LLMComposer) and composer.candidates == 40
        comp = composer.compose(PROMPT, "sd1")  # nothing listens on port 9: falls back, with the reason
        assert comp.fallback and "robot_buddy" in comp.stems
    finally:
        for k in ("stylus_llm_url", "stylus_top_k", "stylus_llm_timeout"):
            shared.opts.data.pop(k)


# ------------------------------------------------------------------------------------------- issue 9 items

def test_triggers_go_into_the_and_chunk_of_their_task(script):
    """9.10: "a robot companion AND cyberpunk style": the style's trigger conditions the style chunk, not the
    robot's (a bare "robot" is on half of this library's cards: too common to ask for the robot LoRA)."""
    prompt = "a robot companion AND cyberpunk style"
    p = FakeP([prompt], [1])
    script.process(p, *args(masking="off"))
    robot, style = p.all_prompts[0].split(" AND ")
    assert "robot_buddy" in p.all_prompts[0] and "robot companion" not in style
    assert "cyberpunk city" in style and "cyberpunk city" not in robot
    assert_parses(p.all_prompts[0], prompt)


def _infotext_parts(text):
    """(prompt, params) of an infotext, as the paste reads them (the last line holds the parameters)."""
    *prompt_lines, params = text.split("\n")
    prompt = "\n".join(line for line in prompt_lines if not line.startswith("Negative prompt: "))
    pairs = re.findall(r'(\w[\w ]*): ("[^"]*"|[^,]*)', params)
    return prompt, {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


def test_grid_infotext_carries_the_first_images_loras_and_paste_regenerates_them(script):
    """9.11: batch count 2 -> a grid; its infotext (use_main_prompt=True) must show the first image's prompt
    with its LoRAs; 'Send to img2img' pastes it with Pick LoRAs off, and the next job keeps those LoRAs."""
    from modules.processing import create_infotext
    p = FakeP([PROMPT] * 2, [21, 22], negatives=["blurry"] * 2)
    script.process(p, *args(masking="per image"))
    assert p.main_prompt == p.all_prompts[0] and p.main_negative_prompt == p.all_negative_prompts[0]
    image_texts = []
    for n in range(p.n_iter):
        p.iteration = n
        p.prompts = p.all_prompts[n:n + 1]
        p.negative_prompts = p.all_negative_prompts[n:n + 1]
        script.process_batch(p, *args(), batch_number=n, prompts=p.prompts)
        image_texts.append(create_infotext(p, p.prompts, p.all_seeds[n:n + 1], [], index=0,
                                           all_negative_prompts=p.negative_prompts))
    grid_text = create_infotext(p, p.prompts, p.all_seeds, [], use_main_prompt=True)
    for n, text in enumerate(image_texts):
        prompt, params = _infotext_parts(text)
        assert prompt == p.all_prompts[n]
        assert params["Stylus LoRAs"] == ", ".join(m.group(2) for m in TAG.finditer(p.all_prompts[n]))
    grid_prompt, grid_params = _infotext_parts(grid_text)
    assert grid_prompt == p.all_prompts[0] and tags(grid_prompt)
    assert grid_params["Stylus LoRAs"] == _infotext_parts(image_texts[0])[1]["Stylus LoRAs"]
    restore_lora = script.infotext_fields[1][1]
    assert restore_lora(grid_params) is False  # the paste turns Pick LoRAs off ...
    again = FakeP([grid_prompt], [21])
    script.process(again, *args(lora_enabled=False))
    assert tags(again.all_prompts[0]) == tags(p.all_prompts[0])  # ... and the LoRAs come from the prompt


def test_only_stylus_user_errors_are_one_line_and_everything_else_is_a_bug(script, monkeypatch):
    """9.13: a ValueError (say from a broken tag writer) is a Stylus bug: traceback and 'failed'."""
    from lib_stylus.errors import USER_ERRORS, StylusUserError
    from lib_stylus.webui import lora_job
    from modules import errors

    class MissingThing(StylusUserError):
        pass

    for exc, word, traceback in ((ValueError("tag writer bug"), "failed", True),
                                 (FileNotFoundError("no such file"), "failed", True),
                                 (MissingThing("model x is missing"), "skipped", False)):
        def boom(*a, _exc=exc, **k):
            raise _exc
        monkeypatch.setattr(lora_job, "rewrite_job", boom)
        script.process(FakeP([PROMPT], [5]), *args())
        assert f"auto-LoRA {word}" in errors.reported[-1] and str(exc) in errors.reported[-1]
        assert errors.tracebacks[-1] is traceback
    assert USER_ERRORS == (StylusUserError,)


def test_declared_user_errors_are_the_stylus_ones():
    from lib_stylus.errors import StylusUserError
    from lib_stylus.images import ReferenceImageError, to_pil
    from lib_stylus.style import AdapterFormatError, ShapeMismatchError
    from lib_stylus.webui.models import ModelUnavailable
    for cls in (AdapterFormatError, ShapeMismatchError, ModelUnavailable, ReferenceImageError):
        assert issubclass(cls, StylusUserError)
    with pytest.raises(ReferenceImageError):
        to_pil("not base64 at all")


def test_user_mistakes_in_the_style_settings_are_user_errors():
    """A custom block list naming no layer, a checkpoint that is neither SD1.5 nor SDXL, an encoder file of
    another model: each is the user's to fix (one line), not a Stylus bug."""
    import torch
    from lib_stylus.errors import StylusUserError
    from lib_stylus.style import detect_arch, resolve_blocks
    with pytest.raises(StylusUserError, match="no_such_block"):
        resolve_blocks("sd15", "no_such_block")
    with pytest.raises(StylusUserError):
        detect_arch(torch.nn.Linear(2, 2))


def test_llm_api_key_is_a_password_field_and_never_served_by_the_options_api(script, tmp_path):
    """9.14: the key is typed in Settings (a password box) or POSTed to /sdapi/v1/options; it is kept in a
    file of the Stylus model folder, never in opts.data: config.json and GET /sdapi/v1/options lack it."""
    from modules import errors, shared
    from modules.api.api import Api
    from lib_stylus.webui import host, settings
    from lib_stylus.webui.service import SERVICE
    info = shared.options_templates["stylus_llm_key"]
    assert info.component is gr.Textbox and info.component_args == {"type": "password"}
    shared.opts.data["stylus_models_dir"] = str(tmp_path / "stylus")
    shared.opts.data["stylus_llm_url"] = "http://127.0.0.1:9/v1"
    secret = "sk-very-secret-1234"
    try:
        assert shared.opts.set("stylus_llm_key", secret)  # what the Settings page and POST options do
        assert secret not in json.dumps(Api().get_config())
        assert secret not in shared.opts.dumpjson()
        shared.opts.save(str(tmp_path / "config.json"))
        assert secret not in (tmp_path / "config.json").read_text()
        assert settings.llm_key() == secret and SERVICE.composer("LLM endpoint").api_key == secret
        key_file = tmp_path / "stylus" / settings.KEY_FILE
        assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
        # saving the page again without touching the box keeps the key; a single space clears it
        assert not shared.opts.set("stylus_llm_key", "")
        assert settings.llm_key() == secret
        shared.opts.set("stylus_llm_key", " ")
        assert settings.llm_key() == "" and not key_file.exists()
        # a key left in config.json by an older Stylus moves to the file at start-up
        shared.opts.data["stylus_llm_key"] = "sk-old"
        settings.migrate_llm_key()
        assert shared.opts.data["stylus_llm_key"] == "" and settings.llm_key() == "sk-old"
        assert host.models_dir() == str(tmp_path / "stylus")
        # a folder the key cannot be written to: said in the console without the key, never kept in opts
        (tmp_path / "not_a_folder").write_text("")
        shared.opts.data["stylus_models_dir"] = str(tmp_path / "not_a_folder")
        shared.opts.set("stylus_llm_key", "sk-unstorable")
        assert shared.opts.data["stylus_llm_key"] == "" and settings.llm_key() == ""
        assert not any("sk-unstorable" in m for m in errors.reported)
    finally:
        for k in ("stylus_models_dir", "stylus_llm_url", "stylus_llm_key"):
            shared.opts.data.pop(k, None)


def test_background_refresh_reads_the_lora_registry_without_rebuilding_it(script):
    """9.15: networks.list_available_networks() clears and refills the Lora extension's dicts; only the host
    calls it (at start-up, its Refresh button). Stylus's refresh thread and its jobs only read them."""
    import networks
    from lib_stylus.webui import host
    from lib_stylus.webui.service import SERVICE
    networks.refreshes.clear()
    before = dict(networks.available_networks)
    SERVICE.refresh(wait=True)
    script.process(FakeP([PROMPT], [3]), *args())
    assert networks.refreshes == [] and networks.available_networks == before
    assert not hasattr(host, "refresh_registry")
    # a rebuild caught half-way (dicts cleared) reads as "not listed", which drops nothing
    saved = dict(networks.available_networks)
    networks.available_networks.clear()
    try:
        assert host.registry() == (None, None)
    finally:
        networks.available_networks.update(saved)


def test_preview_thumbnail_sits_beside_the_loras_name():
    """9.16: gradio 3.41 styles every <img> display:block, which put the thumbnail on a line of its own."""
    from html.parser import HTMLParser
    from types import SimpleNamespace as NS
    from lib_stylus.webui.ui import preview_html
    card = NS(previews=["/loras/fox.preview.png"])
    adapter = NS(alias="fox", weight=0.8, score=1.0, reason="name matches", named=False, entry=NS(card=card))
    comp = NS(tasks=[NS(text="a fox", adapters=[adapter], note="")], drops=[], fallback="",
              mask=lambda seed, masking, multiplier: NS(weights=lambda: {"fox": 0.64}))
    html = preview_html(comp, 0.8)
    seen = []

    class Reader(HTMLParser):
        def handle_starttag(self, tag, attrs):
            seen.append((tag, dict(attrs)))

    Reader().feed(html)
    img = next(a for t, a in seen if t == "img")
    style = img["style"].replace(" ", "")
    assert "display:inline-block" in style and "vertical-align:middle" in style
    li = next(a for t, a in seen if t == "li")
    assert "display:flex" in li.get("style", "").replace(" ", "")
    assert html.index("<img") < html.index("<b>fox</b>")


def test_callbacks_register_on_hosts_without_the_name_keyword(script):
    """Forge Classic (Haoming02/sd-webui-forge-classic 1f95d71, modules/script_callbacks.py) has the web UI
    1.9 signatures `on_app_started(callback)`: passing `name=` raised TypeError there and the script failed to
    load. Web UI 1.10.1 (`on_app_started(callback, *, name=None)`) still gets the name."""
    from lib_stylus.webui import hooks

    def registry(with_name):
        got = []

        def on(kind):
            if with_name:
                return lambda callback, *, name=None: got.append((kind, name))
            return lambda callback: got.append((kind, None))
        kinds = ("on_app_started", "on_cfg_denoiser", "on_script_unloaded")
        return got, type("ScriptCallbacks", (), {k: staticmethod(on(k)) for k in kinds})

    old_got, old_host = registry(with_name=False)
    hooks.register_callbacks(old_host)
    assert [kind for kind, _ in old_got] == ["on_app_started", "on_cfg_denoiser", "on_script_unloaded"]
    new_got, new_host = registry(with_name=True)
    hooks.register_callbacks(new_host)
    assert {name for _, name in new_got} == {"stylus"}
    assert len(new_got) == 3


def test_extra_generation_params_serialise_as_forge_classic_dumps_them(script):
    """Forge Classic (1f95d71) answers the API with Processed.js() = json.dumps(obj) WITHOUT the web UI
    1.10.1's `default=lambda o: None`, and obj holds p.extra_generation_params: a plain function there made
    every txt2img with picked LoRAs an HTTP 500 after the images were made. The JSON carries the first
    image's LoRAs; each image's infotext still carries its own."""
    from modules.processing import create_infotext
    p = FakeP([PROMPT] * 2, [31, 32])
    script.process(p, *args(masking="per image"))
    dumped = json.loads(json.dumps(p.extra_generation_params))
    loras = [", ".join(m.group(2) for m in TAG.finditer(prompt)) for prompt in p.all_prompts]
    assert loras[0] and dumped["Stylus LoRAs"] == loras[0]
    for n in range(2):
        text = create_infotext(p, p.all_prompts, p.all_seeds, [], iteration=n)
        assert _infotext_parts(text)[1]["Stylus LoRAs"] == loras[n]
