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


# --------------------------------------------------------------------------------------- offline (issue 11.7)
@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An own models folder and a hub that counts its calls (and fails, as offline)."""
    from modules import paths, shared
    monkeypatch.setattr(paths, "models_path", str(tmp_path / "models"))  # no file of another test
    monkeypatch.setattr(paths, "extensions_dir", str(tmp_path / "extensions"))
    monkeypatch.setitem(shared.opts.data, "stylus_models_dir", str(tmp_path / "stylus"))
    monkeypatch.setattr(models, "_FAILED", {}, raising=False)
    calls = []

    def hub(repo, name, **kw):
        calls.append((repo, name))
        raise ConnectionError("no route to huggingface.co")
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    return calls


def test_offline_never_calls_the_hub(monkeypatch, fresh):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for fn in (lambda: models.ip_adapter("sd15"), lambda: models.image_encoder("vit-h"), models.vit_h_text):
        with pytest.raises(models.ModelUnavailable) as err:
            fn()
        assert "offline" in str(err.value) and "\n" not in str(err.value)
    assert fresh == []


def test_a_failed_download_is_remembered_for_the_session(monkeypatch, fresh):
    for var in models.OFFLINE_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    for _ in range(3):
        with pytest.raises(models.ModelUnavailable):
            models.ip_adapter("sdxl")
        with pytest.raises(models.ModelUnavailable):
            models.vit_h_text()
    assert len(fresh) == 2  # one try each, then the failure is remembered


def _place(e):
    """Do what the message says: put the named files into the named folder."""
    os.makedirs(e.folder, exist_ok=True)
    for f in e.files:
        open(os.path.join(e.folder, os.path.basename(f)), "wb").close()


@pytest.mark.parametrize("find, what, found_as", [("ip_adapter", "sd15", "file"),
                                                  ("ip_adapter", "sdxl", "file"),
                                                  ("image_encoder", "vit-h", "folder"),
                                                  ("image_encoder", "vit-bigG", "folder")])
def test_the_message_names_a_folder_where_the_file_is_then_found(monkeypatch, fresh, find, what,
                                                                found_as):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailable) as err:
        getattr(models, find)(what)
    e = err.value
    assert e.folder in str(e) and all(os.path.basename(f) in str(e) for f in e.files)
    _place(e)
    want = e.folder if found_as == "folder" else os.path.join(e.folder, os.path.basename(e.files[0]))
    assert getattr(models, find)(what) == want


def test_the_text_tower_message_names_the_folder_where_it_is_then_found(monkeypatch, fresh):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.ModelUnavailable) as err:
        models.vit_h_text()
    _place(err.value)
    assert models.vit_h_text() == err.value.folder


def test_dropdowns_list_every_place_stylus_looks_including_its_download_folder(monkeypatch, fresh):
    from modules import shared
    own = os.path.join(shared.opts.data["stylus_models_dir"], "ip-adapter")
    hub_layout = os.path.join(own, "sdxl_models", "ip-adapter_sdxl_vit-h.safetensors")
    flat = os.path.join(own, "ip-adapter-plus_sd15.bin")
    encoder = os.path.join(own, "models", "image_encoder")
    for path in (hub_layout, flat, os.path.join(encoder, "config.json")):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    assert {hub_layout, flat} <= set(models.list_ip_adapters())
    assert encoder in models.list_image_encoders()


def test_image_encoders_are_chosen_by_clip_space_in_search_order(monkeypatch, fresh):
    from modules import shared
    own = shared.opts.data["stylus_models_dir"]
    os.makedirs(own, exist_ok=True)
    for name in ("clip_g.pth", "clip_h.pth"):
        open(os.path.join(own, name), "wb").close()
    assert models.image_encoder("vit-h") == os.path.join(own, "clip_h.pth")
    assert models.image_encoder("vit-bigG") == os.path.join(own, "clip_g.pth")


def test_the_ui_says_what_auto_fetches_and_how_large_it_is():
    note = models.auto_note()
    for name in ("ip-adapter_sd15.safetensors", "ip-adapter_sdxl.safetensors", "image_encoder"):
        assert name in note
    assert "MB" in note and "GB" in note
