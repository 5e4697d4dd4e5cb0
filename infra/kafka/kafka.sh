#!/usr/bin/env bash
# Local Apache Kafka (KRaft, combined broker+controller nodes) for CaseBridge dev/tests: one node
# by default, or a cluster of three on this machine (KAFKA_BROKERS=3).
# Secured: clients connect with SASL_SSL + SCRAM-SHA-512 (TLS from a private CA made here with
# openssl), StandardAuthorizer with no access without an ACL, one super user (casebridge-admin).
#
# Usage: infra/kafka/kafka.sh fetch|format|start|wait|stop|status|env|describe|logs
#
# Environment (all optional):
#   KAFKA_PORT             client listener port                      (default 19092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port            (default 19093)
#   KAFKA_BROKERS          1 (one node, the default) or 3 (three nodes, one KRaft cluster: each
#                          a broker and one of three controller voters). When unset and the run
#                          dir holds a cluster, the cluster's recorded settings are used.
#   KAFKA_PORTS            with KAFKA_BROKERS=3: the nodes' client ports, comma-separated
#                          (default KAFKA_PORT, KAFKA_PORT+2, KAFKA_PORT+4)
#   KAFKA_CONTROLLER_PORTS with KAFKA_BROKERS=3: the nodes' controller ports, comma-separated
#                          (default KAFKA_CONTROLLER_PORT, +2, +4; fixed once formatted)
#   CASEBRIDGE_RUN_DIR     state dir (default <repo>/.run): Kafka's data in kafka/ (a cluster's
#                          nodes in kafka/node-1 ... node-3), the CA and broker certificate in
#                          tls/, the admin's client settings (password) in
#                          secrets/kafka/casebridge-admin.properties
#   KAFKA_HEAP_OPTS        JVM heap flags, per node   (default -Xms256m -Xmx512m; cluster -Xms128m -Xmx512m)
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
KAFKA_WAIT_TIMEOUT="${KAFKA_WAIT_TIMEOUT:-60}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_LIBS_DIR="${KAFKA_LIBS_DIR:-${SCRIPT_DIR}/libs}"
CASEBRIDGE_PYTHON="${CASEBRIDGE_PYTHON:-${REPO_ROOT}/.venv/bin/python}"
JAVA="${JAVA:-java}"

POM="${SCRIPT_DIR}/pom.xml"
MARKER="${KAFKA_LIBS_DIR}/.fetched"
# Everything Kafka keeps in the run dir. One node lives right in it (data/, server.properties,
# kafka.log, kafka.pid, formatted.env, broker-keystore.pem); a cluster's nodes each have the same
# files in node-<id>/, and cluster.env records the cluster (its size, ports, cluster id).
KAFKA_ROOT="${CASEBRIDGE_RUN_DIR}/kafka"
CLUSTER_INFO="${KAFKA_ROOT}/cluster.env"

# A value recorded in cluster.env (empty when absent).
recorded() {
    [[ -f "${CLUSTER_INFO}" ]] || return 0
    sed -n "s/^$1=//p" "${CLUSTER_INFO}" | head -n1
}

# A run dir that holds a cluster keeps using it when KAFKA_BROKERS is not given (so `status`,
# `env` and `stop` need no settings); unset port lists then come from the record too.
if [[ -f "${CLUSTER_INFO}" ]]; then
    if [[ -z "${KAFKA_BROKERS:-}" || "${KAFKA_BROKERS}" == "$(recorded KAFKA_BROKERS)" ]]; then
        KAFKA_BROKERS="$(recorded KAFKA_BROKERS)"
        KAFKA_PORTS="${KAFKA_PORTS:-$(recorded KAFKA_PORTS)}"
        KAFKA_CONTROLLER_PORTS="${KAFKA_CONTROLLER_PORTS:-$(recorded KAFKA_CONTROLLER_PORTS)}"
    fi
fi
KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
if [[ "${KAFKA_BROKERS}" == 1 ]]; then
    KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
else
    # Three JVMs on a small machine: start small, same ceiling.
    KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
fi

# The current node's files and ports, set by use_node (or use_dir): every per-node function
# below works on these.
NODE_ID=1
NODE_PORT="${KAFKA_PORT}"
NODE_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT}"
KAFKA_DIR="${KAFKA_ROOT}"
DATA_DIR="${KAFKA_DIR}/data"
PROPS="${KAFKA_DIR}/server.properties"
LOG_FILE="${KAFKA_DIR}/kafka.log"
PID_FILE="${KAFKA_DIR}/kafka.pid"
FORMAT_INFO="${KAFKA_DIR}/formatted.env"
# The broker's PEM keystore: its private key and certificate in one file (0600), rebuilt from
# tls/broker.key + tls/broker.pem on every start.
KEYSTORE="${KAFKA_DIR}/broker-keystore.pem"

# Every node's client and controller port (index 0 = node 1), set by setup_topology.
CLIENT_PORTS=()
CONTROLLER_PORTS=()

# TLS material shared with the clients (layout fixed by the project's conventions).
TLS_DIR="${CASEBRIDGE_RUN_DIR}/tls"
CA_PEM="${TLS_DIR}/ca.pem"
CA_KEY="${TLS_DIR}/ca.key"
BROKER_PEM="${TLS_DIR}/broker.pem"
BROKER_KEY="${TLS_DIR}/broker.key"
TLS_DAYS=825

