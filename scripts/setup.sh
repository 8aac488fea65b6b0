#!/usr/bin/env bash
# Prepare a fresh Debian machine for Nimbus: system packages (when root and
# missing), then a virtual environment in .venv with Nimbus and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
need=()     # Nimbus cannot run without these
wanted=()   # the namespaces sandbox (root only), egress networking, Node.js, tests, benchmarks
command -v "$PY" >/dev/null 2>&1 || need+=(python3.11)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3.11-venv)
command -v curl >/dev/null 2>&1 || wanted+=(curl)
command -v wrk >/dev/null 2>&1 || wanted+=(wrk)
command -v ip >/dev/null 2>&1 || wanted+=(iproute2)
command -v nft >/dev/null 2>&1 || wanted+=(nftables)
command -v nsenter >/dev/null 2>&1 || wanted+=(util-linux)
command -v mount >/dev/null 2>&1 || wanted+=(mount)
command -v node >/dev/null 2>&1 || wanted+=(nodejs)  # the nodejsN runtime (Node 18+)
command -v redis-server >/dev/null 2>&1 || wanted+=(redis-server)
for extra in ${NIMBUS_APT_EXTRA:-}; do wanted+=("$extra"); done
if [ $((${#need[@]} + ${#wanted[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${need[*]} ${wanted[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" "${wanted[@]}" >/dev/null
  elif [ ${#need[@]} -gt 0 ]; then
    echo "setup: please install: ${need[*]}" >&2
    exit 1
  else
    echo "setup: not root, so not installing: ${wanted[*]} (needed for the namespaces" \
      "sandbox, egress networking, the Node.js runtime, tests and benchmarks)" >&2
  fi
fi

stamp=.venv/.nimbus-installed
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
