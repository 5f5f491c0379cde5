#!/usr/bin/env bash
# bench/sse.sh: SSE fan-out of one node (issue 6 item 9, issue 7 scenario f).
#
#   bench/sse.sh [--build DIR] [--subs 1000,5000,10000,20000] [--rate 10]
#                [--warmup 3] [--duration 10] [--rounds 3] [--threads 1]
#                [--perf N] [--keep]
#
#   --build DIR   a configured aosd build directory (default build/); it is
#                 `make`d first
#   --subs LIST   subscriber counts, one fresh aosd each
#   --rate R      events published per second (one per request)
#   --warmup S / --duration S
#                 events of the first S seconds are delivered but not
#                 timed; then S seconds are measured
#   --rounds N    each count N times, in alternation; the median (by p99)
#                 is shown
#   --threads N   server.threads (HTTP loops, each with its own streams)
#   --perf N      then one more round at N subscribers under
#                 `perf record -g` (not in the table: sampling slows aosd);
#                 the report is left in the kept work directory
#   --keep        keep the work directory (logs, perf data)
#
# What it does: builds bench/sse_fanout.c with cc (no part of the autotools
# build) into DIR/bench/, raises the descriptor limit, creates a user with
# tools/aosctl in a temporary SQLite store and logs in once; then for each
# count it starts aosd on 127.0.0.1 (AOS_TESTING=1 for the publishing
# route POST /api/v1/testing/events; events.max_subscribers above the
# count) pinned to CPU 0, and runs sse_fanout pinned to CPU 1: it opens the
# streams with the Authorization header, publishes --rate events/s, and
# prints delivery latency (p50/p99/max, publish to read), events received
# against expected (no gap, no duplicate per connection), aosd's CPU over
# the window and its RSS before and after the streams opened.  Every aosd
# it starts is stopped by its PID.  A count above what RLIMIT_NOFILE allows
# is lowered to fit (and said so).  The machine should be quiet: before
# each run it waits (AOS_BENCH_QUIET_WAIT s, 60; AOS_BENCH_QUIET_BUDGET s in
# all, 180) for both CPUs to be 85% idle, and it measures again once
# (AOS_BENCH_RETRIES, 1) a run during which other processes took more than
# 10% of a CPU ("other CPU" in the table).  Every run's key=value line goes
# to stderr; the table (stdout) shows the round with the median p99.
# Figures: BENCHMARKS.md, "SSE fan-out".
# Benchmarks, not tests: nothing here runs in make check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
SUBS=1000,5000,10000,20000
RATE=10
WARMUP=3
DURATION=10
ROUNDS=3
THREADS=1
PERF_AT=
KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --subs) SUBS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --perf) PERF_AT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done

say() { printf '== %s\n' "$*" >&2; }

[[ -f $BUILD/Makefile ]] || { echo "$BUILD is not a configured build directory" >&2; exit 1; }
BUILD=$(cd "$BUILD" && pwd)
say "building aosd in $BUILD"
make --no-print-directory -C "$BUILD" -j"$(nproc)" >&2
AOSD=$BUILD/aosd
AOSCTL=$BUILD/tools/aosctl
CLIENT=$BUILD/bench/sse_fanout
mkdir -p "$BUILD/bench"
say "cc bench/sse_fanout.c -> $CLIENT"
cc -std=c11 -O2 -g -Wall -Wextra -Werror -pthread -o "$CLIENT" "$ROOT/bench/sse_fanout.c"
[[ -z $PERF_AT ]] || command -v perf >/dev/null || { echo "--perf needs perf (linux-perf)" >&2; exit 1; }

# Each stream is one descriptor in aosd and one in the client.  Root may
# raise the hard limit; others get what the hard limit allows.
max_subs=$(tr ',' '\n' <<<"$SUBS" | sort -n | tail -1)
want_fds=$((max_subs + 1024))
if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $want_fds ]]; then
    ulimit -Hn "$want_fds" 2>/dev/null || say "cannot raise the hard descriptor limit to $want_fds"
fi
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Without the privilege (a container without CAP_SYS_RESOURCE) a count too
# large for the limit is lowered to fit: aosd needs some 40 descriptors
# besides its streams.
fd_room=$(($(ulimit -n) - 100))