# The one super user, for set-up only (topics, credentials, ACLs). Its librdkafka-style client
# settings, password included, live in a 0600 file; the broker also logs in with it (inter-broker
# SCRAM on the client listener, PLAIN on the loopback controller listener).
SECRETS_DIR="${CASEBRIDGE_RUN_DIR}/secrets"
KAFKA_SECRETS_DIR="${SECRETS_DIR}/kafka"
ADMIN_USER="casebridge-admin"
ADMIN_CONFIG="${KAFKA_SECRETS_DIR}/${ADMIN_USER}.properties"
# Listener names (the config keys use them lower-cased: listener.name.client.*).
CLIENT_LISTENER="CLIENT"
CONTROLLER_LISTENER="CONTROLLER"

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
    [[ "${CASEBRIDGE_RUN_DIR}" == /* ]] \
        || die "CASEBRIDGE_RUN_DIR must be an absolute path (got '${CASEBRIDGE_RUN_DIR}')"
    # The path is written into Java properties files, where a backslash is an escape.
    [[ "${CASEBRIDGE_RUN_DIR}" != *[\\$'\n']* ]] \
        || die "CASEBRIDGE_RUN_DIR must not contain a backslash or a newline (got '${CASEBRIDGE_RUN_DIR}')"
    if is_cluster; then
        # setup_topology checked the lists; all six ports must differ.
        local -A seen=()
        local port
        for port in "${CLIENT_PORTS[@]}" "${CONTROLLER_PORTS[@]}"; do
            [[ -z "${seen[${port}]:-}" ]] \
                || die "port ${port} is given twice (KAFKA_PORTS=${KAFKA_PORTS}, KAFKA_CONTROLLER_PORTS=${KAFKA_CONTROLLER_PORTS}): every node needs its own client and controller port"
            seen[${port}]=1
        done
        return 0
    fi
    validate_port KAFKA_PORT "${KAFKA_PORT}"
    validate_port KAFKA_CONTROLLER_PORT "${KAFKA_CONTROLLER_PORT}"
    [[ "${KAFKA_PORT}" != "${KAFKA_CONTROLLER_PORT}" ]] \
        || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both are ${KAFKA_PORT})"
}

is_cluster() { [[ "${KAFKA_BROKERS}" != 1 ]]; }

# Node ids 1..KAFKA_BROKERS.
node_ids() { seq 1 "${KAFKA_BROKERS}"; }

# "127.0.0.1:p1,127.0.0.1:p2,..." for the given ports.
host_ports() {
    local out="" port
    for port in "$@"; do out+="${out:+,}127.0.0.1:${port}"; done
    printf '%s\n' "${out}"
}

# Reads KAFKA_BROKERS and the port settings into CLIENT_PORTS / CONTROLLER_PORTS.
setup_topology() {
    case "${KAFKA_BROKERS}" in
        1)
            CLIENT_PORTS=("${KAFKA_PORT}")
            CONTROLLER_PORTS=("${KAFKA_CONTROLLER_PORT}")
            return 0
            ;;
        3) ;;
        *) die "KAFKA_BROKERS=${KAFKA_BROKERS}: only 1 (one node) or 3 (a three-node cluster) are supported" ;;
    esac
    validate_port KAFKA_PORT "${KAFKA_PORT}"
    validate_port KAFKA_CONTROLLER_PORT "${KAFKA_CONTROLLER_PORT}"
    local i
    if [[ -z "${KAFKA_PORTS:-}" ]]; then
        KAFKA_PORTS="$(for ((i = 0; i < KAFKA_BROKERS; i++)); do printf '%s\n' "$((KAFKA_PORT + 2 * i))"; done | paste -sd,)"
    fi
    if [[ -z "${KAFKA_CONTROLLER_PORTS:-}" ]]; then
        KAFKA_CONTROLLER_PORTS="$(for ((i = 0; i < KAFKA_BROKERS; i++)); do printf '%s\n' "$((KAFKA_CONTROLLER_PORT + 2 * i))"; done | paste -sd,)"
    fi
    IFS=, read -r -a CLIENT_PORTS <<<"${KAFKA_PORTS}"
    IFS=, read -r -a CONTROLLER_PORTS <<<"${KAFKA_CONTROLLER_PORTS}"
    ((${#CLIENT_PORTS[@]} == KAFKA_BROKERS)) \
        || die "KAFKA_PORTS=${KAFKA_PORTS} must list ${KAFKA_BROKERS} ports, one per node"
    ((${#CONTROLLER_PORTS[@]} == KAFKA_BROKERS)) \
        || die "KAFKA_CONTROLLER_PORTS=${KAFKA_CONTROLLER_PORTS} must list ${KAFKA_BROKERS} ports, one per node"
    for ((i = 0; i < KAFKA_BROKERS; i++)); do
        validate_port "KAFKA_PORTS[node $((i + 1))]" "${CLIENT_PORTS[i]}"
        validate_port "KAFKA_CONTROLLER_PORTS[node $((i + 1))]" "${CONTROLLER_PORTS[i]}"
    done
}

# Point the per-node variables at the node whose files are in $1.
use_dir() {
    KAFKA_DIR="$1"
    DATA_DIR="${KAFKA_DIR}/data"
    PROPS="${KAFKA_DIR}/server.properties"
    LOG_FILE="${KAFKA_DIR}/kafka.log"
    PID_FILE="${KAFKA_DIR}/kafka.pid"
    FORMAT_INFO="${KAFKA_DIR}/formatted.env"
    KEYSTORE="${KAFKA_DIR}/broker-keystore.pem"
}

# Point the per-node variables (files, id, ports) at node $1 (1-based).
use_node() {
    NODE_ID="$1"
    NODE_PORT="${CLIENT_PORTS[$1 - 1]}"
    NODE_CONTROLLER_PORT="${CONTROLLER_PORTS[$1 - 1]}"
    if is_cluster; then
        use_dir "${KAFKA_ROOT}/node-$1"
    else
        use_dir "${KAFKA_ROOT}"
    fi
}

# Where clients connect: every node's client listener.
bootstrap_servers() { host_ports "${CLIENT_PORTS[@]}"; }

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

# ----- TLS: a private CA and the broker's certificate ------------------------------------------

# Succeeds when the broker certificate exists, was issued by our CA, and is valid for another day.
broker_cert_ok() {
    [[ -s "${BROKER_PEM}" && -s "${BROKER_KEY}" && -s "${CA_PEM}" ]] || return 1
    openssl verify -CAfile "${CA_PEM}" "${BROKER_PEM}" >/dev/null 2>&1 || return 1
    openssl x509 -in "${BROKER_PEM}" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    # The certificate must belong to the key next to it.
    [[ "$(openssl x509 -in "${BROKER_PEM}" -noout -pubkey 2>/dev/null)" \
        == "$(openssl pkey -in "${BROKER_KEY}" -pubout 2>/dev/null)" ]]
}

# A new unencrypted PKCS#8 PEM EC P-256 key (what Kafka's PEM keystore reads without a password).
new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null \
        || die "openssl could not create a key at $1"
    chmod 0600 "$1"
}

# Creates tls/ca.{pem,key} when ca.pem is missing, and tls/broker.{pem,key} when missing,
# expiring within a day, or not issued by the current CA. Existing valid files are kept.
ensure_tls() {
    command -v openssl >/dev/null 2>&1 || die "openssl not found: apt-get install -y openssl"
    mkdir -p "${TLS_DIR}"
    chmod 0755 "${TLS_DIR}"
    local tmp
    if [[ ! -s "${CA_PEM}" ]]; then
        tmp="$(mktemp -d "${TLS_DIR}/.new-ca.XXXXXX")"
        log "creating a private CA in ${TLS_DIR} (EC P-256, ${TLS_DAYS} days)"
        new_key "${tmp}/ca.key"
        # A random suffix keeps the CAs of two run dirs apart in a trust store.
        if ! openssl req -x509 -new -sha256 -days "${TLS_DAYS}" -key "${tmp}/ca.key" \
            -subj "/O=CaseBridge/CN=CaseBridge local CA $(openssl rand -hex 4)" \
            -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -addext "subjectKeyIdentifier=hash" \
            -out "${tmp}/ca.pem" 2>"${tmp}/err"; then
            cat "${tmp}/err" >&2
            rm -rf "${tmp}"
            die "openssl could not create the CA certificate"
        fi
        chmod 0644 "${tmp}/ca.pem"
        # Old broker files were issued by the previous CA.
        rm -f "${BROKER_PEM}" "${BROKER_KEY}"
        mv -f "${tmp}/ca.key" "${CA_KEY}"
        mv -f "${tmp}/ca.pem" "${CA_PEM}"
        rm -rf "${tmp}"
    fi
    broker_cert_ok && return 0
    [[ -s "${CA_KEY}" ]] \
        || die "the broker certificate must be (re)issued but the CA key ${CA_KEY} is missing: delete ${TLS_DIR} to create a new CA (clients then need the new ca.pem), and restart"
    tmp="$(mktemp -d "${TLS_DIR}/.new-broker.XXXXXX")"
    log "issuing the broker certificate ${BROKER_PEM} (SAN DNS:localhost, IP:127.0.0.1; ${TLS_DAYS} days)"
    new_key "${tmp}/broker.key"
    cat >"${tmp}/ext.cnf" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
    if ! openssl req -new -sha256 -key "${tmp}/broker.key" -subj "/O=CaseBridge/CN=localhost" \
        -out "${tmp}/broker.csr" 2>"${tmp}/err" \
        || ! openssl x509 -req -sha256 -days "${TLS_DAYS}" -in "${tmp}/broker.csr" \
            -CA "${CA_PEM}" -CAkey "${CA_KEY}" -set_serial "0x$(openssl rand -hex 16)" \
            -extfile "${tmp}/ext.cnf" -out "${tmp}/broker.pem" 2>"${tmp}/err"; then
        cat "${tmp}/err" >&2
        rm -rf "${tmp}"
        die "openssl could not issue the broker certificate"
    fi
    chmod 0644 "${tmp}/broker.pem"
    mv -f "${tmp}/broker.key" "${BROKER_KEY}"
    mv -f "${tmp}/broker.pem" "${BROKER_PEM}"
    rm -rf "${tmp}"
    broker_cert_ok || die "the new broker certificate ${BROKER_PEM} does not verify against ${CA_PEM}"
}

# Kafka's file-based PEM keystore wants the key and the certificate chain in one file, the key
# as unencrypted PKCS#8 ("BEGIN PRIVATE KEY"; 4.1.1 fails to load a SEC1 "BEGIN EC PRIVATE KEY"):
# `openssl pkey` writes PKCS#8 whatever the input format.
write_keystore() {
    local tmp="${KEYSTORE}.tmp"
    (
        umask 077
        openssl pkey -in "${BROKER_KEY}" >"${tmp}" \
            || die "cannot read the broker key ${BROKER_KEY} (encrypted? it must not be)"
        cat "${BROKER_PEM}" "${CA_PEM}" >>"${tmp}"
    )
    mv -f "${tmp}" "${KEYSTORE}"
}

# ----- The super user's credentials ------------------------------------------------------------

# 32 random bytes, URL-safe base64 without padding: no character needs quoting anywhere
# (JAAS config, --add-scram, librdkafka and Java properties).
new_password() {
    head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

# Prints the admin password from its client settings file; fails when absent or malformed.
admin_password() {
    [[ -f "${ADMIN_CONFIG}" ]] || return 1
    local pw
    pw="$(sed -n 's/^sasl\.password=//p' "${ADMIN_CONFIG}" | head -n1)"
    [[ "${pw}" =~ ^[A-Za-z0-9_-]{20,}$ ]] || return 1
    printf '%s\n' "${pw}"
}

# (Re)writes the admin's client settings (librdkafka format) with the current port.
write_admin_config() {
    local password="$1"
    (
        umask 077
        mkdir -p "${KAFKA_SECRETS_DIR}"
    )
    chmod 0700 "${SECRETS_DIR}" "${KAFKA_SECRETS_DIR}"
    local tmp="${ADMIN_CONFIG}.tmp"
    (
        umask 077
        cat >"${tmp}" <<EOF
bootstrap.servers=$(bootstrap_servers)
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=${ADMIN_USER}
sasl.password=${password}
ssl.ca.location=${CA_PEM}
EOF
    )
    chmod 0600 "${tmp}"
    mv -f "${tmp}" "${ADMIN_CONFIG}"
}

# ----- server.properties -----------------------------------------------------------------------

write_properties() {
    local password="$1"
    mkdir -p "${DATA_DIR}"
    # Topic data (personal data), the properties and the keystore: for the broker's user only.
    chmod 0700 "${KAFKA_DIR}"
    # What differs between one node and a cluster: the quorum and the replication defaults.
    local topology replicas min_isr
    if is_cluster; then
        topology="# Node ${NODE_ID} of a ${KAFKA_BROKERS}-node KRaft cluster on this machine: every node is a broker and one
# of the ${KAFKA_BROKERS} controller voters (a majority, $((KAFKA_BROKERS / 2 + 1)), keeps the quorum). They share a
# kernel: a host crash can still lose writes not yet flushed to disk.
process.roles=broker,controller
node.id=${NODE_ID}
controller.quorum.bootstrap.servers=$(host_ports "${CONTROLLER_PORTS[@]}")"
        replicas=3
        min_isr=2
    else
        topology="# Single-node KRaft: one process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${NODE_CONTROLLER_PORT}"
        replicas=1
        min_isr=1
    fi
    local tmp="${PROPS}.tmp"
    # It holds the admin password: readable by its owner only.
    (
        umask 077
        cat >"${tmp}" <<EOF
# Generated by infra/kafka/kafka.sh on every start/format: do not edit, change kafka.sh instead.
# Holds the super user's password: mode 0600.
${topology}

# Listeners. CLIENT is the only one clients are told about: TLS + SCRAM-SHA-512, the broker's
# own (inter-broker) connections use it too, as the super user. CONTROLLER speaks only the
# KRaft/controller protocol, on loopback, and still requires a login (SASL PLAIN, static
# credentials below: SCRAM there cannot work before the metadata log is read, KAFKA-15513).
# A PLAINTEXT controller listener would need User:ANONYMOUS as a super user (the broker
# registers through it and that needs ClusterAction), and since KIP-919 an admin client can talk
# to the controller port directly (bootstrap.controllers): any local process could then create
# ACLs (tried on 4.1.1: it works). Hence PLAIN, never PLAINTEXT.
listeners=${CLIENT_LISTENER}://127.0.0.1:${NODE_PORT},${CONTROLLER_LISTENER}://127.0.0.1:${NODE_CONTROLLER_PORT}
advertised.listeners=${CLIENT_LISTENER}://127.0.0.1:${NODE_PORT},${CONTROLLER_LISTENER}://127.0.0.1:${NODE_CONTROLLER_PORT}
listener.security.protocol.map=${CLIENT_LISTENER}:SASL_SSL,${CONTROLLER_LISTENER}:SASL_PLAINTEXT
inter.broker.listener.name=${CLIENT_LISTENER}
controller.listener.names=${CONTROLLER_LISTENER}

# SASL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${ADMIN_USER}" password="${password}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="${ADMIN_USER}" password="${password}" user_${ADMIN_USER}="${password}";

# TLS (PEM files made by kafka.sh with openssl; the key is unencrypted PKCS#8, so no
# ssl.key.password). Clients are not asked for certificates: they authenticate with SCRAM.
ssl.keystore.type=PEM
ssl.keystore.location=${KEYSTORE}
ssl.truststore.type=PEM
ssl.truststore.location=${CA_PEM}
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https

# Authorisation: nothing without an ACL, except for the one super user (set-up and the
# broker's own connections).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:${ADMIN_USER}

log.dirs=${DATA_DIR}

# Topics. ${replicas} replica(s) each; an acks=all write is acknowledged once
# min.insync.replicas=${min_isr} of them have it.
auto.create.topics.enable=true
num.partitions=3
default.replication.factor=${replicas}
min.insync.replicas=${min_isr}
unclean.leader.election.enable=false
log.retention.hours=168
# Kafka's own default; >= 1 MiB payload plus record batch overhead.
message.max.bytes=1048588

# Internal topics: as many replicas as the others (on one node they must fit on it, or consumer
# groups and idempotent/transactional producers fail).
offsets.topic.replication.factor=${replicas}
transaction.state.log.replication.factor=${replicas}
transaction.state.log.min.isr=${min_isr}
share.coordinator.state.topic.replication.factor=${replicas}
share.coordinator.state.topic.min.isr=${min_isr}
group.initial.rebalance.delay.ms=0

# After a crash (kill -9) the controller refuses the restarted broker until the old
# registration's session expires (DuplicateBrokerRegistrationException): 9 s by default. In a
# cluster it is also about how long a killed node's partitions wait for a new leader.
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=1000
EOF
    )
    chmod 0600 "${tmp}"
    mv -f "${tmp}" "${PROPS}"
}

is_formatted() { [[ -f "${DATA_DIR}/meta.properties" ]]; }

# Formatted by this script with security on: the SCRAM credential of the admin is in the metadata
# log and its password in ADMIN_CONFIG. A data dir formatted before (no marker) has no credential.
is_formatted_secured() {
    is_formatted \
        && [[ -f "${FORMAT_INFO}" ]] \
        && grep -qx 'FORMATTED_SECURED=1' "${FORMAT_INFO}" \
        && admin_password >/dev/null
}

# Kafka cluster ids (and directory ids) are 16 random bytes in URL-safe base64 without padding
# (22 chars).
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        # A leading '-' would be parsed as a command-line option; Kafka avoids it as well.
        [[ "${id}" != -* ]] && break
    done
    printf '%s\n' "${id}"
}

# The node dirs of a cluster layout that exist (node-1, node-2, ...).
cluster_dirs() {
    local d
    for d in "${KAFKA_ROOT}"/node-*; do
        [[ -d "${d}" ]] && printf '%s\n' "${d}"
    done
    return 0
}

# One node and a cluster do not share a run dir: refuse to format or start the other kind.
check_layout() {
    if is_cluster; then
        if [[ -f "${KAFKA_ROOT}/data/meta.properties" ]]; then
            die "${KAFKA_ROOT} holds a single-node Kafka, not a ${KAFKA_BROKERS}-node cluster: use KAFKA_BROKERS=1, or another CASEBRIDGE_RUN_DIR, or stop it ('$0 stop') and delete ${KAFKA_ROOT} (loses its topics)"
        fi
        local recorded_n
        recorded_n="$(recorded KAFKA_BROKERS)"
        if [[ -n "${recorded_n}" && "${recorded_n}" != "${KAFKA_BROKERS}" ]]; then
            die "${KAFKA_ROOT} holds a ${recorded_n}-node cluster (${CLUSTER_INFO}), not ${KAFKA_BROKERS}: use KAFKA_BROKERS=${recorded_n}, or stop it and delete ${KAFKA_ROOT} (loses its topics)"
        fi
    elif [[ -f "${CLUSTER_INFO}" || -n "$(cluster_dirs)" ]]; then
        die "${KAFKA_ROOT} holds a Kafka cluster (node-*/, ${CLUSTER_INFO}), not a single node: leave KAFKA_BROKERS unset or use KAFKA_BROKERS=$(recorded KAFKA_BROKERS), or another CASEBRIDGE_RUN_DIR, or stop it ('$0 stop') and delete ${KAFKA_ROOT} (loses its topics)"
    fi
}

