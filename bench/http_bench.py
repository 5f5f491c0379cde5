#!/usr/bin/env python3
"""bench/http_bench.py: aosd against real peers over HTTP, with wrk.

Run it through bench/http.sh, which installs the peers and builds first;
`bench/http.sh --help` lists the options.  This script only measures:

  1. starts every server it needs on 127.0.0.1 (free ports), pinned with
     taskset to the server CPU; wrk runs pinned to the client CPU;
  2. warms each one up, then runs every scenario's rows in alternation
     (round 1: A B C ..., round 2: A B C ...), the same wrk settings for all;
  3. prints per scenario the median run (by req/s) of each row with p50/p99,
     the peak RSS seen during its runs, the ratio aosd/peer of the medians and
     the ratio of each round's pair, then the targets of issue 7 as met/missed;
  4. (g) idle RSS and RSS per idle keep-alive connection, on fresh servers;
  5. with --profile: where aosd's time goes for (a) and (b) (perf sampling
     on cpu-clock, and callgrind), top functions printed;
  6. stops every server it started by its PID (SIGTERM, SIGKILL after 15 s).

Scenarios (issue 7): a = GET /healthz; b = GET /api/v1/auth/me with a JWT
(auth, tenant, local rate limit, journal); c = b with the Redis limiter;
d = POST /api/v1/pii/analyze with an Idempotency-Key; e = logins (Argon2id)
while b runs; g = idle memory.  (f) SSE fan-out and (h) engine throughput
belong to bench/engine.sh and the events benchmarks: add a Scenario here
(see SCENARIOS) when they want a peer table in the same run.
"""
import argparse
import base64
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TENANT_ID = "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"
EMAIL = "bench@acme.example"
PASSWORD = "bench password 1234"
# A short text with one e-mail address: the analyzer finds one item.
SAME_KEY = "bench-same-key"
PII_BODY = '{"text":"Please reply to jane.doe@example.com before Friday."}'


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, port, path, body=None, headers=None, timeout=5.0):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ------------------------------------------------------------------ processes

def tree_pids(pid):
    """pid and its descendants (nginx's worker), from /proc/*/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def status_kib(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    return sum(status_kib(p, "VmRSS") for p in tree_pids(pid))


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_busy_s():
    """Busy seconds of all CPUs since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / float(CLK_TCK)


def proc_cpu_s(pid):
    """utime + stime of a process (all its threads) and of its waited-for children."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12]) + int(v[13]) + int(v[14])) / float(CLK_TCK)
    except (OSError, IndexError, ValueError):
        return 0.0


class Server:
    """One server process, pinned, stopped by its own PID."""

    def __init__(self, name, argv, port, ready_path="/healthz", ready_status=200, env=None, cwd=None,
                 ready_timeout=30.0):
        self.name, self.argv, self.port = name, argv, port
        self.ready_path, self.ready_status = ready_path, ready_status
        self.env, self.cwd, self.ready_timeout = env, cwd, ready_timeout
        self.proc = None
        self.log_path = None

    def start(self, work, cpu):
        self.log_path = os.path.join(work, self.name + ".log")
        logf = open(self.log_path, "ab")
        argv = (["taskset", "-c", cpu] if cpu else []) + self.argv
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, env=self.env,
                                     cwd=self.cwd)
        logf.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %d:\n%s" % (self.name, self.proc.returncode, self.log_tail()))
            try:
                if http("GET", self.port, self.ready_path, timeout=2.0)[0] == self.ready_status:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s not ready after %.0f s:\n%s" % (self.name, self.ready_timeout, self.log_tail()))

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            log("%s (pid %d) ignored SIGTERM for 15 s: SIGKILL" % (self.name, self.proc.pid))
            self.proc.kill()
            self.proc.wait()


class RssSampler(threading.Thread):
    """Highest RSS of a process tree while a run lasts (sampled every 100 ms)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopping = pid, 0, threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self.stopping.wait(0.1)

    def finish(self):
        self.stopping.set()
        self.join()
        self.peak = max(self.peak, rss_kib(self.pid))
        return self.peak


# ------------------------------------------------------------------ wrk

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else float("nan")


