#!/usr/bin/env python3
"""End-to-end speed and memory of an edge broker's MQTT bridge: stock NanoMQ, NanoMQ patched
with nmq-outbox, and Mosquitto's own bridge as the peer (issue 11, item 1).

It builds nothing: it takes built `nanomq` binaries (and Debian's `mosquitto` from PATH).
Everything runs on 127.0.0.1 without root; never in CI. Topology per run:

    publisher (paho, QoS 1) -> edge broker -> [proxy] -> remote mosquitto -> subscriber

The edge is `nanomq` with the bridge settings of throughput.py (MQTT 5, clean_start false,
forwards tp at QoS 1, cache on), or `mosquitto` with a `connection` bridge of the same topic
(QoS 1, cleansession false, MQTT 5, a queue as large as the backlog). The proxy (a child
process of this script) forwards the bridge's TCP connection to the remote and makes the
outage: it closes every connection and refuses new ones until the restore.

    bench.py rate   --edge stock=<nanomq> --edge patched=<nanomq> --edge mosquitto [--rates ...]
                    [--pubs N] [--edge direct]
    bench.py drain  --edge patched=<nanomq> --edge mosquitto [-n 100000] [--drain-bench <bin>]
                    [--sub paho|mosquitto_sub|none] [--outage proxy|iptables]
    bench.py rss    --edge patched=<nanomq> [-n 1000000]
    bench.py quota  --edge stock=<nanomq> --edge patched=<nanomq> [-n 3000] [--ws] [--qos 2]

rate  (a): for each offered rate (paced publisher, --secs seconds per step) every edge gets a
      run, edges alternating; a step is lossless when the subscriber got every message that the
      edge acknowledged to the publisher, and all of them. Prints received/offered, CPU of the
      edge process per message (utime + stime from /proc, over the step) and the highest
      lossless rate of each edge. --pubs N splits the publisher over N processes (one paho
      process tops out near 10k msg/s); --edge direct publishes to the remote itself (the
      tools' own ceiling, no edge); "achieved" says whether the publisher kept the pace.
drain (b): the link is cut, n messages are published into the edge and acknowledged, then the
      link is restored: drain msg/s from the restore to the last message at the subscriber (and
      from the first to the last), the time from the restore to the first message (the
      reconnect), and the CPU of each process over the drain (edge, proxy, remote, subscriber:
      which one is the bottleneck). --sub mosquitto_sub takes the subscriber out of the bench's
      Python process; --sub none has no subscriber and times the drain by the patched edge's
      `acked` counter (REST API, polled every 10 ms), as the library's drain bench times it
      (NanoMQ edges only). --outage iptables takes the proxy out of the data path (the bench
      re-runs itself in a network namespace of its own, root, and cuts the remote's bridge
      listener with a REJECT rule). With --drain-bench (the library's `drain` bench binary,
      cargo bench --bench drain --no-run) the library's own drain of the same n at the window
      NanoMQ uses (min(32, the remote's Receive Maximum)) runs in the same session.
rss   (c): VmRSS of the edge with the link down and nothing waiting, then with n messages
      waiting (all acknowledged to the publisher), its peak while draining (sampled every 0.2 s),
      then after the drain; with the time the fill and the drain took.
quota (d): one MQTT 5 client publishes n QoS 1 messages one at a time; exit 1 if the edge ever
      disconnects it (NanoNNG f2acbcf25 without hook N11: at every 1024th message, 0x93).
      --ws: the same over MQTT over WebSocket (NanoNNG's mqttws transport, N11's ws part).
Environment: NMQ_BENCH_LOG=<level> (the edge NanoMQ's log level, default warn), NMQ_BENCH_KEEP=1
(keep each edge's directory with nanomq.log), NMQ_BENCH_REMOTE_LOG=<file> (the remote
mosquitto's `log_type all` log: every PUBLISH, its dup flag, connects), NMQ_BENCH_PROFILE=<shell
command with {pid}> (drain: run on each NanoMQ edge from the restore to the last message, then
SIGINT; e.g. "perf record -g -o /tmp/p.data -p {pid}" or "strace -c -f -o /tmp/s.txt -p {pid}").
Repeat with --runs; runs of the edges alternate; medians are printed with every run's value.
Needs: mosquitto, paho-mqtt (pip).
"""
import argparse
import base64
import json
import multiprocessing
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import free_port, wait_port  # noqa: E402

