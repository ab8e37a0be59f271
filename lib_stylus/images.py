"""Reference images arrive as PIL images (gradio 3), dicts (gradio 4 image editor), numpy arrays, or base64
strings / data URLs (the API). One function turns any of them into an RGB PIL image or None."""
from __future__ import annotations

import base64
import io

from .errors import StylusUserError


class ReferenceImageError(StylusUserError, ValueError):
    """The reference image sent (API base64, an upload) cannot be read as an image."""


def to_pil(value):
    from PIL import Image
    if value is None or (isinstance(value, str) and value == ""):  # never `==` on an array: it is elementwise
        return None
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):  # gradio 4 ImageEditor / gradio 3 sketch payloads: PIL images or numpy arrays
        parts = (value.get(key) for key in ("composite", "background", "image"))
        return to_pil(next((v for v in parts if v is not None and not (isinstance(v, str) and v == "")), None))
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            raw = base64.b64decode(data, validate=False)
            return Image.open(io.BytesIO(raw)).convert("RGB")
        except Exception as e:
            kind = e.__class__.__name__
            raise ReferenceImageError(f"reference image is not a valid base64 image ({kind})") from None
    try:
        import numpy as np
        if isinstance(value, np.ndarray):
            return Image.fromarray(value.astype("uint8")).convert("RGB")
    except ImportError:
        pass
    raise ReferenceImageError(f"unsupported reference image type {type(value).__name__}")
