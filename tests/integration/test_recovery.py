"""Crash recovery: aosd is killed with SIGKILL mid-run, several times, under
load, and restarted (SQLite), or killed while another node keeps going
(PostgreSQL, two aosd processes on one database).  Afterwards every run
must have finished, with every step checkpointed exactly once, in order,
and agent-echo's call log (its trace_file) must show that no checkpointed
step was ever executed again: for every (run, step) the checkpointed call
is the last call, and the only one with its attempt number.
"""
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap, pg_private_store  # noqa: E402
from test_auth import PASSWORD, PLUGINS  # noqa: E402

STEPS = 5
# A short lease makes takeover after a crash quick; max_attempts is high
# because every crash mid-step counts as a failed attempt of that step.
ENGINE = ("engine: { workers = 4; lease = 1; poll = 0.05; retry_base = 0.02; retry_max = 0.2; "
          "max_attempts = 100; };")


class Node(Daemon):
    def __init__(self, trace, **kw):
        self.trace = trace
        Daemon.__init__(self, plugins=PLUGINS, tenants=[(TENANT_ID, "acme")], **kw)

    def conf_text(self, server_extra=None, extra=None):
        text = Daemon.conf_text(self, server_extra, extra)
        block = 'enable = [ %s ]; };' % ", ".join('"%s"' % p for p in self.plugins)
        assert block in text
        return text.replace(block, 'enable = [ %s ]; agent-echo = { trace_file = "%s"; }; };'
                            % (", ".join('"%s"' % p for p in self.plugins), self.trace))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()


def login(d):
    email = "ops.%s@example.com" % os.urandom(3).hex()
    rc, out, err = d.aosctl("user", "add", "--tenant", "acme", "--email", email, "--role", "admin",
                            stdin=PASSWORD + "\n")
    assert rc == 0, (out, err)
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
    assert r.status == 200, r.body
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def start_runs(d, headers, agent_id, n, runs):
    for _ in range(n):
        r = d.request("POST", "/api/v1/agents/%s/runs" % agent_id,
                      body={"input": {"steps": STEPS, "sleep_ms": random.choice((10, 30, 60))}}, headers=headers)
        assert r.status == 202, r.body
        runs.append(r.json()["run_id"])


def read_trace(path):
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4:
                continue  # a line torn by SIGKILL cannot happen (one write), but never trust it
            run, seq, attempt, status = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
            calls.setdefault((run, seq), []).append((attempt, status))
    return calls


def check(t, label, d, headers, runs, trace):
    deadline = time.monotonic() + 120
    finished = {}
    while time.monotonic() < deadline and len(finished) < len(runs):
        for rid in runs:
            if rid in finished:
                continue
            r = d.request("GET", "/api/v1/runs/" + rid, headers=headers)
            if r.status == 200 and r.json()["status"] in ("succeeded", "failed", "cancelled"):
                finished[rid] = r.json()
        time.sleep(0.1)
    t.eq(len(finished), len(runs), "%s: every one of the %d runs finished (none lost)" % (label, len(runs)))
    ok = [r for r in finished.values() if r["status"] == "succeeded"]
    t.eq(len(ok), len(finished), "%s: and every one succeeded" % label,
         [(r["id"], r["status"], r["error"]) for r in finished.values() if r["status"] != "succeeded"][:3])
    seqs_ok = all([s["seq"] for s in r["steps"]] == list(range(STEPS)) for r in ok)
    t.ok(seqs_ok, "%s: each has steps 0..%d checkpointed exactly once, in order" % (label, STEPS - 1))
    t.ok(all(r["output"]["steps"] == STEPS for r in ok), "%s: each has the final output" % label)
    calls = read_trace(trace)
    rerun = []
    for r in ok:
        for s in r["steps"]:
            seen = calls.get((r["id"], s["seq"]), [])
            mine = [c for c in seen if c[0] == s["attempt"]]
            if not seen or seen[-1][0] != s["attempt"] or len(mine) != 1:
                rerun.append((r["id"], s["seq"], s["attempt"], seen))
    t.eq(rerun, [], "%s: no checkpointed step was executed again (trace of %d calls)"
         % (label, sum(len(v) for v in calls.values())))
    again = sum(len(v) - 1 for v in calls.values())
    print("# %s: %d calls were repeated after a crash (steps not yet checkpointed: at-least-once)" % (label, again))
    r = d.request("GET", "/api/v1/events?limit=1000&type=step.completed", headers=headers)
    if r.status == 200:
        seen = {}
        page = r.json()
        while True:
            for e in page["items"]:
                key = (e["run_id"], e["payload"]["seq"])
                seen[key] = seen.get(key, 0) + 1
            if not page.get("next_cursor"):
                break
            page = d.request("GET", "/api/v1/events?limit=1000&type=step.completed&cursor=" + page["next_cursor"],
                             headers=headers).json()
        mine = {k: v for k, v in seen.items() if k[0] in finished}
        r = d.request("GET", "/api/v1/events?limit=1000&type=run.running", headers=headers)
        taken = sum(1 for e in r.json()["items"] if e["payload"].get("taken_over"))
        t.ok(taken > 0, "%s: the kills hit runs mid-flight: %d were taken over after their lease expired"
             % (label, taken))
        t.ok(len(mine) == len(ok) * STEPS and all(v == 1 for v in mine.values()),
             "%s: one step.completed event per checkpoint (written in its transaction)" % label)


