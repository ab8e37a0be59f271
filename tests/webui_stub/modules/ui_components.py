import gradio as gr


class InputAccordion(gr.Checkbox):
    """As in the web UI: a hidden checkbox (the value) that opens an accordion used as a context manager."""
    def __init__(self, value, **kwargs):
        label = kwargs.pop("label", "")
        elem_id = kwargs.pop("elem_id", None)
        super().__init__(value=value, visible=False, elem_id=elem_id)
        self.accordion = gr.Accordion(label, open=value)

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, *exc):
        self.accordion.__exit__(*exc)