# Runs kafka.tools.StorageTool format for the current node; the extra arguments go after
# `format`. The admin password goes through a 0600 argument file, not the command line (visible
# in ps).
run_storage_format() {
    local password="$1" cluster_id="$2"
    shift 2
    local argfile="${KAFKA_DIR}/format.args"
    (
        umask 077
        # One argument a line; quoted, as java reads argument files like a shell would.
        printf '%s\n' "${STORAGE_TOOL_CLASS}" format "$@" -t "${cluster_id}" -c "\"${PROPS}\"" \
            --add-scram "'SCRAM-SHA-512=[name=\"${ADMIN_USER}\",password=\"${password}\"]'" \
            >"${argfile}"
    )
    local out rc=0
    out="$("${JAVA}" -Xmx256m -cp "${KAFKA_LIBS_DIR}/*" "@${argfile}" 2>&1)" || rc=$?
    rm -f "${argfile}"
    if ((rc != 0)); then
        printf '%s\n' "${out}" >&2
        die "kafka storage format of ${DATA_DIR} failed (output above)"
    fi
    # The controller port is recorded in the KRaft voter set at format time.
    printf 'FORMATTED_CONTROLLER_PORT=%s\nFORMATTED_CLUSTER_ID=%s\nFORMATTED_SECURED=1\n' \
        "${NODE_CONTROLLER_PORT}" "${cluster_id}" >"${FORMAT_INFO}"
    log "formatted: $(printf '%s' "${out}" | tail -n1)"
}

cmd_format() {
    validate_env
    check_layout
    if is_cluster; then
        cluster_format
        return 0
    fi
    use_node 1
    local pid
    if is_formatted_secured; then
        log "data dir already formatted: ${DATA_DIR} ($(grep '^cluster.id=' "${DATA_DIR}/meta.properties"))"
        if ! pid="$(running_pid)"; then
            # Keep the TLS files and the admin's settings (port) current for the next start.
            ensure_tls
            write_admin_config "$(admin_password)"
        fi
        return 0
    fi
    require_libs
    if is_formatted; then
        # A data dir from before the broker was secured (or whose admin password is lost) must
        # not come up open, nor half-working: it only ever held dev/test data, so start over.
        local why="it was formatted without security (no FORMATTED_SECURED=1 in ${FORMAT_INFO})"
        if [[ -f "${FORMAT_INFO}" ]] && grep -qx 'FORMATTED_SECURED=1' "${FORMAT_INFO}"; then
            why="the super user's password file ${ADMIN_CONFIG} is missing or unreadable"
        fi
        if pid="$(running_pid)"; then
            log "stopping the broker (pid ${pid}) that runs on this data dir"
            cmd_stop
            use_node 1
        fi
        log "WIPING ${KAFKA_DIR}: ${why}; reformatting it secured (dev/test data: its topics and offsets are lost)"
        rm -rf "${DATA_DIR}" "${FORMAT_INFO}" "${PROPS}" "${KEYSTORE}"
    elif [[ -d "${DATA_DIR}" ]] && [[ -n "$(ls -A "${DATA_DIR}")" ]]; then
        die "${DATA_DIR} is not empty but has no meta.properties (half-formatted or foreign data); inspect it, delete it, then re-run '$0 format'"
    fi
    ensure_tls
    # Reuse the admin's password when its file survived (only kafka/ was deleted): clients keep
    # working. Otherwise make a new one.
    local password
    password="$(admin_password)" || password="$(new_password)"
    write_admin_config "${password}"
    write_properties "${password}"
    write_keystore
    local cluster_id
    cluster_id="$(new_cluster_id)"
    log "formatting ${DATA_DIR} (cluster id ${cluster_id}), super user ${ADMIN_USER} (SCRAM-SHA-512)"
    run_storage_format "${password}" "${cluster_id}" --standalone
}

# Every node formatted secured, as one cluster (the cluster id recorded in cluster.env).
cluster_formatted_secured() {
    [[ -f "${CLUSTER_INFO}" ]] || return 1
    local cluster_id i
    cluster_id="$(recorded FORMATTED_CLUSTER_ID)"
    [[ -n "${cluster_id}" ]] || return 1
    for i in $(node_ids); do
        use_node "${i}"
        is_formatted_secured || return 1
        grep -qx "FORMATTED_CLUSTER_ID=${cluster_id}" "${FORMAT_INFO}" || return 1
    done
}

# (Re)writes cluster.env: what `status`, `env` and `stop` use when KAFKA_BROKERS is not given.
write_cluster_info() {
    local cluster_id="$1" tmp="${CLUSTER_INFO}.tmp"
    printf '%s\n' \
        "# Written by infra/kafka/kafka.sh: the Kafka cluster in this run dir (no secrets)." \
        "KAFKA_BROKERS=${KAFKA_BROKERS}" \
        "KAFKA_PORTS=$(IFS=,; printf '%s' "${CLIENT_PORTS[*]}")" \
        "KAFKA_CONTROLLER_PORTS=$(IFS=,; printf '%s' "${CONTROLLER_PORTS[*]}")" \
        "FORMATTED_CLUSTER_ID=${cluster_id}" \
        "FORMATTED_SECURED=1" >"${tmp}"
    mv -f "${tmp}" "${CLUSTER_INFO}"
}

# A cluster: every node formatted with the same cluster id, the same three initial controllers
# (a dynamic KRaft quorum, KIP-853) and the super user's SCRAM credential.
cluster_format() {
    local pid i
    if cluster_formatted_secured; then
        log "cluster already formatted: ${KAFKA_BROKERS} nodes in ${KAFKA_ROOT} (cluster.id=$(recorded FORMATTED_CLUSTER_ID))"
        if [[ -z "$(running_pids)" ]]; then
            ensure_tls
            write_admin_config "$(admin_password)"
        fi
        return 0
    fi
    require_libs
    if [[ -f "${CLUSTER_INFO}" ]]; then
        # Formatted once. Only a lost admin password is repaired (like a single node's); a node
        # whose data is gone or belongs elsewhere needs a person to look.
        local all_marked=1
        for i in $(node_ids); do
            use_node "${i}"
            if ! is_formatted || ! grep -qx 'FORMATTED_SECURED=1' "${FORMAT_INFO}" 2>/dev/null \
                || ! grep -qx "FORMATTED_CLUSTER_ID=$(recorded FORMATTED_CLUSTER_ID)" "${FORMAT_INFO}"; then
                all_marked=0
            fi
        done
        if ((!all_marked)) || admin_password >/dev/null; then
            die "the cluster in ${KAFKA_ROOT} is incomplete: node data is missing or from another format (see node-*/formatted.env and ${CLUSTER_INFO}); stop it ('$0 stop') and delete ${KAFKA_ROOT} to start over (loses its topics)"
        fi
        [[ -z "$(running_pids)" ]] || cmd_stop
        log "WIPING ${KAFKA_ROOT}: the super user's password file ${ADMIN_CONFIG} is missing or unreadable; reformatting the cluster (dev/test data: its topics and offsets are lost)"
        rm -rf "${KAFKA_ROOT}"/node-* "${CLUSTER_INFO}"
    elif [[ -n "$(cluster_dirs)" ]]; then
        # No cluster.env: a format that did not finish. Nothing ever ran on it.
        [[ -z "$(running_pids)" ]] || die "nodes run in ${KAFKA_ROOT} but it has no ${CLUSTER_INFO}; stop them ('$0 stop') first"
        log "removing the node dirs of an unfinished format in ${KAFKA_ROOT}"
        rm -rf "${KAFKA_ROOT}"/node-*
    fi
    ensure_tls
    local password cluster_id controllers="" dir_id
    password="$(admin_password)" || password="$(new_password)"
    write_admin_config "${password}"
    cluster_id="$(new_cluster_id)"
    local -a dir_ids=()
    for i in $(node_ids); do
        dir_id="$(new_cluster_id)"
        dir_ids+=("${dir_id}")
        controllers+="${controllers:+,}${i}@127.0.0.1:${CONTROLLER_PORTS[i - 1]}:${dir_id}"
    done
    log "formatting a ${KAFKA_BROKERS}-node cluster in ${KAFKA_ROOT} (cluster id ${cluster_id}, controllers ${KAFKA_CONTROLLER_PORTS}), super user ${ADMIN_USER} (SCRAM-SHA-512) on every node"
    mkdir -p "${KAFKA_ROOT}"
    chmod 0700 "${KAFKA_ROOT}"
    for i in $(node_ids); do
        use_node "${i}"
        write_properties "${password}"
        write_keystore
        run_storage_format "${password}" "${cluster_id}" --initial-controllers "${controllers}"
    done
    write_cluster_info "${cluster_id}"
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

