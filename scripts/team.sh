#!/usr/bin/env bash
# A team's services on this machine, each a process of its own with its state in one directory:
#   PostgreSQL   a cluster of its own: MLflow's store (database mlflow) and the decision store
#                (database decisions)
#   MLflow       tracking server and model registry on PostgreSQL; artifacts kept in the team
#                directory and served through the server, so no client needs the disk; every
#                request needs the team's credential (user parcelrisk, password in the team
#                directory's mlflow-password: MLFLOW_TRACKING_USERNAME/PASSWORD)
#   replicas     N single-worker `parcelrisk serve` on consecutive ports, one decision store
#   nginx        in front of the replicas: least connections, keep-alive to them
#
#   scripts/team.sh up       start what is not running (again: nothing starts twice)
#   scripts/team.sh status   what runs where (exit 1 when a piece is down, or the ready
#                            replicas decide with different models)
#   scripts/team.sh down     stop everything; the data stays for the next `up`
#
# Settings, by environment (defaults keep clear of `parcelrisk serve`'s 3000):
#   PARCELRISK_TEAM_DIR            state, logs, keys          (.team in the repository)
#   PARCELRISK_TEAM_PORT           nginx, the service's door  (3100)
#   PARCELRISK_TEAM_REPLICA_PORT   first replica; the next ones follow it  (3101)
#   PARCELRISK_TEAM_REPLICAS       how many replicas          (2; 0: database and MLflow only)
#   PARCELRISK_TEAM_MLFLOW_PORT    MLflow                     (5050)
#   PARCELRISK_TEAM_PG_PORT        PostgreSQL on 127.0.0.1    (5433)
#   PARCELRISK_TEAM_PARAMS         params.yaml of the replicas (the repository's)
#   PARCELRISK_PYTHON              the Python with the project installed (.venv/bin/python)
#   PARCELRISK_API_KEYS[_FILE]     the replicas' API keys (else made once, in the team directory)
# Everything listens on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEAM_DIR=${PARCELRISK_TEAM_DIR:-$ROOT/.team}
PORT=${PARCELRISK_TEAM_PORT:-3100}
REPLICA_PORT=${PARCELRISK_TEAM_REPLICA_PORT:-3101}
REPLICAS=${PARCELRISK_TEAM_REPLICAS:-2}
MLFLOW_PORT=${PARCELRISK_TEAM_MLFLOW_PORT:-5050}
PG_PORT=${PARCELRISK_TEAM_PG_PORT:-5433}
PARAMS=${PARCELRISK_TEAM_PARAMS:-$ROOT/params.yaml}
PY=${PARCELRISK_PYTHON:-$ROOT/.venv/bin/python}
MLFLOW_WORKERS=2 # MLflow's own default is 4; two cores are shared with the replicas
NGINX_OUT=" " # replicas nginx leaves out of its pool: starting, not answering yet
PG_USER=parcelrisk # owns the two databases; the cluster's superuser stays "postgres"

# --- where things are --------------------------------------------------------------------------
mkdir -p "$TEAM_DIR"
TEAM_DIR=$(cd "$TEAM_DIR" && pwd)
LOGS=$TEAM_DIR/logs
RUN=$TEAM_DIR/run # pid files: "PID PORT"
PG_DIR=$TEAM_DIR/pg
PG_DATA=$PG_DIR/data
PG_SOCKET=$PG_DIR/run
PGPASS=$TEAM_DIR/pgpass
NGINX_DIR=$TEAM_DIR/nginx
API_KEYS_FILE=$TEAM_DIR/api-keys
# MLflow's registry decides which model the replicas serve (they follow its champion alias), so
# it takes no request without the team's credential: MLflow's basic-auth app, one user, its
# password made at the first `up` (mode 0600) and handed to the replicas and to whoever trains
# and promotes (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, which MLflow's client reads)
MLFLOW_USER=parcelrisk
MLFLOW_PASSWORD_FILE=$TEAM_DIR/mlflow-password

MLFLOW_URL=http://127.0.0.1:$MLFLOW_PORT
# The decision store every replica shares (one decision chain, one event log for the live
# entity state): serving/postgres_store.py on the team's database. No password in the URL:
# libpq reads it from PGPASSFILE.
DECISIONS_URL=postgresql://$PG_USER@127.0.0.1:$PG_PORT/decisions

