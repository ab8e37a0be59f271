"""Stylus for the web UI: an always-on script. Thin glue; the work is in lib_stylus (webui/ is the host
layer)."""
import logging
import os
import sys

from modules import script_callbacks, scripts

_EXT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _EXT_DIR not in sys.path:
    sys.path.insert(0, _EXT_DIR)

from lib_stylus.webui import hooks, settings, ui  # noqa: E402
from lib_stylus.webui.args import StylusArgs  # noqa: E402

log = logging.getLogger("stylus")
settings.register()
hooks.register_callbacks(script_callbacks)


class StylusScript(scripts.Script):
    def title(self):
        return "Stylus"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return ui.build(self, is_img2img)

    def after_component(self, component, **kwargs):
        hooks.remember_prompt_box(self, component, kwargs.get("elem_id"))

    def process(self, p, *args):
        hooks.process(p, StylusArgs.from_script_args(args))

    def postprocess(self, p, processed, *args):
        hooks.end_job(p)