# "dir pid" for every broker of this run dir that runs, whatever the layout (a single node,
# a cluster's nodes, or both after a botched switch): what `stop` stops.
running_pids() {
    local dir pid
    for dir in "${KAFKA_ROOT}" $(cluster_dirs); do
        use_dir "${dir}"
        if pid="$(running_pid)"; then
            printf '%s %s\n' "${dir}" "${pid}"
        fi
    done
    return 0
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

# Starts the current node's broker (its properties and keystore already written); returns once
# the process runs.
launch_node() {
    # Keep one previous log for post-mortems.
    if [[ -f "${LOG_FILE}" ]]; then
        mv -f "${LOG_FILE}" "${LOG_FILE}.1"
    fi
    local -a heap_opts
    read -r -a heap_opts <<<"${KAFKA_HEAP_OPTS}"
    local what="broker"
    is_cluster && what="node ${NODE_ID}"
    log "starting ${what} on 127.0.0.1:${NODE_PORT} (controller ${NODE_CONTROLLER_PORT}), log ${LOG_FILE}"
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
    local i pid
    for ((i = 0; i < 50; i++)); do
        [[ -s "${PID_FILE}" ]] && break
        sleep 0.1
    done
    pid="$(cat "${PID_FILE}" 2>/dev/null || true)"
    [[ -n "${pid}" ]] || die "${what} did not start (no pid file ${PID_FILE})"
    sleep 0.3
    if ! kill -0 "${pid}" 2>/dev/null; then
        tail_log 40
        die "${what} exited right after start (log tail above)"
    fi
    log "started ${what} (pid ${pid}); run '$0 wait' to block until it answers"
}

cmd_start() {
    validate_env
    check_layout
    if is_cluster; then
        cluster_start
        return 0
    fi
    use_node 1
    local pid
    if pid="$(running_pid)"; then
        is_formatted_secured \
            || die "the broker running on ${DATA_DIR} (pid ${pid}) was formatted without security; run '$0 format' (it stops the broker, wipes this dev/test data dir and reformats it secured), then '$0 start'"
        log "already running (pid ${pid}, 127.0.0.1:${NODE_PORT}, run dir ${KAFKA_DIR})"
        return 0
    fi
    rm -f "${PID_FILE}"
    require_libs
    is_formatted || die "data dir ${DATA_DIR} is not formatted: run '$0 format' first"
    is_formatted_secured \
        || die "data dir ${DATA_DIR} was formatted without security (or the super user's password file ${ADMIN_CONFIG} is gone); run '$0 format': it wipes this dev/test data dir and reformats it secured"
    if [[ -f "${FORMAT_INFO}" ]]; then
        local formatted_port
        formatted_port="$(sed -n 's/^FORMATTED_CONTROLLER_PORT=//p' "${FORMAT_INFO}")"
        if [[ -n "${formatted_port}" && "${formatted_port}" != "${NODE_CONTROLLER_PORT}" ]]; then
            die "${DATA_DIR} was formatted with KAFKA_CONTROLLER_PORT=${formatted_port} (now ${NODE_CONTROLLER_PORT}); the KRaft voter set keeps the old port. Use KAFKA_CONTROLLER_PORT=${formatted_port}, or stop, delete ${KAFKA_DIR} and start again (this loses all topics)"
        fi
    fi
    local port
    for port in "${NODE_PORT}" "${NODE_CONTROLLER_PORT}"; do
        if port_in_use "${port}"; then
            die "port 127.0.0.1:${port} is already in use by another process (not the broker of ${KAFKA_DIR}); find it with: ss -ltnp 'sport = :${port}'"
        fi
    done
    ensure_tls
    local password
    password="$(admin_password)"
    # The port may differ from the last run: keep the admin's client settings in step.
    write_admin_config "${password}"
    write_properties "${password}"
    write_keystore
    launch_node
}

# Starts every node of the cluster that does not run (a node killed earlier is started again).
cluster_start() {
    cluster_formatted_secured \
        || die "the ${KAFKA_BROKERS}-node cluster in ${KAFKA_ROOT} is not formatted (or the super user's password file ${ADMIN_CONFIG} is gone): run '$0 format' first"
    local formatted_ports
    formatted_ports="$(recorded KAFKA_CONTROLLER_PORTS)"
    if [[ "${formatted_ports}" != "$(IFS=,; printf '%s' "${CONTROLLER_PORTS[*]}")" ]]; then
        die "the cluster in ${KAFKA_ROOT} was formatted with KAFKA_CONTROLLER_PORTS=${formatted_ports} (now ${KAFKA_CONTROLLER_PORTS}); the KRaft voter set keeps them. Use KAFKA_CONTROLLER_PORTS=${formatted_ports} (or leave it unset), or stop, delete ${KAFKA_ROOT} and start again (this loses all topics)"
    fi
    require_libs
    local i pid port
    local -a to_start=()
    for i in $(node_ids); do
        use_node "${i}"
        if pid="$(running_pid)"; then
            log "node ${i} already running (pid ${pid}, 127.0.0.1:${NODE_PORT})"
            continue
        fi
        rm -f "${PID_FILE}"
        for port in "${NODE_PORT}" "${NODE_CONTROLLER_PORT}"; do
            if port_in_use "${port}"; then
                die "port 127.0.0.1:${port} (node ${i}) is already in use by another process; find it with: ss -ltnp 'sport = :${port}'"
            fi
        done
        to_start+=("${i}")
    done
    ((${#to_start[@]} > 0)) || return 0
    ensure_tls
    local password
    password="$(admin_password)"
    write_admin_config "${password}"
    # Client ports may change between starts (controller ports cannot): keep the record current.
    write_cluster_info "$(recorded FORMATTED_CLUSTER_ID)"
    for i in "${to_start[@]}"; do
        use_node "${i}"
        write_properties "${password}"
        write_keystore
        launch_node
    done
}

cmd_wait() {
    validate_env
    [[ -x "${CASEBRIDGE_PYTHON}" ]] \
        || die "python not found at ${CASEBRIDGE_PYTHON}: create the venv (it needs aiokafka) or set CASEBRIDGE_PYTHON"
    [[ -f "${ADMIN_CONFIG}" ]] || die "no super user client settings at ${ADMIN_CONFIG}: run '$0 format'"
    local i pid
    local -a pid_args=()
    for i in $(node_ids); do
        use_node "${i}"
        pid="$(running_pid)" || {
            tail_log 40
            die "broker ${i} is not running (no live process in ${PID_FILE}); start it with '$0 start'"
        }
        pid_args+=(--pid "${pid}")
    done
    local bootstrap t0 rc=0
    bootstrap="$(bootstrap_servers)"
    t0="${EPOCHREALTIME/./}"
    # Ready: every node accepts the super user, the cluster lists all its brokers, and a group
    # coordinator answers (which needs the offsets topic's replicas on every node).
    "${CASEBRIDGE_PYTHON}" "${SCRIPT_DIR}/ready.py" --bootstrap "${bootstrap}" \
        --client-config "${ADMIN_CONFIG}" --brokers "${KAFKA_BROKERS}" \
        --timeout "${KAFKA_WAIT_TIMEOUT}" "${pid_args[@]}" >&2 || rc=$?
    local what="broker"
    is_cluster && what="cluster"
    tail_all() {
        for i in $(node_ids); do
            use_node "${i}"
            tail_log "$1"
        done
    }
    case "${rc}" in
        0) log "${what} ready on ${bootstrap} (waited $(((${EPOCHREALTIME/./} - t0) / 1000)) ms)" ;;
        1)
            tail_all 60
            die "${what} did not answer on ${bootstrap} within ${KAFKA_WAIT_TIMEOUT}s (log tail above; full log(s) ${KAFKA_ROOT}/**/kafka.log)"
            ;;
        2)
            for i in $(node_ids); do
                use_node "${i}"
                if ! running_pid >/dev/null; then
                    rm -f "${PID_FILE}"
                    tail_log 60
                fi
            done
            die "a broker process died while starting (log tail above)"
            ;;
        4) die "the broker refuses the super user's credentials in ${ADMIN_CONFIG} (they do not match the data dir); stop the broker and delete ${KAFKA_ROOT} to reformat it (dev/test data only)" ;;
        5) die "the super user's client settings ${ADMIN_CONFIG} are unusable (message above); run '$0 format'" ;;
        *) die "readiness probe failed (exit ${rc}); is aiokafka installed in ${CASEBRIDGE_PYTHON}?" ;;
    esac
}

