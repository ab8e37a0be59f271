import types

from modules.options import OptionInfo, Options, options_section  # noqa: F401

options_templates = {}
opts = Options(options_templates)
config_filename = None  # config.json; tests point it at a temporary file
cmd_opts = types.SimpleNamespace(lora_dir="", lyco_dir_backcompat="")
sd_model = None


class State:
    def __init__(self):
        self.interrupted = self.skipped = False
        self.textinfo = None
        self.job = ""


state = State()
