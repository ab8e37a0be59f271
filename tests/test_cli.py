import json

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
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "q1", "prompt": "a watercolor fox"}) + "\n", encoding="utf-8")
    assert main(["retrieve", "--library", lib, "--queries", str(tmp_path / "q.jsonl"), "--out", str(tmp_path / "p.jsonl"),
                 "--quiet"]) == 0
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
