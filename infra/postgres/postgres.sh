#!/usr/bin/env bash
# Local PostgreSQL cluster for CaseBridge dev/tests (Debian's postgresql, private data dir/port).
#
# Usage: infra/postgres/postgres.sh install|init|start|wait|stop|status|bootstrap|urls|logs
#
# Environment (all optional):
#   PG_PORT               TCP port on 127.0.0.1                        (default 15432)
#   CASEBRIDGE_RUN_DIR    state dir; PostgreSQL uses $CASEBRIDGE_RUN_DIR/pg (default <repo>/.run)
#   PG_OS_USER            OS user running the server when invoked as root, used by `init`
#                         (default: postgres if it exists, else casebridge, created on demand);
#                         afterwards the owner of the data directory is used
#   PG_BIN_DIR            PostgreSQL binaries (default: newest /usr/lib/postgresql/*/bin)
#   PG_WAIT_TIMEOUT       seconds for `wait` and for start/stop         (default 60)
#
# Authentication: scram-sha-256 for every connection (socket, 127.0.0.1, ::1); no trust, no peer.
# Passwords are generated on first use into $CASEBRIDGE_RUN_DIR/secrets/postgres/<role>.password
# (dirs 0700, files 0600) and never printed: `postgres.password` (superuser, set-up only, made by
# `init`), and one per role made by `bootstrap`: casebridge_owner (owns the database and tables,
# runs migrations), casebridge_intake, casebridge_cases, casebridge_audit (audit log writer),
# casebridge_signer, casebridge_auditor (read-only), casebridge_caseworkers (the caseworkers'
# read path: its agency's cases only, by row-level security), casebridge_console (the console's
# accounts and sessions). Table rights come from the
# migrations.
# A cluster initialised by an older version of this script with `trust` auth is converted on
# `init`/`start`: the superuser gets its password, pg_hba.conf is rewritten to scram only.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"

PG_PORT="${PG_PORT:-15432}"
CASEBRIDGE_RUN_DIR="${CASEBRIDGE_RUN_DIR:-${REPO_ROOT}/.run}"
PG_WAIT_TIMEOUT="${PG_WAIT_TIMEOUT:-60}"

PG_DIR="${CASEBRIDGE_PG_DIR:-${CASEBRIDGE_RUN_DIR}/pg}"
PGDATA_DIR="${PG_DIR}/data"
SOCKET_DIR="${PG_DIR}/socket"
LOG_FILE="${PG_DIR}/postgres.log"
SUPERUSER="postgres"
DB_NAME="casebridge"
OWNER_ROLE="casebridge_owner"
# One login role per service; what each may do on which table is granted by the migrations
# (infra/migrations/versions/0011_service_roles.py, 0015_row_level_security.py).
SERVICE_ROLES=(casebridge_intake casebridge_cases casebridge_audit casebridge_signer casebridge_auditor
    casebridge_caseworkers casebridge_console)
# The single application role of earlier versions: never created any more, disabled if found.
RETIRED_ROLE="casebridge_app"
SECRETS_DIR="${CASEBRIDGE_RUN_DIR}/secrets"
PG_SECRETS_DIR="${SECRETS_DIR}/postgres"
# Written next to PG_VERSION once the cluster uses password authentication; a cluster without it
# was made by an older version of this script with `trust` auth and is converted on init/start.
AUTH_MARKER_NAME="casebridge-auth"
AUTH_METHOD="scram-sha-256"

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { printf '[postgres] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    # The header comment block, without the leading '# '.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
}

