"""The real 6,431-LoRA benchmark folder with its 65 faults (../shared/bench): every fault reported by stem,
nothing usable lost, the SDXL LoRAs indexed as SDXL and never offered for an SD1 model."""
import os
import subprocess
import sys

import pytest

from lib_stylus.cli import main as cli_main
from lib_stylus.index import LibraryIndex
from lib_stylus.retriever import Retriever

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "bench")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    if not os.path.isdir(BENCH):
        pytest.skip("../shared/bench is not beside this checkout")
    out = tmp_path_factory.mktemp("bench") / "lora"
    subprocess.run([sys.executable, os.path.join(BENCH, "materialize.py"), os.path.join(BENCH, "library.jsonl"),
                    str(out), "--with-faults"], check=True, capture_output=True)
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
    broken_sidecar = [s for s, kind, _ in faults if kind in ("invalid-json-civitai-info", "wrong-types-webui-json")]
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
