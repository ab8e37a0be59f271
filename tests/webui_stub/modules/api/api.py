"""modules/api/api.py of web UI 1.10.1: only what `GET /sdapi/v1/options` answers (Api.get_config). It serves
every key of `shared.opts.data`, i.e. everything config.json holds and every option set since start-up."""
from modules import shared


class Api:
    def get_config(self):
        options = {}
        for key in shared.opts.data.keys():
            metadata = shared.opts.data_labels.get(key)
            if metadata is not None:
                options.update({key: shared.opts.data.get(key, shared.opts.data_labels.get(key).default)})
            else:
                options.update({key: shared.opts.data.get(key, None)})
        return options
