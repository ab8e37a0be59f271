"""Stylus: automatic LoRA selection (Luo et al. 2024) and reference-image style (InstantStyle) for the
Stable Diffusion web UI. This package is a plain library: only ``lib_stylus.webui`` imports the web UI."""

__version__ = "0.1.0"
