"""The Settings tab section "Stylus". Registered at import time (not in on_ui_settings) so that the options
also appear in GET /sdapi/v1/options: the API's model is built from the options known at import."""
from __future__ import annotations

import gradio as gr
from modules import shared

from .host import SETTINGS_SECTION


def options() -> dict:
    o = shared.OptionInfo
    return {
        "stylus_embedder": o("lexical", "Embedder", gr.Radio, {"choices": ["lexical", "hybrid"]}).info(
            "lexical: BM25, no model; hybrid: BM25 + all-MiniLM-L6-v2 (90 MB, downloaded on first use)"),
        "stylus_top_k": o(150, "Candidates retrieved per prompt for the LLM composer (the paper's top-K)", gr.Slider, {"minimum": 10, "maximum": 500, "step": 10}),
        "stylus_allow_unknown_base": o(False, "Also offer LoRAs whose base model is unknown"),
        "stylus_add_negative": o(True, "Add the chosen LoRAs' negative text (web UI metadata) to the negative prompt"),
        "stylus_models_dir": o("", "Model folder (default: models/stylus)"),
        "stylus_cache_dir": o("", "Index cache folder (default: models/stylus/cache)"),
        "stylus_keep_models": o(False, "Keep style models in memory between generations"),
        "stylus_llm_url": o("", "LLM composer: OpenAI-compatible base URL (e.g. http://127.0.0.1:8080/v1)"),
        "stylus_llm_model": o("", "LLM composer: model name"),
        "stylus_llm_key": o("", "LLM composer: API key (optional)"),
        "stylus_llm_timeout": o(20, "LLM composer: timeout in seconds", gr.Slider, {"minimum": 1, "maximum": 120, "step": 1}),
    }


def register() -> None:
    shared.options_templates.update(shared.options_section(SETTINGS_SECTION, options()))
