#!/usr/bin/env bash
# Creates .venv with the whole stack, plus the example plugin package (examples/plugin_objective,
# an out-of-tree objective found through the `ssvrl.objectives` entry point; the tests use it).
# Quick the second time: it reinstalls only when requirements.txt or one of the two
# pyproject.toml files changed.
#
# Why uv: pip on these machines may be configured (pip.conf / PIP_FIND_LINKS) with a CPU-only
# torch wheel; torchvision on PyPI is built against the registry's torch and fails to import
# with that wheel, and timm imports torchvision. uv ignores pip's configuration and takes torch
# from the registry, whose build runs on CPU too.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SSVRL_VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.ssvrl-stamp"
PLUGIN=examples/plugin_objective
want=$(cat requirements.txt pyproject.toml "$PLUGIN/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && "$VENV/bin/python" -c "import ssvrl, ssvrl_vicreg_plugin" 2>/dev/null; then
  exit 0
fi
echo "[setup] creating $VENV (first time: ~1-2 min, ~5 GB)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --isolated -q --disable-pip-version-check "uv>=0.4"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q -r requirements.txt \
  "pytest>=8" "pytest-timeout>=2.3"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --no-deps -e .
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --no-deps -e "$PLUGIN"
"$VENV/bin/python" - <<'PY'
import torch, torchvision, timm, kornia, decord, av, omegaconf, pytorch_lightning  # noqa: F401
print(f"[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}, kornia {kornia.__version__}, lightning {pytorch_lightning.__version__}")
PY
echo "$want" > "$stamp"
