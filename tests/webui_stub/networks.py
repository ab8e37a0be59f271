"""extensions-builtin/Lora/networks.py of web UI 1.10.1: the registry dicts, and list_available_networks(),
which CLEARS them and rebuilds them from the Lora folder (the extension calls it at import, from its Refresh
button and from load_networks when a name is missing). Entries here are plain objects named by file stem."""
import os
import threading

available_networks = {}
available_network_aliases = {}
forbidden_network_aliases = {}
refreshes = []  # the name of the thread of each rebuild (tests assert Stylus never triggers one)


def list_available_networks():
    from modules import shared
    refreshes.append(threading.current_thread().name)
    available_networks.clear()
    available_network_aliases.clear()
    forbidden_network_aliases.clear()
    forbidden_network_aliases.update({"none": 1, "Addams": 1})
    lora_dir = shared.cmd_opts.lora_dir
    if not lora_dir or not os.path.isdir(lora_dir):
        return
    for root, _, files in os.walk(lora_dir, followlinks=True):
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".pt", ".ckpt", ".safetensors"):
                entry = object()
                available_networks[stem] = entry
                if stem in available_network_aliases:
                    forbidden_network_aliases[stem.lower()] = 1
                available_network_aliases[stem] = entry
