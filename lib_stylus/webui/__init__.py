"""The web UI adapter layer: the ONLY package of Stylus that imports the web UI (`modules.*`, `networks`).
Import it only from inside a running web UI (scripts/stylus.py does)."""
