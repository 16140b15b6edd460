"""druid-sync's benchmark: drains a burst through druid-sync and through the two
consumers it is compared with, measured the same way from the outside, in one run.

Modes (see bench/README.md for the method):
  throughput  N events (default 50,000) through druid-sync, the Python reference
              consumer and the ack-only consumer, against a constant-answer nginx
              stand-in for DRUID; prints them side by side with the target ratios.
  latency     druid-sync at concurrency 256 against the DRUID emulator with 50 ms added
              to each call, against the ideal concurrency / (2 × 50 ms); then the same
              against nginx with the same 50 ms (a stand-in whose own cost is ~0).
  soak        500,000 events through druid-sync against the nginx stand-in, printing
              its RSS every 50,000 acks.

Run it through bench/run, which builds what it needs first.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from array import array
from dataclasses import dataclass, field

import pika

import amqp_capture
import publish

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
PYTHON = "/usr/bin/python3"
CLIENT_ID = "druid-sync-bench"
CLIENT_SECRET = "bench-secret"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

TARGETS = {
    "throughput_vs_reference": 3.0,
    "throughput_vs_ack_only": 0.4,
    "cpu_fraction_of_reference": 1 / 5,
    "peak_rss_mib": 30.0,
    "latency_fraction_of_ideal": 0.90,
    "soak_rss_growth": 0.10,
}


# ---------------------------------------------------------------- processes


class Processes:
    """Every process the benchmark starts, so that each is stopped by its own PID."""

    def __init__(self):
        self.running = []

    def start(self, argv, *, env=None, stdout=None, stderr=None, cwd=None, user=None, group=None):
        process = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr, cwd=cwd, user=user, group=group,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.running.append(process)
        return process

    def stop(self, process, sig=signal.SIGTERM, timeout=30.0):
        """Sends `sig` to the process (by its PID only) and waits; SIGKILL after `timeout`."""
        if process.poll() is None:
            try:
                os.kill(process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process in self.running:
            self.running.remove(process)
        return process.returncode

    def stop_all(self, keep=None):
        for process in reversed(list(self.running)):
            if process is not keep:
                self.stop(process, timeout=60.0)


class Child:
    """A process started by one that the benchmark started (the daemon under `perf record`)."""

    def __init__(self, pid, parent):
        self.pid = pid
        self.parent = parent
        self.returncode = None

    def poll(self):
        if os.path.exists(f"/proc/{self.pid}") and self.parent.poll() is None:
            return None
        self.returncode = self.parent.poll()
        return self.returncode if self.returncode is not None else -1

    def terminate(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def machine_ticks():
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid, key):
    """A `kB` field of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def listening_pid(port):
    """The PID of the process listening on TCP `port` (by socket inode), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            pass
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(entry)
        except OSError:
            continue
    return None


# ---------------------------------------------------------------- services


class Broker:
    """RabbitMQ: the one already running at the URL, or one this run starts (and stops)."""

    def __init__(self, url, processes, workdir):
        self.url = url
        self.parsed = urllib.parse.urlparse(url)
        self.port = self.parsed.port or 5672
        self.processes = processes
        self.workdir = workdir
        self.process = None

    def reachable(self, attempts=1):
        """True when an AMQP login works (a busy broker gets `attempts` tries, 2 s apart)."""
        for attempt in range(attempts):
            try:
                pika.BlockingConnection(pika.URLParameters(self.url + self._query("socket_timeout=5"))).close()
                return True
            except Exception:  # noqa: BLE001 - any failure means "not now"
                if attempt + 1 < attempts:
                    time.sleep(2)
        return False

    def listening(self):
        try:
            with socket.create_connection((self.parsed.hostname or "127.0.0.1", self.port), timeout=2):
                return True
        except OSError:
            return False

    def _query(self, extra):
        return ("&" if "?" in self.url else "?") + extra

    def ensure_running(self):
        if self.listening():
            # Something listens: a broker that is already running (maybe busy, maybe
            # restarting). Never start a second one beside it; wait for it instead.
            if not self.reachable(attempts=15):
                raise RuntimeError(f"something listens on port {self.port} but AMQP login fails: "
                                   f"check {self.url}")
            print(f"RabbitMQ: already running on port {self.port} (left running at the end)")
            return
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("RabbitMQ is not running and rabbitmq-server is not installed "
                               "(apt-get install rabbitmq-server)")
        env = dict(os.environ, HOME="/var/lib/rabbitmq")
        if self.port != 5672:
            # A private node beside any other: its own name, ports and files.
            os.chmod(self.workdir, 0o711)  # the rabbitmq user must reach its folder
            base = os.path.join(self.workdir, "rabbitmq")
            os.makedirs(base, exist_ok=True)
            shutil.chown(base, "rabbitmq", "rabbitmq")
            env.update(RABBITMQ_NODENAME=f"bench{self.port}@localhost", RABBITMQ_NODE_PORT=str(self.port),
                       RABBITMQ_DIST_PORT=str(self.port + 20000), RABBITMQ_MNESIA_BASE=base,
                       RABBITMQ_LOG_BASE=base, RABBITMQ_ENABLED_PLUGINS="[]")
        print(f"RabbitMQ: not running; starting rabbitmq-server on port {self.port}")
        log = open(os.path.join(self.workdir, "rabbitmq-server.log"), "wb")
        # The server script itself, as the rabbitmq user (what Debian's wrapper does through
        # su): its PID then stops the broker gracefully on SIGTERM (the script traps it and
        # runs `rabbitmqctl stop`), where su would leave the Erlang VM running.
        script = "/usr/lib/rabbitmq/bin/rabbitmq-server"
        if os.path.exists(script) and os.geteuid() == 0:
            self.process = self.processes.start([script], env=env, stdout=log, stderr=subprocess.STDOUT,
                                                cwd="/var/lib/rabbitmq", user="rabbitmq", group="rabbitmq")
        else:
            self.process = self.processes.start(["rabbitmq-server"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not self.reachable():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("rabbitmq-server did not start; see " + log.name)
            time.sleep(1)
        print(f"RabbitMQ: started (pid {self.process.pid})")

    def pid(self):
        return listening_pid(self.port)

    def stop(self):
        if self.process is not None:
            print(f"RabbitMQ: stopping the broker this run started (pid {self.process.pid})")
            self.processes.stop(self.process, timeout=120)
            self.process = None

    def channel(self):
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        return connection, connection.channel()

    def delete_topology(self, queue, retry_queues=5):
        """Deletes the work queue and everything druid-sync declares around it."""
        connection, channel = self.channel()
        names = [queue, queue + ".dead-letter"] + [f"{queue}.retry.{i}" for i in range(retry_queues)]
        for name in names:
            try:
                channel.queue_delete(name)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
        for name in (queue + ".retry", queue + ".dead-letter"):
            try:
                channel.exchange_delete(name)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()
        connection.close()

    def queue_depths(self, queue):
        """(ready, consumers) of a queue, by a passive declare."""
        connection, channel = self.channel()
        try:
            ok = channel.queue_declare(queue, passive=True).method
            return ok.message_count, ok.consumer_count
        finally:
            connection.close()


class Nginx:
    """The constant-answer DRUID stand-in (bench/nginx/druid-standin.conf)."""

    def __init__(self, processes, workdir, delay_seconds=0.0):
        self.processes = processes
        self.prefix = os.path.join(workdir, "nginx-delay" if delay_seconds else "nginx")
        self.delay = delay_seconds
        self.port = None
        self.process = None

    def start(self):
        if shutil.which("nginx") is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        self.port = free_port()
        with open(os.path.join(BENCH_DIR, "nginx", "druid-standin.conf")) as f:
            conf = f.read()
        if self.delay:
            module = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
            if not os.path.exists(module):
                raise RuntimeError("the 50 ms stand-in needs Debian's libnginx-mod-http-echo")
            conf = (conf.replace("@LOAD_MODULES@", f"load_module {module};")
                    .replace("@DELAY@", f"echo_sleep {self.delay:.3f};").replace("@ANSWER@", "echo -n"))
        else:
            conf = conf.replace("@LOAD_MODULES@", "").replace("@DELAY@", "").replace("@ANSWER@", "return 200")
        conf = conf.replace("@PORT@", str(self.port))
        path = os.path.join(self.prefix, "druid-standin.conf")
        with open(path, "w") as f:
            f.write(conf)
        error_log = os.path.join(self.prefix, "error.log")
        self.process = self.processes.start(
            ["nginx", "-c", path, "-p", self.prefix + "/", "-e", error_log],
            stdout=subprocess.DEVNULL, stderr=open(error_log + ".stderr", "wb"))
        wait_for_port(self.port, 10, self.process)
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self):
        return children_of(self.process.pid)

    def stop(self):
        if self.process is not None:
            self.processes.stop(self.process)
            self.process = None


class Emulator:
    """deploy/emulator/druid_emulator.py, for the latency mode."""

    def __init__(self, processes, workdir):
        self.processes = processes
        self.workdir = workdir
        self.port = None
        self.process = None

    def start(self, latency_ms, users):
        self.port = free_port()
        path = os.path.join(REPO_DIR, "deploy", "emulator", "druid_emulator.py")
        out = open(os.path.join(self.workdir, "emulator.out"), "wb")
        # --log-requests 0: the request log (a test aid) is off, as a production-like DRUID
        # keeps no such thing; everything else keeps its default (one-use tokens, 60 s TTL).
        self.process = self.processes.start(
            [PYTHON, path, "--port", str(self.port), "--client", f"{CLIENT_ID}:{CLIENT_SECRET}",
             "--log-requests", "0", "--quiet"], stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 30, self.process)
        self.admin("POST", "/admin/config", {"latencyMs": latency_ms})
        self.admin("POST", "/admin/users/generate", {"prefix": "bench-", "count": users})
        return f"http://127.0.0.1:{self.port}"

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self):
        if self.process is not None:
            self.processes.stop(self.process)
            self.process = None


# ---------------------------------------------------------------- consumers


@dataclass
class ConsumerSpec:
    key: str
    label: str
    argv: list
    env: dict = field(default_factory=dict)


@dataclass
class RunResult:
    spec: ConsumerSpec
    messages: int
    ok: bool = False
    problem: str = ""
    rate: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_kib: int = 0
    publish_to_ack_ms: tuple = (None, None)
    deliver_to_ack_ms: tuple = (None, None)
    window_seconds: float = 0.0
    broker_cpu_seconds: float = None
    standin_cpu_seconds: float = None
    capture_cpu_seconds: float = None
    machine_busy: float = None
    others_cpu_seconds: float = None
    machine_seconds: float = None
    rss_samples: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


class Bench:
    def __init__(self, args):
        self.args = args
        self.processes = Processes()
        self.workdir = tempfile.mkdtemp(prefix="druid-sync-bench.")
        self.broker = Broker(args.amqp_url, self.processes, self.workdir)
        self.queues = set()
        self.failed = False

    # -- the three consumers

    def daemon_spec(self, standin_url, concurrency, key="druid-sync", label="druid-sync", binary=None, wrapper=()):
        """druid-sync as a consumer: the binary (`--binary` unless given), started through
        `wrapper` (e.g. valgrind) when one is given."""
        env = {
            "DRUID_SYNC_AMQP_URL": self.args.amqp_url,
            "DRUID_SYNC_QUEUE_TYPE": "classic",
            "DRUID_SYNC_CONCURRENCY": str(concurrency),
            "DRUID_SYNC_AUTH_URL": standin_url,
            "DRUID_SYNC_GRAPH_URL": standin_url,
            "DRUID_SYNC_CLIENT_ID": CLIENT_ID,
            "DRUID_SYNC_CLIENT_SECRET": CLIENT_SECRET,
            "DRUID_SYNC_LOG_LEVEL": "warning",
        }
        return ConsumerSpec(key, label, [*wrapper, binary or self.args.binary], env)

    def compare_spec(self, standin_url, concurrency):
        """A second daemon binary (--compare-binary), run the same way: an A/B test of a
        change within one run, where this machine's drift hits both alike."""
        return self.daemon_spec(standin_url, concurrency, key="druid-sync-b",
                                label=f"druid-sync B ({os.path.basename(self.args.compare_binary)})",
                                binary=self.args.compare_binary)

    def reference_spec(self, standin_url, concurrency):
        env = self.daemon_spec(standin_url, concurrency).env
        return ConsumerSpec("reference", "reference (Python aio-pika+aiohttp)",
                            [PYTHON, os.path.join(BENCH_DIR, "reference_consumer.py")], dict(env))

    def ack_only_spec(self, concurrency, coalesce=False):
        url = self.broker.parsed
        vhost = urllib.parse.unquote(url.path[1:]) if len(url.path) > 1 else "/"
        argv = [self.args.ack_only_binary, url.hostname or "127.0.0.1", str(url.port or 5672),
                urllib.parse.unquote(url.username or "guest"), urllib.parse.unquote(url.password or "guest"),
                vhost, "@QUEUE@", str(concurrency)]
        if coalesce:
            return ConsumerSpec("ack-only-coalesce", "ack-only, coalesced acks (C)", argv + ["coalesce"])
        return ConsumerSpec("ack-only", "ack-only (rabbitmq-c, C)", argv)

    def ack_only_python_spec(self, standin_url, concurrency):
        env = self.daemon_spec(standin_url, concurrency).env
        return ConsumerSpec("ack-only-python", "ack-only (Python aio-pika)",
                            [PYTHON, os.path.join(BENCH_DIR, "ack_only_consumer.py")], dict(env))

    # -- one measured run

    def run_consumer(self, spec, messages, users, tag, *, capture_deliveries=True, rss_every=0,
                     standin_pids=lambda: ()):
        """Publishes `messages` events to a fresh queue, starts the consumer, waits until
        every message is acked, and measures. The queue and its topology are deleted after."""
        queue = f"druid-sync-bench.{tag}.{os.getpid()}.{spec.key}"
        self.queues.add(queue)
        result = RunResult(spec, messages)
        times_path = os.path.join(self.workdir, f"{spec.key}.{tag}.published")
        pcap_path = os.path.join(self.workdir, f"{spec.key}.{tag}.pcap")
        log_path = os.path.join(self.workdir, f"{spec.key}.{tag}.log")
        self.broker.delete_topology(queue)
        print(f"\n[{spec.label}] publishing {messages:,} events to {queue} …", flush=True)
        rate = publish.publish(self.args.amqp_url, queue, messages, users, times_path,
                               progress_every=100_000 if messages > 100_000 else 0)
        print(f"[{spec.label}] published at {rate:,.0f} msg/s; starting the capture and the consumer", flush=True)
        published = array("q")
        with open(times_path, "rb") as f:
            published.frombytes(f.read())

        port = self.broker.port
        capture_filter = f"tcp port {port}" if capture_deliveries else f"tcp dst port {port}"
        tcpdump_err = open(pcap_path + ".stderr", "wb")
        tcpdump = self.processes.start(
            ["tcpdump", "-i", "lo", "-n", "-s", "0", "-B", "262144", "-U", "-w", pcap_path, capture_filter],
            stdout=subprocess.DEVNULL, stderr=tcpdump_err)
        deadline = time.monotonic() + 10
        while not (os.path.exists(pcap_path) and b"listening" in open(pcap_path + ".stderr", "rb").read()):
            if tcpdump.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not start: " + open(pcap_path + ".stderr").read())
            time.sleep(0.05)
        time.sleep(0.2)

        broker_pid = self.broker.pid()
        machine_start = machine_ticks()
        harness_cpu_start = time.process_time()
        broker_cpu_start = cpu_seconds(broker_pid) if broker_pid else None
        standin_pids = list(standin_pids())
        standin_cpu_start = sum(cpu_seconds(p) for p in standin_pids)

        # Only the benchmark's settings: none of the caller's DRUID_SYNC_* variables leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRUID_SYNC_")}
        env.update(spec.env)
        env["DRUID_SYNC_QUEUE"] = queue
        argv = [queue if a == "@QUEUE@" else a for a in spec.argv]
        log = open(log_path, "wb")
        perf_path = None
        if self.args.perf and spec.key == "druid-sync":
            # `perf record -p` gets no samples in this sandbox; perf starts the daemon instead.
            perf_path = os.path.join(self.workdir, f"{spec.key}.{tag}.perf.data")
            argv = ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-o", perf_path, "--"] + argv
        launched = self.processes.start(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        consumer = launched
        if perf_path:
            deadline = time.monotonic() + 10
            while not children_of(launched.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            consumer = Child(children_of(launched.pid)[0], launched)
        watcher = amqp_capture.AckWatcher(pcap_path, port)
        ports = set()
        started = time.monotonic()
        last_progress, last_count = started, 0
        next_rss_mark = rss_every
        cpu_end = hwm = None
        try:
            while True:
                time.sleep(self.args.poll_interval)
                if consumer.poll() is not None:
                    result.problem = f"the consumer exited with status {consumer.returncode}"
                    break
                ports |= amqp_capture.consumer_ports(consumer.pid, port)
                watcher.poll()
                acked = watcher.acked(ports)
                now = time.monotonic()
                while rss_every and acked >= next_rss_mark and next_rss_mark <= messages:
                    rss = status_kib(consumer.pid, "VmRSS")
                    result.rss_samples.append((next_rss_mark, acked, rss))
                    print(f"[{spec.label}] {acked:>9,} acked   RSS {rss / 1024:6.1f} MiB   "
                          f"peak {status_kib(consumer.pid, 'VmHWM') / 1024:6.1f} MiB   "
                          f"{now - started:6.1f} s", flush=True)
                    next_rss_mark += rss_every
                if acked >= messages:
                    cpu_end = cpu_seconds(consumer.pid)
                    hwm = status_kib(consumer.pid, "VmHWM")
                    break
                if acked > last_count:
                    last_progress, last_count = now, acked
                elif now - last_progress > self.args.stall_timeout:
                    result.problem = (f"no ack for {self.args.stall_timeout:.0f} s "
                                      f"({acked:,} of {messages:,} acked)")
                    break
        finally:
            if cpu_end is None and consumer.poll() is None:
                cpu_end = cpu_seconds(consumer.pid)
                hwm = status_kib(consumer.pid, "VmHWM")
            if broker_pid:
                try:
                    result.broker_cpu_seconds = cpu_seconds(broker_pid) - broker_cpu_start
                except OSError:
                    pass
            machine_end = machine_ticks()
            harness_cpu = time.process_time() - harness_cpu_start
            if machine_end[1] > machine_start[1]:
                result.machine_busy = (machine_end[0] - machine_start[0]) / (machine_end[1] - machine_start[1])
            try:
                result.capture_cpu_seconds = cpu_seconds(tcpdump.pid)
            except OSError:
                pass
            if standin_pids:
                result.standin_cpu_seconds = sum(cpu_seconds(p) for p in standin_pids) - standin_cpu_start
            # Whatever else ran on the machine meanwhile (other users' work), by difference.
            busy_seconds = (machine_end[0] - machine_start[0]) / CLOCK_TICKS
            ours = (cpu_end or 0.0) + harness_cpu + (result.broker_cpu_seconds or 0.0) + \
                (result.standin_cpu_seconds or 0.0) + (result.capture_cpu_seconds or 0.0)
            result.others_cpu_seconds = max(0.0, busy_seconds - ours)
            result.machine_seconds = (machine_end[1] - machine_start[1]) / CLOCK_TICKS / (os.cpu_count() or 1)
            share = result.others_cpu_seconds / max(1e-9, result.machine_seconds * (os.cpu_count() or 1))
            if share > 0.10:
                result.notes.append(f"WARNING: other processes took {share * 100:.0f} % of the machine's CPU "
                                    "during this run: its rate is lower than on a quiet machine")
            if perf_path:
                consumer.terminate()
                result.notes.append(f"profile: perf report -i {perf_path} --no-children")
                self.args.keep_captures = True
            self.processes.stop(launched)
            wait_for_capture_drain(pcap_path)
            self.processes.stop(tcpdump, sig=signal.SIGINT)
            tcpdump_err.close()
            log.close()

        result.cpu_seconds = cpu_end or 0.0
        result.peak_rss_kib = hwm or 0
        dropped = [line for line in open(pcap_path + ".stderr", errors="replace") if "dropped by kernel" in line]
        if dropped and not dropped[0].startswith("0 "):
            result.notes.append("tcpdump: " + dropped[0].strip())

        ready, consumers = self.broker.queue_depths(queue)
        if ready:
            result.notes.append(f"{ready:,} messages still in the queue after the consumer stopped")
        print(f"[{spec.label}] analysing the capture …", flush=True)
        self.analyse(result, pcap_path, ports, published, capture_deliveries)
        if not result.problem and ready == 0:
            result.ok = True
        else:
            self.failed = True
        if result.problem:
            print(f"[{spec.label}] PROBLEM: {result.problem}; last lines of {log_path}:")
            print("".join(open(log_path, errors="replace").readlines()[-15:]))
        self.broker.delete_topology(queue)
        self.queues.discard(queue)
        if not self.args.keep_captures:
            os.unlink(pcap_path)
        return result

    def analyse(self, result, pcap_path, ports, published, capture_deliveries):
        connections = amqp_capture.analyse(pcap_path, ports, self.broker.port)
        if connections.broken_flows:
            result.notes.append(f"{connections.broken_flows} TCP flow(s) with bytes missing from the capture")
        if connections.nacks or connections.rejects:
            result.notes.append(f"{connections.nacks} nacks and {connections.rejects} rejects")
        acked = connections.acked
        if len(acked) < result.messages and not result.problem:
            result.problem = f"only {len(acked):,} of {result.messages:,} acks seen"
        if not acked:
            return
        ack_times = sorted(acked.values())
        last_ack = ack_times[-1]
        if capture_deliveries and connections.delivered:
            first = min(connections.delivered.values())
        else:
            first = ack_times[0]
            result.notes.append("throughput window: first ack to last ack (deliveries not captured)")
        result.window_seconds = (last_ack - first) / 1e6
        if result.window_seconds > 0:
            result.rate = len(acked) / result.window_seconds
        if not capture_deliveries:
            return
        publish_to_ack, deliver_to_ack = [], []
        unknown = 0
        for key, ack_us in acked.items():
            seq = connections.tag_to_seq.get(key)
            delivered_us = connections.delivered.get(key)
            if seq is None or delivered_us is None or not 0 <= seq < len(published):
                unknown += 1
                continue
            publish_to_ack.append(ack_us / 1e3 - published[seq] / 1e6)
            deliver_to_ack.append((ack_us - delivered_us) / 1e3)
        if unknown:
            result.notes.append(f"{unknown:,} acks not matched to a captured delivery")
        publish_to_ack.sort()
        deliver_to_ack.sort()
        result.publish_to_ack_ms = (percentile(publish_to_ack, 0.50), percentile(publish_to_ack, 0.99))
        result.deliver_to_ack_ms = (percentile(deliver_to_ack, 0.50), percentile(deliver_to_ack, 0.99))

    # -- modes

    def throughput(self):
        n, c = self.args.messages or 50_000, self.args.concurrency or 64
        nginx = Nginx(self.processes, self.workdir)
        url = nginx.start()
        print(f"DRUID stand-in: nginx (constant answers) on {url}, pid {nginx.process.pid}")
        specs = {"druid-sync": self.daemon_spec(url, c), "reference": self.reference_spec(url, c),
                 "ack-only": self.ack_only_spec(c), "ack-only-python": self.ack_only_python_spec(url, c),
                 "ack-only-coalesce": self.ack_only_spec(c, coalesce=True)}
        if self.args.compare_binary:
            specs["druid-sync-b"] = self.compare_spec(url, c)
        # Rounds interleave the consumers (A B C, A B C, …) so that a slow spell of this
        # shared machine hits all of them alike; each consumer's median round is reported.
        rounds = {key: [] for key in self.args.consumers}
        for number in range(1, self.args.rounds + 1):
            for key in self.args.consumers:
                tag = "throughput" if self.args.rounds == 1 else f"throughput-r{number}"
                rounds[key].append(self.run_consumer(specs[key], n, n, tag, standin_pids=nginx.worker_pids,
                                                     capture_deliveries=self.args.capture == "full"))
        nginx.stop()
        results = {key: median_round(runs, leave_out_failed=key in YARDSTICKS) for key, runs in rounds.items()}
        rounds_note = f", median of {self.args.rounds} interleaved rounds" if self.args.rounds > 1 else ""
        self.print_header("throughput", n, c, "nginx, constant answers" + rounds_note)
        print_table([results[k] for k in self.args.consumers])
        if self.args.rounds > 1:
            print()
            print("rounds (msgs/s, in order)")
            for key in self.args.consumers:
                rates = " / ".join(f"{r.rate:,.0f}" if r.ok else "failed" for r in rounds[key])
                failed = sum(not r.ok for r in rounds[key])
                if failed and key in YARDSTICKS:
                    rates += f"  (median of the other {len(rounds[key]) - failed})"
                print(f"  {results[key].spec.label:<36} {rates}")
            if "druid-sync" in rounds and "ack-only" in rounds:
                pairs = [f"{d.rate / a.rate:.2f}" for d, a in zip(rounds["druid-sync"], rounds["ack-only"])
                         if d.ok and a.ok and a.rate]
                print(f"  {'druid-sync / ack-only, round by round':<36} {' / '.join(pairs)}")
            if "druid-sync" in rounds and "druid-sync-b" in rounds:
                pairs = [f"{b.rate / d.rate:.2f}" for d, b in zip(rounds["druid-sync"], rounds["druid-sync-b"])
                         if d.ok and b.ok and d.rate]
                cpu = [f"{(b.cpu_seconds / b.messages) / (d.cpu_seconds / d.messages):.2f}"
                       for d, b in zip(rounds["druid-sync"], rounds["druid-sync-b"]) if d.ok and b.ok and d.cpu_seconds]
                print(f"  {'B / druid-sync msgs/s, round by round':<36} {' / '.join(pairs)}")
                print(f"  {'B / druid-sync CPU/msg, round by round':<36} {' / '.join(cpu)}")
        verdicts = []
        d, r, a = results.get("druid-sync"), results.get("reference"), results.get("ack-only")
        if d and r and d.ok and r.ok:
            ratio = d.rate / r.rate
            verdicts.append(("throughput ≥ 3 × the reference", f"{ratio:.2f} ×",
                             ratio >= TARGETS["throughput_vs_reference"]))
            cpu_d, cpu_r = d.cpu_seconds / d.messages, r.cpu_seconds / r.messages
            fraction = cpu_d / cpu_r
            verdicts.append(("CPU per message ≤ 1/5 of the reference's", f"{fraction:.3f} (1/{1 / fraction:.1f})",
                             fraction <= TARGETS["cpu_fraction_of_reference"]))
        if d and a and d.ok and a.ok:
            ratio = d.rate / a.rate
            verdicts.append(("throughput ≥ 0.4 × the ack-only limit", f"{ratio:.2f} ×",
                             ratio >= TARGETS["throughput_vs_ack_only"]))
        if d and d.ok:
            verdicts.append((f"peak RSS ≤ 30 MiB at concurrency {c}", f"{d.peak_rss_kib / 1024:.1f} MiB",
                             d.peak_rss_kib / 1024 <= TARGETS["peak_rss_mib"] if c == 64 else None))
        print_verdicts(verdicts)
        return verdicts

    def latency(self):
        n, c = self.args.messages or 30_000, self.args.concurrency or 256
        delay = 0.050
        ideal = c / (2 * delay)
        users = min(n, 10_000)
        rows, verdicts = [], []
        emulator = Emulator(self.processes, self.workdir)
        url = emulator.start(latency_ms=int(delay * 1000), users=users)
        print(f"DRUID stand-in: the emulator with {delay * 1000:.0f} ms per call on {url}, "
              f"pid {emulator.process.pid}, {users:,} users")
        result = self.run_consumer(self.daemon_spec(url, c), n, users, "latency-emulator",
                                   standin_pids=lambda: [emulator.process.pid])
        result.spec = ConsumerSpec("druid-sync", "druid-sync → emulator +50 ms", [])
        stats = emulator.admin("GET", "/admin/stats")
        result.notes.append(f"emulator: token {stats.get('token')}, update {stats.get('update')}, "
                            f"applied {stats.get('applied'):,}")
        emulator.stop()
        rows.append(result)
        if result.ok:
            verdicts.append((f"latency mode (emulator) ≥ 90 % of ideal {ideal:,.0f} msg/s",
                             f"{result.rate / ideal * 100:.1f} %", result.rate / ideal >= TARGETS["latency_fraction_of_ideal"]))

        if not self.args.emulator_only:
            nginx = Nginx(self.processes, self.workdir, delay_seconds=delay)
            url = nginx.start()
            print(f"\nDRUID stand-in: nginx with {delay * 1000:.0f} ms per call on {url}, pid {nginx.process.pid}")
            result = self.run_consumer(self.daemon_spec(url, c), n, users, "latency-nginx",
                                       standin_pids=nginx.worker_pids)
            result.spec = ConsumerSpec("druid-sync", "druid-sync → nginx +50 ms", [])
            nginx.stop()
            rows.append(result)
            if result.ok:
                verdicts.append(("  same, nginx stand-in (diagnostic, no target)",
                                 f"{result.rate / ideal * 100:.1f} %", None))
        self.print_header("latency", n, c, f"{delay * 1000:.0f} ms added to each call; "
                          f"ideal = {c} / (2 × {delay * 1000:.0f} ms) = {ideal:,.0f} msg/s")
        print_table(rows)
        print_verdicts(verdicts)
        return verdicts

    def soak(self):
        n, c = self.args.messages or 500_000, self.args.concurrency or 64
        every = self.args.rss_every or max(1, n // 10)
        nginx = Nginx(self.processes, self.workdir)
        url = nginx.start()
        print(f"DRUID stand-in: nginx (constant answers) on {url}, pid {nginx.process.pid}")
        result = self.run_consumer(self.daemon_spec(url, c), n, n, "soak", capture_deliveries=False,
                                   rss_every=every, standin_pids=nginx.worker_pids)
        nginx.stop()
        self.print_header("soak", n, c, "nginx, constant answers; RSS sampled as acks cross each mark")
        print(f"{'acked':>10}  {'RSS MiB':>8}")
        for mark, acked, rss in result.rss_samples:
            print(f"{acked:>10,}  {rss / 1024:8.1f}")
        print()
        print_table([result])
        verdicts = []
        if result.ok and len(result.rss_samples) >= 2:
            first, last = result.rss_samples[0][2], result.rss_samples[-1][2]
            growth = (last - first) / first
            verdicts.append((f"RSS after {result.rss_samples[-1][1]:,} within 10 % of RSS after "
                             f"{result.rss_samples[0][1]:,}", f"{first / 1024:.1f} → {last / 1024:.1f} MiB "
                             f"({growth * 100:+.1f} %)", abs(growth) <= TARGETS["soak_rss_growth"]))
        print_verdicts(verdicts)
        return verdicts

    def instructions(self):
        """druid-sync under valgrind's callgrind: user-space instructions per message, by
        library. Deterministic where timings on this shared machine are not, so it shows
        changes of a few per cent; the kernel's share (system calls, TCP) is not counted.
        Two runs of different sizes per binary; their difference is the cost of the extra
        messages, without start-up."""
        if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
            raise RuntimeError("instructions mode needs valgrind (apt-get install valgrind)")
        n, c = self.args.messages or 3_000, self.args.concurrency or 64
        small = max(100, n // 4)
        nginx = Nginx(self.processes, self.workdir)
        url = nginx.start()
        print(f"DRUID stand-in: nginx (constant answers) on {url}, pid {nginx.process.pid}")
        binaries = [("druid-sync", self.args.binary)]
        if self.args.compare_binary:
            binaries.append(("druid-sync-b", self.args.compare_binary))
        costs = {}
        for key, binary in binaries:
            totals = []
            for count in (small, n):
                out = os.path.join(self.workdir, f"{key}.{count}.callgrind")
                spec = self.daemon_spec(url, c, key=key, label=f"{key} under callgrind", binary=binary,
                                        wrapper=["valgrind", "--tool=callgrind", "--dump-instr=no",
                                                 f"--callgrind-out-file={out}"])
                result = self.run_consumer(spec, count, count, f"instructions-{count}", capture_deliveries=False,
                                           standin_pids=nginx.worker_pids)
                if not result.ok:
                    raise RuntimeError(f"{key} under callgrind did not finish: {result.problem or result.notes}")
                totals.append(callgrind_by_object(out, binary))
            costs[key] = {obj: (totals[1].get(obj, 0) - totals[0].get(obj, 0)) / (n - small)
                          for obj in set(totals[0]) | set(totals[1])}
        nginx.stop()
        self.print_header("instructions", n, c, f"nginx, constant answers; runs of {small:,} and {n:,} "
                          "messages under callgrind, difference per message")
        # Every library either binary spent in (B may link one A does not, such as an allocator).
        objects = sorted(set().union(*costs.values()), key=lambda o: -max(c.get(o, 0) for c in costs.values()))
        header = f"{'instructions per message':<28} {'druid-sync':>12}"
        if "druid-sync-b" in costs:
            header += f" {'B':>12} {'B / A':>7}"
        print(header)
        print("-" * len(header))
        shown = [o for o in objects if max(c.get(o, 0) for c in costs.values()) >= 500] + ["total"]
        for key in costs:
            costs[key]["total"] = sum(v for o, v in costs[key].items() if o != "total")
        for obj in shown:
            a = costs["druid-sync"].get(obj, 0)
            line = f"{obj:<28} {a:>12,.0f}"
            if "druid-sync-b" in costs:
                b = costs["druid-sync-b"].get(obj, 0)
                line += f" {b:>12,.0f} " + (f"{b / a:>7.3f}" if a else f"{'new':>7}")
            print(line)
        print()
        return []

    def print_header(self, mode, n, c, standin):
        load = open("/proc/loadavg").read().split()[:3]
        print()
        print("=" * 100)
        print(f"druid-sync benchmark, {mode} mode: {n:,} messages, concurrency/prefetch {c}, classic queue; "
              f"DRUID: {standin}")
        print(f"machine: {machine_summary()}; load average now {' '.join(load)}")
        print(f"druid-sync binary: {os.path.relpath(self.args.binary, REPO_DIR)} ({binary_kind(self.args.binary)})")
        print("=" * 100)


def binary_kind(path):
    """How a druid-sync binary was built, read from the libraries it needs."""
    try:
        needed = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not an ELF file: a wrapper?"
    runtime = "dynamic Swift runtime" if "libswiftCore.so" in needed else "static Swift runtime"
    if "libmimalloc.so" not in needed:
        return runtime + ", glibc malloc"
    return runtime + (", as the .deb ships it" if runtime.startswith("static") else "")


def machine_summary():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / MIB:.0f} GiB RAM"
    return f"{os.cpu_count()} × {model} (nproc {len(os.sched_getaffinity(0))}){memory}"


def wait_for_capture_drain(pcap_path, quiet=0.4, limit=20.0):
    """Waits until tcpdump has written what it captured. tcpdump discards the packets still
    in its kernel buffer when it is interrupted, and after a fast consumer (the ack-only
    one acks 50,000 messages in about 2 s) it can be seconds behind: stopping it early
    lost acks from the capture and failed the round. Returns once the file has not grown
    for `quiet` seconds (at least 0.3 s after the call), or after `limit` seconds."""
    deadline = time.monotonic() + limit
    time.sleep(0.3)
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = os.path.getsize(pcap_path) if os.path.exists(pcap_path) else 0
        now = time.monotonic()
        if size != last:
            last, still_since = size, now
        elif now - still_since >= quiet:
            return
        time.sleep(0.1)


# The consumers druid-sync is measured against.
YARDSTICKS = ("reference", "ack-only", "ack-only-python", "ack-only-coalesce")


def median_round(runs, leave_out_failed=False):
    """The round with the median rate (the lower middle one for an even count). A failed
    round of druid-sync counts as rate 0, so its failures are not hidden by a good round;
    a yardstick's failed rounds are left out (`leave_out_failed`), because counting them
    as 0 would lower the yardstick and flatter druid-sync."""
    kept = [r for r in runs if r.ok] if leave_out_failed else runs
    ordered = sorted(kept or runs, key=lambda r: r.rate if r.ok else 0.0)
    return ordered[(len(ordered) - 1) // 2]


def fmt_pair(pair, digits=1):
    if pair[0] is None:
        return "n/a"
    return f"{pair[0]:,.{digits}f} / {pair[1]:,.{digits}f}"


def callgrind_by_object(path, binary):
    """Instructions (Ir) per shared object in a callgrind output file, from callgrind_annotate;
    the daemon's own executable (Swift code and the static Swift runtime) is `druid-sync`."""
    text = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", path], capture_output=True, text=True,
                          check=True).stdout
    totals = {}
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+\S.*\[(.+)\]\s*$", line)
        if match:
            obj = os.path.basename(match.group(2).split()[0])
            if obj.startswith("libcurl"):
                obj = "libcurl"
            elif obj == os.path.basename(binary):
                obj = "druid-sync"
            totals[obj] = totals.get(obj, 0) + int(match.group(1).replace(",", ""))
    return totals


def print_table(results):
    header = (f"{'consumer':<36} {'msgs/s':>9}  {'CPU s/1k msgs':>13}  {'peak RSS MiB':>12}  "
              f"{'publish→ack p50/p99 ms':>24}  {'deliver→ack p50/p99 ms':>24}")
    print(header)
    print("-" * len(header))
    for r in results:
        if not r.ok and not r.rate:
            print(f"{r.spec.label:<36} FAILED: {r.problem}")
            continue
        print(f"{r.spec.label:<36} {r.rate:>9,.0f}  {r.cpu_seconds / r.messages * 1000:>13.3f}  "
              f"{r.peak_rss_kib / 1024:>12.1f}  {fmt_pair(r.publish_to_ack_ms, 0):>24}  "
              f"{fmt_pair(r.deliver_to_ack_ms, 2):>24}")
    print()
    for r in results:
        extra = [f"window {r.window_seconds:.2f} s", f"CPU {r.cpu_seconds:.2f} s"]
        if r.broker_cpu_seconds is not None:
            extra.append(f"broker CPU {r.broker_cpu_seconds / r.messages * 1000:.3f} s/1k")
        if r.standin_cpu_seconds is not None:
            extra.append(f"stand-in CPU {r.standin_cpu_seconds / r.messages * 1000:.3f} s/1k")
        if r.capture_cpu_seconds is not None:
            extra.append(f"tcpdump CPU {r.capture_cpu_seconds / r.messages * 1000:.3f} s/1k")
        if r.machine_busy is not None:
            extra.append(f"machine CPU busy {r.machine_busy * 100:.0f} %")
        if r.others_cpu_seconds is not None and r.window_seconds:
            extra.append(f"other processes {r.others_cpu_seconds:.1f} CPU s in those {r.machine_seconds:.1f} s")
        line = f"  {r.spec.label}: " + ", ".join(extra)
        if r.problem:
            line += f"; PROBLEM: {r.problem}"
        print(line)
        for note in r.notes:
            print(f"    note: {note}")


def print_verdicts(verdicts):
    if not verdicts:
        return
    print()
    print("targets (ratios from this run)")
    for name, value, passed in verdicts:
        verdict = "    " if passed is None else ("PASS" if passed else "FAIL")
        print(f"  {verdict}  {name:<58} {value}")


def main():
    parser = argparse.ArgumentParser(description="druid-sync's benchmark (run it through bench/run)")
    parser.add_argument("mode", nargs="?", default="throughput", choices=["throughput", "latency", "soak", "instructions"])
    parser.add_argument("--messages", type=int, help="events per consumer (50,000 / 30,000 / 500,000 by mode)")
    parser.add_argument("--concurrency", type=int, help="druid-sync's DRUID_SYNC_CONCURRENCY and every "
                        "consumer's prefetch (64, or 256 in latency mode)")
    parser.add_argument("--consumers", default="druid-sync,reference,ack-only",
                        help="throughput mode: which consumers to run, comma-separated")
    parser.add_argument("--rounds", type=int, default=3,
                        help="throughput mode: interleaved rounds per consumer; the median is reported (3)")
    parser.add_argument("--amqp-url", default=os.environ.get("DRUID_SYNC_AMQP_URL",
                                                            "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--binary", default=os.path.join(REPO_DIR, ".build", "release", "druid-sync"))
    parser.add_argument("--ack-only-binary", required=True)
    parser.add_argument("--compare-binary",
                        help="throughput and instructions modes: a second druid-sync binary (consumer "
                        "`druid-sync-b`, added to --consumers), to compare a change with the first in one run")
    parser.add_argument("--rss-every", type=int, help="soak mode: RSS sample period in acks (N / 10)")
    parser.add_argument("--emulator-only", action="store_true", help="latency mode: skip the nginx variant")
    parser.add_argument("--perf", action="store_true",
                        help="record druid-sync with `perf record -e cpu-clock -g` (kept in the work folder)")
    parser.add_argument("--capture", choices=["full", "acks"], default="full",
                        help="throughput mode: capture both directions (full: delivery→ack and "
                        "publish→ack times) or only the consumer's side (acks: lighter, rates only)")
    parser.add_argument("--keep-captures", action="store_true", help="keep the pcap files in the work folder")
    parser.add_argument("--poll-interval", type=float, default=0.25)
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    args = parser.parse_args()
    args.consumers = list(dict.fromkeys(c.strip() for c in args.consumers.split(",") if c.strip()))
    if args.compare_binary and "druid-sync-b" not in args.consumers:
        args.consumers.append("druid-sync-b")
    if "druid-sync-b" in args.consumers and not args.compare_binary:
        parser.error("the consumer druid-sync-b needs --compare-binary")
    for c in args.consumers:
        if c not in ("druid-sync", "druid-sync-b", "reference", "ack-only", "ack-only-python", "ack-only-coalesce"):
            parser.error(f"unknown consumer {c}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if os.geteuid() != 0:
        parser.error("tcpdump needs root (or CAP_NET_RAW) to capture on lo")

    bench = Bench(args)
    interrupted = False

    def on_signal(number, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        bench.broker.ensure_running()
        print(f"work folder: {bench.workdir}")
        getattr(bench, args.mode)()
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping what the benchmark started", file=sys.stderr)
    except Exception:
        bench.failed = True
        raise
    finally:
        bench.processes.stop_all(keep=bench.broker.process)
        for queue in bench.queues:
            try:
                bench.broker.delete_topology(queue)
            except Exception as error:  # noqa: BLE001 - best effort while stopping
                print(f"could not delete the queue {queue}: {error}", file=sys.stderr)
        bench.broker.stop()
        if args.keep_captures or interrupted or bench.failed:
            print(f"logs and files kept in {bench.workdir}")
        else:
            shutil.rmtree(bench.workdir, ignore_errors=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
