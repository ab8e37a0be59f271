"""The accordion in txt2img and img2img. Components are created in StylusArgs field order: that order IS the
API's positional `alwayson_scripts` args. ui() runs several times at start-up: no side effects here."""
from __future__ import annotations

import gradio as gr

from ..text import escape
from .args import BLOCK_PRESETS, COMPOSERS, MASKING, StylusArgs
from .lora_job import APPLIED_KEY

D = StylusArgs()


def _accordion(elem_id):
    try:
        from modules.ui_components import InputAccordion
        acc = InputAccordion(False, label="Stylus", elem_id=elem_id)
        return acc, acc
    except ImportError:  # hosts without InputAccordion: a plain accordion with an enable box inside
        acc = gr.Accordion("Stylus", open=False, elem_id=elem_id)
        return acc, None


def build(script, is_img2img: bool) -> list:
    from . import models
    acc, enabled = _accordion(script.elem_id("enable"))
    with acc:
        if enabled is None:
            enabled = gr.Checkbox(False, label="Enable Stylus", elem_id=script.elem_id("enabled"))
        with gr.Tab("Auto-LoRA"):
            with gr.Row():
                lora_enabled = gr.Checkbox(D.lora_enabled, label="Pick LoRAs for the prompt",
                                           elem_id=script.elem_id("lora"))
                add_triggers = gr.Checkbox(D.add_triggers, label="Add trigger words",
                                           elem_id=script.elem_id("triggers"))
            with gr.Row():
                max_adapters = gr.Slider(0, 12, D.max_adapters, step=1, label="Max LoRAs",
                                         elem_id=script.elem_id("max"))
                multiplier = gr.Slider(0.0, 2.0, D.weight_multiplier, step=0.05, label="Weight multiplier",
                                       elem_id=script.elem_id("multiplier"))
            with gr.Row():
                masking = gr.Radio(list(MASKING), value=D.masking,
                                   label="Masking (a seeded LoRA subset per image)",
                                   elem_id=script.elem_id("masking"))
                composer = gr.Radio(list(COMPOSERS), value=D.composer, label="Composer",
                                    elem_id=script.elem_id("composer"))
            with gr.Row():
                preview = gr.Button("Preview picks", elem_id=script.elem_id("preview"))
            preview_html = gr.HTML("", elem_id=script.elem_id("preview_html"))
        with gr.Tab("Reference style"):
            style_enabled = gr.Checkbox(D.style_enabled, label="Use the reference image's style",
                                        elem_id=script.elem_id("style"))
            style_image = gr.Image(label="Reference image", type="pil", elem_id=script.elem_id("image"))
            content = gr.Textbox(D.content_text,
                                 label="Content of the reference (subtracted, e.g. 'a cat on a sofa')",
                                 elem_id=script.elem_id("content"))
            with gr.Row():
                lam = gr.Slider(0.0, 2.0, D.content_lambda, step=0.05, label="Content subtraction λ",
                                elem_id=script.elem_id("lambda"))
                scale = gr.Slider(0.0, 2.0, D.style_scale, step=0.05, label="Style strength",
                                  elem_id=script.elem_id("scale"))
            with gr.Row():
                blocks = gr.Radio(list(BLOCK_PRESETS), value=D.blocks_preset, label="Blocks",
                                  elem_id=script.elem_id("blocks"))
                custom = gr.Textbox(D.custom_blocks, label="Custom blocks (e.g. up_blocks.0.attentions.1)",
                                    elem_id=script.elem_id("custom"))
            with gr.Row():  # custom values: a pasted infotext or a file added after start-up names a file not
                # listed here (gradio 4 warns and its page drops such a value); the style job reports a
                # missing file
                adapter = gr.Dropdown(["auto"] + models.list_ip_adapters_safe(), value="auto",
                                      label="IP-Adapter", allow_custom_value=True,
                                      elem_id=script.elem_id("adapter"), info=models.auto_note())
                encoder = gr.Dropdown(["auto"] + models.list_image_encoders_safe(), value="auto",
                                      label="Image encoder", allow_custom_value=True,
                                      elem_id=script.elem_id("encoder"))
    components = [enabled, lora_enabled, max_adapters, multiplier, add_triggers, masking, composer,
                  style_enabled, style_image, content, lam, scale, blocks, custom, adapter, encoder]
    script.stylus_preview = (preview, preview_html, max_adapters, composer, multiplier)
    from .hooks import wire_preview
    wire_preview(script)
    script.infotext_fields = infotext_fields(components)
    script.paste_field_names = [key for _, key in script.infotext_fields if isinstance(key, str)]
    return components


