#!/usr/bin/python3
"""Load generator for the DRUID emulator: how much CPU does it spend per request?

Starts druid_emulator.py (as bench/measure.py does: --log-requests 0 --quiet), sets its
latency (0 unless --latency-ms says otherwise), generates `bench-<i>` users, then drives
it from several worker processes, each holding a number of keep-alive connections over
raw non-blocking sockets. Every connection loops over a valid token request (fresh PKCE challenge) followed by the
update that uses that token. The client is kept as cheap as possible, because on a small
machine it competes with the emulator for the CPU.

The emulator's CPU (utime + stime from /proc/PID/stat) and its answer counts (from
/admin/stats) are sampled at the start and the end of the measured window, so the
numbers printed are the server's own: CPU microseconds per request and requests/s.

    /usr/bin/python3 deploy/emulator/loadgen.py --workers 2 --connections 32 --seconds 10
"""

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_ID = "druid-sync-bench"
CLIENT_SECRET = "bench-secret"
ENTRY_POINT = "231705665113870-main"
GRANT = "urn:druid:oauth2:grant-type:code_challenge"


def start_emulator():
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "druid_emulator.py"), "--port", "0",
         "--client", "%s:%s" % (CLIENT_ID, CLIENT_SECRET), "--log-requests", "0", "--quiet"],
        stdout=subprocess.PIPE)
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("druid-emulator listening on "):
        proc.kill()
        raise SystemExit("the emulator did not start: %r" % line)
    return proc, int(line.rsplit(":", 1)[1])


def admin(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def cpu_seconds(pid):
    """(user, system) CPU seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def answered(stats):
    return sum(sum(stats[name].values()) for name in ("token", "update", "other"))


# ------------------------------------------------------------------ the client side

def token_request(port):
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    body = urllib.parse.urlencode({
        "grant_type": GRANT, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "code_challenge": challenge, "code_challenge_method": "S256",
        "scope": "update"}).encode()
    head = ("POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
            "Expect:\r\nContent-Length: %d\r\n\r\n" % (port, len(body))).encode()
    return verifier, head + body


def update_request(port, verifier, token, index):
    object_id = "bench-%d" % index
    body = json.dumps({
        "actor": {"id": CLIENT_ID, "objectType": "application"}, "verb": "update",
        "object": {"objectType": "user", "objectId": object_id,
                   "ids": {"email": {"objectType": "user_id",
                                     "value": object_id + "@example.com",
                                     "confirmed": True},
                           "phone_number": {"objectType": "user_id",
                                            "value": "+3460%07d" % index}},
                   "datas": {"name": {"objectType": "user_data", "value": "Bench"},
                             "birthday": {"objectType": "user_data",
                                          "value": "22/10/1974"}},
                   "assertions": {"objectType": "assertions", "totalItems": 1,
                                  "items": [{"objectType": "assertion", "type": "terms",
                                             "typology": "user", "value": True}]}},
        "source": {"id": "pc", "objectType": "device"}}, separators=(",", ":")).encode()
    head = ("POST /activityid/v1/user/update?code_verifier=%s HTTP/1.1\r\n"
            "Host: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\nFrom: %s\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
            "Accept-Language: es-ES\r\nExpect:\r\nContent-Length: %d\r\n\r\n"
            % (verifier, port, token, ENTRY_POINT, len(body))).encode()
    return head + body


class Conn:
    __slots__ = ("sock", "buf", "verifier", "user", "stage")  # user: the index i of bench-<i>


def split_answer(buf):
    """(status, body, rest) when buf holds a whole answer, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].lower() + b"\r\n"
    at = head.find(b"\r\ncontent-length:")
    length = int(head[at + 17:head.find(b"\r\n", at + 2)]) if at >= 0 else 0
    if len(buf) < end + 4 + length:
        return None
    return int(head[9:12]), buf[end + 4:end + 4 + length], buf[end + 4 + length:]


def worker(port, connections, users, seed, stop_at, result):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    selector = selectors.DefaultSelector()
    next_user = seed
    failures = 0
    done = 0

    def send_token(conn):
        nonlocal next_user
        conn.verifier, data = token_request(port)
        conn.user = next_user % users
        next_user += 7
        conn.stage = "token"
        conn.sock.sendall(data)

    for _ in range(connections):
        conn = Conn()
        conn.sock = socket.create_connection(("127.0.0.1", port))
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.buf = b""
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        send_token(conn)
    while time.time() < stop_at:
        for key, _ in selector.select(0.5):
            conn = key.data
            chunk = conn.sock.recv(65536)
            if not chunk:
                raise SystemExit("the emulator closed a connection")
            conn.buf += chunk
            answer = split_answer(conn.buf)
            if answer is None:
                continue
            status, body, conn.buf = answer
            done += 1
            if status != 200:
                failures += 1
            if conn.stage == "token" and status == 200:
                token = json.loads(body)["access_token"]
                conn.stage = "update"
                conn.sock.sendall(update_request(port, conn.verifier, token, conn.user))
            else:
                send_token(conn)
    result.put((done, failures))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32, help="per worker")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="the emulator's added latency (50 is the benchmark's)")
    args = parser.parse_args()

    proc, port = start_emulator()
    print("emulator pid %d on port %d" % (proc.pid, port), file=sys.stderr, flush=True)
    try:
        admin(port, "POST", "/admin/config", {"latencyMs": args.latency_ms})
        admin(port, "POST", "/admin/users/generate", {"prefix": "bench-", "count": args.users})
        stop_at = time.time() + args.warmup + args.seconds + 0.5
        result = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=worker, args=(
            port, args.connections, args.users, i, stop_at, result))
            for i in range(args.workers)]
        for process in workers:
            process.start()
        time.sleep(args.warmup)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        count0 = answered(admin(port, "GET", "/admin/stats"))
        time.sleep(args.seconds)
        count1 = answered(admin(port, "GET", "/admin/stats"))
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        totals = [result.get(timeout=60) for _ in workers]
        for process in workers:
            process.join()
        stats = admin(port, "GET", "/admin/stats")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    requests = count1 - count0
    print("requests in window: %d in %.2f s = %.0f req/s (%.0f pairs/s)"
          % (requests, t1 - t0, requests / (t1 - t0), requests / (t1 - t0) / 2))
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    print("emulator CPU: %.2f s = %.1f us/request (user %.1f + system %.1f; %.0f %% of one core)"
          % (user + system, (user + system) / requests * 1e6, user / requests * 1e6,
             system / requests * 1e6, (user + system) / (t1 - t0) * 100))
    print("answers: token %s, update %s, other %s; client-side non-200: %d"
          % (stats["token"], stats["update"], stats["other"], sum(f for _, f in totals)))


if __name__ == "__main__":
    main()
