"""Agents CRUD, black-box, on SQLite and (when AOS_TEST_PGSQL is set)
PostgreSQL: GET/POST /api/v1/agents, GET/PUT/DELETE /api/v1/agents/{id}.

Three tenants: acme and globex (users of every role, from test_auth's
World) and initech, whose `plugins` setting does not allow agent-echo.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap, pg_private_store  # noqa: E402
from test_auth import OTHER_ID, PASSWORD, PLUGINS, World  # noqa: E402

THIRD_ID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
RESTRICTED = 'plugins = [ "auth-local", "auth-apikey" ];'


class RestrictedDaemon(Daemon):
    """initech may use the auth plugins only: no agent plugin at all."""

    def conf_text(self, server_extra=None, extra=None):
        text = Daemon.conf_text(self, server_extra, extra)
        block = 'name = "initech"; }'
        assert block in text
        return text.replace(block, 'name = "initech"; %s }' % RESTRICTED)


def agent_body(name, **kw):
    body = {"name": name, "plugin": "agent-echo", "config": {"steps": 2}}
    body.update(kw)
    return body


def err_code(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def test_crud(t, d, w):
    admin = w.bearer("acme", "admin")
    body = agent_body("writer", config={"steps": 3, "approval_at": 2, "retry_always": True}, autonomy="autonomous",
                      approval_policy={"risky": True},
                      budget={"tokens_day": 1000, "micro_usd_month": 0, "step_tokens": 0, "step_micro_usd": 2500})
    r = d.request("POST", "/api/v1/agents", body=body, headers=admin)
    t.eq(r.status, 201, "POST /agents -> 201", r.body[:300])
    a = r.json()
    t.ok(len(a.get("id", "")) == 36, "the new agent has an id")
    t.eq((a["name"], a["plugin"], a["config"], a["autonomy"], a["approval_policy"]),
         ("writer", "agent-echo", {"steps": 3, "approval_at": 2, "retry_always": True}, "autonomous", {"risky": True}),
         "the response holds what was sent")
    t.eq(a["budget"], {"tokens_day": 1000, "tokens_month": None, "micro_usd_day": None, "micro_usd_month": 0,
                       "step_tokens": 0, "step_micro_usd": 2500},
         "budgets and step reserves: given ones set, the others null (none)")
    t.ok(isinstance(a["created_at"], int) and a["updated_at"] == a["created_at"], "created_at == updated_at")

    r = d.request("GET", "/api/v1/agents/" + a["id"], headers=admin)
    t.eq((r.status, r.json()), (200, a), "GET /agents/{id} returns the same agent")
    r = d.request("GET", "/api/v1/agents/" + a["id"].upper(), headers=admin)
    t.eq((r.status, r.json().get("id")), (200, a["id"]), "an upper-case id names the same agent")

    r = d.request("POST", "/api/v1/agents", body=agent_body("plain"), headers=admin)
    plain = r.json()
    t.eq((r.status, plain["autonomy"], plain["approval_policy"]), (201, None, {}), "defaults: autonomy null, policy {}")
    t.eq((plain["budget"]["step_tokens"], plain["budget"]["step_micro_usd"]), (None, None),
         "no step reserve declared: null (the engine's default)")
    r = d.request("PUT", "/api/v1/agents/" + plain["id"],
                  body=agent_body("plain", budget={"step_tokens": 10 ** 18, "step_micro_usd": None}), headers=admin)
    t.eq((r.status, r.json()["budget"]["step_tokens"], r.json()["budget"]["step_micro_usd"]), (200, 10 ** 18, None),
         "PUT sets a step reserve (up to 10^18); null means none")
    r = d.request("POST", "/api/v1/agents", body={"name": "no-config", "plugin": "agent-echo"}, headers=admin)
    t.eq((r.status, r.json().get("config")), (201, {}), "config defaults to {}")

    # PUT is a full replacement; what GET returned may be sent back.
    put = dict(a, name="writer-2", config={"steps": 5})
    del put["autonomy"]
    del put["budget"]
    r = d.request("PUT", "/api/v1/agents/" + a["id"], body=put, headers=admin)
    t.eq(r.status, 200, "PUT /agents/{id} -> 200", r.body[:300])
    u = r.json()
    t.eq((u["id"], u["name"], u["config"], u["autonomy"], u["approval_policy"], u["created_at"]),
         (a["id"], "writer-2", {"steps": 5}, None, {"risky": True}, a["created_at"]),
         "PUT replaces the fields; omitted ones go back to their defaults")
    t.eq(u["budget"], {"tokens_day": None, "tokens_month": None, "micro_usd_day": None, "micro_usd_month": None,
                       "step_tokens": None, "step_micro_usd": None},
         "an omitted budget is cleared, step reserves included (back to the engine's default)")
    t.ok(u["updated_at"] >= a["updated_at"], "updated_at moves forward")
    r = d.request("GET", "/api/v1/agents/" + a["id"], headers=admin)
    t.eq(r.json(), u, "GET after PUT shows the update")

    r = d.request("DELETE", "/api/v1/agents/" + a["id"], headers=admin)
    t.eq((r.status, r.body), (204, b""), "DELETE -> 204, no body")
    for method, body in (("GET", None), ("PUT", agent_body("again")), ("DELETE", None)):
        r = d.request(method, "/api/v1/agents/" + a["id"], body=body, headers=admin)
        t.eq((r.status, err_code(r)), (404, "not_found"), "%s of a deleted agent -> 404" % method)
    r = d.request("GET", "/api/v1/agents?limit=100", headers=admin)
    t.ok(all(i["id"] != a["id"] for i in r.json()["items"]), "a deleted agent is not listed")
    r = d.request("POST", "/api/v1/agents", body=agent_body("writer-2"), headers=admin)
    t.ok(r.status == 201 and r.json()["id"] != a["id"], "a deleted agent's name can be reused")

    for bad in ("not-a-uuid", "00000000-0000-0000-0000-00000000000g"):
        r = d.request("GET", "/api/v1/agents/" + bad, headers=admin)
        t.eq((r.status, err_code(r)), (404, "not_found"), "GET of a malformed id %r -> 404" % bad)
        r = d.request("PUT", "/api/v1/agents/" + bad, body=agent_body("z"), headers=admin)
        t.eq(r.status, 404, "PUT of a malformed id -> 404")
        r = d.request("DELETE", "/api/v1/agents/" + bad, headers=admin)
        t.eq(r.status, 404, "DELETE of a malformed id -> 404")
    r = d.request("GET", "/api/v1/agents/deadbeef-dead-4eef-8eef-deadbeefdead", headers=admin)
    t.eq(r.status, 404, "GET of an unknown id -> 404")


def test_validation(t, d, w):
    admin = w.bearer("acme", "admin")
    r = d.request("POST", "/api/v1/agents", body=agent_body("taken"), headers=admin)
    t.eq(r.status, 201, "create 'taken'")
    taken_id = r.json()["id"]
    r = d.request("POST", "/api/v1/agents", body=agent_body("taken"), headers=admin)
    t.eq((r.status, err_code(r)), (409, "name_taken"), "a duplicate name -> 409")
    r = d.request("POST", "/api/v1/agents", body=agent_body("other-name"), headers=admin)
    other_id = r.json()["id"]
    r = d.request("PUT", "/api/v1/agents/" + other_id, body=agent_body("taken"), headers=admin)
    t.eq((r.status, err_code(r)), (409, "name_taken"), "renaming onto a taken name -> 409")
    r = d.request("PUT", "/api/v1/agents/" + taken_id, body=agent_body("taken", config={"steps": 4}), headers=admin)
    t.eq(r.status, 200, "PUT keeping its own name is fine")

    r = d.request("POST", "/api/v1/agents", body=agent_body("x", plugin="agent-nope"), headers=admin)
    t.eq((r.status, err_code(r)), (422, "unknown_plugin"), "an unknown plugin -> 422 unknown_plugin")
    t.ok("agent-nope" in r.json()["error"]["message"], "the message names the plugin")
    r = d.request("POST", "/api/v1/agents", body=agent_body("x", plugin="auth-local"), headers=admin)
    t.eq((r.status, err_code(r)), (422, "unknown_plugin"), "a plugin that is not an agent plugin -> 422")
    r = d.request("PUT", "/api/v1/agents/" + taken_id, body=agent_body("taken", plugin="agent-nope"), headers=admin)
    t.eq((r.status, err_code(r)), (422, "unknown_plugin"), "PUT checks the plugin too")

    cases = [
        ("config is an array", agent_body("x", config=[1, 2])),
        ("config is a string", agent_body("x", config="{}")),
        ("config is null", agent_body("x", config=None)),
        ("no name", {"plugin": "agent-echo"}),
        ("empty name", agent_body("")),
        ("name of 101 characters", agent_body("n" * 101)),
        ("name with a newline", agent_body("a\nb")),
        ("name not a string", agent_body(5)),
        ("no plugin", {"name": "x"}),
        ("unknown autonomy", agent_body("x", autonomy="reckless")),
        ("approval_policy not an object", agent_body("x", approval_policy="always")),
        ("negative budget", agent_body("x", budget={"tokens_day": -1})),
        ("negative step reserve", agent_body("x", budget={"step_tokens": -1})),
        ("step reserve too large", agent_body("x", budget={"step_micro_usd": 10 ** 18 + 1})),
        ("step reserve a string", agent_body("x", budget={"step_tokens": "100"})),
        ("fractional budget", agent_body("x", budget={"tokens_day": 1.5})),
        ("unknown budget member", agent_body("x", budget={"tokens_week": 5})),
        ("unknown field", agent_body("x", budgets={"tokens_day": 5})),
    ]
    for what, body in cases:
        r = d.request("POST", "/api/v1/agents", body=body, headers=admin)
        t.eq((r.status, err_code(r)), (422, "invalid_field"), "POST with %s -> 422" % what, r.body[:200])
        r = d.request("PUT", "/api/v1/agents/" + taken_id, body=body, headers=admin)
        t.eq(r.status, 422, "PUT with %s -> 422" % what)
    r = d.request("POST", "/api/v1/agents", body=agent_body("n" * 100), headers=admin)
    t.eq(r.status, 201, "a name of exactly 100 characters is accepted")
    r = d.request("POST", "/api/v1/agents", body=agent_body("\u00e9" * 100), headers=admin)
    t.eq(r.status, 201, "100 non-ASCII characters are accepted (characters, not bytes)")
    r = d.request("POST", "/api/v1/agents", body=agent_body("nulls", autonomy=None, budget=None), headers=admin)
    t.eq(r.status, 201, "autonomy null and budget null mean none")
    r = d.request("POST", "/api/v1/agents", body=b"{not json", headers=dict(admin, **{"Content-Type": "application/json"}))
    t.eq(r.status, 400, "a body that is not JSON -> 400")
    r = d.request("POST", "/api/v1/agents", body=[agent_body("x")], headers=admin)
    t.eq(r.status, 400, "a body that is not an object -> 400")
    r = d.request("GET", "/api/v1/agents/" + taken_id, headers=admin)
    t.eq((r.status, r.json()["config"]), (200, {"steps": 4}), "refused PUTs changed nothing")
    # The plugin's own refusal (agent-echo's validate_config, man 7 agent-echo).
    r = d.request("POST", "/api/v1/agents", body=agent_body("x", config={"nested": {"a": 1}}), headers=admin)
    t.eq((r.status, err_code(r)), (422, "invalid_config"), "a config key the plugin does not know -> 422")
    t.ok('unknown key "nested"' in r.json()["error"]["message"], "with the plugin's reason", r.body[:300])
    r = d.request("PUT", "/api/v1/agents/" + taken_id, body=agent_body("taken", config={"steps": 0}), headers=admin)
    t.eq((r.status, err_code(r)), (422, "invalid_config"), "PUT: a value the plugin refuses -> 422")
    t.ok('"steps": 0 is out of range 1..10000' in r.json()["error"]["message"], "with the plugin's reason")
    r = d.request("GET", "/api/v1/agents/" + taken_id, headers=admin)
    t.eq(r.json()["config"], {"steps": 4}, "the refused PUT changed nothing")


def test_plugin_not_allowed(t, d, w):
    email = "admin.initech.%s@example.com" % os.urandom(3).hex()
    rc, out, err = d.aosctl("user", "add", "--tenant", "initech", "--email", email, "--role", "admin",
                            stdin=PASSWORD + "\n")
    t.eq(rc, 0, "aosctl user add (initech)", out + err)
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
    t.eq(r.status, 200, "initech admin logs in")
    h = {"Authorization": "Bearer " + r.json()["access_token"]}
    r = d.request("POST", "/api/v1/agents", body=agent_body("mine"), headers=h)
    t.eq((r.status, err_code(r)), (422, "plugin_not_allowed"), "a plugin the tenant may not use -> 422")
    t.ok("agent-echo" in r.json()["error"]["message"], "the message names the plugin")
    r = d.request("GET", "/api/v1/agents", headers=h)
    t.eq((r.status, r.json()["items"]), (200, []), "nothing was created")


def test_roles(t, d, w):
    r = d.request("POST", "/api/v1/agents", body=agent_body("roles"), headers=w.bearer("acme", "admin"))
    aid = r.json()["id"]
    for role in ("user", "approver"):
        for how, h in (("token", w.bearer("acme", role)), ("API key", {"X-API-Key": w.keys[("acme", role)]})):
            r = d.request("GET", "/api/v1/agents/" + aid, headers=h)
            t.eq(r.status, 200, "%s (%s) may GET an agent" % (role, how))
            r = d.request("GET", "/api/v1/agents", headers=h)
            t.ok(r.status == 200 and any(i["id"] == aid for i in r.json()["items"]), "%s (%s) may list" % (role, how))
            for method, path, body in (("POST", "/api/v1/agents", agent_body("by-" + role)),
                                       ("PUT", "/api/v1/agents/" + aid, agent_body("renamed")),
                                       ("DELETE", "/api/v1/agents/" + aid, None)):
                r = d.request(method, path, body=body, headers=h)
                t.eq((r.status, err_code(r)), (403, "forbidden"), "%s (%s) may not %s -> 403" % (role, how, method))
    r = d.request("GET", "/api/v1/agents/" + aid, headers=w.bearer("acme", "admin"))
    t.eq(r.json()["name"], "roles", "refused writes changed nothing")
    r = d.request("POST", "/api/v1/agents", body=agent_body("by-key"), headers={"X-API-Key": w.keys[("acme", "admin")]})
    t.eq(r.status, 201, "an admin API key may create")
    t.ok(str(r.json().get("created_by", "")).startswith("key:"), "created_by names the key principal")


def test_cross_tenant(t, d, w):
    r = d.request("POST", "/api/v1/agents", body=agent_body("acme-only", config={"tokens_per_step": 31337}),
                  headers=w.bearer("acme", "admin"))
    aid = r.json()["id"]
    g = w.bearer("globex", "admin")
    r = d.request("GET", "/api/v1/agents/" + aid, headers=g)
    t.eq((r.status, err_code(r)), (404, "not_found"), "globex cannot GET acme's agent (404)")
    t.ok(b"31337" not in r.body and b"acme-only" not in r.body, "and learns nothing of it")
    r = d.request("PUT", "/api/v1/agents/" + aid, body=agent_body("stolen"), headers=g)
    t.eq(r.status, 404, "globex cannot PUT acme's agent (404)")
    r = d.request("PUT", "/api/v1/agents/" + aid, body=agent_body("stolen", plugin="agent-nope"), headers=g)
    t.eq(r.status, 404, "404 even with a body that would be refused (no existence oracle)")
    r = d.request("DELETE", "/api/v1/agents/" + aid, headers=g)
    t.eq(r.status, 404, "globex cannot DELETE acme's agent (404)")
    r = d.request("GET", "/api/v1/agents?limit=100", headers=g)
    t.ok(r.status == 200 and all(i["id"] != aid for i in r.json()["items"]), "globex's list never shows it")
    r = d.request("POST", "/api/v1/agents", body=agent_body("acme-only"), headers=g)
    t.eq(r.status, 201, "names are per tenant: globex may use the same name")
    r = d.request("GET", "/api/v1/agents/" + aid, headers=w.bearer("acme", "user"))
    t.eq((r.status, r.json().get("name"), r.json().get("config")), (200, "acme-only", {"tokens_per_step": 31337}),
         "acme's agent is untouched")
    r = d.request("GET", "/api/v1/agents/" + aid, headers=dict(g, **{"X-Tenant-ID": TENANT_ID}))
    t.eq(r.status, 403, "a forged X-Tenant-ID is 403")


def test_paging(t, d, w):
    h = w.bearer("globex", "admin")
    made = []
    for i in range(5):
        r = d.request("POST", "/api/v1/agents", body=agent_body("page-%d" % i), headers=h)
        made.append(r.json()["id"])
    r = d.request("GET", "/api/v1/agents?limit=100", headers=h)
    everything = [i["id"] for i in r.json()["items"]]
    t.eq(r.json()["next_cursor"], None, "one page holds everything: next_cursor null")
    seen, cursor, pages = [], None, 0
    while True:
        path = "/api/v1/agents?limit=2" + ("&cursor=" + cursor if cursor else "")
        r = d.request("GET", path, headers=h)
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
    t.eq(seen, everything, "paging by 2 yields every agent once, in the same order")
    t.ok(set(made) <= set(seen), "including the ones just created")
    created = [c for c in (d.request("GET", "/api/v1/agents/" + x, headers=h).json()["created_at"] for x in made)]
    t.eq(created, sorted(created), "oldest first")
    for q in ("limit=0", "limit=101", "limit=x", "limit=1&limit=2", "cursor=garbage", "cursor=12.not-a-uuid"):
        r = d.request("GET", "/api/v1/agents?" + q, headers=h)
        t.eq((r.status, err_code(r)), (400, "invalid_query"), "?%s -> 400" % q)


def run_suite(t, store, label):
    d = RestrictedDaemon(plugins=PLUGINS, store=store,
                         tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex"), (THIRD_ID, "initech")],
                         auth_extra='registration = "admin-only";', server_extra="workers = 4;")
    try:
        d.start()
        w = World(t, d)
        for fn in (test_crud, test_validation, test_plugin_not_allowed, test_roles, test_cross_tenant, test_paging):
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
