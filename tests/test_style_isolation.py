import subprocess
import sys


def test_style_library_never_imports_the_web_ui_nor_heavy_optional_packages():
    code = ("import sys, lib_stylus.style; bad = [m for m in "
            "('modules', 'ldm', 'sgm', 'open_clip', 'diffusers') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=__file__.rsplit("/tests/", 1)[0])
    assert out.returncode == 0, out.stdout + out.stderr
