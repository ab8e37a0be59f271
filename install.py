"""Web UI install hook: add only what is missing, pinned so it never moves torch or numpy.
Runs at every web UI start, so the all-present path must cost milliseconds (find_spec, no imports)."""
import importlib.util


def _numpy_major() -> int:
    try:
        from importlib.metadata import version
        return int(version("numpy").split(".")[0])
    except Exception:
        return 1


def missing() -> list:
    faiss = "faiss-cpu==1.8.0.post1" if _numpy_major() < 2 else "faiss-cpu>=1.9,<2"
    wanted = {"faiss": faiss, "open_clip": "open-clip-torch==2.20.0", "safetensors": "safetensors>=0.3"}
    return [spec for module, spec in wanted.items() if importlib.util.find_spec(module) is None]


def main() -> None:
    todo = missing()
    if not todo:
        return
    import launch  # the web UI's own installer (same interpreter, its pip options and index)
    for spec in todo:
        # --no-deps where torch could be pulled in: the web UI already provides torch/torchvision.
        flags = " --no-deps" if spec.startswith("open-clip-torch") else ""
        launch.run_pip(f'install "{spec}"{flags}', f"Stylus requirement: {spec}")


main()
