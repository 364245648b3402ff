#!/bin/sh
# Installs what the observability checks run: promtool + prometheus (Debian's prometheus package)
# and docker-compose. Only with apt-get as root; otherwise it says what is missing and carries on
# (outside CI the tests needing a missing tool are skipped with the reason; in CI they fail).
set -eu
missing=""
for tool in promtool prometheus docker-compose; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing (apt-get: prometheus docker-compose)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus docker-compose >/dev/null
else
    echo "missing:$missing; install Debian's prometheus and docker-compose packages to run those checks" >&2
fi
