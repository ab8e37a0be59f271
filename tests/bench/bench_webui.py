"""Stylus's cost inside a RUNNING web UI, over HTTP only: txt2img without Stylus, with auto-LoRA, with the
same tags written by hand, and the compose route. Run: python tests/bench/bench_webui.py [URL] (default
http://127.0.0.1:7861; the tiny-sd15 checkpoint and its LoRAs make the host's own work small, so Stylus's
shows)."""
import json
import statistics
import sys
import time
import urllib.request

URL = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7861").rstrip("/")
PROMPT = "a city street, cyberpunk neon, watercolor painting"
BASE = {"prompt": PROMPT, "steps": 4, "width": 64, "height": 64, "seed": 1}
STYLUS = {"alwayson_scripts": {"stylus": {"args": [True, True, 4, 0.8, True, "per image"]}}}


def post(path, body):
    req = urllib.request.Request(URL + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def median_ms(path, body, n=15):
    post(path, body)  # warm: the host loads LoRAs once
    times = []
    for _ in range(n):
        t = time.perf_counter()
        post(path, body)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    tagged = json.loads(post("/sdapi/v1/txt2img", {**BASE, **STYLUS})["info"])["prompt"]
    rows = [("txt2img, Stylus off", median_ms("/sdapi/v1/txt2img", BASE)),
            ("txt2img, auto-LoRA on", median_ms("/sdapi/v1/txt2img", {**BASE, **STYLUS})),
            ("txt2img, the same tags written by hand",
             median_ms("/sdapi/v1/txt2img", {**BASE, "prompt": tagged})),
            ("POST /stylus/v1/compose", median_ms("/stylus/v1/compose", {"prompt": PROMPT}))]
    print(f"prompt written by Stylus: {tagged}\n")
    print("| request | median |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} ms |")


if __name__ == "__main__":
    main()
