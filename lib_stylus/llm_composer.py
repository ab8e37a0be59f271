"""Optional LLM composer (the paper's chain-of-thought composition) on any OpenAI-compatible chat endpoint:
a local llama.cpp / ollama / vLLM server or a cloud one. Standard library only (urllib). Any failure -
timeout, HTTP error, a reply that is not the JSON asked for - falls back to the local composer, with the
reason kept in ``Composition.fallback``. The LLM's choices still pass the same rules (once, character named,
2 styles)."""
from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import replace

from .composer import Assigned, Composer, Composition, Drop, Selection, Task
from .embedding import tokenize
from .purpose import purpose_index

SYSTEM = """You compose LoRA adapters for a text-to-image prompt (Stylus composer).
Think step by step:
1. Split the prompt into non-overlapping tasks, each made of the prompt's own keywords.
2. For each task pick 0 to 3 adapters from the candidate list whose MAIN purpose matches the task exactly;
   sharing a word is not enough. A task may get none.
3. Never use an adapter twice. No character adapter unless the prompt names that character.
   At most 2 style adapters in total.
Answer with JSON only: {"tasks": [{"task": "<keywords from the prompt>", "adapters": ["<alias>", ...]}]}"""


class LLMComposer:
    def __init__(self, local: Composer, base_url: str, model: str, api_key: str = "", timeout: float = 20.0,
                 candidates: int = 40):
        self.local, self.model, self.api_key = local, model, api_key
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout, self.candidates = timeout, candidates

    def compose(self, prompt: str, base: str = "sd1", allow_unknown: bool = False, max_adapters: int = 6):
        cands = self.local.retriever.retrieve(prompt, base, self.candidates, allow_unknown)
        try:
            reply = self._chat(prompt, cands)
            return self._build(prompt, base, reply, cands, max_adapters)
        except Exception as e:  # network, HTTP, JSON, shape: every failure means "use the local composer"
            comp = self.local.compose(prompt, base, allow_unknown, max_adapters)
            comp.fallback = f"{e.__class__.__name__}: {e}"[:300]
            return comp

    def _chat(self, prompt: str, cands) -> str:
        lines = [f"- {c.card.alias}: [{c.entry.refined.topic}] {c.card.title}; "
                 f"tags: {', '.join(c.card.tags[:8])}"
                 for c in cands]
        body = {"model": self.model, "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEM},
                             {"role": "user",
                              "content": f"Prompt: {prompt}\nCandidates:\n" + "\n".join(lines)}]}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, json.dumps(body).encode("utf-8"), headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            data = json.loads(resp.read().decode("utf-8"))
        return data["choices"][0]["message"]["content"]

    def _build(self, prompt: str, base: str, reply: str, cands, max_adapters: int) -> Composition:
        tasks_in = _json_object(reply)["tasks"]
        if not isinstance(tasks_in, list):
            raise ValueError("'tasks' is not a list")
        snap = self.local.retriever.index.snapshot
        pidx = purpose_index(snap)
        offered = {c.card.alias: pidx.row[id(c.entry)] for c in cands}
        comp = Composition(prompt, base, [], [], composer="llm")
        state = Selection(snap, prompt, replace(self.local.config, per_task=3), max_adapters)
        comp.existing = sorted(state.existing_names)
        for t, item in enumerate(tasks_in):
            text = str(item["task"])
            start = prompt.find(text)
            task = Task(text, (start, start + len(text)) if start >= 0 else (-1, -1), text, tokenize(text))
            comp.tasks.append(task)
            for alias in list(item.get("adapters") or [])[:3]:
                doc = offered.get(str(alias))
                if doc is None:
                    comp.drops.append(Drop(str(alias), t, 0.0, "not among the candidates offered"))
                    continue
                entry = snap.entries[doc]
                reason = state.refusal(doc, entry, len(task.adapters), task.tokens)
                if reason:
                    comp.drops.append(Drop(entry.card.stem, t, 0.0, reason))
                    continue
                state.take(doc, entry)
                task.adapters.append(Assigned(entry, 1.0, 1.0, "chosen by the LLM composer", t))
            if not task.adapters:
                task.note = "the LLM chose none"
        return comp


def _json_object(reply: str) -> dict:
    """The JSON object in a chat reply (models often wrap it in prose or a ``` fence)."""
    m = re.search(r"\{.*\}", reply or "", re.S)
    if not m:
        raise ValueError("no JSON object in the reply")
    obj = json.loads(m.group(0))
    if not isinstance(obj, dict) or "tasks" not in obj:
        raise ValueError("reply has no 'tasks'")
    return obj