# Stops every broker of this run dir, whatever KAFKA_BROKERS says: all at once (SIGTERM, then
# SIGKILL after KAFKA_STOP_TIMEOUT).
cmd_stop() {
    local -a dirs=() pids=()
    local dir pid
    while read -r dir pid; do
        [[ -n "${pid}" ]] || continue
        dirs+=("${dir}")
        pids+=("${pid}")
    done < <(running_pids)
    # Forget stale pid files.
    for dir in "${KAFKA_ROOT}" $(cluster_dirs); do
        use_dir "${dir}"
        running_pid >/dev/null || rm -f "${PID_FILE}"
    done
    if ((${#pids[@]} == 0)); then
        log "not running (run dir ${KAFKA_ROOT})"
        return 0
    fi
    log "stopping broker pid(s) ${pids[*]} (graceful, up to ${KAFKA_STOP_TIMEOUT}s)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    local i alive
    for ((i = 0; i < KAFKA_STOP_TIMEOUT * 10; i++)); do
        alive=0
        for pid in "${pids[@]}"; do
            kill -0 "${pid}" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "${pid}" 2>/dev/null; then
            log "broker pid ${pid} still alive after ${KAFKA_STOP_TIMEOUT}s: sending SIGKILL"
            kill -KILL "${pid}" 2>/dev/null || true
        fi
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "${pid}" 2>/dev/null && die "could not kill broker pid ${pid}"
    done
    for dir in "${dirs[@]}"; do
        rm -f "${dir}/kafka.pid"
    done
    log "stopped"
}

# Exit status: 0 running, 3 not running (LSB convention). A cluster: one line per node, then a
# summary; 0 only when every node runs.
cmd_status() {
    if is_cluster; then
        cluster_status
        return
    fi
    use_node 1
    local pid
    if pid="$(running_pid)"; then
        local answering="no"
        port_in_use "${NODE_PORT}" && answering="yes"
        if ! is_formatted_secured; then
            printf 'kafka: running UNSECURED (formatted before security; run: %s format) pid=%s bootstrap=127.0.0.1:%s run_dir=%s\n' \
                "$0" "${pid}" "${NODE_PORT}" "${KAFKA_DIR}"
            return 0
        fi
        printf 'kafka: running pid=%s bootstrap=127.0.0.1:%s (SASL_SSL, SCRAM-SHA-512) controller=127.0.0.1:%s port_open=%s admin_config=%s run_dir=%s\n' \
            "${pid}" "${NODE_PORT}" "${NODE_CONTROLLER_PORT}" "${answering}" "${ADMIN_CONFIG}" "${KAFKA_DIR}"
        return 0
    fi
    local formatted="no"
    is_formatted && formatted="yes"
    is_formatted && ! is_formatted_secured && formatted="yes-without-security"
    printf 'kafka: stopped formatted=%s run_dir=%s\n' "${formatted}" "${KAFKA_DIR}"
    return 3
}

cluster_status() {
    local i pid running=0 answering formatted
    for i in $(node_ids); do
        use_node "${i}"
        if pid="$(running_pid)"; then
            running=$((running + 1))
            answering="no"
            port_in_use "${NODE_PORT}" && answering="yes"
            printf 'kafka: node %s running pid=%s bootstrap=127.0.0.1:%s controller=127.0.0.1:%s port_open=%s run_dir=%s\n' \
                "${i}" "${pid}" "${NODE_PORT}" "${NODE_CONTROLLER_PORT}" "${answering}" "${KAFKA_DIR}"
        else
            formatted="no"
            is_formatted_secured && formatted="yes"
            printf 'kafka: node %s stopped formatted=%s run_dir=%s\n' "${i}" "${formatted}" "${KAFKA_DIR}"
        fi
    done
    local state="running"
    ((running == KAFKA_BROKERS)) || state="degraded"
    ((running > 0)) || state="stopped"
    printf 'kafka: cluster %s nodes=%s/%s bootstrap=%s (SASL_SSL, SCRAM-SHA-512) admin_config=%s run_dir=%s\n' \
        "${state}" "${running}" "${KAFKA_BROKERS}" "$(bootstrap_servers)" "${ADMIN_CONFIG}" "${KAFKA_ROOT}"
    ((running == KAFKA_BROKERS)) || return 3
}

# Connection settings as KEY=value lines: paths only, never a password.
cmd_env() {
    printf 'KAFKA_BOOTSTRAP_SERVERS=%s\n' "$(bootstrap_servers)"
    printf 'KAFKA_SECURITY_PROTOCOL=SASL_SSL\n'
    printf 'KAFKA_SASL_MECHANISM=SCRAM-SHA-512\n'
    printf 'KAFKA_SSL_CA_LOCATION=%s\n' "${CA_PEM}"
    printf 'KAFKA_ADMIN_CLIENT_CONFIG=%s\n' "${ADMIN_CONFIG}"
    if is_cluster; then
        printf 'KAFKA_BROKERS=%s\n' "${KAFKA_BROKERS}"
    fi
}

# One line: what this configuration runs (for stack.sh's log).
cmd_describe() {
    if is_cluster; then
        printf '%s-node cluster %s (controllers %s)\n' "${KAFKA_BROKERS}" "$(bootstrap_servers)" \
            "${KAFKA_CONTROLLER_PORTS}"
    else
        printf '127.0.0.1:%s (controller %s)\n' "${KAFKA_PORT}" "${KAFKA_CONTROLLER_PORT}"
    fi
}

cmd_logs() {
    if ! is_cluster; then
        use_node 1
        [[ -f "${LOG_FILE}" ]] || die "no log file yet: ${LOG_FILE}"
        tail -n "${1:-100}" "${LOG_FILE}"
        return 0
    fi
    local i
    for i in $(node_ids); do
        use_node "${i}"
        printf -- '===== node %s: %s =====\n' "${i}" "${LOG_FILE}"
        if [[ -f "${LOG_FILE}" ]]; then
            tail -n "${1:-100}" "${LOG_FILE}"
        else
            printf '(no log file yet)\n'
        fi
    done
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "${cmd}" in
        fetch | -h | --help | help) ;;
        *) setup_topology ;;
    esac
    case "${cmd}" in
        fetch) cmd_fetch ;;
        format) cmd_format ;;
        start) cmd_start ;;
        wait) cmd_wait ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        describe) cmd_describe ;;
        logs) cmd_logs "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage
            die "unknown command '${cmd}'"
            ;;
    esac
}

main "$@"
