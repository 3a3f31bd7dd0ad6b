#!/bin/sh
# Container entrypoint: start a Coral node from CORAL_* environment variables.
#
# Every Config key can be set as CORAL_<KEY> (CORAL_DATABASE_URL, CORAL_BOOTSTRAP_PEERS as
# a comma list, CORAL_ADVERTISE_HOST, ...); extra arguments are passed to `coral-node start`.
# Inside a container the node must listen on 0.0.0.0 to be reachable through published
# ports, so that is the default here (not in coral-node itself, which defaults to 127.0.0.1).
set -eu

: "${CORAL_DATA_DIR:=/var/lib/coral}"
: "${CORAL_HOST:=0.0.0.0}"
: "${CORAL_GRPC_PORT:=7420}"
: "${CORAL_HTTP_PORT:=7421}"
: "${CORAL_LOG_JSON:=true}"
: "${CORAL_NODE_BIN:=coral-node}"
export CORAL_DATA_DIR CORAL_HOST CORAL_GRPC_PORT CORAL_HTTP_PORT CORAL_LOG_JSON

# Keys must stay private even if the volume was created with a loose umask.
umask 077
mkdir -p "$CORAL_DATA_DIR"

# exec: the node becomes PID 1's direct process and receives SIGTERM for a clean stop.
exec "$CORAL_NODE_BIN" start "$@"
