"""A LoRA folder -> AdapterCard records (header-only safetensors reads, sidecars, previews, base model)."""
from .card import FAMILIES, FAMILY_LABELS, AdapterCard, Fault
from .scan import ScanResult, scan

__all__ = ["AdapterCard", "Fault", "FAMILIES", "FAMILY_LABELS", "ScanResult", "scan"]
