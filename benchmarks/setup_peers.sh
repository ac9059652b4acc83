#!/usr/bin/env bash
# Prepare the peer systems for `python -m benchmarks run --peers`.
#
# Creates benchmarks/.peers-venv (git-ignored) with Celery 5 + redis-py, Huey,
# RQ and psutil, and installs redis-server from the distribution if it is not
# on PATH. Nothing here touches liteq's own virtualenv.
#
# Environment:
#   PYTHON   interpreter used to create the venv (default: python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.peers-venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    "celery[redis]>=5,<6" redis huey rq psutil

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo_cmd=()
    else
        sudo_cmd=(sudo)
    fi
    echo "installing redis-server"
    "${sudo_cmd[@]}" apt-get update
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi

echo "peer versions:"
"$venv/bin/python" - <<'PY'
from importlib.metadata import version

for name in ("celery", "kombu", "redis", "huey", "rq", "psutil"):
    print(f"  {name} {version(name)}")
PY
echo "  $(redis-server --version)"
echo "peers ready: python -m benchmarks run --peers"