TOPIC = "tp"
REMOTE_RM = 64  # the remote's max_inflight_messages = its Receive Maximum
OUTBOX_WINDOW = 32  # the library's default window (nanomq_patch/README.md)

NANOMQ_CONF = """\
mqtt {{
    max_packet_size = 1MB
}}
listeners.tcp {{
    bind = "127.0.0.1:{local}"
}}
log {{
    to = [file]
    level = {loglevel}
    dir = "{dir}"
    file = "nanomq.log"
    rotation {{
        size = 512MB
        count = 2
    }}
}}
bridges.mqtt.remote {{
    server = "mqtt-tcp://127.0.0.1:{remote}"
    proto_ver = 5
    clientid = "{cid}"
    clean_start = false
    keepalive = 3s
    backoff_max = 2s
    forwards = [
        {{ remote_topic = "{topic}", local_topic = "{topic}", qos = 1 }}
    ]
    max_parallel_processes = 32
    max_send_queue_len = 256
    cancel_timeout = 5000
}}
bridges.mqtt.cache {{
    disk_cache_size = {cache}
    mounted_file_path = "{dir}/cache/"
    flush_mem_threshold = 100
}}
"""

NANOMQ_HTTP = """\
http_server {{
    port = {port}
    limit_conn = 4
    username = admin
    password = public
    auth_type = basic
}}
"""

MOSQ_EDGE_CONF = """\
listener {local} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages {cache}
max_inflight_messages 20
connection {cid}
address 127.0.0.1:{remote}
bridge_protocol_version mqttv50
cleansession false
restart_timeout 1 2
topic {topic} out 1
"""

