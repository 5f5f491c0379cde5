"""Workflows CRUD, black-box, on SQLite and (when AOS_TEST_PGSQL is set)
PostgreSQL: GET/POST /api/v1/workflows, GET/PUT/DELETE /api/v1/workflows/{id}.

Two tenants, acme and globex, with users of every role (test_auth's World).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap, pg_private_store  # noqa: E402
from test_auth import OTHER_ID, PLUGINS, World  # noqa: E402

MISSING = "deadbeef-dead-4eef-8eef-deadbeefdead"


def err_code(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def err_message(r):
    try:
        return r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""


def make_agent(t, d, headers, name):
    r = d.request("POST", "/api/v1/agents", body={"name": name, "plugin": "agent-echo", "config": {"steps": 1}},
                  headers=headers)
    t.eq(r.status, 201, "create agent %s" % name, r.body[:300])
    return r.json()["id"]


def wf_body(name, *agents, **kw):
    body = {"name": name, "steps": [{"agent": a} for a in agents]}
    body.update(kw)
    return body


def test_crud(t, d, w):
    admin = w.bearer("acme", "admin")
    alpha = make_agent(t, d, admin, "wf-alpha")
    beta = make_agent(t, d, admin, "wf-beta")

    # Names and ids (any case) are resolved to ids; an agent may appear twice.
    body = wf_body("pipeline", "wf-alpha", beta.upper(), alpha, description="summarise, then review")
    r = d.request("POST", "/api/v1/workflows", body=body, headers=admin)
    t.eq(r.status, 201, "POST /workflows -> 201", r.body[:300])
    wf = r.json()
    t.ok(len(wf.get("id", "")) == 36, "the new workflow has an id")
    t.eq((wf["name"], wf["description"], wf["steps"]),
         ("pipeline", "summarise, then review", [{"agent": alpha}, {"agent": beta}, {"agent": alpha}]),
         "steps name agents by id, in order")
    t.ok(isinstance(wf["created_at"], int) and wf["updated_at"] == wf["created_at"], "created_at == updated_at")
    t.ok(isinstance(wf.get("created_by"), str) and wf["created_by"] != "", "created_by names the principal")

    r = d.request("GET", "/api/v1/workflows/" + wf["id"], headers=admin)
    t.eq((r.status, r.json()), (200, wf), "GET /workflows/{id} returns the same workflow")
    r = d.request("GET", "/api/v1/workflows/" + wf["id"].upper(), headers=admin)
    t.eq((r.status, r.json().get("id")), (200, wf["id"]), "an upper-case id names the same workflow")

    r = d.request("POST", "/api/v1/workflows", body=wf_body("single", "wf-beta"), headers=admin)
    t.eq((r.status, r.json().get("description"), r.json().get("steps")), (201, None, [{"agent": beta}]),
         "no description: null")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("nulldesc", "wf-beta", description=None), headers=admin)
    t.eq((r.status, r.json().get("description")), (201, None), "description null: none")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("emptydesc", "wf-beta", description=""), headers=admin)
    t.eq((r.status, r.json().get("description")), (201, ""), "an empty description is kept")

    # Renaming an agent does not change what a workflow runs.
    r = d.request("PUT", "/api/v1/agents/" + alpha, body={"name": "wf-alpha-renamed", "plugin": "agent-echo"},
                  headers=admin)
    t.eq(r.status, 200, "rename an agent")
    r = d.request("GET", "/api/v1/workflows/" + wf["id"], headers=admin)
    t.eq(r.json()["steps"][0], {"agent": alpha}, "the workflow still names the agent by id")

    # PUT is a full replacement; what GET returned may be sent back.
    put = dict(wf, name="pipeline-2", steps=[{"agent": "wf-beta"}])
    del put["description"]
    r = d.request("PUT", "/api/v1/workflows/" + wf["id"], body=put, headers=admin)
    t.eq(r.status, 200, "PUT /workflows/{id} -> 200", r.body[:300])
    u = r.json()
    t.eq((u["id"], u["name"], u["description"], u["steps"], u["created_at"], u["created_by"]),
         (wf["id"], "pipeline-2", None, [{"agent": beta}], wf["created_at"], wf["created_by"]),
         "PUT replaces name, steps and description; created_* stay")
    t.ok(u["updated_at"] >= wf["updated_at"], "updated_at moves forward")
    r = d.request("GET", "/api/v1/workflows/" + wf["id"], headers=admin)
    t.eq(r.json(), u, "GET after PUT shows the update")

    r = d.request("DELETE", "/api/v1/workflows/" + wf["id"], headers=admin)
    t.eq((r.status, r.body), (204, b""), "DELETE -> 204, no body")
    for method, body in (("GET", None), ("PUT", wf_body("again", "wf-beta")), ("DELETE", None)):
        r = d.request(method, "/api/v1/workflows/" + wf["id"], body=body, headers=admin)
        t.eq((r.status, err_code(r)), (404, "not_found"), "%s of a deleted workflow -> 404" % method)
    r = d.request("GET", "/api/v1/workflows?limit=100", headers=admin)
    t.ok(all(i["id"] != wf["id"] for i in r.json()["items"]), "a deleted workflow is not listed")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("pipeline-2", "wf-beta"), headers=admin)
    t.ok(r.status == 201 and r.json()["id"] != wf["id"], "a deleted workflow's name can be reused")

    for bad in ("not-a-uuid", "00000000-0000-0000-0000-00000000000g"):
        r = d.request("GET", "/api/v1/workflows/" + bad, headers=admin)
        t.eq((r.status, err_code(r)), (404, "not_found"), "GET of a malformed id %r -> 404" % bad)
        r = d.request("PUT", "/api/v1/workflows/" + bad, body=wf_body("z", "wf-beta"), headers=admin)
        t.eq(r.status, 404, "PUT of a malformed id -> 404")
        r = d.request("DELETE", "/api/v1/workflows/" + bad, headers=admin)
        t.eq(r.status, 404, "DELETE of a malformed id -> 404")
    r = d.request("GET", "/api/v1/workflows/" + MISSING, headers=admin)
    t.eq(r.status, 404, "GET of an unknown id -> 404")


def test_validation(t, d, w):
    admin = w.bearer("acme", "admin")
    a = make_agent(t, d, admin, "val-a")
    gone = make_agent(t, d, admin, "val-gone")
    t.eq(d.request("DELETE", "/api/v1/agents/" + gone, headers=admin).status, 204, "delete agent val-gone")
    foreign = make_agent(t, d, w.bearer("globex", "admin"), "val-foreign")

    r = d.request("POST", "/api/v1/workflows", body=wf_body("taken", "val-a"), headers=admin)
    t.eq(r.status, 201, "create 'taken'")
    taken = r.json()["id"]
    r = d.request("POST", "/api/v1/workflows", body=wf_body("taken", "val-a"), headers=admin)
    t.eq((r.status, err_code(r)), (409, "name_taken"), "a duplicate name -> 409")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("other", "val-a"), headers=admin)
    other = r.json()["id"]
    r = d.request("PUT", "/api/v1/workflows/" + other, body=wf_body("taken", "val-a"), headers=admin)
    t.eq((r.status, err_code(r)), (409, "name_taken"), "renaming onto a taken name -> 409")
    r = d.request("PUT", "/api/v1/workflows/" + taken, body=wf_body("taken", "val-a", "val-a"), headers=admin)
    t.eq(r.status, 200, "PUT keeping its own name is fine")

    # Agents that are not live agents of the tenant: 422 naming the step.
    for what, ref in (("an unknown name", "nobody"), ("an unknown id", MISSING), ("a deleted agent", gone),
                      ("a deleted agent's name", "val-gone"), ("another tenant's agent id", foreign),
                      ("another tenant's agent name", "val-foreign")):
        r = d.request("POST", "/api/v1/workflows", body=wf_body("x", "val-a", ref), headers=admin)
        t.eq((r.status, err_code(r)), (422, "unknown_agent"), "POST with %s -> 422 unknown_agent" % what, r.body[:300])
        t.ok(err_message(r).startswith("step 2"), "the message names step 2: %r" % err_message(r))
        t.ok(foreign not in r.body.decode() and "val-foreign" not in r.body.decode(), "and echoes no agent")
        r = d.request("PUT", "/api/v1/workflows/" + taken, body=wf_body("taken", ref), headers=admin)
        t.eq((r.status, err_code(r)), (422, "unknown_agent"), "PUT with %s -> 422" % what)
        t.ok(err_message(r).startswith("step 1"), "the message names step 1")

    r = d.request("POST", "/api/v1/workflows", body=wf_body("full", *(["val-a"] * 32)), headers=admin)
    t.eq((r.status, len(r.json().get("steps", []))), (201, 32), "32 steps are accepted")
    cases = [
        ("no steps", {"name": "x"}),
        ("empty steps", wf_body("x")),
        ("33 steps", wf_body("x", *(["val-a"] * 33))),
        ("steps not an array", {"name": "x", "steps": {"agent": "val-a"}}),
        ("steps null", {"name": "x", "steps": None}),
        ("a step not an object", {"name": "x", "steps": ["val-a"]}),
        ("a step with an unknown field", {"name": "x", "steps": [{"agent": "val-a", "input": {}}]}),
        ("a step without agent", {"name": "x", "steps": [{}]}),
        ("a step agent not a string", {"name": "x", "steps": [{"agent": 5}]}),
        ("a step agent empty", {"name": "x", "steps": [{"agent": ""}]}),
        ("a step agent of 101 characters", {"name": "x", "steps": [{"agent": "n" * 101}]}),
        ("no name", {"steps": [{"agent": "val-a"}]}),
        ("empty name", wf_body("", "val-a")),
        ("name of 101 characters", wf_body("n" * 101, "val-a")),
        ("name with a newline", wf_body("a\nb", "val-a")),
        ("name not a string", wf_body(5, "val-a")),
        ("description of 1001 characters", wf_body("x", "val-a", description="d" * 1001)),
        ("description not a string", wf_body("x", "val-a", description=5)),
        ("unknown field", wf_body("x", "val-a", agents=["val-a"])),
    ]
    for what, body in cases:
        r = d.request("POST", "/api/v1/workflows", body=body, headers=admin)
        t.eq((r.status, err_code(r)), (422, "invalid_field"), "POST with %s -> 422" % what, r.body[:200])
        r = d.request("PUT", "/api/v1/workflows/" + taken, body=body, headers=admin)
        t.eq(r.status, 422, "PUT with %s -> 422" % what)
    r = d.request("POST", "/api/v1/workflows", body=wf_body("first-bad", "val-a", "val-a", "val-a", "nobody", "x"),
                  headers=admin)
    t.ok(r.status == 422 and err_message(r).startswith("step 4"), "the first bad step is named (step 4)")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("\u00e9" * 100, "val-a", description="\u00e9" * 1000),
                  headers=admin)
    t.eq(r.status, 201, "100 non-ASCII characters of name, 1000 of description are accepted")
    r = d.request("POST", "/api/v1/workflows", body=b"{not json",
                  headers=dict(admin, **{"Content-Type": "application/json"}))
    t.eq(r.status, 400, "a body that is not JSON -> 400")
    r = d.request("POST", "/api/v1/workflows", body=[wf_body("x", "val-a")], headers=admin)
    t.eq(r.status, 400, "a body that is not an object -> 400")
    r = d.request("GET", "/api/v1/workflows/" + taken, headers=admin)
    t.eq((r.status, r.json()["steps"]), (200, [{"agent": a}, {"agent": a}]), "refused PUTs changed nothing")


def test_roles(t, d, w):
    admin = w.bearer("acme", "admin")
    make_agent(t, d, admin, "roles-agent")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("roles", "roles-agent"), headers=admin)
    wid = r.json()["id"]
    for role in ("user", "approver"):
        for how, h in (("token", w.bearer("acme", role)), ("API key", {"X-API-Key": w.keys[("acme", role)]})):
            r = d.request("GET", "/api/v1/workflows/" + wid, headers=h)
            t.eq(r.status, 200, "%s (%s) may GET a workflow" % (role, how))
            r = d.request("GET", "/api/v1/workflows", headers=h)
            t.ok(r.status == 200 and any(i["id"] == wid for i in r.json()["items"]), "%s (%s) may list" % (role, how))
            for method, path, body in (("POST", "/api/v1/workflows", wf_body("by-" + role, "roles-agent")),
                                       ("PUT", "/api/v1/workflows/" + wid, wf_body("renamed", "roles-agent")),
                                       ("DELETE", "/api/v1/workflows/" + wid, None)):
                r = d.request(method, path, body=body, headers=h)
                t.eq((r.status, err_code(r)), (403, "forbidden"), "%s (%s) may not %s -> 403" % (role, how, method))
    r = d.request("GET", "/api/v1/workflows/" + wid, headers=admin)
    t.eq(r.json()["name"], "roles", "refused writes changed nothing")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("by-key", "roles-agent"),
                  headers={"X-API-Key": w.keys[("acme", "admin")]})
    t.eq(r.status, 201, "an admin API key may create")
    t.ok(str(r.json().get("created_by", "")).startswith("key:"), "created_by names the key principal")


def test_cross_tenant(t, d, w):
    admin = w.bearer("acme", "admin")
    make_agent(t, d, admin, "xt-agent")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("acme-only", "xt-agent", description="s3cret plan"),
                  headers=admin)
    wid = r.json()["id"]
    g = w.bearer("globex", "admin")
    make_agent(t, d, g, "xt-agent")
    r = d.request("GET", "/api/v1/workflows/" + wid, headers=g)
    t.eq((r.status, err_code(r)), (404, "not_found"), "globex cannot GET acme's workflow (404)")
    t.ok(b"s3cret" not in r.body and b"acme-only" not in r.body, "and learns nothing of it")
    r = d.request("PUT", "/api/v1/workflows/" + wid, body=wf_body("stolen", "xt-agent"), headers=g)
    t.eq(r.status, 404, "globex cannot PUT acme's workflow (404)")
    r = d.request("PUT", "/api/v1/workflows/" + wid, body=wf_body("stolen", "nobody"), headers=g)
    t.eq(r.status, 404, "404 even with a body naming an unknown agent (no existence oracle)")
    r = d.request("DELETE", "/api/v1/workflows/" + wid, headers=g)
    t.eq(r.status, 404, "globex cannot DELETE acme's workflow (404)")
    r = d.request("GET", "/api/v1/workflows?limit=100", headers=g)
    t.ok(r.status == 200 and all(i["id"] != wid for i in r.json()["items"]), "globex's list never shows it")
    r = d.request("POST", "/api/v1/workflows", body=wf_body("acme-only", "xt-agent"), headers=g)
    t.eq(r.status, 201, "names are per tenant: globex may use the same name (with its own agent)")
    r = d.request("GET", "/api/v1/workflows/" + wid, headers=w.bearer("acme", "user"))
    t.eq((r.status, r.json().get("name"), r.json().get("description")), (200, "acme-only", "s3cret plan"),
         "acme's workflow is untouched")
    r = d.request("GET", "/api/v1/workflows/" + wid, headers=dict(g, **{"X-Tenant-ID": TENANT_ID}))
    t.eq(r.status, 403, "a forged X-Tenant-ID is 403")


def test_paging(t, d, w):
    h = w.bearer("globex", "admin")
    make_agent(t, d, h, "page-agent")
    made = []
    for i in range(5):
        r = d.request("POST", "/api/v1/workflows", body=wf_body("page-%d" % i, "page-agent"), headers=h)
        made.append(r.json()["id"])
    r = d.request("GET", "/api/v1/workflows?limit=100", headers=h)
    everything = [i["id"] for i in r.json()["items"]]
    t.eq(r.json()["next_cursor"], None, "one page holds everything: next_cursor null")
    seen, cursor, pages = [], None, 0
    while True:
        r = d.request("GET", "/api/v1/workflows?limit=2" + ("&cursor=" + cursor if cursor else ""), headers=h)
        if r.status != 200:
            t.ok(False, "paging", r.body[:200])
            break
        page = r.json()
        t.ok(len(page["items"]) <= 2, "a page holds at most limit items")
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor or pages > 20:
            break
    t.eq(seen, everything, "paging by 2 yields every workflow once, in the same order")
    t.ok(set(made) <= set(seen), "including the ones just created")
    for q in ("limit=0", "limit=101", "limit=x", "limit=1&limit=2", "cursor=garbage", "cursor=12.not-a-uuid"):
        r = d.request("GET", "/api/v1/workflows?" + q, headers=h)
        t.eq((r.status, err_code(r)), (400, "invalid_query"), "?%s -> 400" % q)


def run_suite(t, store, label):
    d = Daemon(plugins=PLUGINS, store=store, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")],
               auth_extra='registration = "admin-only";', server_extra="workers = 4;")
    try:
        d.start()
        w = World(t, d)
        for fn in (test_crud, test_validation, test_roles, test_cross_tenant, test_paging):
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
