#!/usr/bin/env python3
"""bench/engine.py: end-to-end throughput of the orchestration engine.

Driven by bench/engine.sh (which builds aosd and finds PostgreSQL); figures
and their reading in BENCHMARKS.md, "Engine throughput".  Standard library
only.  Benchmarks, not tests: nothing here runs in make check.

For each store (SQLite; PostgreSQL for every --pgsql given) and each engine
configuration of the grid (engine.workers, checkpoint_window,
checkpoint_batch), on a fresh store (a new SQLite file, a new PostgreSQL
schema), three phases:

  queue   aosd with engine.workers = 0 (an api-only node): N runs of
          agent-echo {"steps": S} are queued by C concurrent HTTP clients
          (keep-alive) as fast as they are accepted.  Measures POST /runs.
  drain   aosd restarted with the engine on, the N runs waiting: the engine
          alone, on every core (no HTTP load).  runs/s and checkpoints/s
          from the runs' own timestamps (first started_at -> last
          finished_at).
  e2e     the same process, aosd pinned to CPU 0 and this load generator to
          CPU 1: another N runs are queued by C clients while the engine
          executes them; elapsed time from the first POST to the last
          finished_at.  Run latency = finished_at - created_at per run.

checkpoints per commit comes from /metrics (aosd_engine_checkpoints /
aosd_engine_commits) over each phase.  "other load" is the CPU that other
programs took during drain and e2e, in % of the machine.  --rounds R runs the
grid R times in alternation and reports medians.  Every aosd is stopped by
its PID.
"""
import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

