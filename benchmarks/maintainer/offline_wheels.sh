#!/usr/bin/env bash
# Wheels for a GPU machine without a network, fetched where the package index can be reached:
#   bash benchmarks/maintainer/offline_wheels.sh [QUANT_DIR [PEERS_DIR]]   # default .whl .whl-peers
# QUANT_DIR: bitsandbytes and torchao (WHEELS=QUANT_DIR for benchmarks/gpu.sh and schemes.sh).
# PEERS_DIR: Zeus and CodeCarbon with the dependencies a CUDA image of torch lacks
# (PEERS_WHEELS=PEERS_DIR for `bash benchmarks/gpu.sh peers`). The packages such an image already
# has (numpy, pandas, scipy, rich, nvidia-ml-py, python-dateutil, typing-extensions) are left
# out: a second copy first on PYTHONPATH would replace the image's own beneath torch. CodeCarbon's
# login and API client (authlib, cryptography) are left out too: an offline tracker does not
# import them. The target is CPython 3.12 on x86-64 Linux; the versions are pyproject.toml's.
set -euo pipefail
quant=${1:-.whl}
peers=${2:-.whl-peers}
target=(--only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --no-deps "${target[@]}" -d "$quant" bitsandbytes==0.50.2 torchao==0.18.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q "${target[@]}" -d "$tmp" zeus==0.16.0 codecarbon==3.3.2
mkdir -p "$peers"
for wheel in "$tmp"/*.whl; do
  case $(basename "$wheel") in
    numpy-*|pandas-*|scipy-*|rich-*|pygments-*|markdown_it_py-*|mdurl-*|typing_extensions-*|\
    python_dateutil-*|tzdata-*|nvidia_ml_py-*|cryptography-*|cffi-*|pycparser-*|authlib-*|joserfc-*) ;;
    *) cp "$wheel" "$peers"/ ;;
  esac
done
du -sh "$quant" "$peers"
