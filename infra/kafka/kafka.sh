#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for CaseBridge dev/tests.
#
# Usage: infra/kafka/kafka.sh fetch|format|start|wait|stop|status|logs
#
# Environment (all optional):
#   KAFKA_PORT             client listener port                      (default 19092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port            (default 19093)
#   CASEBRIDGE_RUN_DIR     state dir; Kafka uses $CASEBRIDGE_RUN_DIR/kafka (default <repo>/.run)
#   KAFKA_HEAP_OPTS        JVM heap flags                            (default -Xms256m -Xmx512m)
#   KAFKA_WAIT_TIMEOUT     seconds for `wait`                        (default 60)
#   KAFKA_STOP_TIMEOUT     seconds of graceful shutdown before SIGKILL (default 30)
#   KAFKA_LIBS_DIR         where the jars are copied                 (default infra/kafka/libs)
#   CASEBRIDGE_PYTHON      python with aiokafka for `wait`           (default <repo>/.venv/bin/python)
#   JAVA                   java binary                               (default: java on PATH)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"

KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
CASEBRIDGE_RUN_DIR="${CASEBRIDGE_RUN_DIR:-${REPO_ROOT}/.run}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_WAIT_TIMEOUT="${KAFKA_WAIT_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_LIBS_DIR="${KAFKA_LIBS_DIR:-${SCRIPT_DIR}/libs}"
CASEBRIDGE_PYTHON="${CASEBRIDGE_PYTHON:-${REPO_ROOT}/.venv/bin/python}"
JAVA="${JAVA:-java}"

POM="${SCRIPT_DIR}/pom.xml"
KAFKA_DIR="${CASEBRIDGE_RUN_DIR}/kafka"
DATA_DIR="${KAFKA_DIR}/data"
PROPS="${KAFKA_DIR}/server.properties"
LOG_FILE="${KAFKA_DIR}/kafka.log"
PID_FILE="${KAFKA_DIR}/kafka.pid"
FORMAT_INFO="${KAFKA_DIR}/formatted.env"
MARKER="${KAFKA_LIBS_DIR}/.fetched"

# Class names checked in kafka_2.13-4.1.1.jar (unzip -l): they did not move in 4.x.
MAIN_CLASS="kafka.Kafka"
STORAGE_TOOL_CLASS="kafka.tools.StorageTool"

log() { printf '[kafka] %s\n' "$*" >&2; }
die() { printf '[kafka] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    # The header comment block, without the leading '# '.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
}

validate_port() {
    local name="$1" value="$2"
    if ! [[ "${value}" =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "${name}=${value} is not a valid TCP port"
    fi
}

validate_env() {
    validate_port KAFKA_PORT "${KAFKA_PORT}"
    validate_port KAFKA_CONTROLLER_PORT "${KAFKA_CONTROLLER_PORT}"
    [[ "${KAFKA_PORT}" != "${KAFKA_CONTROLLER_PORT}" ]] \
        || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both are ${KAFKA_PORT})"
    [[ "${CASEBRIDGE_RUN_DIR}" == /* ]] \
        || die "CASEBRIDGE_RUN_DIR must be an absolute path (got '${CASEBRIDGE_RUN_DIR}')"
}

# Kafka version = the <kafka.version> property of pom.xml (single source of truth).
kafka_version() {
    local v
    v="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "${POM}" | head -n1)"
    [[ -n "${v}" ]] || die "cannot read <kafka.version> from ${POM}"
    printf '%s\n' "${v}"
}

# Marker content: version + checksum of the pom, so any pom edit triggers a re-fetch.
expected_marker() {
    printf 'kafka_2.13=%s pom_sha256=%s\n' "$(kafka_version)" "$(sha256sum "${POM}" | cut -d' ' -f1)"
}

libs_complete() {
    [[ -f "${MARKER}" ]] \
        && [[ "$(cat "${MARKER}")" == "$(expected_marker)" ]] \
        && [[ -f "${KAFKA_LIBS_DIR}/kafka_2.13-$(kafka_version).jar" ]]
}

require_libs() {
    libs_complete || die "Kafka jars missing or stale in ${KAFKA_LIBS_DIR}: run '$0 fetch' first"
    command -v "${JAVA}" >/dev/null 2>&1 || die "java not found (JAVA=${JAVA}); install a JDK 17+"
}

cmd_fetch() {
    mkdir -p "${KAFKA_LIBS_DIR}"
    # Serialise concurrent fetches (e.g. two stacks started at once).
    exec 8>"${KAFKA_LIBS_DIR}/.fetch.lock"
    flock 8
    if libs_complete; then
        log "jars already fetched ($(cat "${MARKER}")) in ${KAFKA_LIBS_DIR}"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found: apt-get install -y maven"
    local staging
    staging="$(mktemp -d "${KAFKA_LIBS_DIR}/.staging.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must remove this staging dir
    trap "rm -rf '${staging}'" EXIT
    log "fetching kafka_2.13 $(kafka_version) and its runtime dependencies from Maven Central..."
    if ! mvn -B -q -f "${POM}" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="${staging}" >"${staging}.mvn.log" 2>&1; then
        tail -n 40 "${staging}.mvn.log" >&2 || true
        rm -f "${staging}.mvn.log"
        die "maven could not resolve the Kafka jars (see output above; check ${POM} and network access to Maven Central)"
    fi
    rm -f "${staging}.mvn.log"
    [[ -f "${staging}/kafka_2.13-$(kafka_version).jar" ]] \
        || die "maven finished but kafka_2.13-$(kafka_version).jar is not in its output"
    rm -f "${KAFKA_LIBS_DIR}"/*.jar "${MARKER}"
    mv "${staging}"/*.jar "${KAFKA_LIBS_DIR}/"
    expected_marker >"${MARKER}"
    rm -rf "${staging}"
    trap - EXIT
    log "fetched $(find "${KAFKA_LIBS_DIR}" -maxdepth 1 -name '*.jar' | wc -l) jars into ${KAFKA_LIBS_DIR}"
}

write_properties() {
    mkdir -p "${DATA_DIR}"
    local tmp="${PROPS}.tmp"
    cat >"${tmp}" <<EOF
# Generated by infra/kafka/kafka.sh on every start/format: do not edit, change kafka.sh instead.
# Single-node KRaft: one process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${DATA_DIR}

# Topics
auto.create.topics.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
log.retention.hours=168
# Kafka's own default; >= 1 MiB payload plus record batch overhead.
message.max.bytes=1048588

# Internal topics must fit on one node, or consumer groups and idempotent/transactional
# producers fail.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# After a crash (kill -9) the controller refuses the restarted broker until the old
# registration's session expires (DuplicateBrokerRegistrationException): 9 s by default.
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=1000
EOF
    mv "${tmp}" "${PROPS}"
}

is_formatted() { [[ -f "${DATA_DIR}/meta.properties" ]]; }

# Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        # A leading '-' would be parsed as a command-line option; Kafka avoids it as well.
        [[ "${id}" != -* ]] && break
    done
    printf '%s\n' "${id}"
}

cmd_format() {
    validate_env
    if is_formatted; then
        log "data dir already formatted: ${DATA_DIR} ($(grep '^cluster.id=' "${DATA_DIR}/meta.properties"))"
        return 0
    fi
    require_libs
    if [[ -d "${DATA_DIR}" ]] && [[ -n "$(ls -A "${DATA_DIR}")" ]]; then
        die "${DATA_DIR} is not empty but has no meta.properties (half-formatted or foreign data); inspect it, delete it, then re-run '$0 format'"
    fi
    write_properties
    local cluster_id
    cluster_id="$(new_cluster_id)"
    log "formatting ${DATA_DIR} (cluster id ${cluster_id})"
    local out
    if ! out="$("${JAVA}" -Xmx256m -cp "${KAFKA_LIBS_DIR}/*" "${STORAGE_TOOL_CLASS}" format \
        --standalone -t "${cluster_id}" -c "${PROPS}" 2>&1)"; then
        printf '%s\n' "${out}" >&2
        die "kafka storage format failed (output above)"
    fi
    # The controller port is recorded in the KRaft voter set at format time.
    printf 'FORMATTED_CONTROLLER_PORT=%s\nFORMATTED_CLUSTER_ID=%s\n' \
        "${KAFKA_CONTROLLER_PORT}" "${cluster_id}" >"${FORMAT_INFO}"
    log "formatted: $(printf '%s' "${out}" | tail -n1)"
}

# Prints the broker pid if the one recorded in the pid file is alive and really is our broker.
running_pid() {
    [[ -f "${PID_FILE}" ]] || return 1
    local pid
    pid="$(cat "${PID_FILE}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/${pid}/cmdline" ]] || return 1
    # Guard against pid reuse: the process must be a kafka.Kafka running our properties file.
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/${pid}/cmdline")"
    [[ "${cmdline}" == *"${MAIN_CLASS}"*"${PROPS}"* ]] || return 1
    printf '%s\n' "${pid}"
}

port_in_use() {
    # Succeeds when something accepts TCP connections on 127.0.0.1:$1.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

tail_log() {
    if [[ -f "${LOG_FILE}" ]]; then
        printf -- '----- last %s lines of %s -----\n' "${1:-40}" "${LOG_FILE}" >&2
        tail -n "${1:-40}" "${LOG_FILE}" >&2 || true
        printf -- '-----\n' >&2
    fi
}

cmd_start() {
    validate_env
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid ${pid}, 127.0.0.1:${KAFKA_PORT}, run dir ${KAFKA_DIR})"
        return 0
    fi
    rm -f "${PID_FILE}"
    require_libs
    is_formatted || die "data dir ${DATA_DIR} is not formatted: run '$0 format' first"
    if [[ -f "${FORMAT_INFO}" ]]; then
        local formatted_port
        formatted_port="$(sed -n 's/^FORMATTED_CONTROLLER_PORT=//p' "${FORMAT_INFO}")"
        if [[ -n "${formatted_port}" && "${formatted_port}" != "${KAFKA_CONTROLLER_PORT}" ]]; then
            die "${DATA_DIR} was formatted with KAFKA_CONTROLLER_PORT=${formatted_port} (now ${KAFKA_CONTROLLER_PORT}); the KRaft voter set keeps the old port. Use KAFKA_CONTROLLER_PORT=${formatted_port}, or stop, delete ${KAFKA_DIR} and start again (this loses all topics)"
        fi
    fi
    local port
    for port in "${KAFKA_PORT}" "${KAFKA_CONTROLLER_PORT}"; do
        if port_in_use "${port}"; then
            die "port 127.0.0.1:${port} is already in use by another process (not the broker of ${KAFKA_DIR}); find it with: ss -ltnp 'sport = :${port}'"
        fi
    done
    write_properties
    # Keep one previous log for post-mortems.
    if [[ -f "${LOG_FILE}" ]]; then
        mv -f "${LOG_FILE}" "${LOG_FILE}.1"
    fi
    local -a heap_opts
    read -r -a heap_opts <<<"${KAFKA_HEAP_OPTS}"
    log "starting broker on 127.0.0.1:${KAFKA_PORT} (controller ${KAFKA_CONTROLLER_PORT}), log ${LOG_FILE}"
    # setsid: own session, so a Ctrl-C or a process-group kill of the caller does not take the
    # broker down. The inner shell writes its own pid, closes every inherited descriptor above 2
    # (a caller's lock or pipe must not stay open for the broker's lifetime), then execs java
    # under that same pid.
    # shellcheck disable=SC2016  # $$ and "$@" are expanded by the inner shell
    setsid bash -c 'echo $$ >"$1"; shift
        for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec ${fd}>&-"; done
        exec "$@"' kafka-start "${PID_FILE}" \
        "${JAVA}" "${heap_opts[@]}" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX" \
        -Dorg.slf4j.simpleLogger.levelInBrackets=true \
        -Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn \
        -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn \
        -cp "${KAFKA_LIBS_DIR}/*" "${MAIN_CLASS}" "${PROPS}" \
        </dev/null >>"${LOG_FILE}" 2>&1 &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "${PID_FILE}" ]] && break
        sleep 0.1
    done
    pid="$(cat "${PID_FILE}" 2>/dev/null || true)"
    [[ -n "${pid}" ]] || die "broker did not start (no pid file ${PID_FILE})"
    sleep 0.3
    if ! kill -0 "${pid}" 2>/dev/null; then
        tail_log 40
        die "broker exited right after start (log tail above)"
    fi
    log "started (pid ${pid}); run '$0 wait' to block until it answers"
}

cmd_wait() {
    validate_env
    local pid
    pid="$(running_pid)" || {
        tail_log 40
        die "broker is not running (no live process in ${PID_FILE}); start it with '$0 start'"
    }
    [[ -x "${CASEBRIDGE_PYTHON}" ]] \
        || die "python not found at ${CASEBRIDGE_PYTHON}: create the venv (it needs aiokafka) or set CASEBRIDGE_PYTHON"
    local t0 rc=0
    t0="${EPOCHREALTIME/./}"
    "${CASEBRIDGE_PYTHON}" "${SCRIPT_DIR}/ready.py" --bootstrap "127.0.0.1:${KAFKA_PORT}" \
        --timeout "${KAFKA_WAIT_TIMEOUT}" --pid "${pid}" >&2 || rc=$?
    case "${rc}" in
        0) log "broker ready on 127.0.0.1:${KAFKA_PORT} (waited $(((${EPOCHREALTIME/./} - t0) / 1000)) ms)" ;;
        1)
            tail_log 60
            die "broker (pid ${pid}) did not answer on 127.0.0.1:${KAFKA_PORT} within ${KAFKA_WAIT_TIMEOUT}s (log tail above; full log ${LOG_FILE})"
            ;;
        2)
            rm -f "${PID_FILE}"
            tail_log 60
            die "broker process ${pid} died while starting (log tail above; full log ${LOG_FILE})"
            ;;
        *) die "readiness probe failed (exit ${rc}); is aiokafka installed in ${CASEBRIDGE_PYTHON}?" ;;
    esac
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "${PID_FILE}"
        log "not running (run dir ${KAFKA_DIR})"
        return 0
    fi
    log "stopping broker pid ${pid} (graceful, up to ${KAFKA_STOP_TIMEOUT}s)"
    kill -TERM "${pid}" 2>/dev/null || true
    local i
    for ((i = 0; i < KAFKA_STOP_TIMEOUT * 10; i++)); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
        log "broker still alive after ${KAFKA_STOP_TIMEOUT}s: sending SIGKILL"
        kill -KILL "${pid}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "${pid}" 2>/dev/null && die "could not kill broker pid ${pid}"
    fi
    rm -f "${PID_FILE}"
    log "stopped"
}

# Exit status: 0 running, 3 not running (LSB convention).
cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        local answering="no"
        port_in_use "${KAFKA_PORT}" && answering="yes"
        printf 'kafka: running pid=%s bootstrap=127.0.0.1:%s controller=127.0.0.1:%s port_open=%s run_dir=%s\n' \
            "${pid}" "${KAFKA_PORT}" "${KAFKA_CONTROLLER_PORT}" "${answering}" "${KAFKA_DIR}"
        return 0
    fi
    local formatted="no"
    is_formatted && formatted="yes"
    printf 'kafka: stopped formatted=%s run_dir=%s\n' "${formatted}" "${KAFKA_DIR}"
    return 3
}

cmd_logs() {
    [[ -f "${LOG_FILE}" ]] || die "no log file yet: ${LOG_FILE}"
    tail -n "${1:-100}" "${LOG_FILE}"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "${cmd}" in
        fetch) cmd_fetch ;;
        format) cmd_format ;;
        start) cmd_start ;;
        wait) cmd_wait ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        logs) cmd_logs "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage
            die "unknown command '${cmd}'"
            ;;
    esac
}

main "$@"
