#!/usr/bin/env bash
# Build a real AUTOMATIC1111 web UI v1.10.1 for the end-to-end tests (offline, CPU), OUTSIDE any repo.
#
#   tests/e2e/build_host.sh STAGE OUT [ARGS...]
#
# Stages (in this order; each can be re-run):
#   sources OUT WEBUI_GIT SD_GIT SGM_GIT KDIFF_GIT  unpack the pinned commits (git dirs: clones or mirrors)
#   venv    OUT                      OUT/venv: torch 2.1.2 / torchvision 0.16.2 + requirements_versions.txt
#   models  OUT                      tiny SD1.5 + SDXL (+ VAE-approx) and tiny style models into OUT/models
#   stylus  OUT STYLUS_CHECKOUT      OUT/extensions/stylus -> symlink to a Stylus checkout, + faiss-cpu
#   tiled   OUT TILED_GIT            Tiled Diffusion (multidiffusion-upscaler) into OUT/extensions
#   library OUT N                    N real-library cards as LoRA files in OUT/models/Lora/library
#   forge-sources OUT FORGE_GIT HFGUESS_GIT   Forge dfdcbab + huggingface_guess 8482624 (its pinned commit)
#   forge-venv    OUT                OUT/venv: torch 2.3.1 / torchvision 0.18.1 + Forge's requirements
#   forge-register OUT               register the tiny models in this LOCAL copy (tests/e2e/forge_register.py);
#                                    run `models` and `stylus` first, as for the web UI
#   forge-start   OUT CKPT PORT [FLAG...]  start Forge (or Forge Classic) in the background, log
#                                    OUT/webui-PORT.log (Classic: --unet-in-fp8-e4m3fn for its FP8 test)
#   classic-sources OUT CLASSIC_GIT  Forge Classic 1f95d71, + stablediffusion / generative-models under
#                                    repositories/ copied from a web UI built here (its folder: $WEBUI)
#   classic-venv  OUT                OUT/venv: a copy of $WEBUI/venv (torch 2.1.2, Classic's expected version)
#                                    + Forge Classic's requirements.txt
#   classic-tiled OUT CLASSIC_GIT    Classic's own "MultiDiffusion Integrated" as it was before its removal
#                                    (8b3e71373), made to load on 1f95d71 (see README)
#   start   OUT CKPT PORT            start the API server in the background, log OUT/webui-PORT.log
#
# The tiny-model generators are in tests/e2e/tiny_models (the project's generators, which share tiny_common.py
# there; byte-identical output). The host copy itself is never modified: only models/ and extensions/ receive
# files. The `library` stage needs the project's benchmark library (BENCH: a folder with materialize.py and
# library.jsonl).
set -euo pipefail
stage=$1
out=$(realpath -m "$2")
shift 2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BENCH=${BENCH:-$repo/../shared/bench}
PYTHON=${PYTHON:-python3.11}
WEBUI=${WEBUI:-}  # a web UI built by this script (classic-sources / classic-venv reuse its parts)

unpack() {  # git_dir commit dest [pathspec...]
    local git_dir=$1 commit=$2 dest=$3
    shift 3
    rm -rf "$dest"
    mkdir -p "$dest"
    git --git-dir="$git_dir" archive "$commit" -- "${@:-.}" | tar -x -C "$dest"
}

case $stage in
sources)
    unpack "$1" 82a973c "$out"  # v1.10.1
    # stablediffusion's snapshot lacks 4 PNGs under assets/, which the web UI never reads
    # (named entry by entry: git 2.39's archive still reads the excluded blobs of ':(exclude)assets')
    unpack "$2" cf1d67a "$out/repositories/stable-diffusion-stability-ai" \
        $(git --git-dir="$2" ls-tree --name-only cf1d67a | grep -vx assets)
    unpack "$3" 45c443b "$out/repositories/generative-models"
    unpack "$4" ab527a9 "$out/repositories/k-diffusion"
    ;;
venv)
    "$PYTHON" -m venv "$out/venv"
    pip="$out/venv/bin/python -m pip"
    $pip install -q --upgrade pip
    $pip install -q torch==2.1.2 torchvision==0.16.2
    # the file is CRLF and has a bare "torch" line (the installer handles torch itself)
    tr -d '\r' < "$out/requirements_versions.txt" | grep -v '^torch$' > "$out/venv/requirements-e2e.txt"
    # clip-anytorch gives the `clip` module; newer scipy / opencv need numpy 2
    $pip install -q -r "$out/venv/requirements-e2e.txt" clip-anytorch 'scipy<1.17' 'opencv-python<4.12'
    ;;
