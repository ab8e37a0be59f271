import os

AlwaysVisible = object()
current_basedir = os.path.dirname(os.path.dirname(__file__))


def basedir():
    return current_basedir


class Script:
    infotext_fields = None
    paste_field_names = None
    is_txt2img = False
    is_img2img = False

    def title(self):
        raise NotImplementedError

    # The hooks a script may override; the host calls each with these arguments (defaults do nothing).
    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def elem_id(self, item_id):
        tab = "img2img" if self.is_img2img else "txt2img"
        return f"script_{tab}_{self.title().lower().replace(' ', '_')}_{item_id}"
