"""Daemon lifecycle, black-box: command line, config check, SIGHUP reload
(good and broken), graceful drain on SIGTERM, refusal to start."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aostest import AOSD, Daemon, Tap, parse_responses, read_all  # noqa: E402


def run(args, env=None):
    p = subprocess.run([AOSD] + args, capture_output=True, text=True, timeout=30, env=env)
    return p.returncode, p.stdout, p.stderr


def test_command_line(t):
    rc, out, _ = run(["--version"])
    t.ok(rc == 0 and re.match(r"aosd \S+ \(plugin ABI 1\.\d+\)", out), "--version prints version and ABI", out)
    rc, out, _ = run(["--help"])
    t.ok(rc == 0 and "-c, --config FILE" in out and "-t" in out, "--help prints usage")
    rc, _, err = run(["--bogus"])
    t.eq(rc, 2, "an unknown option exits 2")
    d = Daemon()
    try:
        rc, out, err = run(["-t", "-c", d.conf])
        t.eq((rc, out.strip()), (0, "configuration OK"), "-t on a good file prints 'configuration OK'", err)
        d.write_conf(d.conf_text() + "server2: { x = 1; };\n")
        rc, out, err = run(["-t", "-c", d.conf])
        t.eq(rc, 1, "-t on a bad file exits 1")
        t.ok(re.search(re.escape(d.conf) + r":7: server2", err), "-t names file:line and the setting", err)
        d.write_conf(d.conf_text().replace('enable = [ "agent-echo" ]', 'enable = [ "agent-missing" ]'))
        rc, out, err = run(["-t", "-c", d.conf])
        t.eq(rc, 1, "-t fails when an enabled plugin cannot be loaded")
        t.ok("agent-missing.so" in err, "the refusal names the plugin file", err)
        rc, _, err = run(["-t", "-c", os.path.join(d.dir, "nonexistent.conf")])
        t.ok(rc == 1 and "nonexistent.conf" in err, "a missing config file is reported", err)
    finally:
        d.cleanup()


def test_refuses_to_start(t):
    d = Daemon(plugins=("agent-echo",))
    try:
        d.write_conf(d.conf_text().replace('enable = [ "agent-echo" ]', 'enable = [ "agent-missing" ]'))
        d.start(wait=False)
        rc = d.proc.wait(15)
        t.ok(rc != 0, "aosd exits non-zero when a plugin is refused at start-up (rc=%d)" % rc)
        log = d.log_text()
        lines = [l for l in log.splitlines() if "agent-missing.so" in l]
        t.eq(len(lines), 1, "exactly one log line names the refused plugin file")
    finally:
        d.cleanup()


def metric(d, name):
    text = d.request("GET", "/metrics").body.decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def test_reload(t):
    d = Daemon(server_extra="max_body_size = 4096;")
    try:
        d.start()
        t.eq(metric(d, "aosd_config_generation"), 1.0, "generation 1 at start")
        # A broken config on SIGHUP: keep serving with the old one.
        d.write_conf(d.conf_text() + "limits: { read = { per_minute = -5; }; };\n")
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload failed" not in d.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        t.ok("reload failed: keeping the previous configuration" in d.log_text(), "a broken reload is logged")
        t.ok(re.search(r"limits\.read\.per_minute", d.log_text()), "the reload error names the setting")
        t.eq(d.request("GET", "/healthz").status, 200, "still serving after a broken reload")
        t.eq(metric(d, "aosd_config_generation"), 1.0, "generation unchanged after a broken reload")
        t.ok(d.proc.poll() is None, "process still running")
        # A good config with a smaller body limit: applies to new requests.
        body = b'{"a":"' + b"x" * 3000 + b'"}'
        hdr = {"Content-Type": "application/json"}
        t.eq(d.request("POST", "/api/v1/testing/echo", body=body, headers=hdr).status, 200, "3 KB body fits 4 KiB")
        d.server_extra = "max_body_size = 2048;"
        d.write_conf()
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while metric(d, "aosd_config_generation") != 2.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        t.eq(metric(d, "aosd_config_generation"), 2.0, "a good reload publishes generation 2")
        t.eq(d.request("POST", "/api/v1/testing/echo", body=body, headers=hdr).status, 413,
             "the reloaded body limit applies")
        t.eq(metric(d, "aosd_plugins_loaded"), 1.0, "plugins reloaded")
        t.eq(d.stop(), 0, "exit 0 after reloads")
    finally:
        d.cleanup()


def test_drain(t):
    d = Daemon(server_extra="header_timeout = 20; drain_timeout = 20;")
    try:
        d.start()
        idle = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        busy = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        # A request half sent when SIGTERM arrives must still be answered.
        busy.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        time.sleep(0.2)
        d.signal(signal.SIGTERM)
        time.sleep(0.5)
        t.ok(d.proc.poll() is None, "aosd waits for the request in flight")
        t.eq(read_all(idle, 5), b"", "an idle keep-alive connection is closed at drain")
        busy.sendall(b"\r\n")
        resp = parse_responses(read_all(busy, 10))
        t.eq([x[0] for x in resp], [200], "the in-flight request completes during drain")
        t.eq(resp[0][1].get("connection") if resp else None, "close", "and its connection is closed")
        try:
            rc = d.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        t.eq(rc, 0, "aosd exits 0 once drained")
        refused = False
        try:
            socket.create_connection(("127.0.0.1", d.port), timeout=2).close()
        except OSError:
            refused = True
        t.ok(refused, "no longer accepting after exit")
        idle.close()
        busy.close()
    finally:
        d.cleanup()


def post_echo(port, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = json.dumps(body).encode()
    s.sendall(b"POST /api/v1/testing/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return s


def test_thread_pool(t):
    d = Daemon(server_extra="workers = 1; pool_queue = 1; drain_timeout = 20;")
    try:
        d.start()
        # The only worker sleeps, one job may wait, the third is refused.
        busy = post_echo(d.port, {"sleep_ms": 1500})
        time.sleep(0.2)
        queued = post_echo(d.port, {"sleep_ms": 10})
        time.sleep(0.2)
        r = d.request("POST", "/api/v1/testing/echo", body={"n": 3})
        t.eq(r.status, 503, "a saturated thread pool answers 503 at once")
        t.eq(r.header("retry-after"), "1", "503 carries Retry-After")
        t.eq(r.json()["error"]["code"], "overloaded", "503 error code")
        t.eq(d.request("GET", "/healthz").status, 200, "the loop keeps serving while the pool is busy")
        # SIGTERM while deferred work runs: it completes and is delivered.
        d.signal(signal.SIGTERM)
        first = parse_responses(read_all(busy, 10))
        second = parse_responses(read_all(queued, 10))
        t.eq([x[0] for x in first], [200], "work running on the pool at SIGTERM is answered")
        t.eq(json.loads(first[0][2]) if first else None, {"echo": {"sleep_ms": 1500}}, "with its result")
        t.eq([x[0] for x in second], [200], "work queued at SIGTERM is answered too")
        t.eq(d.proc.wait(15), 0, "exit 0 after the pool drained")
        busy.close()
        queued.close()
    finally:
        d.cleanup()


def test_hash_threads(t):
    """Argon2id runs on threads of its own, nicer than the HTTP loops, as
    many as auth.max_concurrent_hashes."""
    d = Daemon(server_extra="workers = 4;", auth_extra="max_concurrent_hashes = 3;")
    try:
        d.start()
        threads = {}
        for tid in os.listdir("/proc/%d/task" % d.proc.pid):
            with open("/proc/%d/task/%s/comm" % (d.proc.pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (d.proc.pid, tid)) as f:
                nice = int(f.read().rsplit(")", 1)[1].split()[16])
            threads.setdefault(name, []).append(nice)
        t.eq(len(threads.get("aos-hash", [])), 3, "max_concurrent_hashes hashing threads", threads)
        t.eq(set(threads.get("aos-hash", [])), {10}, "hashing threads run at nice +10")
        t.eq(set(threads.get("aos-http-0", [])), {0}, "the HTTP loop keeps nice 0")
        t.eq(len(threads.get("aos-pool", [])), 4, "server.workers pool threads, nice 0")
        t.ok(all(n in threads for n in ("aos-journal", "aos-events", "aos-keeper", "aos-commit-0", "aos-worker-0")),
             "every thread is named (aosd.8 THREADS)", sorted(threads))
        t.eq(d.stop(), 0, "exit 0")
    finally:
        d.cleanup()


def test_client_gone(t):
    d = Daemon()
    try:
        d.start()
        s = post_echo(d.port, {"sleep_ms": 300})
        s.close()  # leave before the pool finishes
        time.sleep(0.6)
        t.eq(d.request("GET", "/healthz").status, 200, "a client leaving during deferred work harms nothing")
        t.eq(d.stop(), 0, "clean exit (no leak or crash under sanitizers)")
    finally:
        d.cleanup()


def test_service_manager(t):
    """The sd_notify(3) protocol, spoken without libsystemd: READY=1 once
    serving, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM."""
    d = Daemon()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(d.dir, "notify.sock")
    sock.bind(path)
    sock.settimeout(10)

    def next_message():
        try:
            return sock.recv(256).decode()
        except socket.timeout:
            return None

    saved = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = path
    try:
        d.start()
        t.eq(next_message(), "READY=1", "READY=1 sent at start")
        t.eq(d.request("GET", "/healthz").status, 200, "serving when READY=1 was sent")
        d.signal(signal.SIGHUP)
        t.eq(next_message(), "RELOADING=1", "RELOADING=1 on SIGHUP")
        t.eq(next_message(), "READY=1", "READY=1 after the reload")
        d.signal(signal.SIGTERM)
        t.eq(next_message(), "STOPPING=1", "STOPPING=1 on SIGTERM")
        t.eq(d.stop(), 0, "exit 0")
    finally:
        if saved is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        else:
            os.environ["NOTIFY_SOCKET"] = saved
        sock.close()
        d.cleanup()


def main():
    t = Tap()
    for fn in (test_command_line, test_refuses_to_start, test_reload, test_drain, test_thread_pool,
               test_client_gone, test_service_manager, test_hash_threads):
        t.run(fn)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
