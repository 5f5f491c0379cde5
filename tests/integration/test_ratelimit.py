"""Rate limits, black-box, with limits ON (no AOS_TESTING): exact burst
numbers, refill, both keys, exemptions, per-tenant overrides, headers, and
two aosd processes sharing one budget through Redis (when AOS_TEST_REDIS is
set), including many racing requests, and per-request headers when racing
reads are coalesced into one Redis call."""
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import TENANT_ID, Daemon, Tap  # noqa: E402

OTHER_ID = "0b3e8c1d-2f4a-4b5c-9d6e-7f8a9b0c1d2e"
PASSWORD = "correct horse battery staple"
PLUGINS = ("agent-echo", "auth-local", "auth-apikey")


def client_ip():
    """A fresh loopback source address, so runs never share a bucket."""
    return "127.%d.%d.%d" % (random.randint(1, 250), random.randint(1, 250), random.randint(2, 250))


def make_user(d, tenant, role="admin"):
    email = "%s.%s@example.com" % (role, os.urandom(4).hex())
    rc, out, err = d.aosctl("user", "add", "--tenant", tenant, "--email", email, "--role", role, stdin=PASSWORD + "\n")
    if rc != 0:
        raise RuntimeError("aosctl: %s %s" % (out, err))
    return email


def login(d, email, ip):
    r = d.request("POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD}, source=ip)
    if r.status != 200:
        raise RuntimeError("login: %d %s" % (r.status, r.body))
    return {"Authorization": "Bearer " + r.json()["access_token"]}


# Slow refill (6 per minute) so that the burst numbers are exact whatever
# the machine's speed; the defaults' refill is proven with an injected clock
# in tests/unit/test_ratelimit.c, and refill over real time by globex below.
LIMITS = 'limits: { read = { per_minute = 6; burst = 60; }; write = { per_minute = 6; burst = 30; }; };'


def test_local(t):
    d = Daemon(plugins=PLUGINS, testing=False, tenants=[(TENANT_ID, "acme"), (OTHER_ID, "globex")], extra=LIMITS)
    # globex has its own budget: small burst, fast refill (10/s).
    text = d.conf_text().replace('{ id = "%s"; name = "globex"; }' % OTHER_ID,
                                 '{ id = "%s"; name = "globex"; limits = { read = { per_minute = 600; burst = 5; }; }; }'
                                 % OTHER_ID)
    d.write_conf(text)
    try:
        d.start()
        ip = client_ip()
        auth = login(d, make_user(d, "acme"), ip)  # one write from this address
        statuses = [d.request("GET", "/api/v1/auth/me", headers=auth, source=ip) for _ in range(61)]
        codes = [r.status for r in statuses]
        t.eq(codes[:60], [200] * 60, "60 immediate reads pass (burst 60)")
        t.eq(codes[60], 429, "the 61st immediate read is refused")
        first, last = statuses[0], statuses[60]
        t.eq(first.header("ratelimit-policy"), '"read";q=6;w=60', "RateLimit-Policy names the read policy")
        t.ok((first.header("ratelimit") or "").startswith('"read";r=59;'), "RateLimit counts down",
             first.header("ratelimit"))
        t.eq((first.header("x-ratelimit-limit"), first.header("x-ratelimit-remaining")), ("6", "59"),
             "X-RateLimit-Limit/Remaining for older clients")
        t.eq(last.json()["error"]["code"], "rate_limited", "429 carries the JSON error")
        t.ok(int(last.header("retry-after") or 0) >= 10, "Retry-After is never earlier than the refill (10 s at 6/min)",
             last.header("retry-after"))
        t.eq(d.request("GET", "/healthz", source=ip).status, 200, "probes are never limited")
        # Writes: the login was write 1 for this address; 29 more pass, the 31st is refused.
        w = [d.request("POST", "/api/v1/auth/api-keys", body={"name": "k"}, headers=auth, source=ip).status
             for _ in range(30)]
        t.eq(w[:29], [201] * 29, "writes pass up to the write burst (30 with the login)")
        t.eq(w[29], 429, "the 31st write is refused")
        # Both keys must pass.
        other_ip = client_ip()
        auth2 = login(d, make_user(d, "acme"), other_ip)
        t.eq(d.request("GET", "/api/v1/auth/me", headers=auth, source=other_ip).status, 429,
             "an exhausted principal is held on any address")
        t.eq(d.request("GET", "/api/v1/auth/me", headers=auth2, source=other_ip).status, 200,
             "another principal on that address is not")
        t.eq(d.request("GET", "/api/v1/auth/me", headers=auth2, source=ip).status, 429,
             "a fresh principal is held on an exhausted address")
        # Per-tenant override, and refill over real time.
        gip = client_ip()
        gauth = login(d, make_user(d, "globex"), gip)
        g = [d.request("GET", "/api/v1/auth/me", headers=gauth, source=gip).status for _ in range(6)]
        t.eq(g, [200] * 5 + [429], "a tenant's own limits override the defaults (burst 5)")
        time.sleep(0.6)
        after = [d.request("GET", "/api/v1/auth/me", headers=gauth, source=gip).status for _ in range(12)]
        t.ok(after.count(200) >= 3 and after[-1] == 429, "the bucket refills over time (10/s): %s" % after)
        t.eq(d.stop(), 0, "clean exit")
    finally:
        d.cleanup()


def test_exempt_and_disabled(t):
    d = Daemon(plugins=PLUGINS, testing=False,
               extra='limits: { exempt = [ "/api/v1/auth/me" ]; };')
    try:
        d.start()
        ip = client_ip()
        auth = login(d, make_user(d, "acme"), ip)
        codes = [d.request("GET", "/api/v1/auth/me", headers=auth, source=ip).status for _ in range(80)]
        t.eq(set(codes), {200}, "an exempt path prefix is never limited")
        r = d.request("GET", "/api/v1/auth/me", headers=auth, source=ip)
        t.ok(r.header("ratelimit-policy") is None, "exempt responses carry no rate-limit headers")
    finally:
        d.stop()
        d.cleanup()


def test_redis_shared(t):
    url = os.environ.get("AOS_TEST_REDIS")
    if not url:
        t.skip("two nodes share one Redis budget", "AOS_TEST_REDIS not set")
        return
    limits = 'redis: { url = "%s"; }; limits: { policy = "redis"; };' % url
    a = Daemon(plugins=PLUGINS, testing=False, extra=limits)
    b = Daemon(plugins=PLUGINS, testing=False, extra=limits)
    try:
        a.start()
        b.start()
        ip = client_ip()
        # 45 logins (writes, keyed by address only) race across both nodes.
        results = []
        lock = threading.Lock()

        def fire(d):
            r = d.request("POST", "/api/v1/auth/login", body={"email": "x@example.com", "password": "nope nope nope"},
                          source=ip)
            with lock:
                results.append(r.status)

        threads = [threading.Thread(target=fire, args=(a if i % 2 else b,)) for i in range(45)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        passed = [s for s in results if s != 429]
        t.eq(len(passed), 30, "two nodes racing share one write budget of 30 (got %d through)" % len(passed))
        t.eq(results.count(429), 15, "the other 15 are refused")
        r = b.request("POST", "/api/v1/auth/login", body={"email": "x@example.com", "password": "x"}, source=ip)
        t.eq(r.status, 429, "the shared bucket is empty on either node")
        t.eq(a.stop(), 0, "node A exits cleanly")
        t.eq(b.stop(), 0, "node B exits cleanly")
    finally:
        a.cleanup()
        b.cleanup()


def test_redis_concurrent_headers(t):
    """Concurrent reads on one node are coalesced into few Redis calls: each
    request must still get its own place in the bucket (distinct
    X-RateLimit-Remaining, exactly one per token) and the 429s their
    Retry-After, as if they had been checked one by one."""
    url = os.environ.get("AOS_TEST_REDIS")
    if not url:
        t.skip("concurrent checks through Redis keep per-request headers", "AOS_TEST_REDIS not set")
        return
    # 1 token a minute: no refill during the test, so the numbers are exact.
    d = Daemon(plugins=PLUGINS, testing=False,
               extra='redis: { url = "%s"; }; limits: { policy = "redis"; read = { per_minute = 1; burst = 40; }; };'
               % url)
    try:
        d.start()
        auth = login(d, make_user(d, "acme"), client_ip())
        ip = client_ip()
        results = []
        lock = threading.Lock()

        def fire():
            r = d.request("GET", "/api/v1/auth/me", headers=auth, source=ip)
            with lock:
                results.append(r)

        threads = [threading.Thread(target=fire) for _ in range(55)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        ok = [r for r in results if r.status == 200]
        refused = [r for r in results if r.status == 429]
        t.eq((len(ok), len(refused)), (40, 15), "55 racing reads: the burst of 40 pass, 15 are refused")
        t.eq(sorted(int(r.header("x-ratelimit-remaining")) for r in ok), list(range(40)),
             "each passed request has its own X-RateLimit-Remaining (39 down to 0)")
        t.ok(all(r.header("x-ratelimit-remaining") == "0" and int(r.header("retry-after") or 0) >= 60
                 and r.json()["error"]["code"] == "rate_limited" for r in refused),
             "every 429 says 0 remaining, Retry-After >= 60 s (1/min) and rate_limited")
        t.eq(d.stop(), 0, "clean exit")
    finally:
        d.cleanup()


def main():
    t = Tap()
    for fn in (test_local, test_exempt_and_disabled, test_redis_shared, test_redis_concurrent_headers):
        t.run(fn)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
