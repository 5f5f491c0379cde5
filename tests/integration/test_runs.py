"""The orchestration engine over HTTP, on SQLite and (when AOS_TEST_PGSQL is
set) PostgreSQL: runs and their state transitions, retries, approvals (the
four-eyes rule, expiry, conflicting decisions), cancel, budgets (reservation
under concurrency, warning, budget_exceeded and resume), workflows, and
fairness between tenants.  agent-echo is the pilot (see agent-echo(7)).
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap, pg_private_store  # noqa: E402
from test_auth import OTHER_ID, PLUGINS, World, wait_pending_approval  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")
ENGINE = ("engine: { workers = 4; poll = 0.05; retry_base = 0.02; retry_max = 0.2; max_attempts = 4; "
          "step_reserve_tokens = 100L; step_reserve_micro_usd = 0L; checkpoint_window = 0.002; };")


def err_code(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def wait_run(d, headers, run_id, until=FINAL, timeout=30.0):
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        r = d.request("GET", "/api/v1/runs/" + run_id, headers=headers)
        run = r.json()
        if run.get("status") in until:
            return run
        time.sleep(0.03)
    raise RuntimeError("run %s stuck in %s" % (run_id, run and run.get("status")))


def new_agent(d, headers, name, config=None, budget=None):
    body = {"name": name, "plugin": "agent-echo", "config": config or {}}
    if budget is not None:
        body["budget"] = budget
    r = d.request("POST", "/api/v1/agents", body=body, headers=headers)
    assert r.status == 201, r.body
    return r.json()["id"]


def start(d, headers, agent_id, **inp):
    r = d.request("POST", "/api/v1/agents/%s/runs" % agent_id, body={"input": inp}, headers=headers)
    assert r.status == 202, r.body
    return r.json()["run_id"]


def events_of(d, headers, run_id):
    r = d.request("GET", "/api/v1/events?run=%s&limit=1000" % run_id, headers=headers)
    if r.status != 200:
        return None
    return [e["type"] for e in r.json()["items"]]


def test_success(t, d, w):
    admin = w.bearer("acme", "admin")
    user = w.bearer("acme", "user")
    aid = new_agent(d, admin, "three")
    r = d.request("POST", "/api/v1/agents/%s/runs" % aid, body={"input": {"steps": 3, "tokens_per_step": 10,
                                                                         "cost_micros_per_step": 7}}, headers=user)
    t.eq(r.status, 202, "POST /agents/{id}/runs -> 202")
    body = r.json()
    t.eq((body["status"], len(body["run_id"]), body["id"]), ("queued", 36, body["run_id"]), "202 {run_id, status: queued}")
    t.eq(r.header("location"), "/api/v1/runs/" + body["run_id"], "Location names the run")
    run = wait_run(d, user, body["run_id"])
    t.eq(run["status"], "succeeded", "a 3-step run succeeds")
    t.eq([(s["seq"], s["outcome"], s["attempt"]) for s in run["steps"]],
         [(0, "continue", 1), (1, "continue", 1), (2, "done", 1)], "three checkpointed steps, in order")
    t.eq(run["output"]["echo"]["steps"], 3, "the output echoes the input")
    t.eq(run["output"]["steps"], 3, "and the step count")
    t.eq((run["usage"]["tokens_in"] + run["usage"]["tokens_out"], run["usage"]["cost_micro_usd"]), (30, 21),
         "usage is the sum of the steps' reports")
    t.eq((run["usage"]["reserved_tokens"], run["next_step"]), (0, 3), "no reservation left on a finished run")
    t.ok(run["started_at"] is not None and run["finished_at"] >= run["started_at"], "started_at/finished_at set")
    t.eq(run["created_by"], d.request("GET", "/api/v1/auth/me", headers=user).json()["subject"],
         "created_by is the principal who started it")

    r = d.request("POST", "/api/v1/aoa/run", body={"agent": "three", "input": {"steps": 1}}, headers=user)
    t.eq(r.status, 202, "POST /aoa/run by agent name -> 202")
    t.eq(wait_run(d, user, r.json()["run_id"])["status"], "succeeded", "and it runs")
    r = d.request("POST", "/api/v1/aoa/run", body={"agent": aid}, headers=user)
    t.eq(r.status, 202, "POST /aoa/run by agent id, no input ({} by default) -> 202")
    t.eq(wait_run(d, user, r.json()["run_id"])["input"], {}, "input defaults to {}")

    for body, code in (({"input": {}}, 422), ({"agent": "nope", "input": {}}, 404),
                       ({"agent": "three", "workflow": "x"}, 422), ({"agent": "three", "input": [1]}, 422),
                       ({"agent": "three", "extra": 1}, 422)):
        r = d.request("POST", "/api/v1/aoa/run", body=body, headers=user)
        t.eq(r.status, code, "POST /aoa/run %s -> %d" % (body, code), r.body[:200])
    r = d.request("POST", "/api/v1/agents/deadbeef-dead-4eef-8eef-deadbeefdead/runs", body={}, headers=user)
    t.eq(r.status, 404, "runs of an unknown agent -> 404")
    r = d.request("GET", "/api/v1/runs/deadbeef-dead-4eef-8eef-deadbeefdead", headers=user)
    t.eq(r.status, 404, "an unknown run -> 404")

    types = events_of(d, user, run["id"])
    if types is not None:
        t.eq(types[0], "run.queued", "the first event of a run is run.queued")
        t.ok(types.count("step.completed") == 3 and types[-1] == "run.succeeded",
             "every step and the success are events", types)
    else:
        t.skip("events of a run", "GET /api/v1/events not available")


def test_list(t, d, w):
    admin = w.bearer("acme", "admin")
    aid = new_agent(d, admin, "lister")
    other = new_agent(d, admin, "lister-2")
    ids = [start(d, admin, aid) for _ in range(5)] + [start(d, admin, other)]
    for rid in ids:
        wait_run(d, admin, rid)
    r = d.request("GET", "/api/v1/runs?agent=%s&limit=2" % aid, headers=admin)
    page = r.json()
    t.eq((r.status, len(page["items"])), (200, 2), "a page of 2")
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        page = d.request("GET", "/api/v1/runs?agent=%s&limit=2&cursor=%s" % (aid, page["next_cursor"]),
                         headers=admin).json()
        seen += [i["id"] for i in page["items"]]
    t.eq(sorted(seen), sorted(ids[:5]), "paging by agent returns exactly its runs")
    t.eq(seen, list(reversed(ids[:5])), "newest first")
    r = d.request("GET", "/api/v1/runs?status=succeeded&limit=100", headers=admin)
    t.ok(all(i["status"] == "succeeded" for i in r.json()["items"]), "status filter")
    t.ok("steps" not in r.json()["items"][0], "lists carry no steps")
    for q in ("status=nope", "agent=xyz", "limit=0", "limit=101", "cursor=zz"):
        r = d.request("GET", "/api/v1/runs?" + q, headers=admin)
        t.eq(r.status, 400, "GET /runs?%s -> 400" % q)
    r = d.request("GET", "/api/v1/runs?limit=100", headers=w.bearer("globex", "admin"))
    t.ok(all(i["id"] not in ids for i in r.json()["items"]), "another tenant's list never shows acme's runs")


def test_retries_and_failures(t, d, w):
    admin = w.bearer("acme", "admin")
    aid = new_agent(d, admin, "flaky")
    run = wait_run(d, admin, start(d, admin, aid, steps=3, retry_at=2))
    t.eq(run["status"], "succeeded", "RETRY once at step 2: the run still succeeds")
    t.eq([s["attempt"] for s in run["steps"]], [1, 2, 1], "the retried step shows attempt 2")
    run = wait_run(d, admin, start(d, admin, aid, steps=2, fail_at=2, fail_once=True))
    t.eq((run["status"], [s["attempt"] for s in run["steps"]]), ("succeeded", [1, 2]),
         "a transient failure (fail_once) is retried")
    run = wait_run(d, admin, start(d, admin, aid, steps=3, retry_at=1, retry_always=True))
    t.eq(run["status"], "failed", "RETRY on every attempt: failed after engine.max_attempts")
    t.ok("4 times" in (run["error"] or ""), "the error says how many attempts", run["error"])
    t.eq([(s["outcome"], s["attempt"]) for s in run["steps"]], [("failed", 4)],
         "the last attempt is checkpointed as the failed step")
    run = wait_run(d, admin, start(d, admin, aid, steps=3, fail_at=2))
    t.eq((run["status"], [s["outcome"] for s in run["steps"]]), ("failed", ["continue", "failed"]),
         "FAIL at step 2: the run fails there")
    t.ok(run["error"] and run["steps"][1]["error"], "the failure's reason is on the run and the step")
    run = wait_run(d, admin, start(d, admin, aid, steps=2, sleep_ms="x"))
    t.eq(run["status"], "failed", "a malformed pilot input fails the run (the plugin says why)")


def test_approvals(t, d, w):
    admin = w.bearer("acme", "admin")
    approver = w.bearer("acme", "approver")
    user = w.bearer("acme", "user")
    aid = new_agent(d, admin, "careful")

    rid = start(d, user, aid, steps=3, approval_at=2)
    run = wait_run(d, user, rid, until=("waiting_approval",))
    t.eq([s["outcome"] for s in run["steps"]], ["continue", "needs_approval"], "the run waits after proposing")
    app_id = wait_pending_approval(d, approver, rid)
    r = d.request("GET", "/api/v1/approvals/" + app_id, headers=approver)
    a = r.json()
    t.eq((r.status, a["status"], a["run_id"], a["step"]), (200, "pending", rid, 1), "GET /approvals/{id}")
    t.ok(a["proposal"] is not None and a["expires_at"] is not None, "it carries the proposal and an expiry")
    r = d.request("GET", "/api/v1/approvals?status=pending", headers=user)
    t.eq((r.status, err_code(r)), (403, "forbidden"), "a plain user cannot see approvals")
    r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, body={"comment": "x"}, headers=user)
    t.eq(r.status, 403, "a plain user cannot approve")
    r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, body={"comment": "looks fine"}, headers=approver)
    t.eq((r.status, r.json()["status"], r.json()["comment"]), (200, "approved", "looks fine"), "the approver approves")
    r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, headers=approver)
    t.eq((r.status, r.json()["status"]), (200, "approved"), "the same decision again: 200, unchanged")
    r = d.request("POST", "/api/v1/approvals/%s/reject" % app_id, headers=admin)
    t.eq((r.status, err_code(r)), (409, "already_decided"), "a conflicting second decision -> 409")
    run = wait_run(d, user, rid)
    t.eq(run["status"], "succeeded", "after approval the run completes")
    t.eq([s["outcome"] for s in run["steps"]], ["continue", "needs_approval", "continue", "done"],
         "the approved step is then done, and the rest")

    rid = start(d, user, aid, steps=2, approval_at=1)
    app_id = wait_pending_approval(d, approver, rid)
    r = d.request("POST", "/api/v1/approvals/%s/reject" % app_id, body={"comment": "no"}, headers=admin)
    t.eq((r.status, r.json()["status"]), (200, "rejected"), "an admin rejects")
    run = wait_run(d, user, rid)
    t.eq(run["status"], "failed", "a rejected step fails the run (the pilot's choice)")

    # Four eyes: whoever started the run cannot decide it, even as admin.
    rid = start(d, approver, aid, steps=1, approval_at=1)
    app_id = wait_pending_approval(d, approver, rid)
    r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, headers=approver)
    t.eq((r.status, err_code(r)), (403, "four_eyes"), "the run's starter cannot approve it (four eyes)")
    r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, headers=admin)
    t.eq(r.status, 200, "another approver can")
    t.eq(wait_run(d, user, rid)["status"], "succeeded", "and the run goes on")

    for bad in ({"comment": 5}, {"verdict": "yes"}, {"comment": "x" * 2001}):
        r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, body=bad, headers=admin)
        t.eq(r.status, 422, "a malformed decision body %r -> 422" % list(bad)[0])
    r = d.request("GET", "/api/v1/approvals?status=maybe", headers=admin)
    t.eq(r.status, 400, "an unknown status filter -> 400")
    r = d.request("GET", "/api/v1/approvals?status=approved&limit=100", headers=admin)
    t.ok(len(r.json()["items"]) >= 2 and all(a["status"] == "approved" for a in r.json()["items"]),
         "the approved ones are listed by status")


def test_autonomy(t, d, w):
    """The agent's autonomy mode (else the tenant's, supervised by default)
    decides what happens to a proposal: autonomous runs it, observe declines
    it, supervised waits for a person (test_approvals)."""
    admin = w.bearer("acme", "admin")
    for mode, status, decision in (("autonomous", "succeeded", "approved"), ("observe", "failed", "rejected")):
        r = d.request("POST", "/api/v1/agents", body={"name": "auto-" + mode, "plugin": "agent-echo",
                                                      "autonomy": mode}, headers=admin)
        run = wait_run(d, admin, start(d, admin, r.json()["id"], steps=2, approval_at=1))
        t.eq((run["status"], [s["outcome"] for s in run["steps"]][:1]), (status, ["needs_approval"]),
             "%s: the proposal is recorded and the run %s without waiting" % (mode, status))
        apps = d.request("GET", "/api/v1/approvals?limit=100", headers=admin).json()["items"]
        mine = [a for a in apps if a["run_id"] == run["id"]]
        t.eq([(a["status"], a["decided_by"]) for a in mine], [(decision, "autonomy:" + mode)],
             "%s: the approval is %s by the autonomy mode, on the record" % (mode, decision))
        types = events_of(d, admin, run["id"])
        t.ok("approval.auto_decided" in types and "approval.requested" not in types,
             "%s: an approval.auto_decided event, no request to a person" % mode, types)


def test_cancel(t, d, w):
    admin = w.bearer("acme", "admin")
    aid = new_agent(d, admin, "slow")
    rid = start(d, admin, aid, steps=50, sleep_ms=100)
    wait_run(d, admin, rid, until=("running",))
    r = d.request("POST", "/api/v1/runs/%s/cancel" % rid, headers=admin)
    t.eq((r.status, r.json()["cancel_requested"]), (202, True), "cancelling a running run -> 202, requested")
    run = wait_run(d, admin, rid)
    t.eq(run["status"], "cancelled", "it stops at its next checkpoint")
    t.ok(len(run["steps"]) < 50, "before finishing its steps")
    r = d.request("POST", "/api/v1/runs/%s/cancel" % rid, headers=admin)
    t.eq((r.status, err_code(r)), (409, "run_finished"), "cancelling a finished run -> 409")

    rid = start(d, admin, aid, steps=2, approval_at=1)
    app_id = wait_pending_approval(d, admin, rid)
    r = d.request("POST", "/api/v1/runs/%s/cancel" % rid, headers=admin)
    t.eq((r.status, r.json()["status"]), (200, "cancelled"), "cancelling a waiting run is immediate")
    r = d.request("GET", "/api/v1/approvals/" + app_id, headers=admin)
    t.eq(r.json()["status"], "rejected", "its pending approval is closed")
    r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, headers=w.bearer("acme", "approver"))
    t.eq(r.status, 409, "and can no longer be approved")
    types = events_of(d, admin, rid)
    if types is not None:
        t.ok("run.cancelled" in types, "cancel is an event", types)


def test_budgets(t, d, w):
    admin = w.bearer("acme", "admin")
    # Reserve 100 tokens per step (engine.step_reserve_tokens); each step
    # reports 100: two steps fit in 250, the third cannot reserve.
    aid = new_agent(d, admin, "thrifty", budget={"tokens_day": 250})
    rid = start(d, admin, aid, steps=4, tokens_per_step=100, cost_micros_per_step=1)
    run = wait_run(d, admin, rid, until=FINAL + ("budget_exceeded",))
    t.eq(run["status"], "budget_exceeded", "a run that cannot reserve its next step stops in budget_exceeded")
    t.eq(len(run["steps"]), 2, "after the two steps the budget allowed")
    t.eq(run["usage"]["tokens_in"] + run["usage"]["tokens_out"], 200, "having spent 200 of 250 tokens")
    types = events_of(d, admin, rid)
    if types is not None:
        t.ok("budget.warning" in types and "budget.exceeded" in types and "run.budget_exceeded" in types,
             "a warning at 80% and the stop are events", types)
    r = d.request("POST", "/api/v1/runs/%s/resume" % rid, headers=admin)
    t.eq(r.status, 202, "resume is accepted (the run queues again)")
    run = wait_run(d, admin, rid, until=FINAL + ("budget_exceeded",))
    t.eq(run["status"], "budget_exceeded", "without more budget it stops again at once")
    a = d.request("GET", "/api/v1/agents/" + aid, headers=admin).json()
    a["budget"] = {"tokens_day": 1000}
    r = d.request("PUT", "/api/v1/agents/" + aid, body=a, headers=admin)
    t.eq(r.status, 200, "raise the agent's budget")
    r = d.request("POST", "/api/v1/runs/%s/resume" % rid, headers=w.bearer("acme", "user"))
    t.eq(r.status, 403, "only an admin resumes")
    r = d.request("POST", "/api/v1/runs/%s/resume" % rid, headers=admin)
    t.eq(r.status, 202, "resume after raising the budget")
    run = wait_run(d, admin, rid)
    t.eq((run["status"], len(run["steps"])), ("succeeded", 4), "the run completes, no step repeated")
    r = d.request("POST", "/api/v1/runs/%s/resume" % rid, headers=admin)
    t.eq((r.status, err_code(r)), (409, "not_resumable"), "resuming a finished run -> 409")

    # The reservation is the agent's declared step maximum when it has one
    # (budget.step_tokens), else engine.step_reserve_tokens (100 here).
    small = new_agent(d, admin, "declared", budget={"tokens_day": 120, "step_tokens": 50})
    big = new_agent(d, admin, "undeclared", budget={"tokens_day": 120})
    run = wait_run(d, admin, start(d, admin, small, steps=4, tokens_per_step=50), until=FINAL + ("budget_exceeded",))
    t.eq((run["status"], len(run["steps"])), ("budget_exceeded", 2), "reserving 50 per step: two steps fit in 120")
    run = wait_run(d, admin, start(d, admin, big, steps=4, tokens_per_step=50), until=FINAL + ("budget_exceeded",))
    t.eq((run["status"], len(run["steps"])), ("budget_exceeded", 1), "reserving the default 100: only one does")

    # Concurrency: 12 runs of 3 steps race for 1000 tokens; reservations
    # are atomic, so the total spent never exceeds the budget.
    aid = new_agent(d, admin, "racer", budget={"tokens_day": 1000})
    ids = [start(d, admin, aid, steps=3, tokens_per_step=100) for _ in range(12)]
    runs = [wait_run(d, admin, rid, until=FINAL + ("budget_exceeded",)) for rid in ids]
    spent = sum(r["usage"]["tokens_in"] + r["usage"]["tokens_out"] for r in runs)
    t.ok(spent <= 1000, "concurrent runs never overspend the budget together (spent %d of 1000)" % spent)
    t.ok(spent >= 900, "and the budget is used up, not wasted by leaked reservations (spent %d)" % spent)
    t.ok(any(r["status"] == "budget_exceeded" for r in runs), "some runs stop in budget_exceeded")


def test_workflow(t, d, w):
    admin = w.bearer("acme", "admin")
    first = new_agent(d, admin, "wf-first", config={"steps": 2})
    new_agent(d, admin, "wf-second")
    r = d.request("POST", "/api/v1/workflows", body={"name": "chain", "steps": [{"agent": first}, {"agent": "wf-second"}]},
                  headers=admin)
    if r.status == 404 and err_code(r) == "not_found":
        t.skip("workflow runs", "no /api/v1/workflows route")
        return
    t.eq(r.status, 201, "create a workflow of two agents", r.body[:200])
    r = d.request("POST", "/api/v1/aoa/run", body={"workflow": "chain", "input": {"q": "hi"}}, headers=admin)
    t.eq(r.status, 202, "POST /aoa/run of a workflow by name -> 202", r.body[:200])
    run = wait_run(d, admin, r.json()["run_id"])
    t.eq(run["status"], "succeeded", "the workflow run succeeds")
    # The second agent's input is the first's output, {"echo":...,"steps":2}:
    # the pilot takes "steps" from its input, so it too makes two steps.
    t.eq([s["agent_id"] == first for s in run["steps"]], [True, True, False, False],
         "two steps of the first agent, then the second's")
    t.eq(run["output"]["echo"]["echo"], {"q": "hi"}, "the first agent's output fed the second")


def test_fairness(t, d, w):
    """One tenant's queue of hundreds of runs does not starve another's
    single run: claiming goes round the tenants."""
    acme = w.bearer("acme", "admin")
    globex = w.bearer("globex", "admin")
    aid = new_agent(d, acme, "hog")
    gid = new_agent(d, globex, "small")
    ids = []
    lock = threading.Lock()

    def flood(n):
        for _ in range(n):
            rid = start(d, acme, aid, steps=1, sleep_ms=20)
            with lock:
                ids.append(rid)

    threads = [threading.Thread(target=flood, args=(75,)) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rid = start(d, globex, gid, steps=1)
    run = wait_run(d, globex, rid, timeout=60)
    queued = d.request("GET", "/api/v1/runs?status=queued&limit=100", headers=acme).json()["items"]
    t.eq(run["status"], "succeeded", "globex's single run completes")
    t.ok(len(queued) >= 50, "while acme's flood is still queued (%d of 300 waiting)" % len(queued))
    for rid in ids:
        wait_run(d, acme, rid, timeout=120)


def run_suite(t, store, label):
    d = Daemon(plugins=PLUGINS, store=store, extra=ENGINE + " limits: { enabled = false; };",
               tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")])
    try:
        d.start()
        w = World(t, d)
        for fn in (test_success, test_list, test_retries_and_failures, test_approvals, test_autonomy, test_cancel,
                   test_budgets, test_workflow, test_fairness):
            print("# %s: %s" % (label, fn.__name__))
            t.run(fn, d, w)
        d.stop()
        t.eq(d.proc.returncode, 0, "%s: aosd exits 0" % label)
    finally:
        d.cleanup()


def test_expiry(t, store, label):
    d = Daemon(plugins=PLUGINS, store=store, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")],
               extra="engine: { poll = 0.05; approval_ttl = 0.5; four_eyes = false; };")
    try:
        d.start()
        w = World(t, d)
        admin = w.bearer("acme", "admin")
        aid = new_agent(d, admin, "waits")
        rid = start(d, admin, aid, steps=1, approval_at=1)
        app_id = wait_pending_approval(d, admin, rid)
        run = wait_run(d, admin, rid)
        t.eq(run["status"], "failed", "%s: an expired approval counts as a rejection" % label)
        a = d.request("GET", "/api/v1/approvals/" + app_id, headers=admin).json()
        t.eq((a["status"], a["decided_by"]), ("expired", None), "%s: the approval is expired, decided by nobody" % label)
        r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, headers=admin)
        t.eq(r.status, 409, "%s: an expired approval cannot be approved" % label)
        rid = start(d, admin, aid, steps=1, approval_at=1)
        app_id = wait_pending_approval(d, admin, rid)
        r = d.request("POST", "/api/v1/approvals/%s/approve" % app_id, headers=admin)
        t.eq(r.status, 200, "%s: with four_eyes = false the starter may approve" % label)
        d.stop()
    finally:
        d.cleanup()


def main():
    t = Tap()
    t.run(run_suite, None, "sqlite")
    t.run(test_expiry, None, "sqlite")
    store, cleanup = pg_private_store()
    if store is not None:
        try:
            t.run(run_suite, store, "pgsql")
        finally:
            cleanup()
        store, cleanup = pg_private_store()
        try:
            t.run(test_expiry, store, "pgsql")
        finally:
            cleanup()
    else:
        print("# AOS_TEST_PGSQL not set: the PostgreSQL run is not run")
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
