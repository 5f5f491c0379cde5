"""Idempotency-Key on POST, black-box, on SQLite and (when AOS_TEST_PGSQL is
set) PostgreSQL: replay with Idempotent-Replayed, 422 on a different body,
409 while the first is running, bad keys, and concurrent duplicates that
must never both execute."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import Daemon, Tap, pg_private_store  # noqa: E402

PASSWORD = "correct horse battery staple"
PLUGINS = ("agent-echo", "auth-local", "auth-apikey")


def admin(d):
    email = "admin.%s@example.com" % os.urandom(4).hex()
    rc, out, err = d.aosctl("user", "add", "--tenant", "acme", "--email", email, "--role", "admin",
                            stdin=PASSWORD + "\n")
    if rc != 0:
        raise RuntimeError(out + err)
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD})
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def run_suite(t, store, label):
    d = Daemon(plugins=PLUGINS, store=store)
    try:
        d.start()
        auth = admin(d)

        def post(path, body, key, extra=None):
            h = dict(auth)
            if key is not None:
                h["Idempotency-Key"] = key
            h.update(extra or {})
            return d.request("POST", path, body=body, headers=h)

        agent = d.request("POST", "/api/v1/agents", body={"name": "idem", "plugin": "agent-echo"},
                          headers=auth).json()["id"]

        def runs_with(marker):
            items = d.request("GET", "/api/v1/runs?agent=%s&limit=100" % agent, headers=auth).json()["items"]
            return [i for i in items if i["input"].get("marker") == marker]

        key = "k-" + os.urandom(6).hex()
        body = {"agent": agent, "input": {"marker": key}}
        first = post("/api/v1/aoa/run", body, key)
        again = post("/api/v1/aoa/run", body, key)
        t.eq(first.status, 202, "%s: first request runs" % label)
        t.eq((again.status, again.body), (202, first.body), "%s: a repeat replays status and body" % label)
        t.eq(again.header("idempotent-replayed"), "true", "%s: the replay says Idempotent-Replayed: true" % label)
        t.ok(first.header("idempotent-replayed") is None, "%s: the first response does not" % label)
        other = post("/api/v1/aoa/run", {"agent": agent, "input": {"marker": "other"}}, key)
        t.eq((other.status, other.json()["error"]["code"]), (422, "idempotency_key_reused"),
             "%s: same key, different body -> 422" % label)
        t.eq(len(runs_with(key)), 1, "%s: the run was queued once" % label)
        # Errors are stored too (5xx included); a handler's 4xx is replayed.
        bad = "b-" + os.urandom(6).hex()
        r1 = post("/api/v1/aoa/run", {"agent": "nope"}, bad)
        r2 = post("/api/v1/aoa/run", {"agent": "nope"}, bad)
        t.eq((r1.status, r2.status, r2.header("idempotent-replayed")), (404, 404, "true"),
             "%s: a handler's error response is replayed as well" % label)
        # A response holding a secret (a new API key) is never stored: the
        # request runs again rather than the secret sitting in the store.
        secret = "p-" + os.urandom(6).hex()
        k1 = post("/api/v1/auth/api-keys", {"name": "secretive"}, secret)
        k2 = post("/api/v1/auth/api-keys", {"name": "secretive"}, secret)
        t.ok(k1.status == 201 and k2.status == 201 and k1.json()["key"] != k2.json()["key"]
             and k2.header("idempotent-replayed") is None,
             "%s: POST /auth/api-keys is not replayed (no secret stored for replay)" % label)
        # Rejected before the handler: not stored.
        unauth_key = "u-" + os.urandom(6).hex()
        r = d.request("POST", "/api/v1/aoa/run", body={"agent": agent}, headers={"Idempotency-Key": unauth_key})
        t.eq(r.status, 401, "%s: unauthenticated request refused" % label)
        r = post("/api/v1/aoa/run", {"agent": agent}, unauth_key)
        t.eq((r.status, r.header("idempotent-replayed")), (202, None),
             "%s: a request refused before the handler did not consume the key" % label)
        # Bad keys.
        for name, value in (("empty", ""), ("too long", "x" * 256), ("non-ASCII", "caf\u00e9"), ("space", "a b")):
            try:
                r = post("/api/v1/aoa/run", {"agent": agent}, None, {"Idempotency-Key": value})
                status = r.status
            except Exception:  # noqa: BLE001 - http.client refuses some values itself
                status = 400
            t.eq(status, 400, "%s: %s Idempotency-Key -> 400" % (label, name))
        raw = ("POST /api/v1/aoa/run HTTP/1.1\r\nHost: a\r\nAuthorization: %s\r\nContent-Type: application/json\r\n"
               "Idempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
               % auth["Authorization"]).encode()
        t.ok(d.raw(raw).startswith(b"HTTP/1.1 400"), "%s: two Idempotency-Key headers -> 400" % label)
        # In progress: the first is still running when the second arrives.
        slow = "s-" + os.urandom(6).hex()
        results = {}

        def first_slow():
            results["first"] = post("/api/v1/testing/echo-user", {"sleep_ms": 1500}, slow)

        th = threading.Thread(target=first_slow)
        th.start()
        time.sleep(0.4)
        second = post("/api/v1/testing/echo-user", {"sleep_ms": 1500}, slow)
        th.join()
        t.eq((second.status, second.json()["error"]["code"]), (409, "idempotency_in_progress"),
             "%s: a repeat while the first runs -> 409" % label)
        t.eq(results["first"].status, 200, "%s: the first completes" % label)
        t.eq(post("/api/v1/testing/echo-user", {"sleep_ms": 1500}, slow).header("idempotent-replayed"), "true",
             "%s: and is replayed afterwards" % label)
        # Concurrent duplicates never both execute.
        dup = "c-" + os.urandom(6).hex()
        out = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def racer():
            barrier.wait()
            r = post("/api/v1/aoa/run", {"agent": agent, "input": {"marker": dup}}, dup)
            with lock:
                out.append(r)

        threads = [threading.Thread(target=racer) for _ in range(8)]
        for x in threads:
            x.start()
        for x in threads:
            x.join()
        t.eq(len(runs_with(dup)), 1, "%s: 8 parallel duplicates queued exactly one run" % label)
        t.ok(all(r.status in (202, 409) for r in out), "%s: the others got 409 or the replay: %s"
             % (label, sorted(r.status for r in out)))
        ids = {r.json()["run_id"] for r in out if r.status == 202}
        t.eq(len(ids), 1, "%s: every 202 carries the same run id" % label)
        t.eq(d.stop(), 0, "%s: clean exit" % label)
    except Exception as e:  # noqa: BLE001
        t.ok(False, "%s: suite" % label, "%s\n%s" % (e, d.log_text()[-2000:]))
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
