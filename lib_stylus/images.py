"""Reference images arrive as PIL images (gradio 3), dicts (gradio 4 image editor), numpy arrays, or base64
strings / data URLs (the API). One function turns any of them into an 8-bit RGB PIL image or None; a value
that is not a usable image raises :class:`ReferenceImageError` with one line saying what is wrong."""
from __future__ import annotations

import base64
import binascii
import io

from .errors import StylusUserError


class ReferenceImageError(StylusUserError, ValueError):
    """The reference image is empty, unreadable or of an unsupported type (one line, no traceback)."""


def to_pil(value):
    from PIL import Image
    if value is None or (isinstance(value, str) and value == ""):  # never `==` on an array: it is elementwise
        return None
    if isinstance(value, Image.Image):
        return to_rgb(value)
    if isinstance(value, dict):  # gradio 4 ImageEditor / gradio 3 sketch payloads: PIL images or numpy arrays
        parts = (value.get(key) for key in ("composite", "background", "image"))
        return to_pil(next((v for v in parts if v is not None and not (isinstance(v, str) and v == "")),
                           None))
    if isinstance(value, (str, bytes)):
        return to_rgb(_decode(value))
    try:
        import numpy as np
    except ImportError:  # numpy comes with torch; only a stripped environment lacks it
        np = None
    if np is not None and isinstance(value, np.ndarray):
        if value.size == 0:
            raise ReferenceImageError("the reference image is empty (an array of shape %s)" % (value.shape,))
        return to_rgb(Image.fromarray(value.astype("uint8")))
    raise ReferenceImageError(f"unsupported reference image type {type(value).__name__}")


def _decode(value):
    """A base64 string, data URL or raw bytes -> a PIL image (decoded lazily by PIL)."""
    from PIL import Image, UnidentifiedImageError
    if isinstance(value, str):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError) as e:
            raise ReferenceImageError(f"the reference image is not valid base64 ({e})") from None
    else:
        raw = value
    if not raw:
        raise ReferenceImageError("the reference image is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(raw))
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ReferenceImageError(f"the reference image is not an image PIL can read ({len(raw)} bytes: "
                                  f"{e.__class__.__name__})") from None
    return im


def to_rgb(im):
    """8-bit RGB. 16-bit and 32-bit grey (PNG ``I;16`` / ``I``) and float (``F``) images are rescaled to
    0..255 first: PIL's own convert clips them, which turns a 16-bit grey PNG all white."""
    from PIL import Image
    if im.width == 0 or im.height == 0:
        raise ReferenceImageError(f"the reference image is empty ({im.width}x{im.height} pixels)")
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        import numpy as np
        arr = np.asarray(im)
        # PIL opens a 16-bit grey PNG as "I" or "I;16" depending on its version
        sixteen = im.mode.startswith("I;16") or (im.mode == "I" and im.format == "PNG")
        if sixteen or (im.mode == "I" and arr.max(initial=0) > 255):
            arr = arr.astype(np.uint32) >> 8  # 0..65535 -> 0..255 (an integer shift: no float copy)
        elif im.mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    return im if im.mode == "RGB" else im.convert("RGB")


def shrink(im, shortest: int):
    """Downscale by an integer box filter so that the shortest side stays >= ``shortest`` (at most 2x it):
    cheap, and later resampling never touches the full-size pixels (a 12000x12000 reference otherwise costs
    gigabytes of float copies)."""
    factor = min(im.width, im.height) // max(1, shortest)
    if factor < 2:
        return im
    return im.reduce(factor)
