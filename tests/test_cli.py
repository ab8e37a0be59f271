import hashlib
import json
import os
import shlex
import subprocess
import sys

import pytest

from lib_stylus.cli import main
from tests.loralib import card, make_library

CARDS = [card("watercolor", tags=["style", "watercolor"], trigger_words=["watercolor"]),
         card("xl_ink", base="sdxl", tags=["ink"], trigger_words=["ink wash"])]


def test_demo_builds_the_sample_library_and_rewrites_prompts(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Indexed 33 LoRAs" in out and "half_downloaded: broken safetensors file" in out
    assert out.count("\n  -> ") == 5 and "<lora:" in out and "wrong base model" in out


def test_retrieve_writes_the_bench_format(tmp_path):
    lib = make_library(tmp_path / "lora", [dict(c) for c in CARDS])
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "q1", "prompt": "a watercolor fox"}) + "\n",
                                      encoding="utf-8")
    assert main(["retrieve", "--library", lib, "--queries", str(tmp_path / "q.jsonl"),
                 "--out", str(tmp_path / "p.jsonl"), "--quiet"]) == 0
    rows = [json.loads(l) for l in open(tmp_path / "p.jsonl", encoding="utf-8")]
    assert rows == [{"id": "q1", "picked": ["watercolor"]}]


def test_index_lists_families_and_what_a_base_will_not_get(tmp_path, capsys):
    lib = make_library(tmp_path / "lora", [dict(c) for c in CARDS])
    main(["index", lib, "--base", "sd1", "--quiet"])
    out = capsys.readouterr().out
    assert "by base model: SD1 1, SDXL 1" in out and "xl_ink\tbase: SDXL" in out


def test_query_and_compose_print_picks(tmp_path, capsys):
    lib = make_library(tmp_path / "lora", [dict(c) for c in CARDS])
    main(["query", lib, "watercolor fox", "--quiet"])
    assert "1. watercolor" in capsys.readouterr().out
    main(["compose", lib, "a fox, watercolor", "--quiet", "--no-masking"])
    out = capsys.readouterr().out
    assert "+ watercolor" in out and "<lora:watercolor:" in out


def test_compose_prints_the_rewrites_notes(tmp_path, capsys):
    """A note of the rewrite (here: the user's own tag does not parse, so the web UI would drop every LoRA of
    the prompt) is printed by the CLI as the web UI's log and /stylus/v1/compose show it."""
    lib = make_library(tmp_path / "lora", [dict(c) for c in CARDS])
    main(["compose", lib, "a fox, watercolor, <lora:mine:heavy>", "--quiet", "--no-masking"])
    out = capsys.readouterr().out
    assert "\n  note: " in out and "mine" in out.split("\n  note: ", 1)[1]


@pytest.fixture
def places(tmp_path):
    lib = make_library(tmp_path / "lora", [dict(c) for c in CARDS])
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file.txt").write_text("not a folder", encoding="utf-8")
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "prompt": "a watercolor fox"}\n', encoding="utf-8")
    bad = '{"id": "q1", "prompt": "fox"}\n{"id": "q2", "prompt": \n'
    (tmp_path / "bad.jsonl").write_text(bad, encoding="utf-8")
    (tmp_path / "noprompt.jsonl").write_text('{"id": "q1", "text": "fox"}\n', encoding="utf-8")
    return {"lib": lib, "empty": str(tmp_path / "empty"), "file": str(tmp_path / "a_file.txt"),
            "nope": str(tmp_path / "nope"), "q": str(tmp_path / "q.jsonl"),
            "bad": str(tmp_path / "bad.jsonl"),
            "noprompt": str(tmp_path / "noprompt.jsonl"), "missing": str(tmp_path / "missing.jsonl"),
            "out": str(tmp_path / "p.jsonl")}


