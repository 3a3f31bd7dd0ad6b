#!/usr/bin/env bash
# Bare-install smoke test: the README's first command on a fresh virtual environment.
#
# Creates a venv, runs `pip install -e .` with no extras, starts `coral-node start` on free
# ports with a temporary data dir, checks that /healthz and the A2A agent card answer 200 and
# that `coral-agent --help` exits 0, then sends SIGTERM and expects exit status 0.
# Usage: scripts/smoke_bare_install.sh   (SMOKE_VENV=DIR reuses or creates a venv at DIR)
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
node_pid=""
cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then kill -KILL "$node_pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "smoke: FAIL: $*" >&2
  [ -f "$work/node.log" ] && sed 's/^/  node| /' "$work/node.log" >&2
  exit 1
}

venv="${SMOKE_VENV:-$work/venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
echo "smoke: pip install -e . (no extras) into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check -e . || fail "pip install -e . failed"
py="$venv/bin/python"

read -r grpc_port http_port < <("$py" - <<'EOF'
import socket

socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)

echo "smoke: coral-node start on gRPC $grpc_port, HTTP $http_port"
"$venv/bin/coral-node" start --data-dir "$work/data" --grpc-port "$grpc_port" \
  --http-port "$http_port" >"$work/node.log" 2>&1 &
node_pid=$!

base="http://127.0.0.1:$http_port"
"$py" - "$base" "$node_pid" <<'EOF' || fail "node did not become healthy"
import os
import sys
import time
import urllib.request

base, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("node exited before it was healthy")
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit("no 200 from /healthz in time")
EOF

for path in /healthz /.well-known/agent-card.json; do
  "$py" - "$base$path" <<'EOF' || fail "GET $path did not answer 200"
import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=10) as resp:
    assert resp.status == 200, resp.status
    assert resp.read(), "empty body"
EOF
  echo "smoke: GET $path -> 200"
done

if grep -qE '/(torch|ray|transformers)/' "/proc/$node_pid/maps" 2>/dev/null; then
  fail "the bare node loaded an optional heavy dependency"
fi

"$venv/bin/coral-agent" --help >/dev/null || fail "coral-agent --help exited non-zero"
echo "smoke: coral-agent --help -> 0"

kill -TERM "$node_pid"
rc=0
wait "$node_pid" || rc=$?
node_pid=""
[ "$rc" -eq 0 ] || fail "coral-node exited $rc after SIGTERM"
grep -q "stopped cleanly" "$work/node.log" || fail "no 'stopped cleanly' after SIGTERM"
echo "smoke: SIGTERM -> exit 0; bare install OK"
