"""The real 6,431-LoRA benchmark folder with its 65 faults (../shared/bench): every fault reported by stem,
nothing usable lost, the SDXL LoRAs indexed as SDXL and never offered for an SD1 model. Plus a test-built
folder with every bad file of issue 9 and 400 good cards."""
import os
import subprocess
import sys

import pytest

from lib_stylus.cli import main as cli_main
from lib_stylus.index import LibraryIndex
from lib_stylus.retriever import Retriever
from tests.loralib import BAD_FILES, card, make_library, unblock_fifos, write_bad_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "shared", "bench")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    if not os.path.isdir(BENCH):
        pytest.skip("../shared/bench is not beside this checkout")
    out = tmp_path_factory.mktemp("bench") / "lora"
    subprocess.run([sys.executable, os.path.join(BENCH, "materialize.py"),
                    os.path.join(BENCH, "library.jsonl"), str(out), "--with-faults"],
                   check=True, capture_output=True)
    faults = [line.rstrip("\n").split("\t") for line in open(out / "FAULTS.txt", encoding="utf-8")
              if not line.startswith("#")]
    index = LibraryIndex([str(out)], str(out.parent / "cache"))
    report = index.refresh()
    return out, faults, index, report


def test_every_fault_is_reported_by_stem(bench, capsys):
    out, faults, index, report = bench
    assert len(faults) == 65
    cli_main(["index", str(out), "--cache", str(out.parent / "cache"), "--base", "sd1", "--quiet"])
    printed = capsys.readouterr().out.splitlines()
    for stem, kind, _ in faults:
        lines = [l for l in printed if l.startswith(stem + "\t")]
        assert lines, f"{stem} ({kind}) not reported"
        if kind == "sdxl-lora":
            assert f"{stem}\tbase: SDXL" in lines


def test_nothing_usable_is_dropped(bench):
    out, faults, index, report = bench
    truncated = {s for s, kind, _ in faults if kind == "truncated-safetensors-header"}
    stems = {e.card.stem for e in index.snapshot.entries}
    assert len(stems) == 6431 - len(truncated) and not stems & truncated
    broken_sidecar = [s for s, kind, _ in faults
                      if kind in ("invalid-json-civitai-info", "wrong-types-webui-json")]
    by_stem = {e.card.stem: e.card for e in index.snapshot.entries}
    for stem in broken_sidecar:
        assert by_stem[stem].metadata.get("ss_output_name") == stem  # still indexed from its other metadata


def test_sdxl_loras_are_sdxl_and_never_offered_for_sd1(bench):
    out, faults, index, report = bench
    sdxl = {s for s, kind, _ in faults if kind == "sdxl-lora"}
    by_stem = {e.card.stem: e.card for e in index.snapshot.entries}
    assert {by_stem[s].base for s in sdxl} == {"sdxl"}
    retriever = Retriever(index)
    for stem in sdxl:
        title = by_stem[stem].title
        assert stem not in [c.card.stem for c in retriever.retrieve(title, "sd1", 150)]
        assert stem in [c.card.stem for c in retriever.retrieve(title, "sdxl", 150)]


def _word(i: int) -> str:
    """A made-up word per good card (letters only, so the tokenizer keeps it whole)."""
    letters = ""
    for _ in range(3):
        i, r = divmod(i, 26)
        letters += chr(ord("a") + r)
    return "zq" + letters


def test_every_bad_file_of_issue_9_plus_400_good_cards_index_in_one_run(tmp_path):
    """A messy models/Lora folder: each bad file of items 1-4 is one line naming it, and all 400 good cards
    are indexed, taggable and found. The CLI runs as a subprocess under a timeout: a FIFO or /dev/zero must
    not hang it."""
    lib = tmp_path / "Lora"
    make_library(lib, [card(f"good_{i:03d}", title=f"good {_word(i)}", tags=[_word(i)], subdir=f"set{i % 4}")
                       for i in range(400)])
    for stem in BAD_FILES:
        write_bad_file(lib / "strangers", stem)
    cmd = [sys.executable, "-m", "lib_stylus", "index", str(lib), "--quiet"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        unblock_fifos(lib)
        raise
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{400 + sum(kept for _, kept, _ in BAD_FILES.values())} LoRAs indexed")
    for stem, (_, _, words) in BAD_FILES.items():
        (line,) = [l for l in lines if l.startswith(stem + "\t")]
        assert all(w in line for w in words), line
    assert not [l for l in lines if l.startswith("good_")]
    index = LibraryIndex([str(lib)], str(lib / ".stylus"))
    assert index.load()
    report = index.refresh()  # the second run reuses every card, and still reports every bad file
    assert sorted({f.stem for f in report.faults}) == sorted(BAD_FILES)
    retriever = Retriever(index)
    for i in range(400):
        (top,) = retriever.retrieve(_word(i), "sd1", 1)
        assert top.card.stem == f"good_{i:03d}" and top.card.alias == top.card.stem