work=$(mktemp -d /tmp/aos-sse-bench.XXXXXX)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $KEEP == 1 ]]; then say "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Other jobs on the machine change the figures: wait (up to QUIET_WAIT s,
# QUIET_BUDGET s in all) until both CPUs were at least 85% idle over a
# second; say so otherwise.
QUIET_WAIT=${AOS_BENCH_QUIET_WAIT:-60}
QUIET_BUDGET=${AOS_BENCH_QUIET_BUDGET:-180}
quiet_spent=0
busy_pct() {
    local a b
    read -r -a a </proc/stat
    sleep 1
    read -r -a b </proc/stat
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    local idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $(((total - idle) * 100 / (total > 0 ? total : 1)))
}
wait_quiet() {
    local waited=0 busy
    while busy=$(busy_pct); [[ $busy -gt 15 ]]; do
        if [[ $waited -ge $QUIET_WAIT || $quiet_spent -ge $QUIET_BUDGET ]]; then
            say "the machine is still ${busy}% busy with other work: figures of this run are noisy"
            return 0
        fi
        [[ $waited -gt 0 ]] || say "the machine is ${busy}% busy with other work: waiting for it to calm down"
        sleep 4
        waited=$((waited + 5))
        quiet_spent=$((quiet_spent + 5))
    done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$work/plugins" "$work/data"
for p in agent-echo auth-local auth-apikey; do ln -s "$BUILD/plugins/$p/.libs/$p.so" "$work/plugins/$p.so"; done
head -c 48 /dev/urandom | base64 -w0 >"$work/jwt.key"
chmod 600 "$work/jwt.key"

write_conf() { # port
    cat >"$work/aosd.conf" <<EOF
server: { listen = [ "127.0.0.1:$1" ]; data_dir = "$work/data"; threads = $THREADS;
          max_connections = $((max_subs + 1000)); };
store: { driver = "sqlite"; path = "$work/data/aos.db"; };
auth: { jwt_secret_file = "$work/jwt.key"; };
events: { max_subscribers = $((max_subs + 100)); };
plugins: { dir = "$work/plugins"; enable = [ "agent-echo", "auth-local", "auth-apikey" ]; };
tenants = ( { id = "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"; name = "acme"; } );
log: { level = "warn"; };
EOF
}

start_server() { # -> server_pid, port
    port=$(free_port)
    write_conf "$port"
    AOS_TESTING=1 taskset -c 0 "$AOSD" -c "$work/aosd.conf" 2>>"$work/aosd.log" &
    server_pid=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "aosd did not come up; its log:" >&2
    tail -20 "$work/aosd.log" >&2
    exit 1
}

stop_server() {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

write_conf "$(free_port)"
echo 'bench password 1234' | "$AOSCTL" -c "$work/aosd.conf" user add --tenant acme \
    --email bench@acme.example --role user >/dev/null
start_server
# One login: the token (auth.token_ttl, 8 h) outlives every restart, all of
# which use the same key.
token=$(curl -sf "http://127.0.0.1:$port/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@acme.example","password":"bench password 1234"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
stop_server

say "subscribers: $SUBS; $RATE events/s; warm-up ${WARMUP}s, measured ${DURATION}s; $ROUNDS round(s); server.threads=$THREADS"
declare -A results
IFS=, read -r -a counts <<<"$SUBS"
RETRIES=${AOS_BENCH_RETRIES:-1}
# One measurement on a fresh aosd -> line (sse_fanout's key=value line).
run_one() { # n profile(0/1)
    local n=$1 perf_pid=
    wait_quiet
    start_server
    if [[ $2 == 1 ]]; then
        # Inside the measured window: after the connects (~4k/s), the
        # settle second and the warm-up; stops before the window ends.
        (sleep "$(awk -v n="$n" -v w="$WARMUP" 'BEGIN {print 2 + n / 4000 + w}')"
         exec perf record -q -g -p "$server_pid" -o "$work/perf-$n.data" -- sleep "$(awk -v d="$DURATION" 'BEGIN {print (d > 5 ? d - 4 : 1)}')") \
            >/dev/null 2>&1 &
        perf_pid=$!
    fi
    say "round $round: $n subscribers (aosd pid $server_pid, port $port)"
    line=$(taskset -c 1 "$CLIENT" --port "$port" --token "$token" --subs "$n" --rate "$RATE" \
        --warmup "$WARMUP" --duration "$DURATION" --server-pid "$server_pid") ||
        say "round $round, $n: not every event arrived exactly once (see the line)"
    printf '%s\n' "$line" >&2
    [[ -z $perf_pid ]] || wait "$perf_pid" || true
    stop_server
}
for round in $(seq 1 "$ROUNDS"); do
    for want in "${counts[@]}"; do
        n=$want
        if [[ $n -gt $fd_room ]]; then
            n=$fd_room
            [[ $round != 1 ]] || say "$want subscribers need more descriptors than RLIMIT_NOFILE ($(ulimit -n)) allows: $n instead"
        fi
        # Other work on the machine during the window (foreign_cpu_pct,
        # in % of one CPU) makes the round worthless: measure it again.
        for try in $(seq 0 "$RETRIES"); do
            run_one "$n" 0
            foreign=$(sed -n 's/.* foreign_cpu_pct=\([-0-9]*\).*/\1/p' <<<"$line")
            [[ ${foreign:-0} -gt 10 && $try -lt $RETRIES && $quiet_spent -lt $QUIET_BUDGET ]] || break
            say "other work took ${foreign}% of a CPU during the window: again"
        done
        results[$want]+="$line"$'\n'
    done
done
if [[ -n $PERF_AT ]]; then
    # A round of its own: sampling slows aosd down, so it is not in the table.
    n=$PERF_AT
    [[ $n -le $fd_room ]] || n=$fd_room
    round=perf
    run_one "$n" 1
    perf_n=$n
fi
if grep 'level=\(warn\|error\)' "$work/aosd.log" | grep -vq 'AOS_TESTING=1'; then
    say "aosd logged warnings (first 5):"
    grep 'level=\(warn\|error\)' "$work/aosd.log" | grep -v 'AOS_TESTING=1' | head -5 >&2
fi
if [[ -n $PERF_AT && -f $work/perf-$perf_n.data ]]; then
    perf report --stdio --no-children -i "$work/perf-$perf_n.data" --sort dso,symbol -g none \
        --percent-limit 0.5 >"$work/perf-$perf_n.txt" 2>/dev/null || true
    say "perf profile at $perf_n subscribers: $work/perf-$perf_n.txt (kept)"
    KEEP=1
fi

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
printf '| subscribers | delivered / expected | gaps | dups | p50 ms | p99 ms | max ms | aosd CPU | client CPU | other CPU | RSS open (MiB) | RSS/sub (B) | VmHWM (MiB) |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for want in "${counts[@]}"; do
    # The median round by p99.
    line=$(printf '%s' "${results[$want]}" | awk 'NF' | while read -r l; do
        printf '%s %s\n' "$(field lat_p99_ms <<<" $l")" "$l"; done | sort -n -k1 |
        awk '{a[NR]=$0} END {print a[int((NR + 1) / 2)]}' | cut -d' ' -f2-)
    f() { field "$1" <<<" $line"; }
    awk -v n="$(f subs)" -v rcv="$(f received)" -v want="$(f expected)" -v g="$(f gaps)" -v d="$(f dups)" \
        -v p50="$(f lat_p50_ms)" -v p99="$(f lat_p99_ms)" -v mx="$(f lat_max_ms)" -v cpu="$(f server_cpu_pct)" \
        -v ccpu="$(f client_cpu_pct)" -v other="$(f foreign_cpu_pct)" \
        -v ro="$(f rss_open_kib)" -v per="$(f rss_per_sub_end_b)" -v hwm="$(f hwm_kib)" \
        'BEGIN {printf "| %d | %d / %d | %d | %d | %s | %s | %s | %s%% | %s%% | %s%% | %.1f | %d | %.1f |\n",
                n, rcv, want, g, d, p50, p99, mx, cpu, ccpu, other, ro / 1024, per, hwm / 1024}'
done
