"""The web UI service's status, as GET /stylus/v1/status returns it."""
from tests.loralib import card, make_library
from tests.webui_env import use_stub


def test_status_has_no_progress_once_ready(tmp_path, monkeypatch):
    """Issue 9 item 20: `progress: "scan 2/3"` stayed in the status after the index was ready."""
    use_stub()
    from modules import shared
    from lib_stylus.webui.service import StylusService
    lib = make_library(tmp_path / "lora", [card("ink"), card("fox"), card("rain")])
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", lib, raising=False)
    monkeypatch.setitem(shared.opts.data, "stylus_cache_dir", str(tmp_path / "cache"))
    seen = []
    service = StylusService()
    progress = service._progress
    monkeypatch.setattr(service, "_progress", lambda *a: (progress(*a), seen.append(dict(service.status))))
    status = service.refresh(wait=True)
    assert any(s.get("progress") == "scan 2/3" and s["state"] == "indexing" for s in seen)  # while running
    assert status["state"] == "ready" and status["cards"] == 3 and "progress" not in status
