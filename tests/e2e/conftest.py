"""STYLUS_E2E_CHECKPOINT=tiny-sdxl.safetensors (or tiny-sd15.safetensors) switches the running web UI to that
checkpoint before the suite, through /sdapi/v1/options, so one host serves both runs."""
import os

import pytest

from tests.e2e.client import call


@pytest.fixture(scope="session", autouse=True)
def loaded_checkpoint():
    wanted = os.environ.get("STYLUS_E2E_CHECKPOINT")
    if wanted:
        call("/sdapi/v1/options", {"sd_model_checkpoint": wanted})
        assert call("/sdapi/v1/options")["sd_model_checkpoint"].startswith(wanted)
