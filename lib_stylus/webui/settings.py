"""The Settings tab section "Stylus". Registered at import time (not in on_ui_settings) so that the options
also appear in GET /sdapi/v1/options: the API's model is built from the options known at import.

The LLM API key is the exception to "an option holds its value": GET /sdapi/v1/options serves every key
of ``shared.opts.data`` (modules/api/api.py, Api.get_config) and config.json is a dump of it. So the option
is only the password box: its onchange moves what was typed into a file of the Stylus model folder (mode
0600) and empties the option again."""
from __future__ import annotations

import json
import logging
import os

import gradio as gr
from modules import shared

from . import host
from .host import SETTINGS_SECTION

log = logging.getLogger("stylus")
KEY_OPTION = "stylus_llm_key"
KEY_FILE = "llm_key.json"


def options() -> dict:
    o = shared.OptionInfo
    return {
        "stylus_embedder": o("hybrid", "Embedder", gr.Radio, {"choices": ["lexical", "hybrid"]}).info(
            "hybrid: BM25 + all-MiniLM-L6-v2 (90 MB, downloaded on first use, in the background: lexical "
            "picks until it is there), which also checks what common words mean: more right picks; lexical: "
            "BM25, no model (also used when the download fails or the web UI is offline)"),
        "stylus_top_k": o(150, "Candidates retrieved per prompt for the LLM composer (the paper's top-K)",
                          gr.Slider, {"minimum": 10, "maximum": 500, "step": 10}),
        "stylus_allow_unknown_base": o(False, "Also offer LoRAs whose base model is unknown"),
        "stylus_add_negative": o(True, "Add the chosen LoRAs' negative text (web UI metadata) to the "
                                       "negative prompt"),
        "stylus_models_dir": o("", "Model folder (default: models/stylus)"),
        "stylus_cache_dir": o("", "Index cache folder (default: models/stylus/cache)"),
        "stylus_keep_models": o(False, "Keep style models in memory between generations"),
        "stylus_llm_url": o("", "LLM composer: OpenAI-compatible base URL (e.g. http://127.0.0.1:8080/v1)"),
        "stylus_llm_model": o("", "LLM composer: model name"),
        KEY_OPTION: o("", "LLM composer: API key (optional)", gr.Textbox, {"type": "password"},
                      onchange=_on_key_typed).info(
            f"kept in {KEY_FILE} of the Stylus model folder, never in config.json or the options API; "
            f"the box shows empty once saved; a single space removes the key"),
        "stylus_llm_timeout": o(20, "LLM composer: timeout in seconds", gr.Slider,
                                {"minimum": 1, "maximum": 120, "step": 1}),
    }


def register() -> None:
    shared.options_templates.update(shared.options_section(SETTINGS_SECTION, options()))


# ---- the LLM API key ---------------------------------------------------------------------------------------
def _key_path() -> str:
    return os.path.join(host.models_dir(), KEY_FILE)


def llm_key() -> str:
    """The stored key, "" when none is stored (or the file cannot be read: said once in the console)."""
    path = _key_path()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as e:
        log.warning("Stylus: cannot read the LLM API key from %s (%s)", path, e.__class__.__name__)
        return ""
    return str(data.get("api_key", "")) if isinstance(data, dict) else ""


def store_llm_key(value: str) -> None:
    """Write the key (readable by its owner only); an empty or blank value removes it."""
    path = _key_path()
    value = value.strip()
    if not value:
        if os.path.exists(path):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(tmp, 0o600)  # a leftover .tmp keeps its old mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"api_key": value}, f)
    os.replace(tmp, path)


def _on_key_typed() -> None:
    """opts.set() has put the typed text into opts.data: move it to the key file and empty the option.
    An empty box means 'unchanged' (the page shows it empty after a save)."""
    typed = shared.opts.data.get(KEY_OPTION) or ""
    shared.opts.data[KEY_OPTION] = ""
    if not typed:
        return
    try:
        store_llm_key(str(typed))
    except OSError as e:
        # Not raised on: the host would print "changing setting ... to <the key>" and put the key back.
        log.error("Stylus: could not store the LLM API key in %s (%s)", _key_path(),
                  e.strerror or e.__class__.__name__)


def migrate_llm_key() -> None:
    """A key an older Stylus left in config.json moves to the key file; config.json is saved without it."""
    old = shared.opts.data.get(KEY_OPTION) or ""
    if not old:
        return
    store_llm_key(str(old))
    shared.opts.data[KEY_OPTION] = ""
    config = getattr(shared, "config_filename", None)
    if config:
        shared.opts.save(config)
    log.info("Stylus: moved the LLM API key from the settings file to %s", _key_path())
