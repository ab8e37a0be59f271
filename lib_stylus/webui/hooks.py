"""What the Stylus script does at each host hook. Every feature is fenced: an error is reported in the
console and the infotext's absence, and the generation runs on without that feature."""
from __future__ import annotations

import inspect
import logging

from ..errors import is_user_error
from . import lora_job, routes, settings, style_job
from .args import StylusArgs
from .service import SERVICE

log = logging.getLogger("stylus")


def register_callbacks(script_callbacks) -> None:
    """Once per process: routes and the background index refresh after the app starts, CFG row roles for the
    style patch, and a restore when scripts are reloaded."""
    def on_app_started(demo, app):
        settings.migrate_llm_key()
        routes.register(app)
        SERVICE.refresh()  # background thread: adds nothing to start-up

    _register(script_callbacks.on_app_started, on_app_started)
    _register(script_callbacks.on_cfg_denoiser, style_job.on_cfg_denoiser)
    _register(script_callbacks.on_script_unloaded, lambda: style_job.restore())


def _register(on_event, callback) -> None:
    """Web UI 1.10 names callbacks (its callback-order setting lists them by name); Forge Classic keeps the
    1.9 signature `on_x(callback)` and raises TypeError on `name=`."""
    if "name" in inspect.signature(on_event).parameters:
        on_event(callback, name="stylus")
    else:
        on_event(callback)


def process(p, args: StylusArgs) -> None:
    style_job.begin(p)  # a style left installed by an earlier job goes first, whether or not Stylus is on now
    if not args.enabled:
        return  # disabled means untouched: nothing read, loaded or written
    if args.lora_on:
        _fenced("auto-LoRA", lora_job.process, p, args)
    if args.style_on:
        _fenced("reference style", style_job.process, p, args)


def end_job(p) -> None:
    style_job.restore(p)


def remember_prompt_box(script, component, elem_id) -> None:
    """The host creates the tab's prompt box before the scripts' UI: keep it, and wire Preview to it."""
    if elem_id != ("img2img_prompt" if getattr(script, "is_img2img", False) else "txt2img_prompt"):
        return
    script.stylus_prompt_box = component
    wire_preview(script)


def wire_preview(script) -> None:
    """Connect Preview once both the prompt box and the button exist (whichever comes last calls this)."""
    box, parts = getattr(script, "stylus_prompt_box", None), getattr(script, "stylus_preview", None)
    if box is None or parts is None or getattr(script, "stylus_wired", None) is parts:
        return
    button, html, max_adapters, composer, multiplier = parts
    button.click(fn=_preview, inputs=[box, max_adapters, composer, multiplier], outputs=[html])
    script.stylus_wired = parts


def _preview(prompt: str, max_adapters, composer, multiplier=0.8) -> str:
    from .ui import preview_html
    from ..text import escape
    try:
        comp = lora_job.drop_unknown(SERVICE.compose(prompt or "", None, int(max_adapters), composer))
        return preview_html(comp, float(multiplier), SERVICE.encoder.note())
    except Exception as e:
        log.exception("Stylus preview failed")
        return f"<p>Stylus could not compose: {escape(str(e))}</p>"


def _fenced(what: str, fn, p, args) -> None:
    try:
        fn(p, args)
    except Exception as e:
        # Only Stylus's declared user errors (a missing model, a bad file or input) are one line; anything
        # else, ValueError included, is a Stylus bug and keeps its traceback.
        expected = is_user_error(e)
        outcome = "skipped" if expected else "failed"
        message = f"Stylus: {what} {outcome}, generating without it: {e}"
        try:
            from modules import errors
            errors.report(message, exc_info=not expected)
        except ImportError:
            log.warning(message, exc_info=not expected)
