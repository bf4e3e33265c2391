#!/usr/bin/env bash
# Debian's PostgreSQL and nginx, for a team's services (scripts/team.sh) and the tests that start
# them (tests/test_serving/test_team.py, the PostgreSQL decision store's tests). Only the
# programs are wanted: team.sh runs its own database cluster and nginx from a directory of its
# own, so the packages' system services are kept from starting (they would take ports 5432
# and 80 on the machine, and nothing here uses them).
set -euo pipefail

have_postgres() {
    # Debian keeps the server programs out of PATH, under /usr/lib/postgresql/VERSION/bin
    command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_nginx() {
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]
}

missing=()
have_postgres || missing+=(postgresql)
have_nginx || missing+=(nginx)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_services.sh: ${missing[*]} missing and this is not root;" >&2
    echo "  run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# invoke-rc.d asks policy-rc.d whether a package may start its service: 101 = no. Only while
# these packages install, and only if the machine has no policy of its own.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
# another apt (a second test run, the other services) may hold the lock for a while: wait for it
apt-get -o DPkg::Lock::Timeout=300 update -q
apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
have_postgres && have_nginx