REMOTE_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 10000000
max_inflight_messages {rm}
"""


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- the proxy: a child process; SIGUSR1 cuts, SIGUSR2 restores -------------------------------
def role_proxy(listen, target, start_cut):
    cut = [start_cut]
    pairs = []
    srv = [None]

    def open_srv():
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", listen))
        s.listen(16)
        srv[0] = s

    def on_cut(*_):
        cut[0] = True

    def on_restore(*_):
        cut[0] = False

    signal.signal(signal.SIGUSR1, on_cut)
    signal.signal(signal.SIGUSR2, on_restore)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if not start_cut:
        open_srv()
    print("ready", flush=True)
    while True:
        if cut[0]:
            for a, b in pairs:
                a.close()
                b.close()
            pairs.clear()
            if srv[0]:
                srv[0].close()
                srv[0] = None
            time.sleep(0.01)
            continue
        if srv[0] is None:
            open_srv()
        socks = [srv[0]] + [s for p in pairs for s in p]
        try:
            r, _, _ = select.select(socks, [], [], 0.05)
        except (OSError, ValueError):
            continue
        for s in r:
            if s is srv[0]:
                c, _ = s.accept()
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                u = socket.create_connection(("127.0.0.1", target))
                u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pairs.append((c, u))
                continue
            pair = next((p for p in pairs if s in p), None)
            if pair is None:
                continue
            other = pair[1] if s is pair[0] else pair[0]
            try:
                data = s.recv(65536)
                if data:
                    other.sendall(data)
                    continue
            except OSError:
                pass
            pair[0].close()
            pair[1].close()
            pairs.remove(pair)


class Proxy:
    def __init__(self, target, start_cut):
        self.port = free_port()
        self.p = subprocess.Popen([sys.executable, __file__, "proxy", str(self.port), str(target),
                                   "1" if start_cut else "0"], stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def cut(self):
        self.p.send_signal(signal.SIGUSR1)

    def restore(self):
        self.p.send_signal(signal.SIGUSR2)

    def close(self):
        self.p.terminate()
        self.p.wait()


# --- brokers ----------------------------------------------------------------------------------
class IptablesCut:
    """The outage without a proxy in the data path (drain/rss --outage iptables, inside the
    bench's own network namespace): a REJECT (tcp-reset) rule on the remote's bridge listener
    resets the bridge's connection at its next packet and refuses reconnects, while the
    subscriber's listener stays up. Same interface as Proxy; no process of its own."""

    def __init__(self, port):
        self.port, self.p, self.is_cut = port, None, False

    def _rule(self, op):
        subprocess.run(["iptables", op, "INPUT", "-p", "tcp", "--dport", str(self.port), "-j",
                        "REJECT", "--reject-with", "tcp-reset"], check=True)

    def cut(self):
        self._rule("-I")
        self.is_cut = True

    def restore(self):
        self._rule("-D")
        self.is_cut = False

    def close(self):
        if self.is_cut:
            self.restore()


def make_cut(kind, remote):
    """The outage mechanism: (the port the edge's bridge dials, the cutter)."""
    if kind == "iptables":
        c = IptablesCut(remote.bridge_port)
        return c.port, c
    c = Proxy(remote.port, start_cut=False)
    return c.port, c


class Remote:
    def __init__(self, bridge_listener=False):
        self.dir = tempfile.mkdtemp(prefix="nmq-bench-remote-")
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        # a second listener for the bridges (--outage iptables cuts that one only)
        self.bridge_port = free_port() if bridge_listener else self.port
        conf = os.path.join(self.dir, "m.conf")
        with open(conf, "w") as f:
            f.write(REMOTE_CONF.format(port=self.port, rm=REMOTE_RM))
            if bridge_listener:
                f.write(f"listener {self.bridge_port} 127.0.0.1\n")
            if os.environ.get("NMQ_BENCH_REMOTE_LOG"):  # the remote's packet log, for a look
                f.write(f"log_dest file {os.environ['NMQ_BENCH_REMOTE_LOG']}\nlog_type all\n")
        self.p = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(self.port)
        wait_port(self.bridge_port)

    def close(self):
        self.p.kill()
        self.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Edge:
    """`kind` is a nanomq binary or the word mosquitto."""

    def __init__(self, label, kind, remote_port, cache, http=False, ws=False):
        """ws: also listen for MQTT over WebSocket on self.ws_port (path /mqtt)."""
        self.label, self.kind = label, kind
        self.http = free_port() if http else None  # NanoMQ's REST API (drain --sub none)
        self.dir = tempfile.mkdtemp(prefix=f"nmq-bench-{label}-")
        os.chmod(self.dir, 0o777)
        os.makedirs(os.path.join(self.dir, "cache"))
        self.port = free_port()
        self.ws_port = free_port() if ws else None
        fmt = dict(local=self.port, remote=remote_port, dir=self.dir, topic=TOPIC, cache=cache,
                   cid=f"bridge_{label}_{self.port}",
                   loglevel=os.environ.get("NMQ_BENCH_LOG", "warn"))
        if kind == "mosquitto":
            conf = os.path.join(self.dir, "edge.conf")
            with open(conf, "w") as f:
                f.write(MOSQ_EDGE_CONF.format(**fmt))
                if ws:
                    f.write(f"listener {self.ws_port} 127.0.0.1\nprotocol websockets\n")
            cmd = ["mosquitto", "-c", conf]
        else:
            conf = os.path.join(self.dir, "nanomq.conf")
            with open(conf, "w") as f:
                f.write(NANOMQ_CONF.format(**fmt))
                if self.http:
                    f.write(NANOMQ_HTTP.format(port=self.http))
                if ws:
                    f.write(f'listeners.ws {{\n    bind = "127.0.0.1:{self.ws_port}/mqtt"\n}}\n')
            cmd = [kind, "start", "--conf", conf]
        self.p = subprocess.Popen(cmd, cwd=self.dir, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(self.port)
        if ws:
            wait_port(self.ws_port)

    def close(self):
        self.p.kill()
        self.p.wait()
        if os.environ.get("NMQ_BENCH_KEEP"):  # keep the edge's log and cache for a look
            print(f"bench.py: kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def client(cid):
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                       protocol=mqtt.MQTTv5)


def ws_client(cid):
    """An MQTT 5 client over WebSocket (connect it to an Edge's ws_port)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                    protocol=mqtt.MQTTv5, transport="websockets")
    c.ws_set_options(path="/mqtt")
    return c


class Subscriber:
    def __init__(self, port, cid):
        self.n = 0
        self.seen = set()
        self.dups = 0
        self.first = self.last = None
        self.c = client(cid)
        self.c.on_message = self.on_message
        ok = threading.Event()
        self.c.on_subscribe = lambda *a: ok.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(TOPIC, 1)
        self.c.loop_start()
        if not ok.wait(10):
            sys.exit("bench.py: the subscriber did not subscribe")

    def on_message(self, c, u, m):
        now = time.time()
        if m.payload in self.seen:
            self.dups += 1  # a duplicate (QoS 1 allows them): counted once in n
            return
        self.seen.add(m.payload)
        self.n += 1
        if self.first is None:
            self.first = now
        self.last = now

    def wait(self, n, timeout, stall=15):
        end = time.time() + timeout
        last_n, last_t = -1, time.time()
        while self.n < n and time.time() < end:
            time.sleep(0.05)
            if self.n != last_n:
                last_n, last_t = self.n, time.time()
            elif time.time() - last_t > stall:  # nothing new for `stall` s: give up
                break
        return self.n

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class FastSubscriber:
    """The Subscriber's interface on `mosquitto_sub` (C; line-buffered `%U %p` lines read by a
    thread), for runs where a Python MQTT client could be the bottleneck (drain --sub
    mosquitto_sub). Times are mosquitto_sub's own receive timestamps."""

    def __init__(self, port, cid, qos=1):
        self.n = 0
        self.seen = set()
        self.dups = 0
        self.first = self.last = None
        self.probed = threading.Event()
        self.p = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", cid,
             "-V", "mqttv5", "-q", str(qos), "-t", TOPIC, "-F", "%U %p"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()
        probe = client(f"{cid}-probe")
        probe.connect("127.0.0.1", port)
        probe.loop_start()
        end = time.time() + 10
        while not self.probed.wait(0.2) and time.time() < end:  # subscribed once one arrives
            probe.publish(TOPIC, b"probe", qos=0)
        probe.loop_stop()
        probe.disconnect()
        if not self.probed.is_set():
            sys.exit("bench.py: mosquitto_sub did not subscribe")

    def _read(self):
        for line in self.p.stdout:
            ts, _, payload = line.rstrip(b"\n").partition(b" ")
            if payload == b"probe":
                self.probed.set()
                continue
            if payload in self.seen:
                self.dups += 1
                continue
            self.seen.add(payload)
            now = float(ts)
            self.n += 1
            if self.first is None:
                self.first = now
            self.last = now

    wait = Subscriber.wait

    def close(self):
        self.p.terminate()
        self.p.wait()


class OutboxWatcher:
    """The Subscriber's interface without a subscriber (drain --sub none, NanoMQ edges only):
    polls the patched edge's REST API every 10 ms for the outbox's `acked` counter, so the
    drain is timed as the library's drain bench times it, to the remote's last PUBACK, with
    nobody subscribed at the remote."""

    def __init__(self, http_port):
        self.url = f"http://127.0.0.1:{http_port}/api/v4/bridges/remote"
        auth = base64.b64encode(b"admin:public").decode()
        self.headers = {"Authorization": f"Basic {auth}"}
        self.base = self.acked()
        self.n, self.dups, self.first, self.last = 0, 0, None, None
        self.link_up = None
        self.p = None
        self.stop = threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()

    def outbox(self):
        req = urllib.request.Request(self.url, headers=self.headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            body = json.load(r)
        for node in body["data"]["bridge"]["nodes"]:
            if node.get("outbox"):
                return node["outbox"]
        sys.exit("bench.py: --sub none: the edge has no outbox (a patched NanoMQ is needed)")

    def acked(self):
        return self.outbox()["acked"]

    def _poll(self):
        was_up = True
        while not self.stop.wait(0.01):
            try:
                ob = self.outbox()
            except OSError:  # a slow answer or the edge going away at the end
                continue
            n = ob["acked"] - self.base
            if ob["link_up"] and not was_up and self.link_up is None:
                self.link_up = time.time()  # the reconnect after the restore (poll resolution)
            was_up = ob["link_up"]
            if n != self.n:
                now = time.time()
                if self.first is None:
                    self.first = now
                self.n, self.last = n, now

    wait = Subscriber.wait

    def close(self):
        self.stop.set()


def make_subscriber(kind, port, cid, qos=1):
    return FastSubscriber(port, cid, qos) if kind == "mosquitto_sub" else Subscriber(port, cid)


def publish(port, n, rate, cid, times=None):
    """Publishes n QoS 1 messages (rate msg/s, 0 = as fast as a window of 1000 allows); returns
    the number the edge acknowledged. times (a dict), if given, gets "first" (the first publish)
    and "last" (the last ack) as time.time()."""
    acked = [0]
    times = {} if times is None else times
    done = threading.Event()
    pub = client(cid)

    def on_publish(c, u, mid, rc=None, props=None):
        acked[0] += 1
        times["last"] = time.time()
        if acked[0] >= n:
            done.set()

    pub.on_publish = on_publish
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    t0 = times["first"] = time.time()
    for i in range(n):
        payload = f"{cid}|{i}|".encode().ljust(100, b"x")
        if rate and i % 20 == 0:
            ahead = t0 + i / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
        while pub.publish(TOPIC, payload, qos=1).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.001)
    done.wait(60 + (n / rate if rate else n / 1000))
    pub.loop_stop()
    pub.disconnect()
    return acked[0]


def _publish_child(q, port, n, rate, cid):
    times = {}
    acked = publish(port, n, rate, cid, times)
    q.put((acked, times["first"], times.get("last", times["first"])))


def publish_many(port, n, rate, cid, procs):
    """publish() split over `procs` processes (n / procs messages at rate / procs each, client
    ids cid-0, cid-1, ...): past one Python process's ceiling. Returns (acked, seconds from the
    start to the last process's last ack)."""
    if procs <= 1:
        times = {}
        acked = publish(port, n, rate, cid, times)
        return acked, times.get("last", times["first"]) - times["first"]
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    ps = [ctx.Process(target=_publish_child, args=(q, port, k, rate / procs, f"{cid}-{i}"))
          for i, k in enumerate(shares)]
    for pr in ps:
        pr.start()
    res = [q.get(timeout=120 + n / max(rate, 1)) for _ in ps]
    for pr in ps:
        pr.join(10)
    return sum(r[0] for r in res), max(r[2] for r in res) - min(r[1] for r in res)


class _Direct:
    """The `direct` pseudo-edge of rate: the publisher talks to the remote itself (the tool's
    own ceiling, no edge broker)."""

    def __init__(self, port):
        self.port, self.p = port, None

    def close(self):
        pass


def settle(edge, sub_port, label):
    """Waits until the edge's bridge forwards: one probe message reaches the remote."""
    s = Subscriber(sub_port, f"probe-sub-{label}-{time.time_ns()}")
    end = time.time() + 20
    while s.n == 0 and time.time() < end:
        publish(edge.port, 1, 0, f"probe-pub-{label}-{time.time_ns()}")
        s.wait(1, 1)
    s.close()
    if s.n == 0:
        sys.exit(f"bench.py: {label}: the bridge forwards nothing within 20 s")


# --- (a) rate -------------------------------------------------------------------------------
def cmd_rate(a, edges):
    remote = Remote()
    best = {l: 0 for l, _ in edges}
    kept = {l: 0 for l, _ in edges}  # the highest lossless step the publisher also kept pace at
    try:
        print(f"{a.pubs} publisher process(es); achieved = acked / (first publish .. last ack); "
              f"load = 1-min load average before the run")
        print("| offered msg/s | edge | run | acked | achieved msg/s | received | lost | "
              "duplicates | edge CPU us/msg | load |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for rate in a.rates:
            n = int(rate * a.secs)
            ok = {l: True for l, _ in edges}
            pace = {l: True for l, _ in edges}
            for run in range(a.runs):
                order = edges if run % 2 == 0 else list(reversed(edges))
                for label, kind in order:
                    load = os.getloadavg()[0]
                    e = (_Direct(remote.port) if kind == "direct"
                         else Edge(label, kind, remote.port, max(102400, n)))
                    try:
                        settle(e, remote.port, label)
                        sub = Subscriber(remote.port, f"sub-{label}-{rate}-{run}")
                        c0 = cpu_secs(e.p.pid) if e.p else 0
                        acked, secs = publish_many(e.port, n, rate, f"pub-{label}-{rate}-{run}",
                                                   a.pubs)
                        got = sub.wait(acked, 30, stall=5)
                        c1 = cpu_secs(e.p.pid) if e.p else 0
                        dups = sub.dups
                        sub.close()
                    finally:
                        e.close()
                    lost = n - got
                    achieved = acked / max(secs, 1e-9)
                    ok[label] &= lost == 0
                    pace[label] &= achieved >= 0.95 * rate
                    cpu = f"{1e6 * (c1 - c0) / max(got, 1):.1f}" if e.p else "-"
                    print(f"| {rate} | {label} | {run + 1} | {acked} | {achieved:.0f} | {got} | "
                          f"{lost} | {dups} | {cpu} | {load:.1f} |", flush=True)
            for label in ok:
                if ok[label]:
                    best[label] = max(best[label], rate)
                    if pace[label]:
                        kept[label] = max(kept[label], rate)
        for label, r in best.items():
            print(f"highest lossless offered rate, {label}: {r} msg/s (of {a.rates}); "
                  f"lossless with the publisher at >= 95% of the pace: {kept[label]} msg/s")
    finally:
        remote.close()


# --- (b) drain --------------------------------------------------------------------------------
def drain_once(label, kind, remote, n, sub_kind="paho", outage="proxy", sub_qos=1):
    port, proxy = make_cut(outage, remote)
    e = Edge(label, kind, port, max(102400, 2 * n), http=sub_kind == "none")
    try:
        settle(e, remote.port, label)
        proxy.cut()
        time.sleep(1.0)
        if sub_kind == "none":
            sub = OutboxWatcher(e.http)
        else:
            sub = make_subscriber(sub_kind, remote.port, f"dsub-{label}-{time.time_ns()}",
                                  sub_qos)
        acked = publish(e.port, n, 0, f"dpub-{label}-{time.time_ns()}")
        base = sub.n  # what leaked through before the cut (should be 0)
        rss_waiting = rss_kib(e.p.pid)
        # CPU of each process of the run from the restore to the last message: which one is
        # the bottleneck (the bench's own process holds the paho subscriber)
        procs = dict(edge=e.p.pid, proxy=proxy.p.pid if proxy.p else None, remote=remote.p.pid,
                     sub=sub.p.pid if sub_kind == "mosquitto_sub" else
                     None if sub_kind == "none" else os.getpid())
        procs = {k: v for k, v in procs.items() if v is not None}
        prof = None
        if os.environ.get("NMQ_BENCH_PROFILE") and kind != "mosquitto":
            # e.g. "perf record -g -o /tmp/p.data -p {pid}": runs over the drain, then SIGINT
            prof = subprocess.Popen(os.environ["NMQ_BENCH_PROFILE"].format(pid=e.p.pid),
                                    shell=True, start_new_session=True)
            time.sleep(1.0)
        c0 = {k: cpu_secs(v) for k, v in procs.items()}
        proxy.restore()
        t0 = time.time()
        got = sub.wait(base + acked, a_timeout[0]) - base
        c1 = {k: cpu_secs(v) for k, v in procs.items()}
        if prof is not None:
            os.killpg(prof.pid, signal.SIGINT)
            prof.wait()
        sub.close()
        first, last = sub.first, sub.last
        span = (last - first) if got > 1 else 0
        wall = max((last or t0) - t0, 1e-9)
        return dict(acked=acked, got=got, from_restore=got / max(last - t0, 1e-9) if got else 0,
                    first_to_last=got / span if got > 1 else 0, rss_waiting=rss_waiting,
                    reconnect=(first - t0) if first else 0,
                    dups="-" if sub_kind == "none" else sub.dups,
                    from_link_up=got / max(last - sub.link_up, 1e-9)
                    if getattr(sub, "link_up", None) and got else None,
                    cpu={k: 100 * (c1[k] - c0[k]) / wall for k in procs})
    finally:
        e.close()
        proxy.close()


a_timeout = [120]


def lib_drain(binary, n, window):
    env = dict(os.environ, NMQ_BENCH_N=str(n), NMQ_BENCH_REPS="1",
               NMQ_BENCH_WINDOWS=str(window))
    out = subprocess.run([binary], env=env, capture_output=True, text=True, timeout=600).stdout
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 4 and cells[1].split(" ")[0] == str(window):
            return float(cells[3]), float(cells[4])
    sys.exit(f"bench.py: no window {window} row in the drain bench's output:\n{out}")


def cmd_drain(a, edges):
    a_timeout[0] = a.timeout
    if a.sub == "none":  # timed by the outbox's acked counter: NanoMQ edges only
        edges = [(l, k) for l, k in edges if k != "mosquitto"]
    remote = Remote(bridge_listener=a.outage == "iptables")
    res = {l: [] for l, _ in edges}
    lib = []
    window = min(OUTBOX_WINDOW, REMOTE_RM)
    try:
        print(f"drain of a {a.n}-message backlog (100 B, QoS 1) after the restore; remote "
              f"Receive Maximum {REMOTE_RM}, so NanoMQ's window is {window}")
        print(f"subscriber: {a.sub} (QoS {a.sub_qos}); outage: {a.outage}; CPU %: of one core from the restore "
              "to the last message")
        print("| edge | run | acked | delivered | msg/s from restore | msg/s first..last | "
              "restore to first s | CPU % edge / proxy / remote / subscriber | load |")
        print("|---|---|---|---|---|---|---|---|---|")
        for run in range(a.runs):
            order = edges if run % 2 == 0 else list(reversed(edges))
            for label, kind in order:
                r = drain_once(label, kind, remote, a.n, a.sub, a.outage, a.sub_qos)
                res[label].append(r)
                cpu = " / ".join(f"{r['cpu'][k]:.0f}" if k in r["cpu"] else "-"
                                 for k in ("edge", "proxy", "remote", "sub"))
                print(f"| {label} | {run + 1} | {r['acked']} | {r['got']} ({r['dups']} dup) | "
                      f"{r['from_restore']:.0f} | {r['first_to_last']:.0f} | "
                      f"{r['reconnect']:.2f} | {cpu} | {load()} |", flush=True)
                if r["from_link_up"]:
                    print(f"| {label} | {run + 1} | from the edge's link_up (REST, 10 ms polls): "
                          f"{r['from_link_up']:.0f} msg/s | | | | | | |", flush=True)
            if a.drain_bench:
                o, p = lib_drain(a.drain_bench, a.n, window)
                lib.append(o)
                print(f"| library drain bench, window {window} | {run + 1} | {a.n} | {a.n} | "
                      f"{o:.0f} (plain publisher {p:.0f}) | - | - | - | {load()} |", flush=True)
        for label, rs in res.items():
            up = [r["from_link_up"] for r in rs if r.get("from_link_up")]
            if up and lib:
                print(f"median {label} from its link_up: {statistics.median(up):.0f} msg/s; "
                      f"library/{label} {statistics.median(lib) / statistics.median(up):.2f}")
            m = statistics.median(r["from_restore"] for r in rs)
            print(f"median {label}: {m:.0f} msg/s from the restore", end="")
            if lib:
                print(f"; library drain bench {statistics.median(lib):.0f} msg/s, "
                      f"library/{label} {statistics.median(lib) / max(m, 1e-9):.2f}", end="")
            print()
    finally:
        remote.close()


# --- (d) quota: NanoNNG's per-connection receive quota ------------------------------------
def cmd_quota(a, edges):
    """One MQTT v5 client publishes n QoS 1 messages one at a time (each acknowledged before the
    next): the broker must never disconnect it (stock NanoNNG counts its receive quota of 1 024
    down per QoS 1/2 PUBLISH and never up, then closes with 0x93 Receive Maximum exceeded)."""
    remote = Remote()
    bad = 0
    transport = "WebSocket" if a.ws else "TCP"
    try:
        print(f"QoS {a.qos}")
        print("| edge | transport | published one at a time | acked | disconnects (reason) |")
        print("|---|---|---|---|---|")
        for label, kind in edges:
            e = Edge(label, kind, remote.port, 102400, ws=a.ws)
            reasons = []
            try:
                pub = (ws_client if a.ws else client)(f"qpub-{label}")
                sent = [0]  # PUBLISHes handed to the client so far
                pub.on_disconnect = lambda c, u, f, rc, p=None: reasons.append(
                    f"{rc} at #{sent[0]}")
                pub.connect("127.0.0.1", e.ws_port if a.ws else e.port)
                pub.loop_start()
                acked = 0
                for i in range(a.n):
                    sent[0] = i + 1
                    info = pub.publish(TOPIC, f"q|{i}".encode(), qos=a.qos)
                    info.wait_for_publish(10)
                    if not info.is_published():
                        break
                    acked += 1
                pub.loop_stop()
            finally:
                e.close()
            bad += len(reasons) > 0 or acked < a.n
            print(f"| {label} | {transport} | {a.n} | {acked} | {len(reasons)} "
                  f"({', '.join(reasons[:3])}) |", flush=True)
    finally:
        remote.close()
    sys.exit(1 if bad else 0)


# --- (c) rss ----------------------------------------------------------------------------------
def cmd_rss(a, edges):
    remote = Remote(bridge_listener=a.outage == "iptables")
    try:
        print("| edge | RSS link down, nothing waiting | RSS with n waiting | n acked | "
              "peak RSS while draining | RSS after the drain | delivered | fill s | drain s | "
              "load |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for label, kind in edges:
            port, proxy = make_cut(a.outage, remote)
            e = Edge(label, kind, port, max(102400, 2 * a.n))
            try:
                settle(e, remote.port, label)
                proxy.cut()
                time.sleep(2.0)
                empty = rss_kib(e.p.pid)
                sub = make_subscriber(a.sub, remote.port, f"rsub-{label}")
                t0 = time.time()
                acked = publish(e.port, a.n, 0, f"rpub-{label}")
                fill = time.time() - t0
                time.sleep(2.0)
                waiting = rss_kib(e.p.pid)
                peak = [waiting]
                proxy.restore()
                t1 = time.time()
                sampler = threading.Event()

                def sample():  # the edge's RSS while it drains, every 0.2 s
                    while not sampler.wait(0.2):
                        peak[0] = max(peak[0], rss_kib(e.p.pid))

                threading.Thread(target=sample, daemon=True).start()
                got = sub.wait(acked, a.timeout)
                drain = time.time() - t1
                sampler.set()
                time.sleep(2.0)
                after = rss_kib(e.p.pid)
                sub.close()
            finally:
                e.close()
                proxy.close()
            print(f"| {label} | {empty / 1024:.1f} MiB | {waiting / 1024:.1f} MiB | {acked} | "
                  f"{peak[0] / 1024:.1f} MiB | {after / 1024:.1f} MiB | {got} | {fill:.0f} | "
                  f"{drain:.0f} | {load()} |", flush=True)
    finally:
        remote.close()


def in_netns(ns):
    """Runs this command again inside a new network namespace (loopback up; its iptables rules
    touch nothing else), then deletes the namespace. Returns the exit code."""
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        return subprocess.run(["ip", "netns", "exec", ns, "env", f"NMQ_BENCH_NETNS={ns}",
                               sys.executable, os.path.abspath(__file__)] + sys.argv[1:]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "proxy":
        role_proxy(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    for name in ("rate", "drain", "rss", "quota"):
        p = sp.add_parser(name)
        p.add_argument("--edge", action="append", required=True,
                       help="label=<nanomq binary>, or mosquitto (Mosquitto's own bridge)")
        p.add_argument("--runs", type=int, default=1 if name == "rss" else 2)
        p.add_argument("--timeout", type=float, default=300)
        if name == "rate":
            p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")],
                           default=[500, 1000, 2000, 4000, 8000])
            p.add_argument("--secs", type=float, default=5)
            p.add_argument("--pubs", type=int, default=1,
                           help="publisher processes (the rate split among them)")
        else:
            p.add_argument("-n", type=int, default={"drain": 100000, "rss": 1000000,
                                                    "quota": 3000}[name])
        if name == "drain":
            p.add_argument("--drain-bench", help="the library's drain bench binary")
        if name in ("drain", "rss"):
            p.add_argument("--outage", choices=("proxy", "iptables"), default="proxy",
                           help="iptables: no proxy in the data path; the bench re-runs itself "
                           "in a network namespace of its own (root) and cuts with a REJECT rule")
            p.add_argument("--prefix", default="nmqb", help="--outage iptables: namespace prefix")
            p.add_argument("--sub", choices=("paho", "mosquitto_sub", "none") if name == "drain"
                           else ("paho", "mosquitto_sub"), default="paho",
                           help="the subscriber at the remote (mosquitto_sub: C, not the bench's "
                           "own Python process)")
            p.add_argument("--sub-qos", type=int, choices=(0, 1), default=1,
                           help="mosquitto_sub's QoS (0: the remote sends it without acks or "
                           "an in-flight limit; a loss there shows as delivered < acked)")
        if name == "quota":
            p.add_argument("--ws", action="store_true",
                           help="publish over MQTT-over-WebSocket (the edge's ws listener)")
            p.add_argument("--qos", type=int, choices=(1, 2), default=1)
    a = ap.parse_args()
    if getattr(a, "outage", "proxy") == "iptables" and not os.environ.get("NMQ_BENCH_NETNS"):
        sys.exit(in_netns(f"{a.prefix}-{os.getpid()}"))
    edges = []
    for e in a.edge:
        label, _, kind = e.partition("=")
        edges.append((label, kind or label))
    {"rate": cmd_rate, "drain": cmd_drain, "rss": cmd_rss, "quota": cmd_quota}[a.cmd](a, edges)


if __name__ == "__main__":
    main()
