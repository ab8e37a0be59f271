"""End-to-end against a RUNNING web UI with Stylus installed: set STYLUS_WEBUI_URL (http://127.0.0.1:7861).
The host (web UI v1.10.1 with the tiny SD1.5 / SDXL checkpoints and their LoRAs) is built and started by
tests/e2e/build_host.sh (README: "End-to-end test against a real web UI"). Only HTTP: nothing here builds or
starts the web UI. Without the variable these tests are not collected.

The host may list any other LoRAs besides the tiny model's three (a real library): the tests assert what
Stylus did with whatever it picked, and the tiny LoRAs' own hashes where the picks include them."""
import json
import re
import time

import pytest

from tests.e2e.client import BASE, call, listed, lora, stylus


def txt2img(prompt, **extra):
    out = call("/sdapi/v1/txt2img", {**BASE, "prompt": prompt, **extra})
    return out["images"], json.loads(out["info"])


def hashed(name: str) -> bool:
    """The tiny LoRAs carry kohya's precomputed hash: the web UI writes it to the infotext even with
    --no-hashing (a LoRA without one is applied, but not named there)."""
    return name.startswith("tiny_")


BEFORE = {}  # the service's status as the suite found it: the host's own start-up refresh, on a fresh host


@pytest.fixture(scope="module", autouse=True)
def index_ready():
    deadline = time.time() + 120
    while call("/stylus/v1/status")["state"] in ("not started", "indexing") and time.time() < deadline:
        time.sleep(0.5)
    BEFORE.update(call("/stylus/v1/status"))
    call("/sdapi/v1/refresh-loras", {})  # LoRAs added while the host runs (e.g. a materialized library)
    call("/stylus/v1/refresh?wait=true", {})
    deadline = time.time() + 120
    while call("/stylus/v1/status")["state"] != "ready" and time.time() < deadline:
        time.sleep(0.5)
    assert call("/stylus/v1/status")["cards"] >= 3


def test_the_start_up_index_is_built_beside_the_hosts_own_checkpoint_load():
    """The host loads its first checkpoint while Stylus's first refresh runs: the refresh must not fail (an
    encoder built inside the host's load came out broken, and the whole index failed until a manual
    refresh)."""
    assert BEFORE["state"] == "ready", BEFORE.get("message")
    assert BEFORE["cards"] >= 3


def test_status_tells_the_embedder_in_use_and_the_sentence_encoders_state():
    """The hybrid index only once its encoder is in use; without one (no offline package, the host offline, a
    download under way or failed) the lexical index serves, and the encoder's state says why."""
    status = call("/stylus/v1/status")
    encoder = status["encoder"]
    assert status["embedder"] in ("lexical", "hybrid")
    assert encoder["state"] in ("not used", "downloading", "on disk", "in use", "unavailable")
    if status["embedder"] == "hybrid":
        assert encoder["state"] == "in use"
    if encoder["state"] == "unavailable":
        assert "all-MiniLM-L6-v2" in encoder["message"] and "\n" not in encoder["message"]


# The tiny LoRAs are asked by their names ("tiny watercolor"): these tests are about the host, not pick
# coverage. A bare "watercolor" is refused by the composer's rarity rule when the library holds several
# watercolor LoRAs (BENCHMARKS.md, composer coverage), and the suite must pass whatever library the host
# lists.
HOUSE = "a house by the lake, tiny watercolor"


def test_compose_route_picks_from_the_webui_library():
    out = call("/stylus/v1/compose", {"prompt": HOUSE, "seed": 1})
    assert out["picked"] and set(out["picked"]) <= listed()
    # "picked" holds every task's candidates; the rewrite (for this seed) tags one or more of them
    tagged = re.findall(r"<lora:([^:>]+):", out["prompt"])
    assert tagged and set(tagged) <= set(out["picked"])
    if len(listed()) == 3:  # only the tiny model's own LoRAs: the watercolor one is the answer
        assert out["picked"] == [lora("watercolor")]


def test_txt2img_applies_the_picked_lora_and_the_infotext_tells():
    images, info = txt2img(HOUSE,
                           **stylus(True, True, 4, 0.8, True, "off"))
    text = info["infotexts"][0]
    applied = text.split('Stylus LoRAs: "')[1].split('"')[0]
    picked = [part.split(":")[0].strip() for part in applied.split(",")]
    assert picked and set(picked) <= listed()
    for name in picked:
        assert f"<lora:{name}:" in info["prompt"]
        if hashed(name):
            assert f'Lora hashes: "{name}' in text or f", {name}: " in text.split("Lora hashes:")[1]
    plain, _ = txt2img(HOUSE)
    assert images[0] != plain[0]


def test_disabled_stylus_is_bit_identical_to_no_stylus():
    off, info = txt2img(HOUSE, **stylus(False, True, 4))
    plain, _ = txt2img(HOUSE)
    assert off == plain and "Stylus" not in info["infotexts"][0]


def test_batch_gets_one_adapter_set_and_every_infotext_is_true():
    images, info = txt2img("a city street, tiny cyberpunk, tiny watercolor", batch_size=2, n_iter=2,
                           **stylus(True, True, 4, 0.8, True, "per image"))
    prompts = info["all_prompts"]
    assert prompts[0].count("<lora:") == prompts[1].count("<lora:") and len(info["infotexts"]) == 4
    for prompt, text in zip(prompts, info["infotexts"]):
        stylus_part = text.split("Stylus LoRAs:")[1].split("Stylus max")[0]
        hashes = text.split("Lora hashes:")[-1] if "Lora hashes:" in text else ""
        names = {part.split(":")[0].strip() for part in stylus_part.strip(' ",').split(",") if ":" in part}
        for name in names | {lora("watercolor"), lora("cyberpunk")}:
            assert (f"<lora:{name}:" in prompt) == (name in stylus_part)
            if hashed(name):
                assert (f"<lora:{name}:" in prompt) == (name in hashes)


def test_unknown_script_args_types_do_not_break_generation():
    images, info = txt2img("a dog", **stylus(True, "yes", "many", None, 1, "sideways"))
    assert len(images) == 1
