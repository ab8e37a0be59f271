"""Test helper: every prompt Stylus writes must parse in the web UI exactly as the user's own text did.

``assert_parses(rewritten, original)`` fails when the rewrite added any problem the web UI would meet: a
lora tag its network cannot parse (which drops every LoRA of the prompt), a tag that swallowed another '<',
or a stray '<' / '>'. Benchmarks and other tests import it:
``from tests.prompt_check import assert_parses``."""
from __future__ import annotations

from lib_stylus.prompt import added_problems, prompt_problems


def assert_parses(rewritten: str, original: str = "") -> None:
    added = added_problems(original, rewritten)
    assert not added, f"the rewrite broke the prompt for the web UI: {added}\n  before: {original!r}\n" \
                      f"  after:  {rewritten!r}"


def assert_clean(prompt: str) -> None:
    """No problem at all: every tag parses and no '<' or '>' stands outside a tag."""
    problems = prompt_problems(prompt)
    assert not problems, f"{problems} in {prompt!r}"