def parse_wrk(out):
    r = {"rps": 0.0, "p50": float("nan"), "p99": float("nan"), "non2xx": 0, "errors": 0, "requests": 0,
         "seconds": 0.0}
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("Requests/sec:"):
            r["rps"] = float(s.split()[1])
        elif s.startswith("50%"):
            r["p50"] = parse_ms(s.split()[1])
        elif s.startswith("99%"):
            r["p99"] = parse_ms(s.split()[1])
        elif s.startswith("Non-2xx or 3xx responses:"):
            r["non2xx"] = int(s.split()[-1])
        elif s.startswith("Socket errors:"):
            r["errors"] = sum(int(n) for n in re.findall(r"\d+", s))
        else:
            m = re.match(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", s)
            if m:
                r["requests"] = int(m.group(1))
                r["seconds"] = parse_ms(m.group(2) + m.group(3)) / 1000.0
    return r


class Load:
    """What wrk sends: method, path, headers, body; key_mode "unique" makes an
    Idempotency-Key per request (a Lua request() function)."""

    def __init__(self, path, method="GET", headers=None, body=None, key_mode=None):
        self.path, self.method, self.headers, self.body, self.key_mode = path, method, headers or {}, body, key_mode

    def lua(self, tag):
        def q(s):
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines = ["wrk.method = %s" % q(self.method)]
        for k, v in self.headers.items():
            lines.append("wrk.headers[%s] = %s" % (q(k), q(v)))
        if self.body is not None:
            lines.append("wrk.body = %s" % q(self.body))
        if self.key_mode == "same":
            lines.append('wrk.headers["Idempotency-Key"] = %s' % q(SAME_KEY))
        elif self.key_mode == "unique":
            # One key per request: each wrk thread has its own Lua state, so
            # the thread number (setup) keeps the keys of two threads apart
            # and the run tag keeps those of two runs apart.
            lines += [
                "local n = 0",
                "function setup(thread) n = n + 1; thread:set(\"tid\", n) end",
                "local prefix, count",
                "function init(args) prefix = string.format(%s, tid or 0); count = 0 end" % q(tag + "-%d-"),
                "function request()",
                "  count = count + 1",
                "  wrk.headers[\"Idempotency-Key\"] = prefix .. count",
                "  return wrk.format()",
                "end",
            ]
        return "\n".join(lines) + "\n"


class Bench:
    def __init__(self, args, work, our_pids=lambda: []):
        self.args, self.work = args, work
        self.our_pids = our_pids
        self.run_no = 0

    def wrk(self, port, load, duration, threads=None, conns=None):
        self.run_no += 1
        script = os.path.join(self.work, "load-%d.lua" % self.run_no)
        with open(script, "w") as f:
            f.write(load.lua("r%d-%d" % (os.getpid(), self.run_no)))
        cmd = (["taskset", "-c", self.args.client_cpu] if self.args.client_cpu else []) + [
            "wrk", "-t%d" % (threads or self.args.threads), "-c%d" % (conns or self.args.conns),
            "-d%ds" % duration, "--latency", "-s", script, "http://127.0.0.1:%d%s" % (port, load.path)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ours_cpu_s(self):
        pids = {os.getpid()}
        for pid in self.our_pids():
            pids.update(tree_pids(pid))
        return sum(proc_cpu_s(p) for p in pids)

    def foreign_cpu(self, seconds):
        """CPU of processes not ours over `seconds`, in CPUs (0.5 = half a core)."""
        b0, o0 = cpu_busy_s(), self.ours_cpu_s()
        time.sleep(seconds)
        return max(0.0, (cpu_busy_s() - b0) - (self.ours_cpu_s() - o0)) / seconds

    def wait_quiet(self):
        """Other people's builds on the same two cores skew a run: wait (up
        to --quiet-wait seconds) until nothing else uses the machine."""
        deadline = time.monotonic() + self.args.quiet_wait
        while True:
            f = self.foreign_cpu(0.5)
            if f <= self.args.quiet_cpu or time.monotonic() >= deadline:
                return f
            log("  others use %.0f%% of a CPU: waiting" % (100 * f))

    def measure(self, server, load, duration, wait=True):
        if wait and self.args.quiet_wait > 0:
            self.wait_quiet()
        sampler = RssSampler(server.pid)
        sampler.start()
        b0, o0 = cpu_busy_s(), self.ours_cpu_s()
        t0 = time.monotonic()
        p = self.wrk(server.port, load, duration)
        out, _ = p.communicate()
        r = parse_wrk(out)
        elapsed = time.monotonic() - t0
        r["foreign_cpu"] = max(0.0, (cpu_busy_s() - b0) - (self.ours_cpu_s() - o0)) / elapsed
        r["rss_kib"] = sampler.finish()
        if r["rps"] == 0:
            log("wrk against %s gave nothing:\n%s" % (server.name, out))
        return r


# ------------------------------------------------------------------ the servers

class Setup:
    """Writes configs, creates the bench user, starts and logs into aosd."""

    def __init__(self, args, work):
        self.args, self.work = args, work
        self.key_file = os.path.join(work, "jwt.key")
        with open(self.key_file, "w") as f:
            # Base64 text, no newline: the same bytes for aosd, libjwt and Node.
            f.write(base64.b64encode(os.urandom(48)).decode())
        os.chmod(self.key_file, 0o600)
        self.plugins = os.path.join(work, "plugins")
        os.makedirs(self.plugins)
        for p in ("agent-echo", "auth-local", "auth-apikey"):
            os.symlink(os.path.join(args.build, "plugins", p, ".libs", p + ".so"), os.path.join(self.plugins, p + ".so"))
        self.redis_port = None
        self.redis = None

    def start_redis(self):
        if self.redis is None:
            self.redis_port = free_port()
            d = os.path.join(self.work, "redis")
            os.makedirs(d)
            self.redis = Server("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port),
                                          "--save", "", "--appendonly", "no", "--dir", d], self.redis_port)
            # Redis is shared infrastructure for both sides of (c): it runs on
            # the client CPU, so it takes nothing from the server under test.
            self.redis.proc = subprocess.Popen(
                (["taskset", "-c", self.args.client_cpu] if self.args.client_cpu else []) + self.redis.argv,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", self.redis_port), 0.5) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    time.sleep(0.05)
        return self.redis

    def aosd(self, name, policy="local", wrapper=(), ready_timeout=30.0):
        d = tempfile.mkdtemp(prefix=name + "-", dir=self.work)
        os.makedirs(os.path.join(d, "data"))
        port = free_port()
        conf = os.path.join(d, "aosd.conf")
        redis = ""
        if policy == "redis":
            redis = 'redis: { url = "redis://127.0.0.1:%d/0"; };\n' % self.start_redis().port
        with open(conf, "w") as f:
            f.write(
                # threads = 1: one HTTP loop, as the one-thread peers (said in BENCHMARKS.md).
                'server: { listen = [ "127.0.0.1:%d" ]; data_dir = "%s/data"; threads = %d; };\n'
                'store: { driver = "sqlite"; path = "%s/data/aos.db"; };\n'
                'auth: { jwt_secret_file = "%s"; };\n'
                '%s'
                # Budgets far too large to refuse anything: every request pays for the check.
                'limits: { policy = "%s"; read = { per_minute = 1000000; burst = 1000000; };\n'
                '          write = { per_minute = 1000000; burst = 1000000; }; };\n'
                'plugins: { dir = "%s"; enable = [ "agent-echo", "auth-local", "auth-apikey" ]; };\n'
                'tenants = ( { id = "%s"; name = "acme"; } );\n'
                'log: { level = "warn"; };\n'
                % (port, d, self.args.aosd_threads, d, self.key_file, redis, policy, self.plugins, TENANT_ID))
        p = subprocess.run([os.path.join(self.args.build, "tools", "aosctl"), "-c", conf, "user", "add", "--tenant",
                            "acme", "--email", EMAIL, "--role", "user"], input=PASSWORD + "\n", text=True,
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("aosctl user add: %s%s" % (p.stdout, p.stderr))
        srv = Server(name, list(wrapper) + [os.path.join(self.args.build, "aosd"), "-c", conf], port,
                     ready_path="/readyz", ready_timeout=ready_timeout)
        srv.conf = conf
        return srv

    def login(self, srv, timeout=60.0):
        st, body = http("POST", srv.port, "/api/v1/auth/login",
                        json.dumps({"email": EMAIL, "password": PASSWORD}).encode(),
                        {"Content-Type": "application/json"}, timeout=timeout)
        if st != 200:
            raise RuntimeError("login on %s: %d %r" % (srv.name, st, body[:300]))
        return json.loads(body)["access_token"]

    def nginx(self):
        d = tempfile.mkdtemp(prefix="nginx-", dir=self.work)
        port = free_port()
        with open(os.path.join(self.args.src, "bench", "nginx_peer.conf")) as f:
            text = f.read().replace("@PORT@", str(port)).replace("@PREFIX@", d)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(text)
        return Server("nginx", [self.args.nginx, "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e", "stderr"],
                      port, ready_path="/")

    def evhttp(self, jwt=False, wrapper=()):
        port = free_port()
        argv = list(wrapper) + [os.path.join(self.args.peers, "evhttp_peer"), str(port)] + \
            ([self.key_file] if jwt else [])
        return Server("evhttp-jwt" if jwt else "evhttp", argv, port)

    def fastify(self, redis=False):
        port = free_port()
        env = dict(os.environ, NODE_PATH=os.path.join(self.args.peers, "node_modules"), NODE_ENV="production")
        argv = ["node", os.path.join(self.args.src, "bench", "fastify_peer.js"), str(port), self.key_file]
        if redis:
            argv.append("redis://127.0.0.1:%d/0" % self.start_redis().port)
        return Server("fastify-redis" if redis else "fastify", argv, port, env=env)


# ------------------------------------------------------------------ scenarios

class Row:
    def __init__(self, label, server, load, aosd=False):
        self.label, self.server, self.load, self.aosd = label, server, load, aosd
        self.runs = []

    def median(self):
        ok = sorted(self.runs, key=lambda r: r["rps"])
        return ok[(len(ok) - 1) // 2] if ok else None


class Scenario:
    def __init__(self, key, title, rows, targets=()):
        self.key, self.title, self.rows, self.targets = key, title, rows, targets


def fmt_rate(x):
    return "{:,.0f}".format(x)


def fmt_ms(x):
    return "%.2f ms" % x if x == x else "-"


def ratio(a, b):
    return a / b if b else float("nan")


def report_scenario(sc, out):
    out.append("### (%s) %s\n" % (sc.key, sc.title))
    aosd_rows = [r for r in sc.rows if r.aosd]
    base = aosd_rows[0] if aosd_rows else None
    out.append("| server | req/s | p50 | p99 | peak RSS | non-2xx | others' CPU | req/s of each round | %s |"
               % ("aosd/peer req/s (each round)" if base else ""))
    out.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in sc.rows:
        m = r.median()
        if m is None:
            continue
        each = " / ".join(fmt_rate(x["rps"]) for x in r.runs)
        rat = ""
        if base is not None and not r.aosd and base.runs:
            per = [ratio(a["rps"], b["rps"]) for a, b in zip(base.runs, r.runs)]
            rat = "**%.2fx** (%s)" % (ratio(base.median()["rps"], m["rps"]), " / ".join("%.2f" % x for x in per))
        bad = sum(x["non2xx"] + x["errors"] for x in r.runs)
        out.append("| %s | %s | %s | %s | %.1f MiB | %d | %.0f%% | %s | %s |"
                   % (r.label, fmt_rate(m["rps"]), fmt_ms(m["p50"]), fmt_ms(m["p99"]),
                      max(x["rss_kib"] for x in r.runs) / 1024.0, bad, 100 * max(x["foreign_cpu"] for x in r.runs),
                      each, rat))
    out.append("")


def check_targets(scenarios, idle, out):
    out.append("### Targets (issue 7), ratios of the medians in this run\n")
    out.append("| target | measured | met |")
    out.append("|---|---:|---|")
    rows = {(sc.key, r.label): r for sc in scenarios for r in sc.rows if r.runs}

    def rps(k, label):
        r = rows.get((k, label))
        return r.median()["rps"] if r else None

    def line(name, got, want, fmt="%.2fx", higher=True):
        if got is None:
            out.append("| %s | not measured | - |" % name)
            return
        met = got >= want if higher else got <= want
        out.append("| %s | %s | %s |" % (name, fmt % got, "yes" if met else "**no** (%s of the target)"
                                          % ("%.0f%%" % (100.0 * got / want) if higher else
                                             "%.1fx" % (got / want))))

    def rr(k, a, b):
        x, y = rps(k, a), rps(k, b)
        return x / y if x and y else None

    line("(b) aosd >= 0.9x bare evhttp (1 thread)", rr("b", "aosd", "bare evhttp (no auth)"), 0.9)
    line("(b) aosd >= 3x Fastify+jwt+rate-limit(memory)", rr("b", "aosd", "Fastify+jwt+rate-limit(memory)"), 3.0)
    line("(c) aosd >= 4x Fastify+jwt+rate-limit(Redis)", rr("c", "aosd (Redis limiter)",
                                                           "Fastify+jwt+rate-limit(Redis)"), 4.0)
    line("(a) aosd >= 0.5x nginx", rr("a", "aosd", "nginx (1 worker)"), 0.5)
    for sc in scenarios:
        for r in sc.rows:
            if r.aosd and r.runs and sc.key in "abc":
                line("(%s) %s p99 < 5 ms" % (sc.key, r.label), r.median()["p99"], 5.0, "%.2f ms", higher=False)
    if idle.get("aosd"):
        line("(g) aosd idle RSS <= 8 MiB", idle["aosd"]["idle_kib"] / 1024.0, 8.0, "%.1f MiB", higher=False)
    out.append("")


def idle_memory(setup, names, conns, out):
    """(g): fresh servers; RSS when idle, then with `conns` keep-alive
    connections that each made one request and now sit idle."""
    res = {}
    for name in names:
        if name == "aosd":
            srv = setup.aosd("aosd-idle")
        elif name == "nginx":
            srv = setup.nginx()
        elif name == "evhttp":
            srv = setup.evhttp()
        else:
            srv = setup.fastify()
        srv.start(setup.work, setup.args.server_cpu)
        try:
            path = "/" if name == "nginx" else "/healthz"
            time.sleep(1.0)
            idle = rss_kib(srv.pid)
            socks = []
            req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()
            for _ in range(conns):
                s = socket.create_connection(("127.0.0.1", srv.port), 5)
                s.sendall(req)
                socks.append(s)
            for s in socks:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            time.sleep(1.0)
            held = rss_kib(srv.pid)
            for s in socks:
                s.close()
            res[name] = {"idle_kib": idle, "held_kib": held, "per_conn": (held - idle) / float(conns)}
        finally:
            srv.stop()
    out.append("### (g) idle memory\n")
    out.append("RSS (VmRSS of the process and its children) 1 s after the server answered, then 1 s after %d "
               "keep-alive connections each made one request and went idle.\n" % conns)
    out.append("| server | idle RSS | RSS with %d idle connections | per connection | aosd/peer idle |" % conns)
    out.append("|---|---:|---:|---:|---:|")
    a = res.get("aosd")
    for name in names:
        r = res[name]
        rat = "" if name == "aosd" or not a else "%.2fx" % ratio(a["idle_kib"], r["idle_kib"])
        out.append("| %s | %.1f MiB | %.1f MiB | %.1f KiB | %s |" % (name, r["idle_kib"] / 1024.0,
                                                                   r["held_kib"] / 1024.0, r["per_conn"], rat))
    out.append("")
    return res


# ------------------------------------------------------------------ profiles

def perf_profile(setup, bench, make_server, load_for, name, out):
    """perf samples on cpu-clock (VMs rarely expose hardware counters) of a
    server at full speed, kernel included: its share per library, then the
    top symbols."""
    args = setup.args
    srv = make_server().start(setup.work, args.server_cpu)
    try:
        load = load_for(srv)
        bench.measure(srv, load, 2)  # warm
        data = os.path.join(args.profile_dir, "perf-%s.data" % name)
        if args.quiet_wait > 0:
            bench.wait_quiet()
        rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "-g", "-o", data,
                                "-p", str(srv.pid), "--", "sleep", str(args.profile_seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = bench.measure(srv, load, args.profile_seconds + 1, wait=False)
        rec.wait()
    finally:
        srv.stop()
    by_dso = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso",
                             "--percent-limit", "1", "-g", "none"], capture_output=True, text=True).stdout
    by_sym = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym",
                             "--percent-limit", "0.5", "-g", "none"], capture_output=True, text=True).stdout
    with open(os.path.join(args.profile_dir, "perf-%s.txt" % name), "w") as f:
        f.write(by_dso + "\n" + by_sym)
    body = [ln.rstrip() for ln in by_dso.splitlines() if ln.strip() and not ln.startswith("#")]
    body += [""] + [ln.rstrip() for ln in by_sym.splitlines() if ln.strip() and not ln.startswith("#")]
    out.append("#### %s: perf, cpu-clock, %s req/s while sampled (perf-%s.txt)\n" % (name, fmt_rate(r["rps"]), name))
    out.append("```")
    out += body[:args.profile_top + 12]
    out.append("```\n")


def callgrind_profile(setup, bench, make_server, load_for, name, out):
    """callgrind: instructions per function, from readiness to the end of a
    slower load (wrk -t1 -c8); start-up is not counted."""
    args = setup.args
    cg = os.path.join(args.profile_dir, "callgrind-%s.out" % name)
    srv = make_server(("valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + cg))
    srv.ready_timeout = 300.0
    srv.start(setup.work, args.server_cpu)
    try:
        load = load_for(srv)
        subprocess.run(["callgrind_control", "-i", "on", str(srv.pid)], capture_output=True)
        p = bench.wrk(srv.port, load, args.profile_seconds, threads=1, conns=8)
        r = parse_wrk(p.communicate()[0])
        subprocess.run(["callgrind_control", "-i", "off", str(srv.pid)], capture_output=True)
    finally:
        srv.stop()
    reports = {}
    for inc in ("no", "yes"):
        rep = subprocess.run(["callgrind_annotate", "--inclusive=" + inc, cg], capture_output=True, text=True).stdout
        reports[inc] = rep
        with open(os.path.join(args.profile_dir, "callgrind-%s%s.txt" % (name, "-inclusive" if inc == "yes" else "")),
                  "w") as f:
            f.write(rep)
    lines = reports["no"].splitlines()
    total = next((ln for ln in lines if "PROGRAM TOTALS" in ln), "")
    m = re.match(r"\s*([\d,]+)", total)
    per_req = int(m.group(1).replace(",", "")) / float(r["requests"] or 1) if m else 0.0
    start = next((i for i, ln in enumerate(lines) if "file:function" in ln), len(lines))
    out.append("#### %s: callgrind, %d requests, %s instructions per request (callgrind-%s.txt)\n"
               % (name, r["requests"], fmt_rate(per_req), name))
    out.append("```")
    out += [ln for ln in lines[start + 1:] if ln.strip() and not ln.startswith("--")][:args.profile_top]
    out.append("```\n")
    return per_req


def profile(setup, bench, keys, out):
    """Where aosd's time goes under (a) and (b), and the same for the bare
    evhttp peers as the floor to compare instruction counts with."""
    args = setup.args
    os.makedirs(args.profile_dir, exist_ok=True)
    tools = set(args.profile_tools.split(","))
    have_perf = "perf" in tools and shutil.which("perf") is not None
    have_cg = "callgrind" in tools and shutil.which("valgrind") is not None
    per_req = {}

    def aosd(name):
        return lambda wrapper=(): setup.aosd(name, wrapper=wrapper)

    def me(srv):
        setup.peer_token = setup.login(srv, timeout=300.0)
        return Load("/api/v1/auth/me", headers={"Authorization": "Bearer " + setup.peer_token})

    plans = {
        "a": [("aosd-a", aosd("aosd-prof-a"), lambda srv: Load("/healthz"), True),
              ("evhttp-a", lambda wrapper=(): setup.evhttp(wrapper=wrapper), lambda srv: Load("/healthz"), False)],
        "b": [("aosd-b", aosd("aosd-prof-b"), me, True),
              ("evhttp-jwt-b", lambda wrapper=(): setup.evhttp(jwt=True, wrapper=wrapper),
               lambda srv: Load("/api/v1/auth/me", headers={"Authorization": "Bearer " + setup.peer_token}), False)],
    }
    for k in keys:
        for name, make, load_for, is_aosd in plans.get(k, []):
            if not is_aosd and not os.path.exists(os.path.join(args.peers, "evhttp_peer")):
                continue
            if is_aosd and have_perf:
                perf_profile(setup, bench, make, load_for, name, out)
            if have_cg:
                per_req[name] = callgrind_profile(setup, bench, make, load_for, name, out)
    if per_req:
        out.append("Instructions per request (callgrind): " +
                   ", ".join("%s %s" % (n, fmt_rate(v)) for n, v in per_req.items()) + ".\n")


# ------------------------------------------------------------------ main

def machine(args):
    def first(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"
    model = "?"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return ("%d CPUs (%s), %d MiB RAM, kernel %s; %s; %s; node %s; %s" % (
        os.cpu_count(), model, mem, platform.release(), first(["wrk", "--version"]).split(" [")[0],
        first([args.nginx, "-v"]), first(["node", "--version"]),
        "Redis " + (re.findall(r"v=(\S+)", first(["redis-server", "--version"])) or ["?"])[0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="aosd build directory")
    ap.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--peers", required=True, help="bench/peers: evhttp_peer and node_modules")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--scenarios", default="a,b,c,d,e,g")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of every row, in alternation (default 3)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of load per server before round 1")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    ap.add_argument("--conns", type=int, default=64, help="wrk -c (default 64)")
    ap.add_argument("--login-conns", type=int, default=2,
                    help="(e): connections sending logins (default 2 = aosd's default auth.max_concurrent_hashes)")
    ap.add_argument("--idle-conns", type=int, default=1000, help="(g): idle keep-alive connections (default 1000)")
    ap.add_argument("--aosd-threads", type=int, default=1, help="aosd server.threads (default 1, as the peers)")
    ap.add_argument("--server-cpu", default="0", help="taskset CPU list of the servers ('' = no pinning)")
    ap.add_argument("--client-cpu", default="1", help="taskset CPU list of wrk and Redis")
    ap.add_argument("--profile", default="", help="profile aosd under these scenarios (a,b)")
    ap.add_argument("--profile-seconds", type=int, default=8)
    ap.add_argument("--profile-tools", default="perf,callgrind", help="perf, callgrind or both (default)")
    ap.add_argument("--profile-top", type=int, default=30)
    ap.add_argument("--profile-dir", help="where profiles go (default: PEERS/profiles, git-ignored)")
    ap.add_argument("--quiet-wait", type=float, default=20.0,
                    help="before each run, wait up to this many seconds for other processes to go quiet")
    ap.add_argument("--quiet-cpu", type=float, default=0.10,
                    help="'quiet' = other processes use at most this share of one CPU (default 0.10)")
    ap.add_argument("--retry-cpu", type=float, default=0.25,
                    help="a run during which other processes used more than this share of a CPU is repeated")
    ap.add_argument("--retries", type=int, default=1, help="repeats of such a run at most (the quietest counts)")
    ap.add_argument("--json", help="also write every run's figures here")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    args.peers = os.path.abspath(args.peers)
    args.profile_dir = os.path.abspath(args.profile_dir or os.path.join(args.peers, "profiles"))
    want = set(x.strip() for x in args.scenarios.split(",") if x.strip())

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.idle_conns + 64 > hard:
        args.idle_conns = max(1, hard - 64)

    work = tempfile.mkdtemp(prefix="aos-bench-")
    setup = Setup(args, work)
    servers = {}
    bench = Bench(args, work, lambda: [s.pid for s in servers.values() if s.proc] +
                  ([setup.redis.pid] if setup.redis and setup.redis.proc else []))
    out = []
    started = time.monotonic()

    def have(kind):
        if kind == "nginx":
            return os.path.exists(args.nginx)
        if kind.startswith("evhttp"):
            return os.path.exists(os.path.join(args.peers, "evhttp_peer"))
        if kind.startswith("fastify"):
            return os.path.isdir(os.path.join(args.peers, "node_modules", "fastify")) and shutil.which("node")
        return True

    def server(kind):
        if kind not in servers:
            if kind == "aosd":
                s = setup.aosd("aosd-local")
            elif kind == "aosd-e":
                s = setup.aosd("aosd-e")
            elif kind == "aosd-redis":
                s = setup.aosd("aosd-redis", policy="redis")
            elif kind == "nginx":
                s = setup.nginx()
            elif kind == "evhttp":
                s = setup.evhttp()
            elif kind == "evhttp-jwt":
                s = setup.evhttp(jwt=True)
            elif kind == "fastify":
                s = setup.fastify()
            else:
                s = setup.fastify(redis=True)
            servers[kind] = s.start(work, args.server_cpu)
            log("started %s (pid %d, port %d)" % (kind, s.pid, s.port))
        return servers[kind]

    try:
        tok = {}
        for kind in ("aosd", "aosd-redis"):
            if (kind == "aosd" and want & set("abd")) or (kind == "aosd-redis" and "c" in want):
                tok[kind] = setup.login(server(kind))
                setup.peer_token = tok[kind]

        def me(kind):
            return Load("/api/v1/auth/me", headers={"Authorization": "Bearer " + tok[kind]})

        if "d" in want:
            # The one-key row replays a stored response: store it first, so
            # that no request of the run meets the key still in progress (409).
            st, body = http("POST", servers["aosd"].port, "/api/v1/pii/analyze", PII_BODY.encode(),
                            {"Authorization": "Bearer " + tok["aosd"], "Content-Type": "application/json",
                             "Idempotency-Key": SAME_KEY})
            if st != 200:
                raise RuntimeError("POST /api/v1/pii/analyze: %d %r" % (st, body[:300]))

        def pii(kind, key_mode):
            return Load("/api/v1/pii/analyze", "POST", {"Authorization": "Bearer " + tok[kind],
                                                       "Content-Type": "application/json"}, PII_BODY, key_mode)

        scenarios = []
        if "a" in want:
            scenarios.append(Scenario("a", "GET /healthz, no auth", [
                Row("aosd", "aosd", Load("/healthz"), aosd=True),
                Row("nginx (1 worker)", "nginx", Load("/")),
                Row("bare evhttp", "evhttp", Load("/healthz"))]))
        if "b" in want:
            scenarios.append(Scenario("b", "GET /api/v1/auth/me with a JWT: auth, tenant, local rate limit, journal", [
                Row("aosd", "aosd", me("aosd"), aosd=True),
                Row("bare evhttp (no auth)", "evhttp", Load("/api/v1/auth/me")),
                Row("evhttp + libjwt HS256", "evhttp-jwt", me("aosd")),
                Row("Fastify+jwt+rate-limit(memory)", "fastify", me("aosd"))]))
        if "c" in want:
            scenarios.append(Scenario("c", "(b) with the Redis rate limiter", [
                Row("aosd (Redis limiter)", "aosd-redis", me("aosd-redis"), aosd=True),
                Row("Fastify+jwt+rate-limit(Redis)", "fastify-redis", me("aosd-redis"))]))
        if "d" in want:
            scenarios.append(Scenario("d", "POST /api/v1/pii/analyze with an Idempotency-Key", [
                Row("aosd, new key per request", "aosd", pii("aosd", "unique"), aosd=True),
                Row("aosd, one key (replays)", "aosd", pii("aosd", "same"), aosd=True),
                Row("Fastify+jwt+rate-limit, keys in memory", "fastify", pii("aosd", "unique"))]))
        for sc in scenarios:
            sc.rows = [r for r in sc.rows if have(r.server) or log("skipped %s: peer not installed" % r.label)]

        # Start everything, then warm each server up with its first load.
        warmed = set()
        for sc in scenarios:
            for r in sc.rows:
                srv = server(r.server)
                if args.warmup > 0 and (r.server, r.load.path) not in warmed:
                    warmed.add((r.server, r.load.path))
                    bench.measure(srv, r.load, args.warmup)
        if "e" in want:
            # Its own aosd: Argon2's memory stays in the process afterwards
            # and would show as the other scenarios' peak RSS.
            tok["aosd-e"] = setup.login(server("aosd-e"))
            bench.measure(servers["aosd-e"], me("aosd-e"), args.warmup or 1)

        e_runs = []
        for rnd in range(1, args.rounds + 1):
            for sc in scenarios:
                for r in sc.rows:
                    res = None
                    for _ in range(1 + args.retries):
                        got = bench.measure(servers[r.server], r.load, args.duration)
                        if res is None or got["foreign_cpu"] < res["foreign_cpu"]:
                            res = got
                        if got["foreign_cpu"] <= args.retry_cpu:
                            break
                        log("  others used %.0f%% of a CPU during that run: again" % (100 * got["foreign_cpu"]))
                    r.runs.append(res)
                    log("round %d (%s) %-40s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  rss %6.1f MiB  others %3.0f%%%s"
                        % (rnd, sc.key, r.label, res["rps"], res["p50"], res["p99"], res["rss_kib"] / 1024.0,
                           100 * res["foreign_cpu"], "  NON-2XX %d" % res["non2xx"] if res["non2xx"] else ""))
            if "e" in want:
                srv = servers["aosd-e"]
                alone = bench.measure(srv, me("aosd-e"), args.duration)
                logins = bench.wrk(srv.port, Load("/api/v1/auth/login", "POST", {"Content-Type": "application/json"},
                                                  json.dumps({"email": EMAIL, "password": PASSWORD})),
                                   args.duration, threads=1, conns=args.login_conns)
                res = bench.measure(srv, me("aosd-e"), args.duration)
                lo = parse_wrk(logins.communicate()[0])
                ok = (lo["requests"] - lo["non2xx"]) / lo["seconds"] if lo["seconds"] else 0.0
                e_runs.append((alone, res, lo, ok))
                log("round %d (e) /me alone %8.0f req/s p99 %6.2f ms; under logins %8.0f req/s  p99 %6.2f ms; "
                    "logins %.1f/s ok, %d refused, p99 %.0f ms; rss %.1f MiB"
                    % (rnd, alone["rps"], alone["p99"], res["rps"], res["p99"], ok, lo["non2xx"], lo["p99"],
                       res["rss_kib"] / 1024.0))

        out.append("## Peers run of %s\n" % time.strftime("%Y-%m-%d %H:%M"))
        out.append("- Machine: %s" % machine(args))
        out.append("- wrk -t%d -c%d -d%ds --latency, pinned to CPU %s; servers pinned to CPU %s; %d rounds in "
                   "alternation, the median round (by req/s) shown; %ds warm-up per server; aosd server.threads = %d, "
                   "SQLite store, limits on with budgets too large to refuse anything. Others' CPU: CPU time "
                   "of processes this harness did not start, during the run, in %% of one CPU (the highest of "
                   "the rounds; a few %% is the kernel's network work that /proc does not charge to a process); "
                   "runs wait for a quiet machine and a run above %.0f%% is repeated."
                   % (args.threads, args.conns, args.duration, args.client_cpu or "-", args.server_cpu or "-",
                      args.rounds, args.warmup, args.aosd_threads, 100 * args.retry_cpu))
        out.append("")
        for sc in scenarios:
            report_scenario(sc, out)
        if e_runs:
            out.append("### (e) logins (Argon2id, %d connections) while (b) runs, on an aosd of its own\n"
                       % args.login_conns)
            out.append("Each round: (b) alone, then (b) again while another wrk (same client CPU) sends logins. "
                       "Peak RSS is the process's after that round.\n")
            out.append("| round | (b) req/s alone | (b) req/s with logins | (b) p99 alone | (b) p99 with logins | "
                       "logins/s (2xx) | refused (503) | login p50 | login p99 | peak RSS |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for i, (a, res, lo, ok) in enumerate(e_runs):
                out.append("| %d | %s | %s | %s | %s | %.1f | %d | %s | %s | %.1f MiB |" % (
                    i + 1, fmt_rate(a["rps"]), fmt_rate(res["rps"]), fmt_ms(a["p99"]), fmt_ms(res["p99"]), ok,
                    lo["non2xx"], fmt_ms(lo["p50"]), fmt_ms(lo["p99"]), res["rss_kib"] / 1024.0))
            out.append("")

        for s in list(servers.values()):
            s.stop()
        idle = {}
        if "g" in want:
            idle = idle_memory(setup, [n for n in ("aosd", "nginx", "evhttp", "fastify") if have(n)],
                               args.idle_conns, out)
        check_targets(scenarios, idle, out)
        if args.profile:
            out.append("### Profiles of aosd\n")
            profile(setup, bench, [k.strip() for k in args.profile.split(",")], out)
        out.append("Run took %.0f s." % (time.monotonic() - started))
        print("\n".join(out))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"scenarios": {sc.key: {r.label: r.runs for r in sc.rows} for sc in scenarios},
                           "e": [{"me_alone": a, "me": b, "login": c, "logins_ok_per_s": d} for a, b, c, d in e_runs],
                           "g": idle}, f, indent=1)
    finally:
        for s in list(servers.values()):
            s.stop()
        if setup.redis is not None:
            setup.redis.stop()
        if not os.environ.get("AOS_BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            log("kept %s" % work)


if __name__ == "__main__":
    main()
