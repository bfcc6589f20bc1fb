#!/usr/bin/env python3
"""Forwarding throughput of NanoMQ's MQTT bridge with a healthy link, stock against patched.

It builds nothing: it takes built `nanomq` binaries. Everything runs on 127.0.0.1: a mosquitto
as the remote, NanoMQ with the reported bridge settings (proto_ver 5, clean_start false,
cache on), a paho QoS 1 publisher into NanoMQ as fast as it can (in-flight window 1000) and a
subscriber on mosquitto. The time runs from the first publish to the last message received
at the remote. Binaries alternate, each run `--runs` times; the median is reported.

    throughput.py --stock <nanomq> --patched <nanomq> [-n 20000] [--runs 3] [--rate msg/s]
Needs: mosquitto, paho-mqtt (pip).
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

# NanoMQ's local listener and its log, the head of every scenario's nanomq.conf
NANOMQ_HEAD = """\
listeners.tcp {{
    bind = "127.0.0.1:{local}"
}}
log {{
    to = [file]
    level = warn
    dir = "{dir}"
    file = "nanomq.log"
}}
"""
CONF = NANOMQ_HEAD + """\
bridges.mqtt.remote {{
    server = "mqtt-tcp://127.0.0.1:{remote}"
    proto_ver = 5
    clientid = "bridge_tp"
    clean_start = false
    keepalive = 3s
    forwards = [
        {{ remote_topic = "tp", local_topic = "tp", qos = 1 }}
    ]
    max_parallel_processes = 32
    max_send_queue_len = 256
    cancel_timeout = 5000
}}
bridges.mqtt.cache {{
    disk_cache_size = 102400
    mounted_file_path = "{dir}/cache/"
    flush_mem_threshold = 100
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, deadline_s=10.0):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def remote_mosquitto(prefix):
    """Starts a plain mosquitto on a free loopback port: (port, process); kill it when done."""
    rdir = tempfile.mkdtemp(prefix=prefix)
    os.chmod(rdir, 0o777)
    port = free_port()
    with open(os.path.join(rdir, "m.conf"), "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    mosq = subprocess.Popen(["mosquitto", "-c", os.path.join(rdir, "m.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return port, mosq


def client(cid):
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)


def one_run(nanomq, n, remote, rate):
    d = tempfile.mkdtemp(prefix="nmq-tp-")
    os.chmod(d, 0o777)
    os.makedirs(os.path.join(d, "cache"))
    local = free_port()
    with open(os.path.join(d, "nanomq.conf"), "w") as f:
        f.write(CONF.format(local=local, remote=remote, dir=d))
    proc = subprocess.Popen([nanomq, "start", "--conf", os.path.join(d, "nanomq.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(local)
        got = [0]
        done = threading.Event()
        sub = client(f"tp-sub-{local}")

        def on_message(c, u, m):
            got[0] += 1
            if got[0] >= n:
                done.set()

        sub.on_message = on_message
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.connect("127.0.0.1", remote)
        sub.subscribe("tp", 1)
        sub.loop_start()
        if not subscribed.wait(10):
            sys.exit("subscriber did not subscribe")
        # Let the bridge connect to the remote before the clock starts.
        time.sleep(1.0)
        pub = client(f"tp-pub-{local}")
        pub.max_inflight_messages_set(1000)
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", local)
        pub.loop_start()
        payload = b"x" * 100
        t0 = time.time()
        for i in range(n):
            if rate and i % 50 == 0:
                # Paced: the offered load is `rate` msg/s (0 = as fast as possible).
                ahead = t0 + i / rate - time.time()
                if ahead > 0:
                    time.sleep(ahead)
            pub.publish("tp", payload, qos=1)
        done.wait(n / rate + 30 if rate else 120)
        secs = time.time() - t0
        pub.loop_stop()
        sub.loop_stop()
        return got[0], secs
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stock", required=True)
    ap.add_argument("--patched", required=True)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0, help="offered msg/s; 0 = unpaced burst")
    a = ap.parse_args()
    remote, mosq = remote_mosquitto("nmq-tp-mosq-")
    try:
        wait_port(remote)
        rates = {"stock": [], "patched": []}
        for i in range(a.runs):
            for label in ("stock", "patched"):
                got, secs = one_run(getattr(a, label), a.n, remote, a.rate)
                rate = got / secs
                print(f"run {i + 1} {label:8} {got}/{a.n} received in {secs:.2f} s: "
                      f"{rate:.0f} msg/s, lost {a.n - got}", flush=True)
                rates[label].append(rate)
        s, p = statistics.median(rates["stock"]), statistics.median(rates["patched"])
        print(f"median: stock {s:.0f} msg/s, patched {p:.0f} msg/s, patched/stock {p / s:.3f} "
              f"(goal >= 0.95: {'PASS' if p / s >= 0.95 else 'MISS'})")
    finally:
        mosq.kill()
        mosq.wait()


if __name__ == "__main__":
    main()
