"""Plain-text helpers shared by the catalog and the refiner (model-card HTML is from strangers), and the
garbage-collection pause the index builds share."""
from __future__ import annotations

import contextlib
import gc
import html
import re
from html.parser import HTMLParser

_BLOCK_TAGS = {"p", "br", "li", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "ul", "ol", "blockquote"}


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def strip_html(text) -> str:
    """HTML -> plain text with collapsed whitespace. Non-strings become ''."""
    if not isinstance(text, str) or not text:
        return ""
    if "<" not in text and "&" not in text:
        return collapse(text)
    parser = _TextExtractor()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # html.parser is lenient, but a model card must never break a scan
        return collapse(re.sub(r"<[^>]*>", " ", html.unescape(text)))
    return collapse("".join(parser.parts))


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def escape(text) -> str:
    """For anything from a model card that reaches HTML."""
    return html.escape(str(text or ""), quote=True)


def split_words_list(values) -> list[str]:
    """Trigger words: a list whose entries may themselves be comma lists; deduplicated, order kept."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        return []
    out: dict[str, str] = {}
    for value in values:
        if not isinstance(value, str):
            continue
        for word in value.split(","):
            word = collapse(word)
            if word and word.lower() not in out:
                out[word.lower()] = word
    return list(out.values())


@contextlib.contextmanager
def collections_deferred():
    """No automatic garbage collection inside (if it was on): the next one runs after."""
    was = gc.isenabled()
    if was:
        gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
