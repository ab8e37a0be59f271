"""Prompt rewrite cost: merging a LoRA card's negative text (and trigger words) into a prompt, at 1,000 to
150,000 phrases. Every rewritten prompt is checked with the web UI's tag grammar (tests/prompt_check.py).

usage: python tests/bench/bench_prompt.py [--sizes 1000,4000,15000,150000] [--module PATH]
  --module: time another prompt.py instead (e.g. the one before the linear merge:
            git show b695015:lib_stylus/prompt.py > /tmp/prompt_before.py; --module /tmp/prompt_before.py)"""
from __future__ import annotations

import argparse
import importlib.util
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.prompt_check import assert_parses  # noqa: E402

WORDS = ["bad", "hands", "lowres", "blurry", "extra", "fingers", "jpeg", "artifacts", "watermark", "text",
         "cropped", "worst", "quality", "deformed", "ugly", "mutated", "signature", "username", "error",
         "missing"]
PROMPT = "masterpiece, a knight in a misty forest AND a red dragon, night sky"
NEGATIVE = "(worst quality:1.4), lowres, bad hands, blurry, watermark"


def card_negative(n: int, seed: int) -> str:
    """n comma-separated phrases of 1-4 words, a tenth of them repeats, some weighted like real cards."""
    rng = random.Random(seed)
    phrases = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) + f" v{i % max(1, n - n // 10)}"
        phrases.append(f"({words}:1.2)" if i % 17 == 0 else words)
    return ", ".join(phrases)


def load_prompt_module(path: str | None):
    if not path:
        from lib_stylus import prompt
        return prompt
    spec = importlib.util.spec_from_file_location("prompt_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,4000,15000,150000")
    ap.add_argument("--module", default=None)
    a = ap.parse_args()
    prompt_mod = load_prompt_module(a.module)
    print(f"prompt.py: {a.module or 'lib_stylus/prompt.py'}")
    print("| phrases | negative merge (2 cards) | trigger merge (1 card) | phrases written |")
    print("|---|---|---|---|")
    for n in (int(x) for x in a.sizes.split(",")):
        picks = [prompt_mod.Pick("card_a", 0.8, negative=card_negative(n, 1)),
                 prompt_mod.Pick("card_b", 0.6, negative=card_negative(n // 2, 2))]
        t0 = time.perf_counter()
        res = prompt_mod.rewrite(PROMPT, picks, negative_prompt=NEGATIVE)
        negative_s = time.perf_counter() - t0
        assert_parses(res.prompt, PROMPT)
        assert_parses(res.negative_prompt, NEGATIVE)
        triggers = tuple(card_negative(n, 3).split(", "))
        t0 = time.perf_counter()
        res_t = prompt_mod.rewrite(PROMPT, [prompt_mod.Pick("card_t", 0.8, triggers)])
        trigger_s = time.perf_counter() - t0
        assert_parses(res_t.prompt, PROMPT)
        print(f"| {n:,} (+{n // 2:,}) | {negative_s:.2f} s | {trigger_s:.2f} s | {len(res.negatives):,} |",
              flush=True)


if __name__ == "__main__":
    main()
