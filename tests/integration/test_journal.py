"""The API journal, black-box: GET /api/v1/journal shows a tenant admin its
own tenant's requests (route patterns, never raw paths; statuses), never
another tenant's; users get 403; paging works; and after SIGTERM every
request answered before it is in the store (nothing lost on a clean
shutdown), read straight from the SQLite file once aosd has exited.
"""
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap  # noqa: E402

OTHER_ID = "0b3e8c1d-2f4a-4b5c-9d6e-7f8a9b0c1d2e"
PASSWORD = "correct horse battery staple"
PLUGINS = ("agent-echo", "auth-local", "auth-apikey")
KEY_ID = "2c9d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"  # a well-formed id no tenant has


def make_users(d):
    """acme: admin + user; globex: admin.  Returns {(tenant, role): token}."""
    tokens = {}
    run = os.urandom(3).hex()
    for tenant, role in (("acme", "admin"), ("acme", "user"), ("globex", "admin")):
        email = "%s.%s.%s@example.com" % (role, tenant, run)
        rc, out, err = d.aosctl("user", "add", "--tenant", tenant, "--email", email, "--role", role,
                                stdin=PASSWORD + "\n")
        if rc != 0:
            raise RuntimeError("aosctl user add failed: %s %s" % (out, err))
        r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
        if r.status != 200:
            raise RuntimeError("login failed: %d %s" % (r.status, r.body))
        tokens[(tenant, role)] = {"Authorization": "Bearer " + r.json()["access_token"]}
    return tokens


def journal(d, headers, query=""):
    return d.request("GET", "/api/v1/journal" + query, headers=headers)


def wait_for(d, headers, pred, timeout=10.0):
    """Polls the journal (written off the hot path, in batches) until pred
    holds for its items; returns the last items seen."""
    deadline = time.monotonic() + timeout
    items = []
    while time.monotonic() < deadline:
        r = journal(d, headers, "?limit=500")
        if r.status == 200:
            items = r.json()["items"]
            if pred(items):
                break
        time.sleep(0.1)
    return items


