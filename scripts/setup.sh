#!/usr/bin/env bash
# Set-up in one command: a virtual environment in .venv with mesh and everything its
# tests and benchmarks need.
#
# torch is installed first, pinned, so that pip never resolves a bare `torch`
# requirement to the newest registry build (several GB of CUDA packages) on a
# machine that only needs the CPU build. On a Linux GPU machine, torch==2.13.0
# from PyPI is the CUDA build, so the same command serves both; set
# MESH_TORCH_SPEC to choose another build (for example a different version).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${MESH_TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "set-up done: activate with 'source .venv/bin/activate'"