def infotext_fields(c: list) -> list:
    from .args import field_names, infotext_keys
    keys = infotext_keys()
    by_name = dict(zip(field_names(), c))
    fields = [(by_name["enabled"], lambda d: APPLIED_KEY in d or keys["style_scale"] in d),
              # The pasted prompt already carries the LoRAs Stylus chose: reproduce it, don't compose on top.
              (by_name["lora_enabled"], lambda d: False if APPLIED_KEY in d else None),
              (by_name["style_enabled"], lambda d: keys["style_scale"] in d)]
    fields += [(by_name[n], k) for n, k in keys.items()]
    return fields


def preview_html(comp, multiplier: float = 0.8, note: str = "") -> str:
    """The composer's explanation as HTML; every text from a model card is escaped. Weights are those written
    with masking off (recommended x multiplier / adapters in the task); a mask can only leave some out.
    ``note``: why the picks are lexical (the sentence encoder not there yet), shown first."""
    weights = comp.mask(0, False, multiplier=multiplier).weights()
    rows = []
    for task in comp.tasks:
        picks = "".join(_pick_item(a, weights.get(a.alias, a.weight)) for a in task.adapters)
        if not picks:
            picks = f"<li><i>{escape(task.note or 'no LoRA for this task')}</i></li>"
        rows.append(f"<div class='stylus-task'><div>Task: <code>{escape(task.text)}</code></div>"
                    f"<ul>{picks}</ul></div>")
    drops = "".join(f"<li>{escape(d.stem)} — {escape(d.reason)}</li>" for d in comp.drops[:20])
    notes = [n for n in (note, getattr(comp, "fallback", "")) if n]
    fallback = "".join(f"<p>{escape(n)}</p>" for n in notes)
    tasks = "".join(rows) or "<p>No tasks in this prompt.</p>"
    dropped = f"<details><summary>Dropped candidates ({len(comp.drops)})</summary><ul>{drops}</ul></details>"
    return f"<div class='stylus-preview'>{fallback}{tasks}{dropped}</div>"


def _pick_item(a, weight: float) -> str:
    """One picked LoRA: thumbnail and text in one row (a flex row keeps the image beside the name)."""
    tag = escape(f"<lora:{a.alias}:{weight:g}>")
    text = (f"<b>{escape(a.alias)}</b> · weight {weight:g} · score {a.score:.2f} — {escape(a.reason)}"
            f" · {_mask_note(a)}")
    row = "display:flex;align-items:center;gap:.25em"
    return (f"<li data-stylus-tag='{tag}' title='click to copy the tag' style='{row}'>"
            f"{_thumb(a.entry.card)}<span>{text}</span></li>")


def _mask_note(a) -> str:
    """What masking may do to a pick (the seed is drawn at generation): named ones are never left out."""
    return ("kept in every image (named in the prompt)" if a.named
            else "may be masked out in some images (seeded)")


def _thumb(card) -> str:
    """The LoRA's preview through the web UI's own extra-networks thumbnail route."""
    from urllib.parse import quote
    if not card.previews:
        return ""
    # gradio's page styles every <img> display:block, which put the thumbnail on a line of its own, away from
    # the name: inline-block keeps it beside the name.
    return (f"<img src='./sd_extra_networks/thumb?filename={escape(quote(card.previews[0]))}' "
            f"style='display:inline-block;height:3em;vertical-align:middle;margin-right:.5em' alt=''>")