def test_api(t, d, tok):
    admin, user, globex = tok[("acme", "admin")], tok[("acme", "user")], tok[("globex", "admin")]
    marks = {}
    for i in range(3):
        rid = "jr-acme-%d-%s" % (i, os.urandom(4).hex())
        d.request("GET", "/api/v1/auth/me", headers=dict(user, **{"X-Request-ID": rid}))
        marks[rid] = ("GET", "/api/v1/auth/me", 200)
    rid = "jr-acme-del-" + os.urandom(4).hex()
    r = d.request("DELETE", "/api/v1/auth/api-keys/" + KEY_ID, headers=dict(admin, **{"X-Request-ID": rid}))
    t.eq(r.status, 404, "revoking an unknown key is 404 (a journaled failure)")
    marks[rid] = ("DELETE", "/api/v1/auth/api-keys/{id}", 404)
    grid = "jr-globex-" + os.urandom(4).hex()
    d.request("GET", "/api/v1/auth/me", headers=dict(globex, **{"X-Request-ID": grid}))
    anon = "jr-anon-" + os.urandom(4).hex()
    r = d.request("GET", "/api/v1/auth/me", headers={"X-Request-ID": anon})
    t.eq(r.status, 401, "an anonymous request is refused")

    items = wait_for(d, admin, lambda it: set(marks) <= {x["request_id"] for x in it})
    by_rid = {x["request_id"]: x for x in items}
    t.ok(set(marks) <= set(by_rid), "acme's admin sees acme's requests", sorted(by_rid))
    for rid, (method, route, status) in sorted(marks.items()):
        x = by_rid.get(rid, {})
        t.eq((x.get("method"), x.get("route"), x.get("status")), (method, route, status),
             "%s %s journaled with its route pattern and status" % (method, route))
    x = by_rid.get(next(iter(marks)), {})
    t.eq(sorted(x), sorted(["time", "request_id", "principal", "method", "route", "status", "latency_ms",
                            "bytes_in", "bytes_out", "client_ip"]), "an item has exactly the documented fields")
    t.ok(isinstance(x.get("time"), int) and x.get("client_ip") == "127.0.0.1" and x.get("principal"),
         "time, client ip and principal are recorded", x)
    t.ok(all(KEY_ID not in str(v) for v in items), "raw paths (ids from URLs) are never stored")
    t.ok(grid not in by_rid, "acme's admin never sees globex's requests")
    t.ok(anon not in by_rid, "unauthenticated requests are in no tenant's journal")
    times = [(v["time"]) for v in items]
    t.eq(times, sorted(times, reverse=True), "newest first")

    gitems = wait_for(d, globex, lambda it: grid in {x["request_id"] for x in it})
    t.ok(grid in {x["request_id"] for x in gitems}, "globex's admin sees globex's request")
    t.ok(not set(marks) & {x["request_id"] for x in gitems}, "globex's admin never sees acme's requests")

    r = journal(d, user)
    t.eq((r.status, r.json()["error"]["code"]), (403, "forbidden"), "a user gets 403")
    r = journal(d, {})
    t.eq(r.status, 401, "no credentials: 401")

    # Paging: limit 2 walks the whole journal without repeats.
    seen, sizes, cursor = [], [], None
    while len(sizes) < 100:
        r = journal(d, admin, "?limit=2" + ("&cursor=" + cursor if cursor else ""))
        if not t.ok(r.status == 200, "page %d is 200" % len(sizes), r.body[:200]):
            break
        body = r.json()
        sizes.append(len(body["items"]))
        seen += [(x["request_id"], x["time"]) for x in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    t.ok(len(sizes) >= 3 and max(sizes) == 2, "cursor paging: several pages of at most 2", sizes)
    t.eq(len(seen), len(set(seen)), "cursor paging: no repeats")
    t.ok(set(marks) <= {rid for rid, _ in seen}, "paging reaches every journaled request")
    for q in ("?limit=0", "?limit=501", "?limit=abc", "?limit=1&limit=2", "?cursor=nope", "?cursor=1.x"):
        r = journal(d, admin, q)
        t.eq((r.status, r.json()["error"]["code"]), (400, "invalid_query"), "GET /api/v1/journal%s is 400" % q)
    r = journal(d, admin, "?limit=500")
    t.eq(r.status, 200, "limit=500 is accepted")


def test_shutdown_flush(t, d, tok):
    admin = tok[("acme", "admin")]
    rids = ["jr-flush-%d-%s" % (i, os.urandom(3).hex()) for i in range(200)]
    conn = d.connection()
    for rid in rids:
        d.request("GET", "/api/v1/auth/me", headers=dict(admin, **{"X-Request-ID": rid}), conn=conn)
    # A card number smuggled in as a request id must not reach the disk.
    d.request("GET", "/api/v1/auth/me", headers=dict(admin, **{"X-Request-ID": "jr-pii-4111111111111111"}), conn=conn)
    conn.close()
    t.eq(d.stop(), 0, "aosd exits cleanly on SIGTERM")
    db = sqlite3.connect(os.path.join(d.dir, "data", "aos.db"))
    try:
        rows = db.execute("SELECT request_id, tenant_id, route, status FROM journal WHERE request_id LIKE "
                          "'jr-flush-%'").fetchall()
        pii_rows = [r[0] for r in db.execute("SELECT request_id FROM journal WHERE request_id LIKE 'jr-pii-%'")]
    finally:
        db.close()
    t.eq(pii_rows, ["jr-pii-<CREDIT_CARD>"], "PII in a client-chosen request id is redacted before it is written")
    got = {r[0] for r in rows}
    t.eq(len(set(rids) - got), 0, "every request answered before SIGTERM is in the store")
    t.ok(all(r[1] == TENANT_ID and r[2] == "/api/v1/auth/me" and r[3] == 200 for r in rows),
         "flushed rows carry tenant, route pattern and status")


def main():
    t = Tap()
    d = Daemon(plugins=PLUGINS, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")])
    try:
        d.start()
        tok = make_users(d)
        t.run(test_api, d, tok)
        t.run(test_shutdown_flush, d, tok)
    except Exception as e:  # noqa: BLE001 - report start-up failures as one check
        t.ok(False, "journal suite", "%s\n%s" % (e, d.log_text()[-3000:]))
    finally:
        d.stop()
        d.cleanup()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