TENANT = ("6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f", "acme")
EMAIL = "bench-admin@acme.example"
PASSWORD = "bench password 1234"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.conn = None

    def request(self, method, path, body=None):
        hdrs = {}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        # A GET may be retried once on a fresh connection; a POST never
        # (it could queue a run twice).
        attempts = (1, 2) if method == "GET" else (2,)
        for attempt in attempts:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                text = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, text
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, want=200):
        status, text = self.request(method, path, body)
        if status != want:
            raise RuntimeError("%s %s -> %d (want %d): %s" % (method, path, status, want, text[:300]))
        return json.loads(text) if text else None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Store:
    """A fresh store for one configuration: an SQLite file in the node's
    directory, or a new schema on a PostgreSQL server."""

    def __init__(self, kind, conninfo=None, pool_size=None):
        self.kind = kind
        self.conninfo = conninfo
        self.pool_size = pool_size
        self.schema = None

    def durability(self):
        """PostgreSQL's fsync and synchronous_commit, for the label."""
        p = subprocess.run(["psql", self.conninfo, "-qAtX", "-c",
                            "SELECT 'fsync=' || current_setting('fsync') || ', synchronous_commit=' || "
                            "current_setting('synchronous_commit')"],
                           capture_output=True, text=True, timeout=60, check=True)
        return p.stdout.strip()

    def settings(self, node_dir):
        pool = "pool_size = %d; " % self.pool_size if self.pool_size else ""
        if self.kind == "sqlite":
            return 'driver = "sqlite"; path = "%s/data/aos.db"; %s' % (node_dir, pool)
        if self.schema is None:
            self.schema = "aos_bench_" + os.urandom(5).hex()
            subprocess.run(["psql", self.conninfo, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c",
                            "CREATE SCHEMA %s" % self.schema], check=True, timeout=60, stdout=subprocess.DEVNULL)
        sep = "&" if "?" in self.conninfo else "?"
        url = self.conninfo + sep + "options=-csearch_path%3D" + self.schema
        return 'driver = "pgsql"; conninfo = "%s"; auto_migrate = true; %s' % (url, pool)

    def drop(self):
        if self.schema is not None:
            subprocess.run(["psql", self.conninfo, "-qAtX", "-c", "DROP SCHEMA %s CASCADE" % self.schema],
                           timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.schema = None


class Node:
    """One aosd with its own directory; stopped by its PID."""

    def __init__(self, build, store, cpus):
        self.build = build
        self.store = store
        self.cpus = cpus
        self.dir = tempfile.mkdtemp(prefix="aos-bench-engine.", dir=os.environ.get("AOS_BENCH_DIR"))
        os.makedirs(os.path.join(self.dir, "data"))
        os.makedirs(os.path.join(self.dir, "plugins"))
        for p in ("agent-echo", "auth-local", "auth-apikey"):
            os.symlink(os.path.join(build, "plugins", p, ".libs", p + ".so"),
                       os.path.join(self.dir, "plugins", p + ".so"))
        with open(os.path.join(self.dir, "jwt.key"), "wb") as f:
            f.write(os.urandom(48))
        os.chmod(os.path.join(self.dir, "jwt.key"), 0o600)
        self.conf = os.path.join(self.dir, "aosd.conf")
        self.store_settings = store.settings(self.dir)
        self.port = free_port()
        self.proc = None
        self.log = None

    def write_conf(self, workers, window, batch):
        with open(self.conf, "w") as f:
            f.write('server: { listen = [ "127.0.0.1:%d" ]; data_dir = "%s/data"; };\n' % (self.port, self.dir))
            f.write("store: { %s };\n" % self.store_settings)
            f.write('auth: { jwt_secret_file = "%s/jwt.key"; };\n' % self.dir)
            f.write("limits: { enabled = false; };\n")
            f.write('plugins: { dir = "%s/plugins"; enable = [ "agent-echo", "auth-local", "auth-apikey" ]; };\n'
                    % self.dir)
            f.write('tenants = ( { id = "%s"; name = "%s"; } );\n' % TENANT)
            # AOS_BENCH_ENGINE: more engine settings, e.g. "committers = 1;"
            f.write("engine: { workers = %d; checkpoint_window = %s; checkpoint_batch = %d; %s };\n"
                    % (workers, repr(float(window)), batch, os.environ.get("AOS_BENCH_ENGINE", "")))
            f.write('log: { level = "warn"; };\n')

    def add_admin(self):
        p = subprocess.run([os.path.join(self.build, "tools", "aosctl"), "-c", self.conf, "user", "add",
                            "--tenant", TENANT[1], "--email", EMAIL, "--role", "admin"],
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("aosctl user add failed: %s%s" % (p.stdout, p.stderr))

    def start(self, workers, window, batch, wrapper=()):
        self.write_conf(workers, window, batch)
        self.log = open(os.path.join(self.dir, "aosd.log"), "ab")
        cmd = list(wrapper) + [os.path.join(self.build, "aosd"), "-c", self.conf]
        if self.cpus:
            cmd = ["taskset", "-c", self.cpus] + cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        c = Client(self.port)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("aosd exited with %d; log:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                if c.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            finally:
                c.close()
            time.sleep(0.05)
        raise RuntimeError("aosd not ready after 60 s; log:\n" + self.log_tail())

    def pin(self, cpus):
        """Moves every thread of the running aosd to cpus."""
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self.log.close()

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "aosd.log"), "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def metrics(self):
        c = Client(self.port)
        try:
            status, text = c.request("GET", "/metrics")
        finally:
            c.close()
        out = {}
        for line in text.decode().splitlines():
            if line.startswith("aosd_engine_"):
                name, _, value = line.partition(" ")
                out[name] = float(value)
        return out


def login(port):
    c = Client(port)
    try:
        body = c.json("POST", "/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
    finally:
        c.close()
    return body["access_token"]


def create_agent(port, token, name):
    c = Client(port, token)
    try:
        return c.json("POST", "/api/v1/agents", {"name": name, "plugin": "agent-echo", "config": {}}, want=201)["id"]
    finally:
        c.close()


def queue_runs(port, token, agent_id, n, clients, steps):
    """Queues n runs with `clients` threads; returns (t0, t1) wall clock."""
    lock = threading.Lock()
    left = [n]
    errors = []
    path = "/api/v1/agents/%s/runs" % agent_id
    body = {"input": {"steps": steps}}
    conns = [Client(port, token) for _ in range(clients)]

    def work(c):
        try:
            while True:
                with lock:
                    if left[0] == 0 or errors:
                        return
                    left[0] -= 1
                status, text = c.request("POST", path, body)
                if status != 202:
                    raise RuntimeError("POST %s -> %d: %s" % (path, status, text[:200]))
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)
        finally:
            c.close()

    for c in conns:  # connect first: the clock starts at the first POST
        c.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.conn.connect()
    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.time()
    if errors:
        raise errors[0]
    return t0, t1


def list_runs(port, token, agent_id):
    c = Client(port, token)
    items, cursor = [], None
    try:
        while True:
            q = "/api/v1/runs?agent=%s&limit=100" % agent_id + ("&cursor=" + cursor if cursor else "")
            page = c.json("GET", q)
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items
    finally:
        c.close()


def wait_checkpoints(node, target, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = node.metrics()
        if m.get("aosd_engine_checkpoints", 0) >= target:
            return m
        if node.proc.poll() is not None:
            raise RuntimeError("aosd died; log:\n" + node.log_tail())
        time.sleep(0.02)
    raise RuntimeError("only %d of %d checkpoints after %.0f s" % (node.metrics().get("aosd_engine_checkpoints", 0),
                                                                   target, timeout))


def summarize(runs, n, steps, t_start_ms):
    bad = [r for r in runs if r["status"] != "succeeded"]
    if len(runs) != n or bad:
        raise RuntimeError("%d runs listed, %d not succeeded (e.g. %s)" % (len(runs), len(bad),
                                                                         bad[0] if bad else None))
    end = max(r["finished_at"] for r in runs)
    start = t_start_ms if t_start_ms is not None else min(r["started_at"] for r in runs)
    secs = max(end - start, 1) / 1000.0
    lat = [r["finished_at"] - r["created_at"] for r in runs]
    return {"secs": secs, "runs_s": n / secs, "steps_s": n * steps / secs,
            "p50": percentile(lat, 50), "p99": percentile(lat, 99)}


def ratio(m0, m1):
    cps = m1.get("aosd_engine_checkpoints", 0) - m0.get("aosd_engine_checkpoints", 0)
    commits = m1.get("aosd_engine_commits", 0) - m0.get("aosd_engine_commits", 0)
    return cps / commits if commits else float("nan")


def cpu_ticks(aosd_pid):
    """(all ticks of the machine, busy ones, those of our aosd, every
    postgres process and this process)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = sum(v) - v[3] - v[4]
    ours = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                head, _, rest = f.read().rpartition(")")
        except OSError:
            continue
        comm = head.partition("(")[2]
        if comm == "postgres" or int(pid) in (aosd_pid, os.getpid()):
            fields = rest.split()
            ours += int(fields[11]) + int(fields[12])
    return sum(v), busy, ours


def wait_quiet(limit_s):
    """Waits up to limit_s for 2 s in which the machine is less than 15%
    busy (nothing of ours runs between configurations)."""
    deadline = time.monotonic() + limit_s
    while True:
        with open("/proc/stat") as f:
            a = [int(x) for x in f.readline().split()[1:9]]
        time.sleep(2)
        with open("/proc/stat") as f:
            b = [int(x) for x in f.readline().split()[1:9]]
        d = [y - x for x, y in zip(a, b)]
        busy = 100.0 * (sum(d) - d[3] - d[4]) / max(1, sum(d))
        if busy < 15 or time.monotonic() > deadline:
            if busy >= 15:
                log("  the machine is still %.0f%% busy; measuring anyway" % busy)
            return


@contextlib.contextmanager
def client_cpu(multi):
    """Runs the load generator (this process's threads started inside) on CPU 1."""
    if not multi:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def bench_config(args, store, cfg, profiler=None):
    """The three phases on a fresh store; with a profiler, the queue and
    the drain only, the drain under it."""
    workers, window, batch = cfg
    node = Node(args.build, store, None)
    multi = args.cpus >= 2
    result = {"workers": workers, "window": window, "batch": batch}
    try:
        node.write_conf(0, window, batch)
        node.add_admin()
        # queue: an api-only node, so nothing executes while the queue fills.
        node.cpus = "0" if multi else None
        node.start(0, window, batch)
        token = login(node.port)
        a_drain = create_agent(node.port, token, "drain")
        a_e2e = create_agent(node.port, token, "e2e")
        with client_cpu(multi):
            t0, t1 = queue_runs(node.port, token, a_drain, args.runs, args.clients, args.steps)
        result["queue_s"] = args.runs / (t1 - t0)
        node.stop()

        # drain: the engine alone on every core.
        node.cpus = None
        node.start(workers, window, batch, profiler.wrapper() if profiler else ())
        ticks0 = cpu_ticks(node.proc.pid)
        if profiler:
            profiler.attach(node)
        m1 = wait_checkpoints(node, args.runs * args.steps, args.timeout)
        result["drain"] = summarize(list_runs(node.port, token, a_drain), args.runs, args.steps, None)
        result["drain"]["cpc"] = ratio({}, m1)
        if profiler:
            profiler.detach(node)
            return result

        # e2e: queue and execute at once; aosd and the clients on their own cores.
        if multi:
            node.pin("0")
        with client_cpu(multi):
            t0, _ = queue_runs(node.port, token, a_e2e, args.runs, args.clients, args.steps)
            m2 = wait_checkpoints(node, 2 * args.runs * args.steps, args.timeout)
        result["e2e"] = summarize(list_runs(node.port, token, a_e2e), args.runs, args.steps, t0 * 1000.0)
        result["e2e"]["cpc"] = ratio(m1, m2)
        ticks1 = cpu_ticks(node.proc.pid)
        # CPU that other programs took while the engine ran, in % of the
        # machine: non-zero means the figures of this row are low.
        total, busy, ours = (b - a for a, b in zip(ticks0, ticks1))
        result["others"] = max(0.0, 100.0 * (busy - ours) / total) if total else 0.0
        node.stop()
    finally:
        node.cleanup()
        store.drop()
    return result


def parse_grid(text):
    """"8/0.001/64,8/0/64" -> [(8, 0.001, 64), (8, 0.0, 64)]"""
    out = []
    for item in text.split(","):
        w, win, b = item.split("/")
        out.append((int(w), float(win), int(b)))
    return out


DEFAULT_GRID = "2/0.001/64,4/0.001/64,8/0.001/64,8/0.0001/64,8/0.005/64,8/0.001/1"


def perf_report(data, *opts):
    p = subprocess.run(["perf", "report", "-i", data, "--stdio"] + list(opts),
                       capture_output=True, text=True, timeout=600)
    return [ln for ln in p.stdout.splitlines() if ln.strip() and not ln.startswith("#")]


class PerfProfiler:
    """One drain: perf record -a (where every process's time goes), perf
    record --call-graph dwarf on aosd (which of its functions), perf stat
    of the sync and send calls, and aosd's CPU time.  The window opens once
    perf is attached (the first few hundred runs drain before it)."""

    def __init__(self, prefix):
        self.prefix = prefix

    def wrapper(self):
        return ()

    def attach(self, node):
        self.pid = node.proc.pid
        self.procs = [
            subprocess.Popen(["perf", "record", "-a", "-F", "999", "-o", self.prefix + ".all.data"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(["perf", "record", "-p", str(self.pid), "-F", "499", "--call-graph", "dwarf,16384",
                              "-o", self.prefix + ".aosd.data"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL),
            subprocess.Popen(["perf", "stat", "-a", "-x", ",", "-o", self.prefix + ".stat.txt", "-e",
                              "syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,"
                              "syscalls:sys_enter_pwrite64,syscalls:sys_enter_sendto,context-switches"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        time.sleep(0.5)
        self.t0 = time.monotonic()
        self.cpu0 = self.cpu_seconds()
        self.ticks0 = cpu_ticks(self.pid)
        self.m0 = node.metrics()

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def detach(self, node):
        self.cpu = self.cpu_seconds() - self.cpu0
        self.secs = time.monotonic() - self.t0
        ticks1 = cpu_ticks(self.pid)
        self.m1 = node.metrics()
        hz = os.sysconf("SC_CLK_TCK")
        total, busy, ours = (b - a for a, b in zip(self.ticks0, ticks1))
        self.machine = (total / hz, busy / hz, ours / hz)
        for p in self.procs:
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            p.wait(120)

    def report(self):
        def delta(name):
            return self.m1.get(name, 0) - self.m0.get(name, 0)
        steps = delta("aosd_engine_checkpoints")
        print("profiled window: %.2f s, %d checkpoints (%.0f/s), %d claims, %d group commits" %
              (self.secs, steps, steps / self.secs, delta("aosd_engine_claims"), delta("aosd_engine_commits")))
        print("aosd CPU: %.2f s (%.0f%% of one core; %.0f us per checkpoint)" %
              (self.cpu, 100 * self.cpu / self.secs, self.cpu / steps * 1e6))
        total, busy, ours = self.machine
        print("machine: %.0f%% busy; aosd + postgres + harness %.2f s of CPU (%.0f us per checkpoint); "
              "other programs %.0f%% of the machine" % (100 * busy / total, ours, ours / steps * 1e6,
                                                         max(0.0, 100 * (busy - ours) / total)))
        with open(self.prefix + ".stat.txt") as f:
            for ln in f:
                parts = ln.strip().split(",")
                if len(parts) > 2 and parts[0].strip().isdigit():
                    print("%-35s %9s  (%.2f per checkpoint, all processes)" % (parts[2], parts[0],
                                                                            int(parts[0]) / steps))
        print("\nCPU samples by process and object (perf record -a; swapper = idle):")
        for ln in perf_report(self.prefix + ".all.data", "--sort", "comm,dso")[:15]:
            print("  " + ln)
        print("\naosd, inclusive time by function (perf record --call-graph dwarf; top 50):")
        for ln in perf_report(self.prefix + ".aosd.data", "--children", "--sort", "sym", "-g", "none")[:50]:
            print("  " + ln)


class CallgrindProfiler:
    """Without perf: aosd under callgrind for the drain (use few runs)."""

    def __init__(self, prefix):
        self.out = prefix + ".callgrind.out"

    def wrapper(self):
        return ("valgrind", "--tool=callgrind", "--callgrind-out-file=" + self.out)

    def attach(self, node):
        pass

    def detach(self, node):
        node.stop()  # callgrind writes its file at exit

    def report(self):
        p = subprocess.run(["callgrind_annotate", "--inclusive=yes", self.out], capture_output=True, text=True,
                           timeout=600)
        lines = p.stdout.splitlines()
        start = next((i for i, ln in enumerate(lines) if "PROGRAM TOTALS" in ln), 0)
        print("aosd, inclusive instructions by function (callgrind; top 50):")
        for ln in [ln for ln in lines[start:] if ln.strip() and not ln.startswith("-")][:50]:
            print("  " + ln)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="build directory with aosd, tools/aosctl and plugins")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--pgsql", action="append", default=[], metavar="LABEL=CONNINFO",
                    help="also measure on this PostgreSQL (a new schema per configuration)")
    ap.add_argument("--runs", type=int, default=2000, help="runs per phase (default 2000)")
    ap.add_argument("--steps", type=int, default=3, help="steps of agent-echo per run (default 3)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients (default 16)")
    ap.add_argument("--grid", default=DEFAULT_GRID,
                    help="workers/checkpoint_window/checkpoint_batch,... (default %s)" % DEFAULT_GRID)
    ap.add_argument("--pool-size", type=int, default=0, help="store.pool_size (default: aosd's)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds of the whole grid, alternating; each figure is the median (default 1)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--wait", type=float, default=60,
                    help="before each configuration wait up to this many seconds for a quiet machine, and "
                         "measure a configuration again once if others took > 25%% of the CPU (0: never)")
    ap.add_argument("--profile", metavar="DIR",
                    help="instead of the table: the drain of the grid's first configuration under perf (else "
                         "callgrind: use a small --runs), data in DIR/<store>.*, a summary on stdout")
    ap.add_argument("--profiler", choices=("auto", "perf", "callgrind"), default="auto",
                    help="auto: perf when installed, else callgrind")
    args = ap.parse_args()
    args.cpus = os.cpu_count() or 1
    args.build = os.path.abspath(args.build)

    stores = [] if args.no_sqlite else [("sqlite", Store("sqlite", pool_size=args.pool_size))]
    for spec in args.pgsql:
        label, _, conninfo = spec.partition("=")
        store = Store("pgsql", conninfo, pool_size=args.pool_size)
        stores.append(("%s (%s)" % (label, store.durability()), store))
    grid = parse_grid(args.grid)

    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        perf = args.profiler == "perf" or (args.profiler == "auto" and shutil.which("perf") is not None)
        for label, store in stores:
            prefix = os.path.join(args.profile, label.split(" ")[0])
            profiler = PerfProfiler(prefix) if perf else CallgrindProfiler(prefix)
            if args.wait:
                wait_quiet(args.wait)
            r = bench_config(args, store, grid[0], profiler)
            print("\n## %s, workers/window/batch %s: drain %.0f runs/s, %.0f checkpoints/s, %.1f per commit "
                  "(data: %s.*)" % (label, grid[0], r["drain"]["runs_s"], r["drain"]["steps_s"], r["drain"]["cpc"],
                                    prefix))
            profiler.report()
            sys.stdout.flush()
        return 0

    # Rounds alternate (A B C A B C ...) so a burst of other work on the
    # machine hits one round of several configurations, not one of them.
    results = {}
    for rnd in range(args.rounds):
        for label, store in stores:
            for cfg in grid:
                started = time.monotonic()
                for attempt in (1, 2):
                    if args.wait:
                        wait_quiet(args.wait)
                    r = bench_config(args, store, cfg)
                    if r["others"] <= 25 or attempt == 2:
                        break
                    log("  round %d, %s %s: other load %.0f%%, once more" % (rnd + 1, label, cfg, r["others"]))
                results.setdefault((label, cfg), []).append(r)
                log("  round %d, %s %s: drain %.0f, e2e %.0f steps/s, other load %.0f%% (%.1f s)" %
                    (rnd + 1, label, cfg, r["drain"]["steps_s"], r["e2e"]["steps_s"], r["others"],
                     time.monotonic() - started))

    def med(rs, *path):
        vals = []
        for r in rs:
            v = r
            for k in path:
                v = v[k]
            vals.append(v)
        return sorted(vals)[(len(vals) - 1) // 2]

    each = args.rounds > 1
    print("| store | workers | window ms | batch | queue runs/s | drain runs/s | drain steps/s | drain cp/commit "
          "| e2e runs/s | e2e steps/s | e2e p50 ms | e2e p99 ms | e2e cp/commit | other load |%s"
          % (" drain steps/s, each round | e2e steps/s, each round |" if each else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|%s" % ("---|---|" if each else ""))
    for label, _ in stores:
        for cfg in grid:
            rs = results[(label, cfg)]
            row = "| %s | %d | %g | %d | %.0f | %.0f | %.0f | %.1f | %.0f | %.0f | %d | %d | %.1f | %.0f%% |" % (
                label, cfg[0], cfg[1] * 1000, cfg[2], med(rs, "queue_s"), med(rs, "drain", "runs_s"),
                med(rs, "drain", "steps_s"), med(rs, "drain", "cpc"), med(rs, "e2e", "runs_s"),
                med(rs, "e2e", "steps_s"), med(rs, "e2e", "p50"), med(rs, "e2e", "p99"), med(rs, "e2e", "cpc"),
                max(r["others"] for r in rs))
            if each:
                row += " %s | %s |" % (" / ".join("%.0f" % r["drain"]["steps_s"] for r in rs),
                                       " / ".join("%.0f" % r["e2e"]["steps_s"] for r in rs))
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
