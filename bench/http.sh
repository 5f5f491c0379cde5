#!/usr/bin/env bash
# bench/http.sh: aosd against real peers (issue 7), one command.
#
#   bench/http.sh [--build DIR] [--no-install] [http_bench.py options...]
#
#   --build DIR     aosd build directory (default: build/, built with
#                   `scripts/aos build`; an existing DIR is just `make`d)
#   --no-install    do not apt-get/npm anything; rows whose peer is missing
#                   are skipped
#   --duration S --rounds N --warmup S --conns N --threads N
#   --scenarios a,b,c,d,e,g --profile a,b --json FILE ...
#                   passed to bench/http_bench.py (--help lists them all)
#
# What it does: installs what the peers need (wrk, nginx, redis-server,
# valgrind, perf, node/npm from Debian; Fastify, @fastify/jwt,
# @fastify/rate-limit and ioredis from npm into bench/peers/, git-ignored),
# builds aosd and the C peer (bench/evhttp_peer.c, with cc straight into
# bench/peers/), then runs bench/http_bench.py: every server on 127.0.0.1,
# pinned to CPU 0, wrk pinned to CPU 1, rows in alternation, a Markdown
# table with req/s, p50/p99, peak RSS and the ratios aosd/peer on stdout
# (progress on stderr).  Every server it starts is stopped by its PID.
# Figures and their analysis: BENCHMARKS.md, "Peers".
# Benchmarks, not tests: nothing here runs in make check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$ROOT/bench/peers
BUILD=
INSTALL=1
PASS=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --build=*) BUILD=${1#--build=}; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exec python3 "$ROOT/bench/http_bench.py" --help
        ;;
    *) PASS+=("$1"); shift ;;
    esac
done

say() { printf '== %s\n' "$*" >&2; }

# Exact versions: the figures in BENCHMARKS.md were taken with these.
NPM_PEERS=(fastify@5.12.8 @fastify/jwt@10.2.8 @fastify/rate-limit@11.2.0 ioredis@6.0.0)
# command -> the Debian package that brings it
DEB_PEERS=(wrk:wrk nginx:nginx redis-server:redis-server valgrind:valgrind perf:linux-perf
    node:nodejs npm:npm cc:build-essential pkg-config:pkg-config)

if [[ $INSTALL == 1 ]]; then
    missing=()
    for cp in "${DEB_PEERS[@]}"; do
        # /usr/sbin is not on every user's PATH (nginx lives there).
        PATH=$PATH:/usr/sbin command -v "${cp%%:*}" >/dev/null || missing+=("${cp#*:}")
    done
    pkg-config --exists libevent libjwt 2>/dev/null || missing+=(libevent-dev libjwt-dev)
    if [[ ${#missing[@]} -gt 0 ]]; then
        say "apt-get install ${missing[*]}"
        SUDO=
        [[ $(id -u) == 0 ]] || SUDO=sudo
        $SUDO apt-get update -qq
        # The packaged nginx and redis services are never used: http_bench.py
        # runs its own, in the foreground, with their own config.
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    mkdir -p "$PEERS"
    have_all=1
    for p in "${NPM_PEERS[@]}"; do
        name=${p%@*}
        ver=${p##*@}
        got=$(node -p "require('$PEERS/node_modules/$name/package.json').version" 2>/dev/null || true)
        [[ $got == "$ver" ]] || have_all=0
    done
    if [[ $have_all == 0 ]]; then
        say "npm install ${NPM_PEERS[*]} (into bench/peers/)"
        npm install --prefix "$PEERS" --no-audit --no-fund --loglevel=error --no-save "${NPM_PEERS[@]}" >&2
    fi
fi

# aosd
if [[ -z $BUILD ]]; then
    BUILD=$ROOT/build
    say "building aosd in $BUILD (scripts/aos build)"
    "$ROOT/scripts/aos" build >&2
else
    [[ -f $BUILD/Makefile ]] || { echo "$BUILD is not a configured build directory" >&2; exit 1; }
    say "building aosd in $BUILD"
    make --no-print-directory -C "$BUILD" -j"$(nproc)" >&2
fi
BUILD=$(cd "$BUILD" && pwd)

# The C peer: built with cc directly, it is no part of the autotools build.
mkdir -p "$PEERS"
if [[ ! -x $PEERS/evhttp_peer || $PEERS/evhttp_peer -ot $ROOT/bench/evhttp_peer.c ]]; then
    say "cc bench/evhttp_peer.c -> bench/peers/evhttp_peer"
    # shellcheck disable=SC2046 # pkg-config prints several words on purpose
    cc -std=c11 -O2 -g -Wall -Wextra -Werror -o "$PEERS/evhttp_peer" "$ROOT/bench/evhttp_peer.c" \
        $(pkg-config --cflags --libs libevent libjwt)
fi

# Enough descriptors for (g)'s idle connections, in every server started.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cd "$ROOT"
exec python3 "$ROOT/bench/http_bench.py" --build "$BUILD" --peers "$PEERS" --src "$ROOT" "${PASS[@]}"
