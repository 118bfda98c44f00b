#!/usr/bin/env bash
# Installs a pinned Synapse homeserver into its own virtualenv for threadwright's Matrix tests.
#
# Synapse lives apart from the project venv so that its large, tightly pinned dependency tree
# (Twisted, etc.) never constrains or conflicts with threadwright's own dependencies.
# Idempotent: does nothing beyond printing the version when the pinned release is already there.
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPO_ROOT}/.ci/synapse-venv"
PYTHON="${PYTHON:-python3}"

installed_version() {
    "${VENV}/bin/python" -c \
        'import importlib.metadata as m; print(m.version("matrix-synapse"))' 2>/dev/null || true
}

if ! "${PYTHON}" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "Synapse ${SYNAPSE_VERSION} needs Python >= 3.10; ${PYTHON} is $("${PYTHON}" -V 2>&1)" >&2
    exit 1
fi

if [[ ! -x "${VENV}/bin/python" ]]; then
    echo "Creating Synapse virtualenv at ${VENV}"
    if ! "${PYTHON}" -m venv "${VENV}"; then
        rm -rf "${VENV}"
        echo "Could not create a virtualenv (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

if [[ "$(installed_version)" != "${SYNAPSE_VERSION}" ]]; then
    echo "Installing matrix-synapse==${SYNAPSE_VERSION}"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        --only-binary=:all: "matrix-synapse==${SYNAPSE_VERSION}"
fi

"${VENV}/bin/python" -c 'import synapse; print("synapse", synapse.__version__)'
