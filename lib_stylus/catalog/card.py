"""The record Stylus keeps for one LoRA file: everything the refiner needs, read once, JSON-serialisable."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

FAMILIES = ("sd1", "sd2", "sdxl", "other", "unknown")
FAMILY_LABELS = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "other": "other", "unknown": "unknown"}


@dataclass
class AdapterCard:
    path: str                      # absolute file path
    rel: str                       # path relative to the library root (posix): the card's key
    stem: str                      # file name without extension (the web UI's network name)
    alias: str                     # what the web UI accepts in <lora:...> for this file (round-trips)
    size: int = 0
    mtime_ns: int = 0
    signature: str = ""            # file + sidecar sizes/mtimes: changes when anything we read changes
    header_sha: str = ""           # hash of the safetensors header (content identity)
    base: str = "unknown"          # one of FAMILIES
    base_detail: str = ""          # e.g. "SD 1.5", "Pony", "SDXL 1.0"
    title: str = ""
    tags: list = field(default_factory=list)
    trigger_words: list = field(default_factory=list)
    description: str = ""          # plain text (HTML stripped)
    tag_frequency: dict = field(default_factory=dict)
    sample_prompts: list = field(default_factory=list)
    sample_weights: list = field(default_factory=list)   # weights the author's own samples used for this LoRA
    preferred_weight: float = 0.0  # web UI sidecar "preferred weight" (0 = unset)
    negative_text: str = ""
    notes: str = ""
    previews: list = field(default_factory=list)
    nsfw: bool = False
    metadata: dict = field(default_factory=dict)        # a few raw safetensors metadata fields, for display
    faults: list = field(default_factory=list)          # one-line reasons for what was skipped

    def to_dict(self) -> dict:
        return dict(self.__dict__)  # fields are JSON-native already; asdict's deep copy is 10x slower

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterCard":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Fault:
    stem: str
    reason: str
    file: str = ""

    def line(self) -> str:
        """stem<TAB>reason on one line: a file name may hold a tab or a line break."""
        return one_line(self.stem) + "\t" + one_line(self.reason)


def one_line(text: str) -> str:
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
