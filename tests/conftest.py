import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# Tests never download: any hub access must fail loudly rather than fetch.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The end-to-end tests talk to a running web UI: collected only when one is named.
collect_ignore = [] if os.environ.get("STYLUS_WEBUI_URL") else ["e2e"]