def test_sqlite_restarts(t):
    trace = os.path.join(os.environ.get("TMPDIR", "/tmp"), "aos-trace-%s" % os.urandom(4).hex())
    d = Node(trace, extra=ENGINE)
    try:
        d.start()
        headers = login(d)
        agent = d.request("POST", "/api/v1/agents", body={"name": "crash", "plugin": "agent-echo"},
                          headers=headers).json()["id"]
        runs = []
        start_runs(d, headers, agent, 60, runs)
        for i in range(4):
            time.sleep(random.uniform(0.3, 0.9))
            d.kill9()
            t.ok(True, "sqlite: kill -9 #%d under load" % (i + 1))
            d.start()
            start_runs(d, headers, agent, 10, runs)
        check(t, "sqlite", d, headers, runs, trace)
        d.stop()
    finally:
        d.cleanup()
        if os.path.exists(trace):
            os.unlink(trace)


def test_pgsql_other_node(t, store):
    """Two nodes share one PostgreSQL; they are killed in turn while the
    other carries on, so a dead node's runs resume on the other one."""
    trace = os.path.join(os.environ.get("TMPDIR", "/tmp"), "aos-trace-%s" % os.urandom(4).hex())
    a = Node(trace, extra=ENGINE, store=store)
    b = Node(trace, extra=ENGINE, store=store)
    # One JWT key for both nodes: a token from one is good on the other.
    with open(os.path.join(b.dir, "jwt.key"), "wb") as f:
        f.write(a.jwt_key())
    try:
        a.start()
        b.start()
        headers = login(a)
        agent = a.request("POST", "/api/v1/agents", body={"name": "crash", "plugin": "agent-echo"},
                          headers=headers).json()["id"]
        runs = []
        start_runs(a, headers, agent, 30, runs)
        start_runs(b, headers, agent, 30, runs)
        for i, (victim, survivor) in enumerate(((a, b), (b, a), (a, b))):
            time.sleep(random.uniform(0.3, 0.9))
            victim.kill9()
            t.ok(True, "pgsql: kill -9 of a node #%d, the other keeps going" % (i + 1))
            start_runs(survivor, headers, agent, 10, runs)
            time.sleep(1.5)  # past the lease: the survivor takes the dead node's runs
            victim.start()
        check(t, "pgsql", a, headers, runs, trace)
        a.stop()
        b.stop()
    finally:
        a.cleanup()
        b.cleanup()
        if os.path.exists(trace):
            os.unlink(trace)


def main():
    t = Tap()
    t.run(test_sqlite_restarts)
    store, cleanup = pg_private_store()
    if store is not None:
        try:
            t.run(test_pgsql_other_node, store)
        finally:
            cleanup()
    else:
        print("# AOS_TEST_PGSQL not set: the two-node PostgreSQL run is not run")
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
