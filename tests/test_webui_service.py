"""The web UI service's status, as GET /stylus/v1/status returns it."""
import os

import pytest

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


def test_the_refresh_thread_builds_the_composers_indexes(tmp_path, monkeypatch):
    """The composer's per-snapshot indexes (purpose phrases, characters) take seconds at 6.4K cards: the
    refresh builds them, so the first generation after a refresh does not wait for them."""
    use_stub()
    from modules import shared
    from lib_stylus.characters import character_index
    from lib_stylus.purpose import purpose_index
    from lib_stylus.webui.service import StylusService
    lib = make_library(tmp_path / "lora", [card("ink"), card("fox"), card("rain")])
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", lib, raising=False)
    monkeypatch.setitem(shared.opts.data, "stylus_cache_dir", str(tmp_path / "cache"))
    service = StylusService()
    assert service.refresh(wait=True)["state"] == "ready"
    snap = service.index().snapshot
    built = (getattr(snap, "_stylus_purpose", None), getattr(snap, "_stylus_characters", None))
    assert all(x is not None for x in built)
    assert built == (purpose_index(snap), character_index(snap))  # the ones compose will use


@pytest.fixture
def held_save(tmp_path, monkeypatch):
    """A two-card Lora folder whose index file is written only once ``release`` is set (``saving``: the save
    has begun): the refresh's snapshot is in use meanwhile."""
    import threading
    use_stub()
    from modules import shared
    from lib_stylus.index import LibraryIndex
    lib = make_library(tmp_path / "lora", [card("ink"), card("fox")])
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", lib, raising=False)
    monkeypatch.setitem(shared.opts.data, "stylus_cache_dir", str(tmp_path / "cache"))
    release, saving = threading.Event(), threading.Event()
    save = LibraryIndex.save

    def slow_save(index):
        saving.set()
        assert release.wait(30)
        save(index)
    monkeypatch.setattr(LibraryIndex, "save", slow_save)
    yield release, saving
    release.set()


def test_a_waiting_generation_waits_for_the_new_snapshot_not_for_the_save(held_save):
    """A generation that finds new LoRA files waits for the refresh (issue 10: refresh after one edited file
    <= 1 s): until the new snapshot and the composer's indexes are in use; writing the index file follows."""
    from lib_stylus.webui.service import StylusService
    release, saving = held_save
    service = StylusService()
    try:
        status = service.refresh(wait=True)
        assert status["state"] == "ready" and status["cards"] == 2
        assert saving.wait(30) and not os.path.exists(service.index().path)  # the save is still to come
        assert getattr(service.index().snapshot, "_stylus_characters", None) is not None
    finally:
        release.set()
    service._thread.join(30)
    assert os.path.isfile(service.index().path)


def test_a_refresh_asked_while_the_last_one_saves_runs_after_it(held_save, tmp_path):
    """A refresh asked for while the last one only writes its file (a generation finding new LoRA files,
    the user's POST /stylus/v1/refresh, an encoder put in place) runs after it: it was dropped, the files
    unseen."""
    import threading
    from lib_stylus.webui.service import StylusService
    release, saving = held_save
    service = StylusService()
    done = {}
    try:
        assert service.refresh(wait=True)["cards"] == 2
        assert saving.wait(30)
        make_library(tmp_path / "lora", [card("rain")])
        second = threading.Thread(target=lambda: done.update(status=service.refresh(wait=True)), daemon=True)
        second.start()
    finally:
        release.set()
    second.join(30)
    assert done["status"]["cards"] == 3