# --- small tools -------------------------------------------------------------------------------
say() { printf '%s\n' "$*"; }
# One line naming the piece and what went wrong, and where to look.
die() {
    local piece=$1 message=$2 log=${3:-}
    printf 'team.sh: %s: %s\n' "$piece" "$message" >&2
    if [ -n "$log" ] && [ -f "$log" ]; then
        printf '  log: %s (last lines below)\n' "$log" >&2
        tail -n 15 "$log" | sed 's/^/    /' >&2
    fi
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }
# `STATUS BODY` of GET PATH on 127.0.0.1:PORT, with one more HEADER line when given; fails
# when nothing answers. Bash's /dev/tcp: no curl on a fresh machine, and a Python start per
# poll would cost more than the poll.
http_get() {
    local port=$1 path=$2 header=${3:-} extra="" response
    [ -z "$header" ] || extra="$header"$'\r\n' # one more header line, e.g. Authorization
    response=$(
        {
            printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n%s\r\n' "$path" "$port" "$extra" >&3
            timeout 5 cat <&3
        } 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$port"
    ) || return 1
    [ -n "$response" ] || return 1
    local status=${response#HTTP/* }
    printf '%s %s\n' "${status%% *}" "${response#*$'\r\n\r\n'}"
}
port_taken() { (: 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Who holds a TCP port (LISTEN) on this machine, from /proc: no ss/lsof on a fresh machine.
port_holder() {
    local hex inode link pid
    hex=$(printf '%04X' "$1")
    inode=$(awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" {print $10; exit}' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    [ -n "$inode" ] || { echo "another process"; return; }
    for link in /proc/[0-9]*/fd/*; do
        if [ "$(readlink "$link" 2>/dev/null)" = "socket:[$inode]" ]; then
            pid=${link#/proc/}
            pid=${pid%%/*}
            echo "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-80))"
            return
        fi
    done
    echo "another user's process"
}
# A pid file's process is ours only while it runs with a path in our team directory in its
# command line (a pid left from a reboot may belong to anything now, another team's too: the
# directory is matched with its slash, so /x/team is not found in /x/team-b).
running() {
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 1
    read -r pid _ <"$pidfile" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # grep reads the file itself: `tr | grep -q` under pipefail failed when grep left early
    grep -qaF -- "$TEAM_DIR/" "/proc/$pid/cmdline" 2>/dev/null
}
# What is left of a piece whose leading process died alone (kill -9, the OOM killer): its
# children still in its process group (each piece leads a group of its own: setsid, or nginx's
# own daemon), e.g. an MLflow worker still holding the port. Only when the leader's pid is gone
# (a live leader is `running`'s to judge), and only members that are ours: working in, or
# started with, the team directory, or nginx workers of our nginx pid file.
orphans() {
    local pidfile=$1 leader pid
    [ -f "$pidfile" ] || return 0
    read -r leader _ <"$pidfile" || return 0
    [[ $leader =~ ^[0-9]+$ ]] || return 0
    # alive, unless a zombie (killed, not yet reaped by whoever adopted it)
    if kill -0 "$leader" 2>/dev/null && ! awk '{sub(/.*\) /, ""); exit $1 == "Z" ? 0 : 1}' "/proc/$leader/stat" 2>/dev/null; then
        return 0
    fi
    # the process group is the 3rd field after the command, which is in parentheses
    for pid in $(awk -v g="$leader" '{sub(/.*\) /, ""); if ($3 == g) {f = FILENAME; sub("/proc/", "", f); sub("/stat", "", f); print f}}' /proc/[0-9]*/stat 2>/dev/null); do
        if [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)/" == "$TEAM_DIR/"* ]] ||
            grep -qaF -- "=$TEAM_DIR/" "/proc/$pid/environ" 2>/dev/null ||
            grep -qaF -- "$TEAM_DIR/" "/proc/$pid/cmdline" 2>/dev/null ||
            { [ "$pidfile" = "$NGINX_DIR/nginx.pid" ] && grep -q '^nginx: ' "/proc/$pid/cmdline" 2>/dev/null; }; then
            echo "$pid"
        fi
    done
}
# Stop a dead piece's orphans (`orphans`), saying so; true when there were none.
stop_orphans() {
    local piece=$1 pidfile=$2 left
    left=$(orphans "$pidfile" | tr '\n' ' ')
    [ -n "${left// /}" ] || return 0
    say "$piece: its main process is gone; stopping what it left running: $left"
    # shellcheck disable=SC2086 # a list of pids
    kill -TERM $left 2>/dev/null || true
    for _ in $(seq 25); do
        left=$(for p in $left; do if kill -0 "$p" 2>/dev/null; then echo "$p"; fi; done)
        [ -z "$left" ] && return 0
        sleep 0.2
    done
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
}
pid_of() {
    local pid
    read -r pid _ <"$1" && echo "$pid"
}
port_of() {
    local port
    read -r _ port <"$1" && echo "$port"
}
# The processes under PID, all generations (BentoML's workers leave its process group).
descendants() {
    local child
    for child in $(cat "/proc/$1/task/"*/children 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}
# Start a command detached, leading a session of its own; its pid in $STARTED.
start_detached() {
    local log=$1
    shift
    setsid "$@" >>"$log" 2>&1 </dev/null &
    STARTED=$!
}
# SIGTERM to a piece's process group, then wait for it and every process under it to end;
# SIGKILL after TIMEOUT seconds.
stop_process() {
    local piece=$1 pidfile=$2 timeout=$3 pid pids left
    running "$pidfile" || {
        stop_orphans "$piece" "$pidfile"
        rm -f "$pidfile"
        return 0
    }
    pid=$(pid_of "$pidfile")
    pids="$pid $(descendants "$pid")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((timeout * 5))); do
        left=""
        for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 0.2
    done
    if [ -n "$left" ]; then
        say "  $piece: still running after ${timeout} s, killed:$left"
        kill -KILL -- "-$pid" 2>/dev/null || true
        for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
    fi
    rm -f "$pidfile"
}
# Until GET PATH on PORT answers (any status when ANY is given, else 200); dies naming the
# piece and its log if its process ends or TIMEOUT seconds pass.
wait_http() {
    local piece=$1 port=$2 path=$3 pid=$4 log=$5 timeout=$6 want=${7:-200} reply
    local deadline=$((SECONDS + timeout)) # in seconds: a poll may wait 5 s for its answer
    while [ "$SECONDS" -lt "$deadline" ]; do
        if reply=$(http_get "$port" "$path"); then
            [ "$want" = any ] || [ "${reply%% *}" = "$want" ] && return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$piece" "exited while starting" "$log"
        sleep 0.25
    done
    die "$piece" "not answering on 127.0.0.1:$port$path after $timeout s" "$log"
}

# --- the programs ------------------------------------------------------------------------------
pg_bin() {
    # Debian keeps the server programs out of PATH; the newest installed major version
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    elif command -v initdb >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}
nginx_bin() { command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }; }

require_programs() {
    if [ -z "$(pg_bin)" ] || [ -z "$(nginx_bin)" ]; then
        is_root || die "install" "PostgreSQL or nginx is missing and this is not root; as root: bash scripts/install_services.sh (apt-get install -y postgresql nginx)"
        say "== installing PostgreSQL and nginx from Debian (scripts/install_services.sh)"
        bash "$ROOT/scripts/install_services.sh" || die "install" "apt-get could not install postgresql and nginx (output above)"
    fi
    PG_BIN=$(pg_bin)
    NGINX=$(nginx_bin)
    [ -x "$PY" ] || die "python" "$PY not found: run \`make install\` first, or set PARCELRISK_PYTHON"
    [ -f "$PARAMS" ] || die "replicas" "params file $PARAMS not found (PARCELRISK_TEAM_PARAMS)"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "postgresql" "no 'postgres' OS user to run the server as (PostgreSQL refuses to run as root); install Debian's postgresql package"
    fi
}

# PostgreSQL refuses to run as root: as root its server runs as the "postgres" OS user.
as_pg() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# --- PostgreSQL --------------------------------------------------------------------------------
pg_running() { [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }
pg_port_running() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null; }
psql_admin() {
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET" -p "$(pg_port_running)" -U postgres -d postgres
}

up_postgres() {
    local log=$LOGS/postgres.log
    if pg_running; then
        [ "$(pg_port_running)" = "$PG_PORT" ] || die "postgresql" "already running on port $(pg_port_running), not $PG_PORT: run \`scripts/team.sh down\` first to change it"
        say "postgresql   already running"
        return
    fi
    mkdir -p "$PG_DIR" "$PG_SOCKET"
    touch "$log"
    if is_root; then
        chown postgres: "$PG_DIR" "$PG_SOCKET" "$log"
        # the server, as postgres, must reach its directory through every parent: name the
        # first one it cannot enter, from the top
        local dir="" part
        IFS=/ read -ra parts <<<"${PG_DIR#/}"
        for part in "${parts[@]}"; do
            dir=$dir/$part
            runuser -u postgres -- test -x "$dir" || die "postgresql" "the OS user postgres (the server runs as it: not as root) cannot enter $dir; use a PARCELRISK_TEAM_DIR it can reach (e.g. under /srv or /tmp) or allow it (chmod o+x $dir)"
        done
    fi
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        # Connections: over the socket (mode 0700, only this OS user: trust) or over TCP on
        # 127.0.0.1 with the password in $PGPASS (the services read it through PGPASSFILE)
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 >>"$log" 2>&1 ||
            die "postgresql" "initdb failed" "$log"
        echo "include_if_exists = 'team.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
    fi
    as_pg tee "$PG_DATA/team.conf" >/dev/null <<EOF
# written by scripts/team.sh at each start
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET'
unix_socket_permissions = 0700
EOF
    as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$log" -w -t 60 >>"$log" 2>&1 ||
        die "postgresql" "did not start on 127.0.0.1:$PG_PORT" "$log"
    # the role, its password (new the first time) and the two databases, each only if missing
    if [ ! -s "$PGPASS" ]; then
        (
            umask 077
            echo "127.0.0.1:*:*:$PG_USER:$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$PGPASS"
        )
    fi
    local password
    password=$(cut -d: -f5 "$PGPASS")
    psql_admin >>"$log" 2>&1 <<EOF || die "postgresql" "could not create the role and databases" "$log"
SELECT 'CREATE ROLE $PG_USER LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER')\gexec
ALTER ROLE $PG_USER PASSWORD '$password';
SELECT 'CREATE DATABASE mlflow OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\gexec
SELECT 'CREATE DATABASE decisions OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'decisions')\gexec
EOF
    say "postgresql   started: 127.0.0.1:$PG_PORT, databases mlflow and decisions"
}

down_postgres() {
    pg_running || return 0
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >>"$LOGS/postgres.log" 2>&1 ||
        die "postgresql" "did not stop" "$LOGS/postgres.log"
}

# --- MLflow ------------------------------------------------------------------------------------
up_mlflow() {
    local pidfile=$RUN/mlflow.pid log=$LOGS/mlflow.log
    if running "$pidfile"; then
        [ "$(port_of "$pidfile")" = "$MLFLOW_PORT" ] || die "mlflow" "already running on port $(port_of "$pidfile"), not $MLFLOW_PORT: run \`scripts/team.sh down\` first to change it"
        check_mlflow_credential
        say "mlflow       already running"
        return
    fi
    mkdir -p "$TEAM_DIR/mlflow/artifacts"
    chmod 700 "$TEAM_DIR/mlflow" # the model bundles: no other local account reads them
    ensure_mlflow_password
    # here, not with the other databases: a team from before the credential, whose PostgreSQL
    # kept running through the upgrade, gets it at MLflow's next start
    psql_admin >>"$LOGS/postgres.log" 2>&1 <<EOF || die "postgresql" "could not create the database mlflow_auth" "$LOGS/postgres.log"
SELECT 'CREATE DATABASE mlflow_auth OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow_auth')\gexec
EOF
    # MLflow's basic-auth app keeps its users in a database of its own (mlflow_auth); the
    # configuration holds no secret: the admin's password reaches the server by environment
    # (read once, when the user is first made)
    (
        umask 077
        cat >"$TEAM_DIR/mlflow/auth.ini" <<EOF
# written by scripts/team.sh at each start of MLflow
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = postgresql+psycopg://$PG_USER@127.0.0.1:$PG_PORT/mlflow_auth
admin_username = $MLFLOW_USER
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
    )
    # the backend URL holds no password: libpq reads it from PGPASSFILE
    (
        cd "$TEAM_DIR/mlflow"
        # no telemetry: nothing of a customs team's calls home
        export PGPASSFILE=$PGPASS MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false MLFLOW_DISABLE_TELEMETRY=true
        export MLFLOW_AUTH_CONFIG_PATH=$TEAM_DIR/mlflow/auth.ini
        MLFLOW_AUTH_ADMIN_PASSWORD=$(cat "$MLFLOW_PASSWORD_FILE")
        # signs the auth app's CSRF tokens; one for both workers, kept across restarts
        MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$TEAM_DIR/mlflow/flask-secret")
        export MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY
        start_detached "$log" "$PY" -m mlflow server --app-name basic-auth \
            --backend-store-uri "postgresql+psycopg://$PG_USER@127.0.0.1:$PG_PORT/mlflow" \
            --artifacts-destination "$TEAM_DIR/mlflow/artifacts" \
            --host 127.0.0.1 --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS"
        echo "$STARTED $MLFLOW_PORT" >"$pidfile"
    )
    # the first start creates MLflow's tables: about half a minute on a busy machine
    wait_http mlflow "$MLFLOW_PORT" /health "$(pid_of "$pidfile")" "$log" 240
    check_mlflow_credential
    say "mlflow       started: $MLFLOW_URL (artifacts in $TEAM_DIR/mlflow/artifacts)"
}

# MLflow's user is made once, with the password of its first start: a password file made anew
# since (lost, or another team directory's) would lock every replica out with 401s
check_mlflow_credential() {
    local reply status=none auth
    auth=$(printf '%s:%s' "$MLFLOW_USER" "$(cat "$MLFLOW_PASSWORD_FILE" 2>/dev/null)" | base64 -w0)
    # a worker still starting, or the first check of a password on a busy machine, can take a
    # while: until MLflow answers 200 (the credential holds) or 401 (it does not)
    for _ in $(seq 120); do
        if reply=$(http_get "$MLFLOW_PORT" "/api/2.0/mlflow/experiments/search?max_results=1" \
            "Authorization: Basic $auth"); then
            status=${reply%% *}
            case $status in
            200) return 0 ;;
            401 | 403) die "mlflow" "refuses the team's credential (HTTP $status): $MLFLOW_PASSWORD_FILE is not the password its user $MLFLOW_USER was made with (kept in the database mlflow_auth): put the first one back, or drop that database to make the user anew at the next start" "$LOGS/mlflow.log" ;;
            esac
        fi
        sleep 0.5
    done
    die "mlflow" "answers no request with the team's credential after 60 s (last: $status)" "$LOGS/mlflow.log"
}

