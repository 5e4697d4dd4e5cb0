#!/usr/bin/env bash
# Installs what CaseBridge needs on a fresh Debian machine, idempotently:
# the JDK and Maven for Kafka (if missing), and the Python virtualenv with the project.
# Kafka's jars and PostgreSQL itself are fetched/installed by infra/stack.sh up.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPO_ROOT}/.venv"
log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
    if [[ "$(id -u)" != 0 ]]; then
        log "need root (or sudo) to apt-get install $*"; exit 1
    fi
    if [[ ! -f /var/lib/apt/periodic/casebridge-updated ]]; then
        apt-get update -qq && mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/casebridge-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v java >/dev/null 2>&1 || { log "installing a JDK"; apt_install openjdk-17-jre-headless; }
command -v mvn >/dev/null 2>&1 || { log "installing Maven"; apt_install maven; }
# Debian's Prometheus: its promtool checks the alert rules, and the metrics test runs its own
# server (own config and data dir, free port); the package's systemd service is not used.
command -v prometheus >/dev/null 2>&1 || { log "installing Prometheus"; apt_install prometheus; }
# Debian's Chromium and its driver: the web console's browser test (Selenium) drives them.
command -v chromedriver >/dev/null 2>&1 || { log "installing Chromium and ChromeDriver"; apt_install chromium chromium-driver; }

PYTHON="${PYTHON:-python3}"
"${PYTHON}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { log "Python >= 3.11 is required (found $(${PYTHON} --version 2>&1))"; exit 1; }

stamp="${VENV}/.casebridge-installed"
# The exact versions (and hashes) of infra/requirements.lock, `make lock` to update it.
LOCK="${REPO_ROOT}/infra/requirements.lock"
want="$(cat "${REPO_ROOT}/pyproject.toml" "${LOCK}" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "${VENV}/bin/python" ]]; then
    log "creating ${VENV}"
    "${PYTHON}" -m venv "${VENV}"
fi
if [[ "$(cat "${stamp}" 2>/dev/null)" != "${want}" ]]; then
    log "installing Python packages"
    "${VENV}/bin/pip" install -q --upgrade pip
    "${VENV}/bin/pip" install -q --require-hashes -r "${LOCK}"
    "${VENV}/bin/pip" install -q --no-deps -e "${REPO_ROOT}"
    echo "${want}" >"${stamp}"
fi
log "ready"