models)
    py="$out/venv/bin/python"
    "$py" "$here/tiny_models/make_tiny_sd15.py" "$out/models"
    # also writes models/VAE-approx/vaeapprox-sdxl.pt (offline SDXL needs it)
    "$py" "$here/tiny_models/make_tiny_sdxl.py" "$out/models"
    (cd "$repo" && "$py" -m tests.e2e.make_style_models "$out/models")
    ;;
stylus)
    mkdir -p "$out/extensions"
    ln -sfn "$(realpath "$1")" "$out/extensions/stylus"
    # what Stylus's install.py adds at a normal start (--skip-prepare-environment skips every install.py):
    # faiss-cpu; open-clip-torch and safetensors are already in the web UI's own requirements
    "$out/venv/bin/python" -m pip install -q faiss-cpu==1.8.0.post1
    ;;
tiled)
    unpack "$1" HEAD "$out/extensions/multidiffusion-upscaler-for-automatic1111"
    ;;
library)
    # in a subfolder (the web UI lists subfolders too): `rm -r models/Lora/library` gives the bare host back
    mkdir -p "$out/models/Lora/library"
    "$out/venv/bin/python" "$BENCH/materialize.py" "$BENCH/library.jsonl" "$out/models/Lora/library" \
        --limit "$1"
    ;;
forge-sources)
    unpack "$1" dfdcbab "$out"
    unpack "$2" 84826248b49bb7ca754c73293299c4d4e23a548d "$out/repositories/huggingface_guess"
    ;;
forge-venv)
    "$PYTHON" -m venv "$out/venv"
    pip="$out/venv/bin/python -m pip"
    $pip install -q --upgrade pip
    $pip install -q torch==2.3.1 torchvision==0.18.1  # Forge's launch_utils default
    tr -d '\r' < "$out/requirements_versions.txt" | grep -v '^torch$' > "$out/venv/requirements-e2e.txt"
    $pip install -q -r "$out/venv/requirements-e2e.txt" clip-anytorch 'scipy<1.17' 'opencv-python<4.12'
    ;;
forge-register)
    "$out/venv/bin/python" "$here/forge_register.py" "$out" "$out/models"
    ;;
classic-sources)
    unpack "$1" 1f95d7170189cf93952aca122c1ee2f306a07e4c "$out"
    mkdir -p "$out/repositories"
    cp -a "$WEBUI/repositories/stable-diffusion-stability-ai" "$WEBUI/repositories/generative-models" \
        "$out/repositories/"
    ;;
classic-venv)
    cp -a "$WEBUI/venv" "$out/venv"
    grep -v '^torch$' "$out/requirements.txt" > "$out/venv/requirements-e2e.txt"
    "$out/venv/bin/python" -m pip install -q -r "$out/venv/requirements-e2e.txt"
    ;;
classic-tiled)
    # Classic force-disables the multidiffusion-upscaler extension (modules_forge/config.py) and removed its
    # integrated one in da6a4a2; that one's last version needs two edits to load and run on 1f95d71
    dest="$out/extensions/sd_forge_multidiffusion"
    unpack "$1" 8b3e71373 "$dest.tmp" extensions-builtin/sd_forge_multidiffusion
    rm -rf "$dest"
    mv "$dest.tmp/extensions-builtin/sd_forge_multidiffusion" "$dest"
    rm -rf "$dest.tmp"
    lib="$dest/lib_multidiffusion/tiled_diffusion.py"
    # ldm_patched.contrib is gone; ImageScale was created and never used
    sed -i -e 's/^from ldm_patched.contrib.external import ImageScale$//' \
        -e 's/^        self.imagescale = ImageScale()$//' "$lib"
    # model_management.processing_interrupted is gone: the tile loop no longer checks for an interrupt
    sed -i 's/ldm_patched.modules.model_management.processing_interrupted()/False/' "$lib"
    ;;
forge-start)
    cd "$out"
    nohup "$out/venv/bin/python" launch.py --skip-prepare-environment --nowebui --api --always-cpu --all-in-fp32 \
        --skip-version-check --no-hashing --no-download-sd-model --ckpt "models/Stable-diffusion/$1" \
        --port "$2" "${@:3}" > "$out/webui-$2.log" 2>&1 &
    echo "pid $! port $2 log $out/webui-$2.log"
    ;;
start)
    ckpt=$1
    port=$2
    cd "$out"
    nohup "$out/venv/bin/python" launch.py --skip-prepare-environment --nowebui --use-cpu all --no-half \
        --no-download-sd-model --ckpt "models/Stable-diffusion/$ckpt" --skip-version-check --no-hashing \
        --api \
        --port "$port" > "$out/webui-$port.log" 2>&1 &
    echo "pid $! port $port log $out/webui-$port.log"
    ;;
*)
    echo "unknown stage: $stage" >&2
    exit 2
    ;;
esac