ensure_mlflow_password() {
    local file
    for file in "$MLFLOW_PASSWORD_FILE" "$TEAM_DIR/mlflow/flask-secret"; do
        [ -s "$file" ] && continue
        (
            umask 077
            head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file"
        )
    done
}

# --- the replicas ------------------------------------------------------------------------------
api_keys_env() {
    # The operator's keys when given; else keys made once for this team, kept in its directory
    if [ -n "${PARCELRISK_API_KEYS:-}" ] || [ -n "${PARCELRISK_API_KEYS_FILE:-}" ]; then
        return
    fi
    if [ ! -s "$API_KEYS_FILE" ]; then
        (
            umask 077
            for role in scorer auditor inspector; do
                echo "$role:$role-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            done >"$API_KEYS_FILE"
        )
        say "api keys     made: $API_KEYS_FILE (one role:key a line)"
    fi
    export PARCELRISK_API_KEYS_FILE=$API_KEYS_FILE
}

ensure_secret_keys() {
    # Every replica signs one decision chain and pseudonymises consignees alike: they all read
    # the same audit and pseudonym keys (the invoking user's, as `make demo` makes them).
    local keys kind
    keys=$(cd "$ROOT" && PYTHONPATH=$ROOT "$PY" -m serving.main keys show 2>&1) ||
        die "keys" "$keys"
    for kind in pseudonym audit; do
        if grep -q "^$kind: missing" <<<"$keys"; then
            (cd "$ROOT" && PYTHONPATH=$ROOT "$PY" -m serving.main keys new "$kind") ||
                die "keys" "could not make the $kind key"
        fi
    done
}