# Issue 9 item 17: every bad input is one clear line on stderr and a non-zero exit (2: fix the command line;
# 1: it ran but found nothing). This table is the README's and the report's.
EMPTY = 'empty prompt: give it in quotes, e.g. "a fox in a forest, watercolor"'
BAD_INPUT = [
    ("index {nope}", "LoRA folder not found: {nope}", 2),
    ("query {nope} fox", "LoRA folder not found: {nope}", 2),
    ("compose {nope} fox", "LoRA folder not found: {nope}", 2),
    ("retrieve --library {nope} --queries {q} --out {out}", "LoRA folder not found: {nope}", 2),
    ("index {file}", "not a folder: {file} (give the folder that holds the LoRA files)", 2),
    ("index {empty}", "no LoRA files (.safetensors, .pt, .ckpt) in {empty}", 1),
    ("query {empty} fox", "no LoRA files (.safetensors, .pt, .ckpt) in {empty}", 1),
    ("query {lib} ''", EMPTY, 2),
    ("query {lib} '  '", EMPTY, 2),
    ("compose {lib} ''", EMPTY, 2),
    ("query {lib} 'zzz qqq'", "no LoRA for sd1 matches 'zzz qqq' (2 indexed)", 1),
    ("query {lib} fox --top 0", "argument --top: must be 1 or more, not 0", 2),
    ("query {lib} fox --top -1", "argument --top: must be 1 or more, not -1", 2),
    ("retrieve --library {lib} --queries {q} --out {out} --top 0", "argument --top: must be 1 or more, not 0",
     2),
    ("compose {lib} fox --max-adapters 0", "argument --max-adapters: must be 1 or more, not 0", 2),
    ("retrieve --library {lib} --queries {missing} --out {out}", "--queries {missing}: file not found", 2),
    ("retrieve --library {lib} --queries {bad} --out {out}", "--queries {bad}: line 2: invalid JSON", 2),
    ("retrieve --library {lib} --queries {noprompt} --out {out}",
     '--queries {noprompt}: line 1: expected {{"id": ..., "prompt": "..."}}', 2),
    ("compose --library {lib} --queries {missing} --out {out}", "--queries {missing}: file not found", 2),
    ("compose --library {lib} --queries {bad} --out {out}", "--queries {bad}: line 2: invalid JSON", 2),
    ("retrieve --library {lib} --queries {q} --out {empty}",
     "--out {empty}: cannot write (Is a directory)", 2),
]


@pytest.mark.parametrize("command,message,code", BAD_INPUT)
def test_bad_input_is_one_line_and_a_non_zero_exit(places, capsys, command, message, code):
    argv = [a.format(**places) for a in shlex.split(command)]
    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--quiet"])
    err = capsys.readouterr().err
    assert exit_.value.code == code
    assert err.strip().splitlines()[-1].endswith(": error: " + message.format(**places))
    assert "Traceback" not in err
    assert not os.path.exists(places["nope"]) and os.listdir(places["empty"]) == []  # nothing created


def test_cache_at_a_file_prints_results_and_says_they_are_not_saved(places, capsys):
    assert main(["index", places["lib"], "--cache", places["file"], "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "2 LoRAs indexed" in captured.out
    assert (f"could not write the index to {places['file']} (not a folder): results are not saved"
            in captured.err)


def test_compose_defaults_to_the_web_uis_four_adapters():
    from lib_stylus.cli.compose import add_parser
    import argparse
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    assert sub.choices["compose"].parse_args(["lib", "a fox"]).max_adapters == 4


def test_ci_stylus_runs_the_cli_from_any_folder(tmp_path):
    """The README's stable command: `bash .ci/stylus ...` uses the pinned venv (a stand-in) from anywhere."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = ("requirements-ci.txt", "requirements-nodeps.txt")
    reqs = b"".join(open(os.path.join(root, n), "rb").read() for n in names)
    venv = tmp_path / "venvs" / hashlib.sha256(reqs).hexdigest()[:16]
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    (venv / ".complete").touch()
    env = dict(os.environ, STYLUS_VENV_ROOT=str(tmp_path / "venvs"))
    lib = make_library(tmp_path / "lora", [dict(c) for c in CARDS])
    command = ["bash", os.path.join(root, ".ci", "stylus"), "index", "lora", "--quiet"]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 LoRAs indexed" in proc.stdout and os.path.isdir(os.path.join(lib, ".stylus"))
