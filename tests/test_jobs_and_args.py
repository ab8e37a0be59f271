import base64
import io
import subprocess
import sys

from PIL import Image

from lib_stylus.images import to_pil
from lib_stylus.jobs import mask_seed, rewrite_job
from lib_stylus.webui.args import StylusArgs, field_names, infotext_keys
from tests.prompt_check import assert_parses


class FakeComposition:
    """Records which seed each rewrite used; writes one tag named after the seed."""
    def __init__(self):
        self.seeds = []

    def rewrite(self, prompt, seed, negative, add_triggers, masking, **kw):
        from lib_stylus.prompt import Pick, rewrite
        self.seeds.append(seed)
        return rewrite(prompt, [Pick(f"lora_{seed}", kw.get("multiplier", 0.8))], negative, add_triggers)


def test_mask_seed_per_image_per_batch_or_one_for_all():
    seeds = [10, 11, 12, 13]
    assert [mask_seed(seeds, i, 1, "per image") for i in range(4)] == [10, 11, 12, 13]
    assert [mask_seed(seeds, i, 2, "per image") for i in range(4)] == [10, 10, 12, 12]
    assert [mask_seed(seeds, i, 2, "same for all images") for i in range(4)] == [10, 10, 10, 10]


def test_rewrite_job_writes_one_set_per_batch_and_hires_prompts():
    comp = FakeComposition()
    job = rewrite_job(["a", "a", "b", "b"], ["", "", "", ""], [5, 6, 7, 8], 2, lambda p: comp, "per image",
                      multiplier=0.5, hr_prompts=["a", "a", "b", "b"])
    assert job.prompts == ["a <lora:lora_5:0.5>", "a <lora:lora_5:0.5>", "b <lora:lora_7:0.5>",
                           "b <lora:lora_7:0.5>"]
    assert job.hr_prompts == job.prompts
    assert job.applied == ["lora_5:0.5", "lora_5:0.5", "lora_7:0.5", "lora_7:0.5"]
    for before, after in zip(["a", "a", "b", "b"], job.prompts):
        assert_parses(after, before)


class BrokenCardComposition:
    """A card whose activation text is an unclosed tag (9.8): left out, with one note per job."""
    def rewrite(self, prompt, seed, negative, add_triggers, masking, **kw):
        from lib_stylus.prompt import Pick, rewrite
        return rewrite(prompt, [Pick("mine", 0.8, ("<lora:evil:9 name", "sks"), negative="bad>")], negative,
                       add_triggers)


def test_rewrite_job_leaves_out_card_text_that_breaks_tags_and_says_so_once():
    prompts = ["a fox <lora:red_fox:0.5", "a fox <lora:red_fox:0.5"]
    job = rewrite_job(prompts, ["lowres", "lowres"], [1, 2], 1, lambda p: BrokenCardComposition(),
                      hr_prompts=list(prompts), hr_negatives=["lowres", "lowres"])
    for before, after in zip(prompts * 2, job.prompts + job.hr_prompts):
        assert after == "a fox, sks <lora:mine:0.8> <lora:red_fox:0.5"
        assert_parses(after, before)
    assert job.negative_prompts == ["lowres", "lowres"]
    assert len(job.notes) == 2 and "'<lora:evil:9 name'" in job.notes[0] and "'bad>'" in job.notes[1]


def test_args_from_api_are_coerced_and_defaulted():
    a = StylusArgs.from_script_args([True, "true", "3", "0.5", 0, "sideways"])
    assert a.enabled and a.lora_enabled and a.max_adapters == 3 and a.weight_multiplier == 0.5
    assert a.add_triggers is False and a.masking == "per image" and a.style_scale == 1.0
    assert StylusArgs.from_script_args([{"enabled": True, "style_scale": 0.3}]).style_scale == 0.3
    assert not StylusArgs.from_script_args([]).enabled
    assert len(field_names()) == 16 and infotext_keys()["style_scale"] == "Stylus style strength"


def test_reference_image_from_base64_data_url_and_pil():
    buf = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(buf, "PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    for value in (b64, "data:image/png;base64," + b64, Image.open(io.BytesIO(buf.getvalue()))):
        img = to_pil(value)
        assert img.mode == "RGB" and img.size == (8, 8)
    assert to_pil(None) is None and to_pil("") is None


def test_reference_image_from_numpy_and_image_editor_dicts():
    """gradio 4's ImageEditor (numpy by default) and gradio 3's sketch send dicts; arrays have no truth
    value."""
    import numpy as np
    rgb, rgba = np.full((8, 6, 3), 200, np.uint8), np.zeros((8, 6, 4), np.uint8)
    for value in (rgb, rgba, {"background": rgb, "layers": [], "composite": rgba},
                  {"image": rgb, "mask": rgb},
                  {"background": Image.new("RGB", (6, 8)), "layers": [], "composite": None}):
        img = to_pil(value)
        assert img.mode == "RGB" and img.size == (6, 8)
    assert to_pil({"background": None, "layers": [], "composite": None}) is None


def test_install_py_is_a_no_op_when_everything_is_present():
    root = __file__.rsplit("/tests/", 1)[0]
    # Outside the web UI there is no `launch` module: importing it (to pip-install) would fail this run.
    out = subprocess.run([sys.executable, "-c",
                          "import runpy; print(runpy.run_path('install.py')['missing']())"],
                         capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