replica_port() { echo $((REPLICA_PORT + $1 - 1)); }

up_replicas() {
    local i port dir pidfile log started=() missing=()
    api_keys_env
    for i in $(seq 1 "$REPLICAS"); do
        pidfile=$RUN/replica-$i.pid
        if running "$pidfile"; then
            [ "$(port_of "$pidfile")" = "$(replica_port "$i")" ] || die "replica $i" "already running on port $(port_of "$pidfile"), not $(replica_port "$i"): run \`scripts/team.sh down\` first to change it"
        else
            missing+=("$i")
        fi
    done
    # A replica binds its port seconds after it starts but answers nothing until its worker
    # has loaded the champion and replayed the decision store (a minute and more under load):
    # nginx sent it requests that hung until the client gave up (probe 41). A running nginx
    # leaves the starting ones out (`down`) until they answer; `up_nginx` puts them back.
    if [ ${#missing[@]} -gt 0 ] && running "$NGINX_DIR/nginx.pid"; then
        NGINX_OUT=" ${missing[*]} "
        reload_nginx || die "nginx" "reload failed (replicas ${missing[*]} not taken out while they start)" "$LOGS/nginx-error.log"
        say "nginx        replica(s) ${missing[*]} out of the pool while they start"
    fi
    for i in "${missing[@]}"; do
        port=$(replica_port "$i")
        dir=$TEAM_DIR/replicas/$i
        pidfile=$RUN/replica-$i.pid
        log=$LOGS/replica-$i.log
        mkdir -p "$dir/model"
        chmod 700 "$TEAM_DIR/replicas" # the champion's bundle each downloads: no other account reads it
        (
            cd "$ROOT"
            export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
            export MLFLOW_TRACKING_URI=$MLFLOW_URL PARCELRISK_AUDIT_DB=$DECISIONS_URL
            export PGPASSFILE=$PGPASS MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
            export MLFLOW_TRACKING_USERNAME=$MLFLOW_USER
            MLFLOW_TRACKING_PASSWORD=$(cat "$MLFLOW_PASSWORD_FILE")
            export MLFLOW_TRACKING_PASSWORD
            # a BentoML home each: a server empties the Prometheus directory in it as it
            # starts, which would wipe the metrics of a replica already running
            export BENTOML_DO_NOT_TRACK=True BENTOML_HOME=$dir/bentoml
            start_detached "$log" "$PY" -m serving.main serve --port "$port" --workers 1 \
                --params "$PARAMS" --tracking-uri "$MLFLOW_URL" --model-dir "$dir/model"
            echo "$STARTED $port" >"$pidfile"
        )
        started+=("$i")
    done
    # started together, waited for together: each imports, loads the champion and replays the
    # store for a while. /readyz answers once its worker does (200, or 503 with why: no
    # champion yet), and from then on a request gets an answer within serve.request_timeout_s
    for i in "${started[@]}"; do
        wait_http "replica $i" "$(replica_port "$i")" /readyz "$(pid_of "$RUN/replica-$i.pid")" "$LOGS/replica-$i.log" 300 any
    done
    NGINX_OUT=" "
    local how
    for i in $(seq 1 "$REPLICAS"); do
        how="already running"
        [[ " ${started[*]} " == *" $i "* ]] && how=started
        say "replica $i    $how: http://127.0.0.1:$(replica_port "$i") ($(replica_state "$i"))"
    done
}

replica_state() {
    local reply
    reply=$(http_get "$(replica_port "$1")" /readyz) || {
        echo "not answering"
        return
    }
    case ${reply%% *} in
    # the model it decides with: after a promotion, wait until every replica names the new one
    200) echo "ready: $(sed -n 's/.*"name": *"\([^"]*\)", *"version": *"\([^"]*\)".*/model \1 v\2/p' <<<"${reply#* }")" ;;
    *) echo "not ready: $(sed -n 's/.*"reason": *"\([^"]*\)".*/\1/p' <<<"${reply#* }")" ;;
    esac
}

# replicas beyond PARCELRISK_TEAM_REPLICAS (an earlier `up` with more): stopped once nginx
# no longer sends them anything
stop_extra_replicas() {
    local pidfile i
    for pidfile in "$RUN"/replica-*.pid; do
        [ -e "$pidfile" ] || continue
        i=${pidfile##*/replica-}
        i=${i%.pid}
        if [ "$i" -gt "$REPLICAS" ]; then
            stop_process "replica $i" "$pidfile" 15
            say "replica $i    stopped (PARCELRISK_TEAM_REPLICAS=$REPLICAS)"
        fi
    done
}

# --- nginx -------------------------------------------------------------------------------------
nginx_conf() {
    local i
    cat <<EOF
# written by scripts/team.sh at each \`up\`: edits here are lost
worker_processes 1; # one is plenty for loopback traffic; the cores go to the replicas
pid "$NGINX_DIR/nginx.pid";
error_log "$LOGS/nginx-error.log" warn;
events { worker_connections 4096; }
http {
    # the client's X-Request-Id when it sends one (the replicas log it and send it back),
    # else nginx's own: one id in nginx's access log and the replica's log
    map \$http_x_request_id \$team_request_id {
        "" \$request_id;
        default \$http_x_request_id;
    }
    log_format team '\$remote_addr [\$time_iso8601] "\$request" \$status \$body_bytes_sent '
                    'request_id=\$team_request_id upstream=\$upstream_addr '
                    'upstream_status=\$upstream_status upstream_s=\$upstream_response_time '
                    'total_s=\$request_time';
    access_log "$LOGS/nginx-access.log" team;
    client_body_temp_path "$NGINX_DIR/tmp/body";
    proxy_temp_path "$NGINX_DIR/tmp/proxy";
    fastcgi_temp_path "$NGINX_DIR/tmp/fastcgi";
    uwsgi_temp_path "$NGINX_DIR/tmp/uwsgi";
    scgi_temp_path "$NGINX_DIR/tmp/scgi";
    # Bodies up to 8 MB are buffered in memory, so a slow client holds nginx, not a replica;
    # the replicas answer 413 in the API's own shape above serve.max_body_bytes (5 MB)
    client_max_body_size 8m;
    client_body_buffer_size 8m;

    upstream parcelrisk {
        # least connections: a replica busy with a batch of 1,000 gets the next request last
        least_conn;
$(for i in $(seq 1 "$REPLICAS"); do
        # max_fails=0: never taken out of the pool for a failure (a 503 while it has no
        # champion); a failed request moves on to the next replica instead (below). down: a
        # replica starting, until its worker answers (up_replicas)
        down=""
        [[ $NGINX_OUT == *" $i "* ]] && down=" down"
        echo "        server 127.0.0.1:$(replica_port "$i") max_fails=0$down;"
    done)
        keepalive 64;
        # below uvicorn's 5 s: nginx never reuses a connection the replica is closing
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:$PORT;
        location / {
            proxy_pass http://parcelrisk;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Request-Id \$team_request_id;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            # Authorization, X-API-Key and the rest pass through unchanged.
            # A replica that refuses the connection or answers 503 (no champion yet, or its
            # decision store cannot write: nothing was stored either way) hands the request to
            # the next one; POST /score included, since nothing was decided. So does one that
            # has not answered 2 s after serve.request_timeout_s ($(request_timeout_s) s), by when
            # it would have answered 504 itself: it hangs (its worker not serving yet). /score
            # and /outcomes are idempotent per declaration and per result: a request it did
            # take is not decided or stored twice.
            proxy_next_upstream error timeout http_503 non_idempotent;
            proxy_connect_timeout 2s;
            proxy_read_timeout $(($(request_timeout_s) + 2))s;
            proxy_send_timeout $(($(request_timeout_s) + 2))s;
        }
    }
}
EOF
}

# serve.request_timeout_s of the replicas' params, whole seconds rounded up (read once)
request_timeout_s() {
    if [ -z "${REQUEST_TIMEOUT_S:-}" ]; then
        REQUEST_TIMEOUT_S=$(cd "$ROOT" && PYTHONPATH=$ROOT "$PY" -c 'import math, sys
from features.params import load_settings
print(math.ceil(load_settings(sys.argv[1], must_exist=True).serve.request_timeout_s))' "$PARAMS" 2>&1) ||
            die "replicas" "cannot read serve.request_timeout_s from $PARAMS: $REQUEST_TIMEOUT_S"
    fi
    echo "$REQUEST_TIMEOUT_S"
}

# nginx CONF ARGS...: our configuration, prefix and error log, never the system's
nginx_cmd() {
    local conf=$1
    shift
    "$NGINX" -p "$NGINX_DIR/" -c "$conf" -e "$LOGS/nginx-error.log" "$@"
}

# A running nginx on the configuration for $NGINX_OUT (a reload: requests in flight finish on
# the old one); nothing when it is unchanged.
reload_nginx() {
    request_timeout_s >/dev/null
    nginx_conf >"$NGINX_DIR/nginx.conf.new"
    nginx_cmd "$NGINX_DIR/nginx.conf.new" -t -q >>"$LOGS/nginx-error.log" 2>&1 || return 1
    if cmp -s "$NGINX_DIR/nginx.conf.new" "$NGINX_DIR/nginx.conf"; then
        rm -f "$NGINX_DIR/nginx.conf.new"
        return 0
    fi
    mv "$NGINX_DIR/nginx.conf.new" "$NGINX_DIR/nginx.conf"
    nginx_cmd "$NGINX_DIR/nginx.conf" -s reload >>"$LOGS/nginx-error.log" 2>&1
}

up_nginx() {
    local pidfile=$NGINX_DIR/nginx.pid log=$LOGS/nginx-error.log
    mkdir -p "$NGINX_DIR/tmp"
    request_timeout_s >/dev/null # dies here, not inside the configuration's text
    nginx_conf >"$NGINX_DIR/nginx.conf.new"
    nginx_cmd "$NGINX_DIR/nginx.conf.new" -t -q >>"$log" 2>&1 || die "nginx" "generated configuration refused ($NGINX_DIR/nginx.conf.new)" "$log"
    if running "$pidfile"; then
        if cmp -s "$NGINX_DIR/nginx.conf.new" "$NGINX_DIR/nginx.conf"; then
            rm -f "$NGINX_DIR/nginx.conf.new"
            say "nginx        already running: http://127.0.0.1:$PORT"
            return
        fi
        mv "$NGINX_DIR/nginx.conf.new" "$NGINX_DIR/nginx.conf"
        nginx_cmd "$NGINX_DIR/nginx.conf" -s reload >>"$log" 2>&1 || die "nginx" "reload failed" "$log"
        say "nginx        reloaded: http://127.0.0.1:$PORT -> $REPLICAS replicas"
        return
    fi
    mv "$NGINX_DIR/nginx.conf.new" "$NGINX_DIR/nginx.conf"
    # nginx puts itself in the background and writes its pid file
    nginx_cmd "$NGINX_DIR/nginx.conf" >>"$log" 2>&1 </dev/null || die "nginx" "did not start on 127.0.0.1:$PORT" "$log"
    for _ in $(seq 20); do
        [ -s "$pidfile" ] && break
        sleep 0.1
    done
    wait_http nginx "$PORT" /livez "$(pid_of "$pidfile")" "$log" 20 any
    say "nginx        started: http://127.0.0.1:$PORT -> $REPLICAS replicas"
}

down_nginx() {
    local pidfile=$NGINX_DIR/nginx.pid
    running "$pidfile" || {
        stop_orphans nginx "$pidfile"
        return 0
    }
    # QUIT: finish the requests in flight, then stop
    local pid
    pid=$(pid_of "$pidfile")
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" "$pid" 2>/dev/null
    rm -f "$pidfile"
}

# --- the commands ------------------------------------------------------------------------------
# Ports a piece that is not running yet would take: all checked before anything starts.
check_ports() {
    local taken=() i
    pg_running || { port_taken "$PG_PORT" && taken+=("PostgreSQL port $PG_PORT (PARCELRISK_TEAM_PG_PORT) is held by $(port_holder "$PG_PORT")"); }
    running "$RUN/mlflow.pid" || { port_taken "$MLFLOW_PORT" && taken+=("MLflow port $MLFLOW_PORT (PARCELRISK_TEAM_MLFLOW_PORT) is held by $(port_holder "$MLFLOW_PORT")"); }
    for i in $(seq 1 "$REPLICAS"); do
        running "$RUN/replica-$i.pid" || { port_taken "$(replica_port "$i")" && taken+=("replica $i's port $(replica_port "$i") (PARCELRISK_TEAM_REPLICA_PORT + $((i - 1))) is held by $(port_holder "$(replica_port "$i")")"); }
    done
    if [ "$REPLICAS" -gt 0 ]; then
        running "$NGINX_DIR/nginx.pid" || { port_taken "$PORT" && taken+=("nginx port $PORT (PARCELRISK_TEAM_PORT) is held by $(port_holder "$PORT")"); }
    fi
    if [ ${#taken[@]} -gt 0 ]; then
        printf 'team.sh: ports: %s\n' "${taken[@]}" >&2
        echo "  nothing was started; free them or choose other ports by those variables" >&2
        exit 1
    fi
}

cmd_up() {
    [[ $REPLICAS =~ ^[0-9]+$ ]] || die "replicas" "PARCELRISK_TEAM_REPLICAS must be a number, not '$REPLICAS'"
    require_programs
    mkdir -p "$LOGS" "$RUN"
    local pidfile
    for pidfile in "$RUN"/*.pid "$NGINX_DIR/nginx.pid"; do
        [ -e "$pidfile" ] && ! running "$pidfile" && stop_orphans "$(basename "$pidfile" .pid)" "$pidfile"
    done
    check_ports
    ensure_secret_keys
    up_postgres
    up_mlflow
    if [ "$REPLICAS" -gt 0 ]; then
        up_replicas
        up_nginx
    else
        down_nginx
    fi
    stop_extra_replicas
    say ""
    say "The team's services (state and logs in $TEAM_DIR; logs/ has one log per piece):"
    say "  export MLFLOW_TRACKING_URI=$MLFLOW_URL"
    say "  export PARCELRISK_AUDIT_DB=$DECISIONS_URL"
    say "  export PGPASSFILE=$PGPASS"
    say "  export MLFLOW_TRACKING_USERNAME=$MLFLOW_USER"
    say "  export MLFLOW_TRACKING_PASSWORD=\$(cat $MLFLOW_PASSWORD_FILE)"
    if [ "$REPLICAS" -gt 0 ]; then
        say "  scoring service: http://127.0.0.1:$PORT (nginx -> $REPLICAS replicas)"
        if [ "${PARCELRISK_API_KEYS_FILE:-}" = "$API_KEYS_FILE" ]; then
            say "  API keys: $API_KEYS_FILE"
        fi
        say "  replicas become ready when a champion is promoted on $MLFLOW_URL (status: scripts/team.sh status)"
    fi
}

cmd_down() {
    mkdir -p "$RUN"
    local pidfile i
    if running "$NGINX_DIR/nginx.pid"; then
        down_nginx
        say "nginx        stopped"
    else
        stop_orphans nginx "$NGINX_DIR/nginx.pid"
    fi
    # all replicas at once: SIGTERM lets each finish its requests in flight (at most
    # serve.request_timeout_s + 1), and they drain side by side
    for pidfile in "$RUN"/replica-*.pid; do
        [ -e "$pidfile" ] || continue
        i=${pidfile##*/replica-}
        i=${i%.pid}
        if running "$pidfile"; then
            (
                stop_process "replica $i" "$pidfile" 20
                say "replica $i    stopped"
            ) &
        else
            stop_orphans "replica $i" "$pidfile"
        fi
    done
    wait
    rm -f "$RUN"/replica-*.pid
    if running "$RUN/mlflow.pid"; then
        stop_process mlflow "$RUN/mlflow.pid" 20
        say "mlflow       stopped"
    else
        stop_orphans mlflow "$RUN/mlflow.pid"
    fi
    rm -f "$RUN/mlflow.pid"
    PG_BIN=$(pg_bin)
    if [ -n "$PG_BIN" ] && pg_running; then
        down_postgres
        say "postgresql   stopped"
    fi
    say "all stopped; data kept in $TEAM_DIR (remove it to start afresh)"
}

cmd_status() {
    local down=0 pidfile i
    PG_BIN=$(pg_bin)
    say "team directory $TEAM_DIR"
    if [ -n "$PG_BIN" ] && pg_running; then
        say "postgresql   up    127.0.0.1:$(pg_port_running)  log $LOGS/postgres.log"
    else
        say "postgresql   down"
        down=1
    fi
    if running "$RUN/mlflow.pid"; then
        say "mlflow       up    http://127.0.0.1:$(port_of "$RUN/mlflow.pid")  log $LOGS/mlflow.log"
    else
        say "mlflow       down"
        down=1
    fi
    local any=0 state models="" waiting=0
    for pidfile in "$RUN"/replica-*.pid; do
        [ -e "$pidfile" ] || continue
        i=${pidfile##*/replica-}
        i=${i%.pid}
        any=1
        if running "$pidfile"; then
            REPLICA_PORT=$(($(port_of "$pidfile") - i + 1)) # as it was started
            state=$(replica_state "$i")
            if [[ $state == "ready: model "* ]]; then
                models+="${state#ready: }"$'\t'"$i"$'\n'
            else
                waiting=$((waiting + 1))
            fi
            grep -q "127.0.0.1:$(port_of "$pidfile") .* down;" "$NGINX_DIR/nginx.conf" 2>/dev/null &&
                state+="; out of nginx's pool while it starts"
            say "replica $i    up    http://127.0.0.1:$(port_of "$pidfile") ($state)  log $LOGS/replica-$i.log"
        else
            say "replica $i    down  log $LOGS/replica-$i.log"
            down=1
        fi
    done
    if [ "$any" = 0 ]; then
        say "replicas     down"
        down=1
    elif [ -n "$models" ]; then
        # after a promotion each replica switches within serve.champion_check_s; one that stays
        # behind (its load failed) decides with the old model while nginx sends it traffic
        if [ "$(cut -f1 <<<"$models" | sed '/^$/d' | sort -u | wc -l)" -gt 1 ]; then
            say "replicas     NOT on one model: $(sed '/^$/d' <<<"$models" | sort -t$'\t' -k1,1 -k2,2n |
                awk -F'\t' '$1 != m {if (m != "") printf "; "; m = $1; printf "%s: replica %s", m, $2; next} {printf ", %s", $2}')"
            down=1
        elif [ "$waiting" = 0 ]; then
            # what to wait on after a promotion: "all ready on model parcel-risk v2"
            say "replicas     all ready on $(head -n 1 <<<"$models" | cut -f1)"
        else
            say "replicas     the ready ones on $(head -n 1 <<<"$models" | cut -f1), $waiting not ready"
        fi
    fi
    if running "$NGINX_DIR/nginx.pid"; then
        local front
        front=$(sed -n 's/^ *listen 127.0.0.1:\([0-9]*\);/\1/p' "$NGINX_DIR/nginx.conf")
        say "nginx        up    http://127.0.0.1:$front  logs $LOGS/nginx-access.log, $LOGS/nginx-error.log"
    else
        say "nginx        down"
        down=1
    fi
    return "$down"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: scripts/team.sh up|down|status   (settings: see the top of this script)" >&2
    exit 2
    ;;
esac
