callbacks = {"app_started": [], "cfg_denoiser": [], "script_unloaded": []}


def _add(kind, fn, name=None):
    callbacks[kind].append(fn)


def on_app_started(fn, *, name=None):
    _add("app_started", fn, name)


def on_cfg_denoiser(fn, *, name=None):
    _add("cfg_denoiser", fn, name)


def on_script_unloaded(fn, *, name=None):
    _add("script_unloaded", fn, name)


def cfg_denoiser_callback(params):
    for fn in callbacks["cfg_denoiser"]:
        fn(params)


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond,
                 denoiser=None):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser
