"""modules/processing.py of web UI 1.10.1: only create_infotext, the way the host writes an image's (and with
use_main_prompt=True the grid's) infotext. Prompt selection and extra_generation_params evaluation (a list
is indexed by `index`, a callable gets create_infotext's locals) are the host's; fixed fields left out."""
import json


def quote(text):
    if ',' not in str(text) and '\n' not in str(text) and ':' not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0, position_in_batch=0,
                    use_main_prompt=False, index=None, all_negative_prompts=None):
    if use_main_prompt:
        index = 0
    elif index is None:
        index = position_in_batch + iteration * p.batch_size
    if all_negative_prompts is None:
        all_negative_prompts = p.all_negative_prompts
    prompt_text = p.main_prompt if use_main_prompt else all_prompts[index]
    negative_prompt = p.main_negative_prompt if use_main_prompt else all_negative_prompts[index]
    generation_params = {
        "Seed": p.all_seeds[0] if use_main_prompt else all_seeds[index],
        **p.extra_generation_params,
    }
    for key, value in generation_params.items():
        if isinstance(value, list):
            generation_params[key] = value[index]
        elif callable(value):
            generation_params[key] = value(**locals())
    shown = [(k, v) for k, v in generation_params.items() if v is not None]
    generation_params_text = ", ".join([k if k == v else f'{k}: {quote(v)}' for k, v in shown])
    negative_prompt_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt_text}{negative_prompt_text}\n{generation_params_text}".strip()
