"""The dashboard and vitals, black-box, on SQLite and (when AOS_TEST_PGSQL is
set) PostgreSQL: GET /api/v1/aoa/dashboard and GET /api/v1/orchestration/vitals.

acme has budgets in config; globex has none.  Nothing is inserted behind the
API's back: the figures start at zero, then runs started through the API
(agent-echo) must show up exactly as GET /api/v1/runs/{id} reports them, and
never in the other tenant's figures.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap, pg_private_store  # noqa: E402
from test_auth import OTHER_ID, PLUGINS, World  # noqa: E402

STATUSES = ["queued", "running", "waiting_approval", "budget_exceeded", "succeeded", "failed", "cancelled"]
ZERO_RUNS = {s: 0 for s in STATUSES}
ZERO_SPEND = {"tokens": 0, "tokens_in": 0, "tokens_out": 0, "micro_usd": 0, "reserved_tokens": 0,
              "reserved_micro_usd": 0}
NO_LATENCY = {"count": 0, "sample": 0, "p50": None, "p95": None, "p99": None, "max": None}
NO_BUDGET = {"tokens_day": None, "tokens_month": None, "micro_usd_day": None, "micro_usd_month": None}
# acme's budgets, as configured below (9e9 needs libconfig's L suffix).
ACME_BUDGET = {"tokens_day": 100000, "tokens_month": None, "micro_usd_day": None, "micro_usd_month": 9000000000}
BUDGETS = "budgets = { tokens_day = 100000; tokens_month = 0; micro_usd_month = 9000000000L; };"


class BudgetDaemon(Daemon):
    def conf_text(self, server_extra=None, extra=None):
        text = Daemon.conf_text(self, server_extra, extra)
        block = 'name = "acme"; }'
        assert block in text
        return text.replace(block, 'name = "acme"; %s }' % BUDGETS)


def err_code(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def dashboard(t, d, headers, window=None):
    r = d.request("GET", "/api/v1/aoa/dashboard" + ("?window=" + window if window else ""), headers=headers)
    t.eq(r.status, 200, "GET /aoa/dashboard%s -> 200" % (" (%s)" % window if window else ""), r.body[:300])
    return r.json()


def vitals(t, d, headers, window=None):
    r = d.request("GET", "/api/v1/orchestration/vitals" + ("?window=" + window if window else ""), headers=headers)
    t.eq(r.status, 200, "GET /orchestration/vitals -> 200", r.body[:300])
    return r.json()


def wait_run(d, headers, run_id, statuses, timeout=30.0):
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        r = d.request("GET", "/api/v1/runs/" + run_id, headers=headers)
        if r.status == 200:
            run = r.json()
            if run["status"] in statuses:
                return run
        time.sleep(0.05)
    raise RuntimeError("run %s not in %s after %.0fs: %r" % (run_id, statuses, timeout, run))


def test_empty(t, d, w):
    """Before anything ran: every figure zero, budgets from config."""
    for tenant, budget in (("acme", ACME_BUDGET), ("globex", NO_BUDGET)):
        before = int(time.time() * 1000)
        o = dashboard(t, d, w.bearer(tenant, "user"))
        after = int(time.time() * 1000)
        t.eq(sorted(o), sorted(["window", "window_s", "now", "since", "runs", "throughput", "step_latency_ms",
                                "approvals", "spend", "agents", "agents_truncated"]), "%s: dashboard keys" % tenant)
        t.eq((o["window"], o["window_s"], o["since"]), ("24h", 86400, o["now"] - 86400000),
             "%s: the default window is 24h" % tenant)
        t.ok(before <= o["now"] <= after, "%s: now is the server's clock" % tenant)
        t.eq(o["runs"], {"by_status": ZERO_RUNS}, "%s: no runs" % tenant)
        t.eq(o["throughput"], {"runs_finished": 0, "steps": 0, "steps_failed": 0, "steps_per_s": 0},
             "%s: no throughput" % tenant)
        t.eq(o["step_latency_ms"], NO_LATENCY, "%s: no latency figures (null, not zero)" % tenant)
        t.eq(o["approvals"], {"pending": 0, "oldest_pending_age_ms": None}, "%s: no approvals" % tenant)
        spend = o["spend"]
        today = time.strftime("%Y-%m-%d", time.gmtime(o["now"] / 1000))
        t.eq((spend["day"], spend["month_start"]), (today, today[:8] + "01"), "%s: today and the month, UTC" % tenant)
        t.eq((spend["today"], spend["month"]), (ZERO_SPEND, ZERO_SPEND), "%s: nothing spent" % tenant)
        t.eq(spend["budget"], budget, "%s: the tenant's budgets from config (0 = none = null)" % tenant)
        t.eq(spend["ratio"], {k: (0 if v else None) for k, v in budget.items()},
             "%s: spend/budget ratios 0 where a budget is set, null where none" % tenant)
        t.eq((o["agents"], o["agents_truncated"]), ([], False), "%s: no agents" % tenant)

        v = vitals(t, d, w.bearer(tenant, "user"))
        t.eq(v["queue"], {"queued": 0, "ready": 0, "oldest_ready_age_ms": None, "running": 0, "expired_leases": 0,
                          "waiting_approval": 0}, "%s: empty queue" % tenant)
        t.eq((v["steps_last_minute"], v["failures"], v["approvals"]),
             (0, {"runs": 0, "steps": 0}, {"pending": 0, "oldest_pending_age_ms": None}),
             "%s: no steps, failures or approvals" % tenant)
        t.eq((v["window"], v["window_s"]), ("24h", 86400), "%s: vitals window" % tenant)

    for window, seconds in (("1h", 3600), ("24h", 86400), ("7d", 604800)):
        o = dashboard(t, d, w.bearer("acme", "user"), window)
        t.eq((o["window"], o["window_s"], o["now"] - o["since"]), (window, seconds, seconds * 1000),
             "window=%s" % window)
        v = vitals(t, d, w.bearer("acme", "user"), window)
        t.eq(v["window_s"], seconds, "vitals window=%s" % window)
    for q in ("window=2h", "window=", "window=24H", "window=1h&window=7d", "window=" + "9" * 40):
        for path in ("/api/v1/aoa/dashboard", "/api/v1/orchestration/vitals"):
            r = d.request("GET", path + "?" + q, headers=w.bearer("acme", "user"))
            t.eq((r.status, err_code(r)), (400, "invalid_query"), "%s?%s -> 400" % (path, q))


def test_roles(t, d, w):
    for role in ("user", "approver", "admin"):
        for how, h in (("token", w.bearer("acme", role)), ("API key", {"X-API-Key": w.keys[("acme", role)]})):
            for path in ("/api/v1/aoa/dashboard", "/api/v1/orchestration/vitals"):
                r = d.request("GET", path, headers=h)
                t.eq(r.status, 200, "%s (%s) may GET %s" % (role, how, path))
                t.eq(r.header("Cache-Control"), "no-store", "%s is not cached" % path)
    for path in ("/api/v1/aoa/dashboard", "/api/v1/orchestration/vitals"):
        t.eq(d.request("GET", path).status, 401, "%s without credentials -> 401" % path)
        r = d.request("GET", path, headers=dict(w.bearer("globex", "user"), **{"X-Tenant-ID": TENANT_ID}))
        t.eq(r.status, 403, "%s with a forged X-Tenant-ID -> 403" % path)
        r = d.request("POST", path, body={}, headers=w.bearer("acme", "admin"))
        t.eq(r.status, 405, "POST %s -> 405" % path)


def test_runs(t, d, w):
    """Runs started through the API show up exactly as the runs API reports them."""
    admin = w.bearer("acme", "admin")
    r = d.request("POST", "/api/v1/agents", body={"name": "dash-echo", "plugin": "agent-echo",
                                                  "config": {"tokens_per_step": 10, "cost_micros_per_step": 7},
                                                  "budget": {"tokens_day": 50000, "micro_usd_day": 0}},
                  headers=admin)
    t.eq(r.status, 201, "create agent dash-echo", r.body[:300])
    agent = r.json()["id"]
    o = dashboard(t, d, w.bearer("acme", "user"))
    t.eq([a["id"] for a in o["agents"]], [agent], "the new agent is listed")
    a = o["agents"][0]
    t.eq((a["name"], a["runs"], a["steps"], a["step_latency_ms"], a["approvals"]),
         ("dash-echo", {"by_status": ZERO_RUNS}, 0, NO_LATENCY, {"pending": 0}), "with no activity")
    t.eq(a["spend"]["budget"], {"tokens_day": 50000, "tokens_month": None, "micro_usd_day": 0,
                                "micro_usd_month": None}, "and its own budgets (0 is a budget)")
    t.eq(a["spend"]["ratio"], {"tokens_day": 0, "tokens_month": None, "micro_usd_day": None,
                               "micro_usd_month": None}, "ratio null for a budget of 0")

    r = d.request("POST", "/api/v1/agents/%s/runs" % agent, body={"input": {"steps": 3}}, headers=admin)
    t.eq(r.status, 202, "start a run", r.body[:300])
    done = wait_run(d, admin, r.json()["run_id"], ("succeeded", "failed", "cancelled", "budget_exceeded"))
    t.eq(done["status"], "succeeded", "the run succeeded", done)
    r = d.request("POST", "/api/v1/agents/%s/runs" % agent, body={"input": {"steps": 2, "approval_at": 1}},
                  headers=admin)
    waiting = wait_run(d, admin, r.json()["run_id"], ("waiting_approval",))

    steps = done["steps"] + waiting["steps"]
    durations = sorted(s["duration_ms"] for s in steps)
    used = [done["usage"], waiting["usage"]]
    tokens = sum(u["tokens_in"] + u["tokens_out"] for u in used)
    micro = sum(u["cost_micro_usd"] for u in used)
    t.ok(len(done["steps"]) > 0 and tokens > 0, "the runs took steps and spent tokens")

    o = dashboard(t, d, w.bearer("acme", "user"))
    t.eq(o["runs"]["by_status"], dict(ZERO_RUNS, succeeded=1, waiting_approval=1), "runs by status")
    t.eq((o["throughput"]["runs_finished"], o["throughput"]["steps"], o["throughput"]["steps_failed"]),
         (1, len(steps), 0), "throughput: one run finished, every checkpoint counted")
    lat = o["step_latency_ms"]
    t.eq((lat["count"], lat["sample"], lat["max"]), (len(steps), len(steps), durations[-1]),
         "latency: count, sample and max from the checkpoints")
    rank = lambda p: durations[max(0, -(-p * len(durations) // 100) - 1)]  # noqa: E731 nearest rank
    t.eq((lat["p50"], lat["p95"], lat["p99"]), (rank(50), rank(95), rank(99)), "latency percentiles (nearest rank)")
    t.eq(o["approvals"]["pending"], 1, "one approval pending")
    t.ok(isinstance(o["approvals"]["oldest_pending_age_ms"], int) and o["approvals"]["oldest_pending_age_ms"] >= 0,
         "with its age")
    spend = o["spend"]
    t.eq((spend["today"]["tokens"], spend["today"]["micro_usd"], spend["month"]["tokens"]), (tokens, micro, tokens),
         "spend today and this month = the runs' usage")
    t.eq(spend["today"]["tokens"], spend["today"]["tokens_in"] + spend["today"]["tokens_out"], "tokens = in + out")
    t.ok(abs(spend["ratio"]["tokens_day"] - tokens / 100000.0) < 1e-6, "ratio_day = tokens / the tenant's budget")
    t.ok(abs(spend["ratio"]["micro_usd_month"] - micro / 9e9) < 1e-6, "ratio of the month's money budget")
    a = o["agents"][0]
    t.eq((a["runs"]["by_status"], a["steps"], a["step_latency_ms"]["max"], a["approvals"]["pending"]),
         (dict(ZERO_RUNS, succeeded=1, waiting_approval=1), len(steps), durations[-1], 1), "the agent's figures")
    t.eq((a["spend"]["today"]["tokens"], a["spend"]["today"]["micro_usd"]), (tokens, micro), "the agent's spend")
    t.ok(abs(a["spend"]["ratio"]["tokens_day"] - tokens / 50000.0) < 1e-6, "the agent's ratio to its own budget")

    v = vitals(t, d, w.bearer("acme", "user"))
    t.eq((v["queue"]["queued"], v["queue"]["running"], v["queue"]["waiting_approval"]), (0, 0, 1),
         "vitals: one run waits for approval")
    t.eq((v["approvals"]["pending"], v["failures"]), (1, {"runs": 0, "steps": 0}), "one pending approval, no failures")
    t.ok(0 <= v["steps_last_minute"] <= len(steps), "steps in the last minute, at most all of them")

    # A workflow's run counts for the tenant; its steps count for the agents that ran them.
    r = d.request("POST", "/api/v1/agents", body={"name": "dash-second", "plugin": "agent-echo",
                                                  "config": {"tokens_per_step": 4}}, headers=admin)
    second = r.json()["id"]
    r = d.request("POST", "/api/v1/workflows", body={"name": "dash-chain", "steps": [{"agent": "dash-echo"},
                                                                                    {"agent": "dash-second"}]},
                  headers=admin)
    t.eq(r.status, 201, "create workflow dash-chain", r.body[:300])
    r = d.request("POST", "/api/v1/aoa/run", body={"workflow": "dash-chain", "input": {"steps": 2}}, headers=admin)
    t.eq(r.status, 202, "start a run of the workflow", r.body[:300])
    chain = wait_run(d, admin, r.json()["run_id"], ("succeeded", "failed", "cancelled", "budget_exceeded"))
    t.eq(chain["status"], "succeeded", "the workflow's run succeeded", chain)
    by = {x: sum(1 for s in chain["steps"] if s["agent_id"] == x) for x in (agent, second)}
    t.ok(by[agent] > 0 and by[second] > 0 and by[agent] + by[second] == len(chain["steps"]),
         "both agents took steps: %r" % by)
    o = dashboard(t, d, w.bearer("acme", "user"))
    t.eq(o["runs"]["by_status"], dict(ZERO_RUNS, succeeded=2, waiting_approval=1), "the tenant counts the workflow's run")
    t.eq(o["throughput"], dict(o["throughput"], runs_finished=2, steps=len(steps) + len(chain["steps"])),
         "and all its steps")
    agents = {x["id"]: x for x in o["agents"]}
    t.eq([x["id"] for x in o["agents"]], [agent, second], "agents oldest first")
    t.eq(agents[agent]["runs"]["by_status"], dict(ZERO_RUNS, succeeded=1, waiting_approval=1),
         "a workflow's run is no agent's run")
    t.eq((agents[agent]["steps"], agents[second]["steps"]), (len(steps) + by[agent], by[second]),
         "its steps count for the agent that ran each")
    chain_tokens = chain["usage"]["tokens_in"] + chain["usage"]["tokens_out"]
    t.eq(o["spend"]["today"]["tokens"], tokens + chain_tokens, "the tenant's spend includes the workflow's")

    # The other tenant sees none of it.
    g = dashboard(t, d, w.bearer("globex", "admin"))
    t.eq((g["runs"]["by_status"], g["throughput"]["steps"], g["approvals"]["pending"], g["spend"]["today"],
          g["agents"]), (ZERO_RUNS, 0, 0, ZERO_SPEND, []), "globex's dashboard shows nothing of acme's")
    text = d.request("GET", "/api/v1/aoa/dashboard", headers=w.bearer("globex", "admin")).body.decode()
    t.ok(agent not in text and "dash-echo" not in text, "and never names acme's agent")
    gv = vitals(t, d, w.bearer("globex", "admin"))
    t.eq((gv["queue"]["waiting_approval"], gv["approvals"]["pending"]), (0, 0), "globex's vitals: nothing")


def run_suite(t, store, label):
    d = BudgetDaemon(plugins=PLUGINS, store=store, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")],
                     auth_extra='registration = "admin-only";', server_extra="workers = 4;")
    try:
        d.start()
        w = World(t, d)
        for fn in (test_empty, test_roles, test_runs):
            print("# %s: %s" % (label, fn.__name__))
            t.run(fn, d, w)
        t.eq(d.stop(), 0, "%s: clean exit" % label)
    except Exception as e:  # noqa: BLE001
        t.ok(False, "%s: setup" % label, "%s\n%s" % (e, d.log_text()[-2000:]))
    finally:
        d.cleanup()


def main():
    t = Tap()
    run_suite(t, None, "sqlite")
    store, cleanup = pg_private_store()
    if store is not None:
        try:
            run_suite(t, store, "pgsql")
        finally:
            cleanup()
    else:
        print("# AOS_TEST_PGSQL not set: the PostgreSQL run is not run")
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
