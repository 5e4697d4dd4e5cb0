#!/usr/bin/env bash
# The whole local CaseBridge stack: Apache Kafka (KRaft; one node, or three with KAFKA_BROKERS=3)
# + PostgreSQL.
#
# Usage: infra/stack.sh up|down|status|env
#   up      fetch/format/start Kafka, install/init/start/bootstrap PostgreSQL, wait for both.
#           Idempotent: a running stack is left alone. Prints the connection settings.
#   down    stop both (data is kept in the run dir).
#   status  one line per service; exit 0 only when both run.
#   env     print the connection settings (KEY=value lines; secrets only as file paths).
#
# Environment: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093), PG_PORT (15432),
# CASEBRIDGE_RUN_DIR (<repo>/.run). A second isolated stack just needs other values:
#   CASEBRIDGE_RUN_DIR=/tmp/cbtest KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29093 PG_PORT=25432 infra/stack.sh up
# Three Kafka nodes as one KRaft cluster (replication factor 3, min.insync.replicas 2); ports per
# node from KAFKA_PORTS / KAFKA_CONTROLLER_PORTS (default KAFKA_PORT+0,+2,+4 and likewise):
#   CASEBRIDGE_RUN_DIR=/tmp/cb3 KAFKA_BROKERS=3 KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29093 PG_PORT=25432 infra/stack.sh up
# down, status and env of a cluster's run dir need no KAFKA_BROKERS: it is recorded there.
# See infra/kafka/kafka.sh for all Kafka settings.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"

export KAFKA_PORT="${KAFKA_PORT:-19092}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
export PG_PORT="${PG_PORT:-15432}"
export CASEBRIDGE_RUN_DIR="${CASEBRIDGE_RUN_DIR:-${REPO_ROOT}/.run}"

KAFKA_SH="${SCRIPT_DIR}/kafka/kafka.sh"
PG_SH="${SCRIPT_DIR}/postgres/postgres.sh"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    # The header comment block, without the leading '# '.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
}

# Children must not inherit the lock fd: a daemon holding it would block every later up/down.
kafka() { "${KAFKA_SH}" "$@" 9>&-; }
pg() { "${PG_SH}" "$@" 9>&-; }

elapsed_ms() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

# One `up`/`down` at a time per run dir.
lock_run_dir() {
    [[ "${CASEBRIDGE_RUN_DIR}" == /* ]] \
        || die "CASEBRIDGE_RUN_DIR must be an absolute path (got '${CASEBRIDGE_RUN_DIR}')"
    mkdir -p "${CASEBRIDGE_RUN_DIR}"
    exec 9>"${CASEBRIDGE_RUN_DIR}/stack.lock"
    if ! flock -w 120 9; then
        die "another stack.sh up/down holds ${CASEBRIDGE_RUN_DIR}/stack.lock for 120s"
    fi
}

cmd_env() {
    # Kafka: bootstrap, protocol, CA and the super user's settings file (a path, no password).
    kafka env
    pg urls
}

cmd_up() {
    local t0
    t0="${EPOCHREALTIME/./}"
    lock_run_dir
    log "up: run dir ${CASEBRIDGE_RUN_DIR}, kafka $(kafka describe), postgres 127.0.0.1:${PG_PORT}"
    # Kafka boots in the background while PostgreSQL is brought up.
    kafka fetch
    kafka format
    kafka start
    pg install
    pg init
    pg start
    pg wait
    pg bootstrap >/dev/null
    kafka wait
    log "up: stack ready in $(elapsed_ms "${t0}") ms"
    cmd_env
}

cmd_down() {
    lock_run_dir
    local rc=0
    # Stop both even if one of them fails.
    kafka stop || rc=$?
    pg stop || rc=$?
    ((rc == 0)) || die "down: at least one service failed to stop (messages above)"
    log "down: stopped (data kept in ${CASEBRIDGE_RUN_DIR})"
}

cmd_status() {
    local rc=0
    kafka status || rc=$?
    pg status || rc=$?
    return "${rc}"
}

main() {
    case "${1:-}" in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        env) cmd_env ;;
        -h | --help | help) usage ;;
        *)
            usage
            die "unknown command '${1:-}'"
            ;;
    esac
}

main "$@"
