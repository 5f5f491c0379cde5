#!/usr/bin/env bash
# bench/gateway.sh: the cost of the gateway chain per request, with wrk.
#
#   bench/gateway.sh [BUILD_DIR]      (default build/; needs wrk and redis-server)
#
# Starts aosd (SQLite store, limits ON with budgets too large to refuse
# anything) pinned to CPU 0 and wrk pinned to CPU 1, and runs each scenario
# three times in alternation (A B C A B C ...), printing the median:
#   healthz      GET /healthz: HTTP core only, no chain
#   me-local     GET /api/v1/auth/me with a JWT: auth + tenant + role + local
#                rate limit + handler (one store read on the pool) + journal
#   me-redis     the same with limits.policy = "redis" (one Lua call per request)
# Benchmarks, not tests: nothing here runs in make check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
DURATION=${AOS_BENCH_DURATION:-8}
CONNS=${AOS_BENCH_CONNS:-64}
AOSD=$BUILD/aosd
AOSCTL=$BUILD/tools/aosctl
[[ -x $AOSD && -x $AOSCTL ]] || { echo "build first: $AOSD / $AOSCTL missing" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }

work=$(mktemp -d /tmp/aos-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --dir "$work" \
    --logfile "$work/redis.log" >/dev/null &
pids+=($!)

mkdir -p "$work/plugins" "$work/data-local" "$work/data-redis"
for p in agent-echo auth-local auth-apikey; do ln -s "$BUILD/plugins/$p/.libs/$p.so" "$work/plugins/$p.so"; done
head -c 48 /dev/urandom | base64 -w0 >"$work/jwt.key"
chmod 600 "$work/jwt.key"

write_conf() { # name port policy
    cat >"$work/$1.conf" <<EOF
server: { listen = [ "127.0.0.1:$2" ]; data_dir = "$work/data-$1"; };
store: { driver = "sqlite"; path = "$work/data-$1/aos.db"; };
auth: { jwt_secret_file = "$work/jwt.key"; };
redis: { url = "redis://127.0.0.1:$redis_port/0"; };
limits: { policy = "$3"; read = { per_minute = 1000000; burst = 1000000; };
          write = { per_minute = 1000000; burst = 1000000; }; };
plugins: { dir = "$work/plugins"; enable = [ "agent-echo", "auth-local", "auth-apikey" ]; };
tenants = ( { id = "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"; name = "acme"; } );
log: { level = "warn"; };
EOF
}

declare -A port token
for name in local redis; do
    port[$name]=$(free_port)
    write_conf "$name" "${port[$name]}" "$name"
    echo 'bench password 1234' | "$AOSCTL" -c "$work/$name.conf" user add --tenant acme \
        --email bench@acme.example --role user >/dev/null
    taskset -c 0 "$AOSD" -c "$work/$name.conf" 2>>"$work/$name.log" &
    pids+=($!)
done
for name in local redis; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:${port[$name]}/readyz" >/dev/null && break; sleep 0.1; done
    token[$name]=$(curl -sf "http://127.0.0.1:${port[$name]}/api/v1/auth/login" -H 'Content-Type: application/json' \
        -d '{"email":"bench@acme.example","password":"bench password 1234"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
done

run() { # scenario -> "req/s p50 p99"
    local url hdr=()
    case $1 in
    healthz) url="http://127.0.0.1:${port[local]}/healthz" ;;
    me-local) url="http://127.0.0.1:${port[local]}/api/v1/auth/me"; hdr=(-H "Authorization: Bearer ${token[local]}") ;;
    me-redis) url="http://127.0.0.1:${port[redis]}/api/v1/auth/me"; hdr=(-H "Authorization: Bearer ${token[redis]}") ;;
    esac
    taskset -c 1 wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "$url" |
        awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
             END {printf "%s %s %s %s\n", r, p50, p99, (bad == "" ? 0 : bad)}'
}

declare -A results
for round in 1 2 3; do
    for s in healthz me-local me-redis; do
        results[$s]+="$(run "$s")"$'\n'
    done
done
printf '%-10s %12s %10s %10s %8s\n' scenario "req/s" p50 p99 non-2xx
for s in healthz me-local me-redis; do
    printf '%s' "${results[$s]}" | sort -n -k1 | sed -n 2p |
        awk -v s="$s" '{printf "%-10s %12s %10s %10s %8s\n", s, $1, $2, $3, $4}'
done
for name in local redis; do
    printf '%s RSS after the run: %s KiB\n' "$name" "$(awk '/VmHWM/ {print $2}' /proc/"$(pgrep -f "$work/$name.conf" | head -1)"/status)"
done
