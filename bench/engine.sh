#!/usr/bin/env bash
# bench/engine.sh: end-to-end throughput of the orchestration engine (durable
# runs of agent-echo, 3 steps each, every step checkpointed).
#
#   bench/engine.sh [BUILD_DIR] [engine.py options...]
#
# BUILD_DIR: a configured build directory; aosd, tools/aosctl and the three
# plugins are made there first (a no-op when up to date).  Without it the
# tree is configured and built in $AOS_BENCH_BUILD (default
# /tmp/aos-bench-build).  Each configuration runs on a fresh store:
#   SQLite       always: a file in a new directory under $AOS_BENCH_DIR
#                (default /tmp; put it on the disk you mean to measure,
#                never on tmpfs, where fsync is free)
#   PostgreSQL   one server, the first of:
#                AOS_BENCH_PGSQL=conninfo   a server you give;
#                a throwaway cluster started here (needs initdb, as root via
#                  runuser postgres) with initdb's durable defaults -- fsync=on,
#                  synchronous_commit=on -- plus AOS_BENCH_PG_OPTS (e.g.
#                  "-c fsync=off"); AOS_BENCH_PG_CLUSTER=0 skips it, =1 requires it;
#                AOS_TEST_PGSQL (the development server).
#                Each configuration runs in a new schema; the table's label
#                shows the server's fsync and synchronous_commit.
# engine.py options (bench/engine.py --help): --runs N (2000 per phase),
# --clients C (16), --grid "workers/window/batch,...", --pool-size N,
# --no-sqlite, --profile DIR (one drain under perf, else callgrind, and a
# summary of where the time goes, instead of the table).
# AOS_BENCH_ENGINE: more settings of the engine group for every aosd, e.g.
# "committers = 1;" (a build that knows them).
# The queue and e2e phases pin aosd to CPU 0 and the HTTP load generator to
# CPU 1 (2+ CPUs); the drain (the engine alone) runs on every core.  Before
# each configuration the harness waits (up to --wait 60 s) for a quiet
# machine, and measures a configuration again once if other programs took
# more than 25% of the CPU meanwhile ("other load" column).  Every process
# started here is stopped by its PID.  Benchmarks, not tests: make check
# never runs this.  One round of the default grid takes 4 minutes on a quiet
# machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case ${1:-} in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    python3 "$ROOT/bench/engine.py" --help | sed -n '/^options:/,$p'
    exit 0
    ;;
esac
BUILD=
if [[ $# -gt 0 && $1 != -* ]]; then
    BUILD=$(cd "$1" && pwd)
    shift
fi

need() { command -v "$1" >/dev/null || { echo "engine.sh: $1 is missing" >&2; exit 1; }; }
need python3
need psql

if [[ -z $BUILD ]]; then
    BUILD=${AOS_BENCH_BUILD:-/tmp/aos-bench-build}
    mkdir -p "$BUILD"
    if [[ ! -f $BUILD/Makefile ]]; then
        (cd "$BUILD" && "$ROOT/configure" -q)
    fi
fi
echo "engine.sh: building in $BUILD" >&2
make -C "$BUILD" -s -j"$(nproc)" aosd tools/aosctl plugins/agent-echo/agent-echo.la \
    plugins/auth-local/auth-local.la plugins/auth-apikey/auth-apikey.la >&2

work=$(mktemp -d "${AOS_BENCH_DIR:-/tmp}/aos-bench-engine-pg.XXXXXX")
chmod 755 "$work"
PG_BIN=
PG_DATA=
AS_PG=()
cleanup() {
    if [[ -n $PG_DATA ]]; then
        "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            echo "engine.sh: warning: pg_ctl stop failed" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A throwaway cluster as scripts/aos starts one, but with initdb's durable
# defaults: the figure that counts for checkpoints.
start_cluster() {
    PG_BIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    [[ -n $PG_BIN && -x $PG_BIN/initdb ]] || return 1
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || return 1
        AS_PG=(runuser -u postgres --)
        chown postgres:postgres "$work"
    fi
    local port
    port=$(free_port)
    # Socket logins are trusted for the setup; aosd logs in over TCP with a password.
    "${AS_PG[@]}" "$PG_BIN/initdb" -D "$work/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; return 1; }
    PG_DATA=$work/data
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$work/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $work ${AOS_BENCH_PG_OPTS:-}" start >/dev/null ||
        { cat "$work/server.log" >&2; return 1; }
    psql -h "$work" -p "$port" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE aos_bench LOGIN PASSWORD 'aos_bench'" \
        -c "CREATE DATABASE aos_bench OWNER aos_bench" >/dev/null
    CLUSTER_URL="postgresql://aos_bench:aos_bench@127.0.0.1:$port/aos_bench"
}

pg_args=()
if [[ -n ${AOS_BENCH_PGSQL:-} ]]; then
    pg_args+=(--pgsql "pgsql=$AOS_BENCH_PGSQL")
elif [[ ${AOS_BENCH_PG_CLUSTER:-auto} != 0 ]] && start_cluster; then
    pg_args+=(--pgsql "pgsql=$CLUSTER_URL")
elif [[ ${AOS_BENCH_PG_CLUSTER:-auto} == 1 ]]; then
    echo "engine.sh: cannot start a PostgreSQL cluster" >&2
    exit 1
elif [[ -n ${AOS_TEST_PGSQL:-} ]]; then
    pg_args+=(--pgsql "pgsql=$AOS_TEST_PGSQL")
else
    echo "engine.sh: no PostgreSQL (no initdb usable here; set AOS_BENCH_PGSQL): SQLite only" >&2
fi

echo "engine.sh: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work skews" \
    "the figures); $(date -u +%Y-%m-%dT%H:%MZ)" >&2
python3 "$ROOT/bench/engine.py" --build "$BUILD" "${pg_args[@]}" "$@"
