import os
import tempfile

script_path = tempfile.mkdtemp(prefix="webui-stub-")
models_path = os.path.join(script_path, "models")
extensions_dir = os.path.join(script_path, "extensions")
data_path = script_path
