"""Walk a LoRA folder the way the web UI does and turn each network file into an AdapterCard.
The scan never raises: every broken input becomes a Fault naming the file, and the usable rest is kept."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..text import collapse, split_words_list
from . import basemodel, sidecars
from .card import AdapterCard, Fault
from .safetensors_header import json_field, read_header
from .untrusted import Unusable, not_regular

NETWORK_EXTS = (".safetensors", ".pt", ".ckpt")  # what the web UI's Lora extension lists
UNTAGGABLE = ("file name cannot be written in a <lora:...> tag (it holds ':', '<', '>' or a line break, "
              "and no usable ss_output_name): skipped")
_KEPT_META = ("ss_output_name", "ss_base_model_version", "ss_sd_model_name", "ss_network_module",
              "ss_network_dim", "ss_network_alpha", "modelspec.title", "modelspec.architecture",
              "sshs_model_hash")


@dataclass
class ScanResult:
    cards: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    reused: int = 0      # cards taken unchanged from the previous scan
    read: int = 0        # cards (re)read from disk


@dataclass
class _Entry:
    path: str
    rel: str
    stem: str
    siblings: set


def walk(root: str, faults: list, hidden: bool = True) -> Iterable[_Entry]:
    """Network files under root, sorted, following directory links once (a link loop is reported, not
    followed). Dot-folders are listed unless hidden=False, as the web UI's "list hidden files" setting
    (default on)."""
    seen_dirs: set = set()
    root = os.path.abspath(root)
    prefix = root.rstrip(os.sep) + os.sep  # os.walk joins names onto root: a file's relative path is its tail
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=lambda e: faults.append(
            Fault(os.path.basename(getattr(e, "filename", "") or root),
                  f"unreadable folder ({e.strerror})"))):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            faults.append(Fault(os.path.basename(dirpath), "folder link loop: not followed again", dirpath))
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = sorted(d for d in dirnames if hidden or not d.startswith("."))
        siblings = set(filenames)
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in NETWORK_EXTS or stem.endswith(".preview"):
                continue
            path = os.path.join(dirpath, name)
            rel = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)
            yield _Entry(path, rel.replace(os.sep, "/"), stem, siblings)


def signature(entry: _Entry) -> tuple[str, os.stat_result]:
    """Sizes and mtimes of the file and every sidecar we read or show: any edit changes it. Raises OSError."""
    st = os.stat(entry.path)
    parts = [f"{st.st_size}:{st.st_mtime_ns}"]
    for suffix in (".civitai.info", ".json", ".txt", ".description.txt") + sidecars.PREVIEW_SUFFIXES:
        if entry.stem + suffix in entry.siblings:
            try:
                s = os.stat(os.path.join(os.path.dirname(entry.path), entry.stem + suffix))
                parts.append(f"{suffix}={s.st_size}:{s.st_mtime_ns}")
            except OSError:
                parts.append(f"{suffix}=?")
    return "|".join(parts), st


def scan(root: str, previous: dict | None = None, progress: Callable[[int, int], None] | None = None,
         hidden: bool = True) -> ScanResult:
    """Scan root; cards whose signature is unchanged since `previous` ({path: AdapterCard}) are reused as
    they are."""
    result = ScanResult()
    if not os.path.isdir(root):
        result.faults.append(Fault(os.path.basename(root.rstrip("/")) or root, "LoRA folder not found", root))
        return result
    entries = list(walk(root, result.faults, hidden))
    previous = previous or {}
    for i, entry in enumerate(entries):
        if progress:
            progress(i, len(entries))
        _scan_one(entry, previous.get(entry.path), result)
    result.cards = assign_tag_names(result.cards, result.faults)
    return result


def _scan_one(entry: _Entry, old: AdapterCard | None, result: ScanResult) -> None:
    if not _is_utf8(entry.rel):
        result.faults.append(Fault(entry.stem.encode("utf-8", "replace").decode(),
                                   "file name is not valid UTF-8: skipped"))
        return
    try:
        sig, st = signature(entry)
    except OSError as e:
        result.faults.append(Fault(entry.stem, f"unreadable file ({e.strerror or e.__class__.__name__})",
                                   entry.rel))
        return
    if not_regular(st.st_mode):  # a FIFO would block the scan for ever, /dev/zero would never end
        result.faults.append(Fault(entry.stem, f"{not_regular(st.st_mode)}: skipped", entry.rel))
        return
    if old is not None and old.signature == sig:
        result.cards.append(old)
        result.faults.extend(Fault(old.stem, reason, old.rel) for reason in old.faults)
        result.reused += 1
        return
    card = read_card(entry, sig, st.st_size, st.st_mtime_ns, result.faults)
    if card is not None:
        result.cards.append(card)
        result.read += 1


def read_card(entry: _Entry, sig: str, size: int, mtime: int, faults: list) -> AdapterCard | None:
    """One file -> one card. A file whose own header is broken is skipped (the web UI could not load it
    either)."""
    stem, base = entry.stem, os.path.splitext(entry.path)[0]
    meta, tensors, header_sha = {}, {}, ""
    if entry.path.lower().endswith(".safetensors"):
        try:
            meta, tensors, header_sha = read_header(entry.path)
        except Unusable as e:  # the web UI's loader refuses this file too: never offer it
            faults.append(Fault(stem, f"broken safetensors file: {e}: skipped", entry.rel))
            return None
        except OSError as e:  # e.g. an I/O error in the middle of the read
            faults.append(Fault(stem, f"unreadable file ({e.strerror or e.__class__.__name__}): skipped",
                                entry.rel))
            return None
    elif size == 0:
        faults.append(Fault(stem, "empty file: skipped", entry.rel))
        return None
    card = AdapterCard(path=entry.path, rel=entry.rel, stem=stem, alias=meta.get("ss_output_name") or stem,
                       size=size, mtime_ns=mtime, signature=sig, header_sha=header_sha,
                       metadata={k: meta[k] for k in _KEPT_META if k in meta})
    notes: list[str] = []
    civ = _merge_civitai(card, base, entry, notes)
    side = _merge_webui(card, base, entry, notes)
    _merge_metadata(card, meta, notes)
    if not card.notes:
        card.notes, errs = sidecars.text_notes(base, entry.siblings)
        notes.extend(errs)
    card.previews = sidecars.previews(base, entry.siblings)
    _decide_base(card, meta, tensors, civ, side, notes)
    card.faults = notes
    faults.extend(Fault(stem, reason, entry.rel) for reason in notes)
    return card


def _merge_civitai(card: AdapterCard, base: str, entry: _Entry, notes: list) -> dict:
    if card.stem + ".civitai.info" not in entry.siblings:
        return {}
    civ, errs = sidecars.civitai_info(base + ".civitai.info", card.stem, card.alias)
    notes.extend(errs)
    card.title = civ.get("title", "")
    card.tags = list(dict.fromkeys(t.strip() for t in civ.get("tags", []) if t.strip()))
    card.trigger_words = civ.get("trigger_words", [])
    card.description = civ.get("description", "")
    card.sample_prompts = civ.get("sample_prompts", [])
    card.sample_weights = civ.get("sample_weights", [])
    card.base_detail = civ.get("base_model", "")
    card.nsfw = civ.get("nsfw", False)
    return civ


def _merge_webui(card: AdapterCard, base: str, entry: _Entry, notes: list) -> dict:
    if card.stem + ".json" not in entry.siblings:
        return {}
    side, errs = sidecars.webui_json(base + ".json")
    notes.extend(errs)
    card.trigger_words = split_words_list(card.trigger_words + [side.get("activation text", "")])
    if side.get("description") and side["description"] not in card.description:
        card.description = collapse(side["description"] + " " + card.description)
    weight = float(side.get("preferred weight", 0))  # finite: the JSON reader refuses numbers beyond float64
    card.preferred_weight = weight if 0 < abs(weight) <= 5 else 0.0
    card.negative_text = side.get("negative text", "")
    card.notes = side.get("notes", "")
    return side


def _merge_metadata(card: AdapterCard, meta: dict, notes: list) -> None:
    card.title = card.title or meta.get("modelspec.title", "") or card.alias
    card.trigger_words = split_words_list(card.trigger_words + [meta.get("modelspec.trigger_phrase", "")])
    card.tags = list(dict.fromkeys(card.tags + split_words_list(meta.get("modelspec.tags", ""))))
    if meta.get("modelspec.description") and not card.description:
        card.description = collapse(meta["modelspec.description"])
    try:
        card.tag_frequency = _tag_frequency(json_field(meta, "ss_tag_frequency"))
    except Unusable as e:
        notes.append(str(e))


def _tag_frequency(freq) -> dict:
    """ss_tag_frequency {"<n>_<dir>": {tag: count}} summed over folders; malformed parts ignored."""
    totals: dict[str, int] = {}
    for folder in freq.values() if isinstance(freq, dict) else []:
        for tag, count in folder.items() if isinstance(folder, dict) else []:
            if isinstance(tag, str) and isinstance(count, (int, float)) and tag.strip():
                totals[tag.strip()] = totals.get(tag.strip(), 0) + int(count)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:64])


def _decide_base(card, meta, tensors, civ, side, notes) -> None:
    evidence = {"tensors": basemodel.from_tensors(tensors), "metadata": basemodel.from_metadata(meta),
                "civitai": basemodel.from_civitai(civ.get("base_model", "")),
                "webui-json": basemodel.from_webui_sidecar(side.get("sd version"))}
    card.base, disagreements = basemodel.decide(evidence)
    if disagreements:
        notes.append(f"sources disagree on base model ({', '.join(disagreements)}): using {card.base}")
    if not card.base_detail:
        card.base_detail = meta.get("ss_base_model_version", "") or card.base


def assign_tag_names(cards: list, faults: list) -> list:
    """Choose for each card the name a <lora:NAME:w> tag resolves to this very file in the web UI: the file
    stem unless another file claims it (duplicate stem in a subfolder, or another file's alias), then the
    alias. Returns the cards to keep: a file that no tag can name at all is reported once and dropped."""
    stems: dict[str, list] = {}
    for card in cards:
        stems.setdefault(card.stem, []).append(card)
    aliases: dict[str, int] = {}
    for card in cards:
        aliases[card.metadata.get("ss_output_name") or card.stem] = aliases.get(
            card.metadata.get("ss_output_name") or card.stem, 0) + 1
    for stem, group in stems.items():
        for card in group[:-1]:  # the web UI keeps the last file of a name: no tag reaches the others
            faults.append(Fault(stem, f"another file has the same name ({group[-1].rel}): "
                                      "the web UI loads that one", card.rel))
            card.alias = ""
        group[-1].alias = _tag_name(group[-1], stem, aliases) if len(group) == 1 else stem
    kept = []
    for card in cards:
        if card is stems[card.stem][-1] and not writable(card.alias):
            faults.append(Fault(card.stem, UNTAGGABLE, card.rel))
        else:
            kept.append(card)
    return kept


def _tag_name(card, stem: str, aliases: dict) -> str:
    alias = card.metadata.get("ss_output_name") or stem
    stem_claimed = aliases.get(stem, 0) > (1 if alias == stem else 0)  # another file's alias is this stem
    for name in ((alias,) if stem_claimed else (stem, alias)):
        if writable(name) and aliases.get(name, 0) <= 1:
            return name
    return stem if writable(stem) else ""


def writable(name: str) -> bool:
    """A name the web UI's tag regex <(\\w+):([^>]+)> and its ':' split give back unchanged."""
    return bool(name) and name == name.strip() and not any(c in name for c in ":<>\n\r")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
