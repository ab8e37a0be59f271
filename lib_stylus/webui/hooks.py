"""What the Stylus script does at each host hook. Every feature is fenced: an error is reported in the
console and the infotext's absence, and the generation runs on without that feature."""
from __future__ import annotations

import logging

from . import lora_job, routes, style_job
from .args import StylusArgs
from .service import SERVICE

log = logging.getLogger("stylus")


def register_callbacks(script_callbacks) -> None:
    """Once per process: routes and the background index refresh after the app starts, CFG row roles for the
    style patch, and a restore when scripts are reloaded."""
    def on_app_started(demo, app):
        routes.register(app)
        SERVICE.refresh()  # background thread: adds nothing to start-up

    script_callbacks.on_app_started(on_app_started, name="stylus")
    script_callbacks.on_cfg_denoiser(style_job.on_cfg_denoiser, name="stylus")
    script_callbacks.on_script_unloaded(style_job.restore, name="stylus")


def process(p, args: StylusArgs) -> None:
    if not args.enabled:
        return  # disabled means untouched: nothing read, loaded or written
    if args.lora_on:
        _fenced("auto-LoRA", lora_job.process, p, args)
    if args.style_on:
        _fenced("reference style", style_job.process, p, args)


def restore_style() -> None:
    style_job.restore()


def remember_prompt_box(script, component, elem_id) -> None:
    """Wire the Preview button to this tab's prompt box once the host has created it."""
    if elem_id not in ("txt2img_prompt", "img2img_prompt") or not hasattr(script, "stylus_preview"):
        return
    button, html, max_adapters, composer = script.stylus_preview
    button.click(fn=_preview, inputs=[component, max_adapters, composer], outputs=[html])


def _preview(prompt: str, max_adapters, composer) -> str:
    from .ui import preview_html
    from ..text import escape
    try:
        return preview_html(SERVICE.compose(prompt or "", None, int(max_adapters), composer))
    except Exception as e:
        log.exception("Stylus preview failed")
        return f"<p>Stylus could not compose: {escape(str(e))}</p>"


def _fenced(what: str, fn, p, args) -> None:
    try:
        fn(p, args)
    except Exception as e:
        log.exception("Stylus: %s failed; generating without it", what)
        try:
            from modules import errors
            errors.report(f"Stylus: {what} failed: {e}", exc_info=False)
        except Exception:
            pass
