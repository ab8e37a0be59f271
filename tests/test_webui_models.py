import os

import pytest

from tests.webui_env import use_stub

use_stub()
from lib_stylus.webui import models  # noqa: E402


def test_offline_download_names_the_files_and_where_to_put_them(monkeypatch, tmp_path):
    from modules import shared
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shared.opts.data["stylus_models_dir"] = str(tmp_path / "stylus")
    with pytest.raises(models.ModelUnavailable) as err:
        models.ip_adapter("sd15")
    msg = str(err.value)
    assert "models/ip-adapter_sd15.safetensors" in msg and "huggingface.co/h94/IP-Adapter" in msg
    assert str(tmp_path / "stylus" / "ip-adapter") in msg


def test_controlnet_files_are_found_and_reused(monkeypatch, tmp_path):
    from modules import paths, shared
    shared.opts.data["stylus_models_dir"] = str(tmp_path / "stylus")
    cn = os.path.join(paths.models_path, "ControlNet")
    os.makedirs(cn, exist_ok=True)
    adapter = os.path.join(cn, "ip-adapter_sd15.safetensors")
    open(adapter, "wb").close()
    clip = os.path.join(paths.extensions_dir, "sd-webui-controlnet", "annotator", "downloads", "clip_vision")
    os.makedirs(clip, exist_ok=True)
    open(os.path.join(clip, "clip_h.pth"), "wb").close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # reuse must not need the hub
    assert models.ip_adapter("sd15") == adapter
    assert models.image_encoder("sd15") == os.path.join(clip, "clip_h.pth")
    assert adapter in models.list_ip_adapters()


def test_hybrid_embedder_offline_without_the_model_falls_back_to_lexical(monkeypatch, tmp_path):
    from modules import shared
    from lib_stylus import embedding
    from lib_stylus.webui.service import StylusService
    monkeypatch.setattr(embedding, "bundled_minilm", lambda: None)
    shared.opts.data.update(stylus_embedder="hybrid", stylus_models_dir=str(tmp_path / "stylus"))
    try:
        service = StylusService()
        embedders = service._embedders()
    finally:
        shared.opts.data.pop("stylus_embedder")
    assert [e.id for e in embedders] == ["bm25"]
    assert "all-MiniLM-L6-v2" in service.status["message"] and str(tmp_path / "stylus") in service.status["message"]