validate_env() {
    if ! [[ "${PG_PORT}" =~ ^[0-9]+$ ]] || ((PG_PORT < 1 || PG_PORT > 65535)); then
        die "PG_PORT=${PG_PORT} is not a valid TCP port"
    fi
    [[ "${CASEBRIDGE_RUN_DIR}" == /* ]] \
        || die "CASEBRIDGE_RUN_DIR must be an absolute path (got '${CASEBRIDGE_RUN_DIR}')"
    # Unix socket paths are limited to 107 bytes.
    local sock="${SOCKET_DIR}/.s.PGSQL.${PG_PORT}"
    ((${#sock} <= 107)) \
        || die "socket path ${sock} is ${#sock} bytes, over the 107-byte Unix limit: use a shorter CASEBRIDGE_RUN_DIR"
}

find_bin_dir() {
    if [[ -n "${PG_BIN_DIR:-}" ]]; then
        [[ -x "${PG_BIN_DIR}/initdb" ]] || die "PG_BIN_DIR=${PG_BIN_DIR} has no initdb"
        printf '%s\n' "${PG_BIN_DIR}"
        return 0
    fi
    local initdb
    initdb="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n1)"
    [[ -n "${initdb}" ]] || return 1
    dirname "${initdb}"
}

bin_dir() {
    find_bin_dir || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run '$0 install'"
}

# Root cannot run initdb/postgres: pick (and create if needed) an unprivileged OS user.
os_user() {
    if ((EUID != 0)); then
        id -un
        return 0
    fi
    # An existing cluster keeps running as the user that owns its data directory.
    if [[ -d "${PGDATA_DIR}" ]]; then
        local owner
        owner="$(stat -c %U "${PGDATA_DIR}")"
        if [[ "${owner}" != root ]]; then
            printf '%s\n' "${owner}"
            return 0
        fi
    fi
    if [[ -n "${PG_OS_USER:-}" ]]; then
        id -u "${PG_OS_USER}" >/dev/null 2>&1 || die "PG_OS_USER=${PG_OS_USER} does not exist"
        printf '%s\n' "${PG_OS_USER}"
    elif id -u postgres >/dev/null 2>&1; then
        printf 'postgres\n'
    else
        if ! id -u casebridge >/dev/null 2>&1; then
            log "creating system user 'casebridge' to run PostgreSQL"
            useradd --system --no-create-home --shell /usr/sbin/nologin casebridge \
                || die "could not create system user 'casebridge'"
        fi
        printf 'casebridge\n'
    fi
}

# Run a command as the server's OS user.
as_pg() {
    local user
    user="$(os_user)"
    # cd /: the caller's cwd may not be readable by the server user.
    if ((EUID == 0)); then
        (cd / && runuser -u "${user}" -- "$@")
    else
        (cd / && "$@")
    fi
}

cmd_install() {
    if find_bin_dir >/dev/null; then
        log "PostgreSQL binaries present: $(find_bin_dir)"
        return 0
    fi
    ((EUID == 0)) || die "PostgreSQL is not installed and installing needs root: sudo apt-get install -y postgresql"
    log "installing PostgreSQL with apt-get (no default 'main' cluster)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q postgresql-common >/dev/null || die "apt-get install postgresql-common failed"
    # Do not let the package create and start a cluster on 5432: we run our own.
    if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
        sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
            /etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -q postgresql >/dev/null || die "apt-get install postgresql failed"
    find_bin_dir >/dev/null || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
    log "installed: $(find_bin_dir)"
}

is_initialized() { [[ -f "${PGDATA_DIR}/PG_VERSION" ]]; }

write_conf() {
    # Regenerated on every init/start so that PG_PORT/CASEBRIDGE_RUN_DIR changes apply.
    local tmp="${PGDATA_DIR}/casebridge.conf.tmp"
    cat >"${tmp}" <<EOF
# Generated by infra/postgres/postgres.sh: do not edit, change the script instead.
listen_addresses = '127.0.0.1'
port = ${PG_PORT}
unix_socket_directories = '${SOCKET_DIR}'
max_connections = 100
shared_buffers = 256MB
fsync = on
synchronous_commit = on
full_page_writes = on
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
logging_collector = off
password_encryption = scram-sha-256
EOF
    install_pg_file "${tmp}" "${PGDATA_DIR}/casebridge.conf"
}

# Move a file into the data directory, private and owned by the server's OS user.
install_pg_file() {
    chmod 0600 "$1"
    if ((EUID == 0)); then chown "$(os_user):" "$1"; fi
    mv -f "$1" "$2"
}

write_hba() {
    # Regenerated on every init/start: password (SCRAM) authentication for everyone, nothing
    # else. No replication lines: nothing here streams WAL.
    local tmp="${PGDATA_DIR}/pg_hba.conf.tmp"
    cat >"${tmp}" <<EOF
# Generated by infra/postgres/postgres.sh: do not edit, change the script instead.
# Every connection authenticates with a password (SCRAM-SHA-256): no trust, no peer.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 ${AUTH_METHOD}
host    all       all   127.0.0.1/32  ${AUTH_METHOD}
host    all       all   ::1/128       ${AUTH_METHOD}
EOF
    install_pg_file "${tmp}" "${PGDATA_DIR}/pg_hba.conf"
}

# --- secrets -----------------------------------------------------------------------------------

password_file() { printf '%s/%s.password\n' "${PG_SECRETS_DIR}" "$1"; }

new_password() {
    # 256 bits from the kernel's CSPRNG, hex: safe as is in URLs, SQL literals and env files.
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

# Create the role's password file (0600, dirs 0700) unless it exists; an existing one is reused.
ensure_password() {
    local role="$1" file tmp
    file="$(password_file "${role}")"
    mkdir -p "${PG_SECRETS_DIR}"
    chmod 0700 "${SECRETS_DIR}" "${PG_SECRETS_DIR}"
    if [[ ! -s "${file}" ]]; then
        tmp="${file}.tmp.$$"
        (umask 077 && new_password >"${tmp}")
        mv -f "${tmp}" "${file}"
        log "generated the password of ${role}: ${file}"
    fi
    chmod 0600 "${file}"
    read_password "${role}" >/dev/null  # validates it
}

# The role's password (whitespace stripped), on stdout.
read_password() {
    local file pw
    file="$(password_file "$1")"
    if [[ ! -s "${file}" ]]; then
        [[ "$1" != "${SUPERUSER}" ]] \
            || die "no password file ${file} for the superuser: '$0 stop' then '$0 start' sets a new one"
        die "no password file ${file} for role $1: '$0 bootstrap' makes it"
    fi
    pw="$(tr -d '[:space:]' <"${file}")"
    # URL-unreserved characters only: the services put the password into a connection URL and
    # this script into SQL literals, neither of which then needs escaping.
    [[ "${pw}" =~ ^[A-Za-z0-9._~-]{16,}$ ]] \
        || die "${file}: a password must be 16 or more of A-Z a-z 0-9 . _ ~ - (delete the file to get a new one)"
    printf '%s' "${pw}"
}

# SQL that sets the superuser's password; a failing statement must not reach the server log
# with the password in it.
superuser_password_sql() {
    local pw
    pw="$(read_password "${SUPERUSER}")"
    printf "SET log_min_error_statement = panic;\n"
    printf "SET password_encryption = '%s';\n" "${AUTH_METHOD}"
    printf "ALTER ROLE %s PASSWORD '%s';\n" "${SUPERUSER}" "${pw}"
}

auth_marker() { printf '%s/%s\n' "${PGDATA_DIR}" "${AUTH_MARKER_NAME}"; }

uses_password_auth() {
    [[ "$(cat "$(auth_marker)" 2>/dev/null)" == "${AUTH_METHOD}" ]]
}

write_marker() {
    local tmp="${PGDATA_DIR}/${AUTH_MARKER_NAME}.tmp"
    printf '%s\n' "${AUTH_METHOD}" >"${tmp}"
    install_pg_file "${tmp}" "$(auth_marker)"
}

# Set the superuser's password with the server stopped (single-user mode), whatever pg_hba.conf
# says: converts a `trust` cluster of an older version of this script, and recovers a cluster
# whose superuser password file was lost.
set_superuser_password_offline() {
    local out
    ensure_password "${SUPERUSER}"
    if ! out="$(superuser_password_sql | as_pg "$(bin_dir)/postgres" --single -D "${PGDATA_DIR}" \
        -c log_min_error_statement=panic -c log_min_messages=fatal postgres 2>&1)" \
        || grep -qE '(ERROR|FATAL|PANIC):' <<<"${out}"; then
        printf '%s\n' "${out}" >&2
        die "could not set the superuser's password in single-user mode (output above)"
    fi
}

# Bring a stopped cluster to password authentication; sets AUTH_CHANGED=1 when it had to.
# (A status return would be called in a `&&`/`||` list, where bash ignores `set -e` inside.)
AUTH_CHANGED=0
ensure_password_auth_offline() {
    if ! uses_password_auth; then
        log "converting ${PGDATA_DIR} from trust to ${AUTH_METHOD} authentication"
        set_superuser_password_offline
        write_hba
        write_marker
        AUTH_CHANGED=1
    elif [[ ! -s "$(password_file "${SUPERUSER}")" ]]; then
        log "superuser password file missing: setting a new superuser password"
        set_superuser_password_offline
        AUTH_CHANGED=1
    fi
}

# The same for a running server: only a `trust` cluster can be converted while it runs (it lets
# the script in without a password); then pg_hba.conf is reloaded.
ensure_password_auth_online() {
    uses_password_auth && return 0
    log "converting the running cluster ${PGDATA_DIR} from trust to ${AUTH_METHOD} authentication"
    ensure_password "${SUPERUSER}"
    superuser_password_sql | psql_super -d postgres
    write_conf
    write_hba
    as_pg "$(bin_dir)/pg_ctl" reload -D "${PGDATA_DIR}" >/dev/null
    write_marker
    verify_superuser_login
}

verify_superuser_login() {
    psql_super -d postgres -tA -c 'SELECT 1' >/dev/null \
        || die "the superuser cannot log in with $(password_file "${SUPERUSER}"); see ${LOG_FILE}"
}

check_reachable_by() {
    # Every parent of the run dir must be traversable by the server's OS user.
    local user="$1" dir="$2"
    if ((EUID == 0)) && ! runuser -u "${user}" -- test -x "${dir}"; then
        die "OS user '${user}' cannot reach ${dir} (a parent directory is not world-executable): use a CASEBRIDGE_RUN_DIR outside it, or chmod o+x the parents"
    fi
}

cmd_init() {
    validate_env
    local bin user
    bin="$(bin_dir)"
    user="$(os_user)"
    if is_initialized; then
        log "already initialised: ${PGDATA_DIR} (PostgreSQL $(cat "${PGDATA_DIR}/PG_VERSION"))"
        if is_running; then
            ensure_password_auth_online
        else
            ensure_password_auth_offline
        fi
        return 0
    fi
    if [[ -d "${PGDATA_DIR}" ]] && [[ -n "$(ls -A "${PGDATA_DIR}")" ]]; then
        die "${PGDATA_DIR} is not empty but has no PG_VERSION (half-initialised?); inspect it, delete it, then re-run '$0 init'"
    fi
    mkdir -p "${CASEBRIDGE_RUN_DIR}"
    mkdir -p "${PG_DIR}" "${PGDATA_DIR}" "${SOCKET_DIR}"
    if ((EUID == 0)); then
        chown "${user}:" "${PG_DIR}" "${PGDATA_DIR}" "${SOCKET_DIR}"
    fi
    chmod 0700 "${PGDATA_DIR}"
    check_reachable_by "${user}" "${PG_DIR}"
    ensure_password "${SUPERUSER}"
    # initdb runs as the server's OS user, which cannot read the run dir's secrets when the
    # script runs as root: it gets a private copy for the run, next to the data directory.
    local pwfile="${PG_DIR}/.initdb-password"
    (umask 077 && read_password "${SUPERUSER}" >"${pwfile}")
    if ((EUID == 0)); then chown "${user}:" "${pwfile}"; fi
    log "initdb ${PGDATA_DIR} as OS user '${user}' ($("${bin}/postgres" --version))"
    local out rc=0
    out="$(as_pg "${bin}/initdb" -D "${PGDATA_DIR}" --username="${SUPERUSER}" \
        --auth="${AUTH_METHOD}" --pwfile="${pwfile}" --encoding=UTF8 --locale=C.UTF-8 \
        --data-checksums 2>&1)" || rc=$?
    rm -f "${pwfile}"
    if ((rc != 0)); then
        printf '%s\n' "${out}" >&2
        die "initdb failed (output above)"
    fi
    printf "\n# CaseBridge settings (generated)\ninclude_if_exists = 'casebridge.conf'\n" \
        >>"${PGDATA_DIR}/postgresql.conf"
    write_conf
    write_hba
    write_marker
    log "initialised ${PGDATA_DIR} (${AUTH_METHOD}; superuser password in $(password_file "${SUPERUSER}"))"
}

# Succeeds when the postmaster of our data dir is running.
is_running() {
    is_initialized || return 1
    as_pg "$(bin_dir)/pg_ctl" status -D "${PGDATA_DIR}" >/dev/null 2>&1
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

tail_log() {
    if [[ -f "${LOG_FILE}" ]]; then
        printf -- '----- last %s lines of %s -----\n' "${1:-30}" "${LOG_FILE}" >&2
        tail -n "${1:-30}" "${LOG_FILE}" >&2 || true
        printf -- '-----\n' >&2
    fi
}

cmd_start() {
    validate_env
    is_initialized || die "no cluster in ${PGDATA_DIR}: run '$0 init' first"
    if is_running; then
        ensure_password_auth_online
        log "already running (127.0.0.1:${PG_PORT}, data ${PGDATA_DIR})"
        return 0
    fi
    if port_in_use "${PG_PORT}"; then
        die "port 127.0.0.1:${PG_PORT} is already in use by another process; find it with: ss -ltnp 'sport = :${PG_PORT}'"
    fi
    write_conf
    ensure_password_auth_offline
    write_hba
    # pg_ctl must be able to create/append the log file as the server user.
    touch "${LOG_FILE}"
    if ((EUID == 0)); then chown "$(os_user):" "${LOG_FILE}"; fi
    log "starting on 127.0.0.1:${PG_PORT}, log ${LOG_FILE}"
    # setsid: keep the postmaster out of the caller's process group/session. The inner shell
    # closes inherited descriptors above 2 so that the postmaster does not keep a caller's lock
    # or pipe open for its whole lifetime.
    # shellcheck disable=SC2016  # $$ and "$@" are expanded by the inner shell
    if ! as_pg setsid bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec ${fd}>&-"; done
        exec "$@"' pg-start "$(bin_dir)/pg_ctl" start -D "${PGDATA_DIR}" -l "${LOG_FILE}" \
        -w -t "${PG_WAIT_TIMEOUT}" </dev/null >/dev/null 2>&1; then
        tail_log 30
        die "PostgreSQL did not start (log tail above; full log ${LOG_FILE})"
    fi
    ((AUTH_CHANGED == 0)) || verify_superuser_login
    log "started"
}

cmd_wait() {
    validate_env
    local deadline=$((SECONDS + PG_WAIT_TIMEOUT))
    while ((SECONDS < deadline)); do
        if pg_isready_cmd -q; then
            log "ready on 127.0.0.1:${PG_PORT}"
            return 0
        fi
        if ! is_running; then
            tail_log 30
            die "PostgreSQL is not running (data ${PGDATA_DIR}); start it with '$0 start'"
        fi
        sleep 0.2
    done
    tail_log 30
    die "PostgreSQL did not accept connections on 127.0.0.1:${PG_PORT} within ${PG_WAIT_TIMEOUT}s"
}

pg_isready_cmd() {
    "$(bin_dir)/pg_isready" -h 127.0.0.1 -p "${PG_PORT}" -U "${SUPERUSER}" -d postgres -t 2 "$@"
}

cmd_stop() {
    if ! is_running; then
        log "not running (data ${PGDATA_DIR})"
        return 0
    fi
    log "stopping (fast shutdown)"
    if ! as_pg "$(bin_dir)/pg_ctl" stop -D "${PGDATA_DIR}" -m fast -w -t "${PG_WAIT_TIMEOUT}" >/dev/null; then
        log "fast shutdown timed out after ${PG_WAIT_TIMEOUT}s: trying immediate shutdown"
        as_pg "$(bin_dir)/pg_ctl" stop -D "${PGDATA_DIR}" -m immediate -w -t 30 >/dev/null \
            || die "could not stop PostgreSQL (data ${PGDATA_DIR}); see ${LOG_FILE}"
    fi
    log "stopped"
}

# Exit status: 0 running, 3 not running (LSB convention).
cmd_status() {
    validate_env
    if is_running; then
        local ready="no"
        pg_isready_cmd -q && ready="yes"
        printf 'postgres: running port=127.0.0.1:%s accepting=%s data=%s\n' "${PG_PORT}" "${ready}" "${PGDATA_DIR}"
        return 0
    fi
    local initialised="no"
    is_initialized && initialised="yes"
    printf 'postgres: stopped initialised=%s data=%s\n' "${initialised}" "${PGDATA_DIR}"
    return 3
}

psql_super() {
    # Superuser session over TCP with the superuser's password; stops at the first error.
    local pw
    pw="$(read_password "${SUPERUSER}")"
    PGPASSWORD="${pw}" PGCONNECT_TIMEOUT=10 "$(bin_dir)/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "${PG_PORT}" -U "${SUPERUSER}" "$@"
}

# SQL creating/converging the login roles, each with the password in its file. Fed to psql on
# stdin (never on a command line); the server logs no statement text, even of a failing one.
roles_sql() {
    local role pw
    printf "SET log_min_error_statement = panic;\nSET log_statement = 'none';\n"
    printf "SET password_encryption = '%s';\n" "${AUTH_METHOD}"
    for role in "${OWNER_ROLE}" "${SERVICE_ROLES[@]}"; do
        printf "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s; END IF; END \$\$;\n" \
            "${role}" "${role}"
        # Attributes and password re-asserted every time: converges on drift, and the database
        # always agrees with the file.
        pw="$(read_password "${role}")"
        printf "ALTER ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '%s';\n" \
            "${role}" "${pw}"
    done
    # The retired shared role of earlier versions: it can no longer log in; migration 0011
    # revokes its rights, and once it holds none in any database it is dropped.
    printf "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN ALTER ROLE %s NOLOGIN PASSWORD NULL; END IF; END \$\$;\n" \
        "${RETIRED_ROLE}" "${RETIRED_ROLE}"
    printf "DO \$\$ BEGIN IF EXISTS (SELECT FROM pg_roles r WHERE r.rolname = '%s' AND NOT EXISTS (SELECT FROM pg_shdepend d WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid)) THEN DROP ROLE %s; END IF; END \$\$;\n" \
        "${RETIRED_ROLE}" "${RETIRED_ROLE}"
}

cmd_bootstrap() {
    validate_env
    is_running || die "PostgreSQL is not running: run '$0 start' first"
    pg_isready_cmd -q || die "PostgreSQL does not accept connections yet: run '$0 wait' first"
    local role
    for role in "${OWNER_ROLE}" "${SERVICE_ROLES[@]}"; do
        ensure_password "${role}"
    done
    roles_sql | psql_super -d postgres
    # CREATE DATABASE cannot run inside a DO block / transaction.
    if [[ "$(psql_super -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '${DB_NAME}'")" != "1" ]]; then
        log "creating database ${DB_NAME}"
        psql_super -d postgres -c "CREATE DATABASE ${DB_NAME} OWNER ${OWNER_ROLE} ENCODING 'UTF8' TEMPLATE template0"
    fi
    local services
    services="$(IFS=,; printf '%s' "${SERVICE_ROLES[*]}")"
    psql_super -d "${DB_NAME}" <<EOF
ALTER DATABASE ${DB_NAME} OWNER TO ${OWNER_ROLE};
REVOKE ALL ON DATABASE ${DB_NAME} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE ${DB_NAME} TO ${OWNER_ROLE};
GRANT CONNECT ON DATABASE ${DB_NAME} TO ${services};
-- PostgreSQL 15: public is owned by pg_database_owner (= ${OWNER_ROLE}) and PUBLIC cannot CREATE.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ${services};
DO \$\$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '${RETIRED_ROLE}') THEN
        REVOKE ALL ON DATABASE ${DB_NAME} FROM ${RETIRED_ROLE};
        REVOKE ALL ON SCHEMA public FROM ${RETIRED_ROLE};
    END IF;
END \$\$;
EOF
    log "bootstrapped database ${DB_NAME} (owner ${OWNER_ROLE}; roles ${services}; passwords in ${PG_SECRETS_DIR})"
    cmd_urls
}

# Where to connect, never with a password: role R's password is the content of
# $CASEBRIDGE_DB_PASSWORD_DIR/R.password.
cmd_urls() {
    validate_env
    printf 'CASEBRIDGE_DB_URL=postgresql+asyncpg://127.0.0.1:%s/%s\n' "${PG_PORT}" "${DB_NAME}"
    printf 'CASEBRIDGE_DB_ADMIN_URL=postgresql://127.0.0.1:%s/postgres\n' "${PG_PORT}"
    printf 'CASEBRIDGE_DB_PASSWORD_DIR=%s\n' "${PG_SECRETS_DIR}"
    printf 'CASEBRIDGE_DB_ROLES=%s\n' "$(IFS=,; printf '%s' "${SUPERUSER},${OWNER_ROLE},${SERVICE_ROLES[*]}")"
}

cmd_logs() {
    [[ -f "${LOG_FILE}" ]] || die "no log file yet: ${LOG_FILE}"
    tail -n "${1:-100}" "${LOG_FILE}"
}

relocate_if_unreachable() {
    # Run as root from a checkout under a private directory (a mktemp dir, a 0700 home), the
    # server's OS user cannot reach <run dir>/pg. Then the server's files live under
    # /var/lib/casebridge/<hash of the run dir>/pg instead: the same place on every call, so
    # start, stop and status agree.
    [[ -n "${CASEBRIDGE_PG_DIR:-}" ]] && return 0
    ((EUID == 0)) || return 0
    [[ "${cmd_name}" == install ]] && return 0
    local user
    user="$(os_user)"
    mkdir -p "${CASEBRIDGE_RUN_DIR}"
    if ! runuser -u "${user}" -- test -x "${CASEBRIDGE_RUN_DIR}"; then
        local key
        key="$(printf '%s' "${CASEBRIDGE_RUN_DIR}" | sha256sum | cut -c1-12)"
        PG_DIR="/var/lib/casebridge/${key}/pg"
        PGDATA_DIR="${PG_DIR}/data"
        SOCKET_DIR="${PG_DIR}/socket"
        LOG_FILE="${PG_DIR}/postgres.log"
        mkdir -p "/var/lib/casebridge/${key}"
        chmod 0755 /var/lib/casebridge "/var/lib/casebridge/${key}"
        printf '%s\n' "${CASEBRIDGE_RUN_DIR}" >"/var/lib/casebridge/${key}/run-dir"
    fi
}

main() {
    local cmd="${1:-}"
    cmd_name="${cmd}"
    relocate_if_unreachable
    [[ $# -gt 0 ]] && shift
    case "${cmd}" in
        install) cmd_install ;;
        init) cmd_init ;;
        start) cmd_start ;;
        wait) cmd_wait ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        bootstrap) cmd_bootstrap ;;
        urls) cmd_urls ;;
        logs) cmd_logs "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage
            die "unknown command '${cmd}'"
            ;;
    esac
}

main "$@"
