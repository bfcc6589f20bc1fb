#!/usr/bin/env python3
"""Ack after commit (issue 13): are a client's PUBACKs in the order of its PUBLISHes?

MQTT 3.1.1 and 5, section 4.6: a server acknowledges a client's QoS 1 PUBLISHes (PUBACK) in the
order they arrived. With `bridges.mqtt.cache.ack_after_commit` a PUBACK waits for the commit
of every outbox that took the message, so a later ack must not overtake an earlier one that
still waits: neither the ack of a message no bridge forwards nor one whose outbox committed
earlier.

Everything on 127.0.0.1: one mosquitto as the remote, a patched `nanomq` with the mode on and
one bridge (forwards `tp`) or, with `--two-bridges`, two (bridge `a` forwards `tp` and `a`,
bridge `b` forwards `tp` and `b`, each to its own remote topic). A raw-socket MQTT client
publishes `-n` QoS 1 (`--qos 2`: QoS 2) messages, cycling over the topics `tp`, `local` (no
forward) and, with two bridges, `a` and `b`, with up to `--window` unacknowledged, and checks
that the packet ids of the PUBACKs (PUBRECs) come back in publish order. Exit status 1 on any
ack out of order or missing.

    ackorder.py --nanomq <patched nanomq> [-n 3000] [--window 64] [--two-bridges] [--v5] [--qos 2]
Needs: mosquitto.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import NANOMQ_HEAD, free_port, remote_mosquitto, wait_port  # noqa: E402

CONF = NANOMQ_HEAD + """\
{bridges}
bridges.mqtt.cache {{
    disk_cache_size = 102400
    mounted_file_path = "{dir}/cache/"
    flush_mem_threshold = 100
    ack_after_commit = true
}}
"""

BRIDGE = """\
bridges.mqtt.{name} {{
    server = "mqtt-tcp://127.0.0.1:{remote}"
    proto_ver = 5
    clientid = "bridge_ao_{name}"
    clean_start = false
    keepalive = 3s
    forwards = [
{forwards}
    ]
    max_parallel_processes = 32
    max_send_queue_len = 256
}}
"""


def forward(local, remote):
    return f'        {{ remote_topic = "{remote}", local_topic = "{local}", qos = 1 }}'


def enc_str(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def enc_len(n):
    out = bytearray()
    while True:
        d, n = n % 128, n // 128
        out.append(d | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + enc_len(len(body)) + body


class Raw:
    """A minimal MQTT client on a blocking socket: CONNECT, QoS 1 PUBLISH, PUBACK reading."""

    def __init__(self, port, cid, v5):
        self.v5 = v5
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        props = b"\x00" if v5 else b""
        self.s.sendall(packet(0x10, enc_str("MQTT") + bytes([5 if v5 else 4, 0x02, 0, 60]) +
                              props + enc_str(cid)))
        t, body = self.read()
        if t >> 4 != 2 or body[1] != 0:
            sys.exit(f"CONNACK refused: {body!r}")

    def read(self):
        """One packet: (first byte, body)."""
        while True:
            if len(self.buf) >= 2:
                n, mul, i = 0, 1, 1
                while i < len(self.buf):
                    n += (self.buf[i] & 0x7F) * mul
                    mul *= 128
                    i += 1
                    if not self.buf[i - 1] & 0x80:
                        break
                else:
                    i = None
                if i is not None and len(self.buf) >= i + n:
                    first, body = self.buf[0], self.buf[i:i + n]
                    self.buf = self.buf[i + n:]
                    return first, body
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def publish(self, topic, pid, payload, qos=1):
        props = b"\x00" if self.v5 else b""
        self.s.sendall(packet(0x30 | qos << 1,
                              enc_str(topic) + pid.to_bytes(2, "big") + props + payload))

    def pubrel(self, pid):
        self.s.sendall(packet(0x62, pid.to_bytes(2, "big")))


def run(a):
    remote, mosq = remote_mosquitto("nmq-ao-mosq-")
    d = tempfile.mkdtemp(prefix="nmq-ao-")
    os.chmod(d, 0o777)
    os.makedirs(os.path.join(d, "cache"))
    local = free_port()
    if a.two_bridges:
        topics = ["tp", "a", "local", "b", "a", "tp", "b", "local"]
        bridges = (BRIDGE.format(name="a", remote=remote, forwards=",\n".join(
                       [forward("tp", "ra/tp"), forward("a", "ra/a")])) +
                   BRIDGE.format(name="b", remote=remote, forwards=",\n".join(
                       [forward("tp", "rb/tp"), forward("b", "rb/b")])))
    else:
        topics = ["tp", "local", "tp", "tp", "local"]
        bridges = BRIDGE.format(name="remote", remote=remote, forwards=forward("tp", "tp"))
    if a.topics:
        topics = a.topics.split(",")
    with open(os.path.join(d, "nanomq.conf"), "w") as f:
        f.write(CONF.format(local=local, dir=d, bridges=bridges))
    proc = subprocess.Popen([a.nanomq, "start", "--conf", os.path.join(d, "nanomq.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(remote)
        wait_port(local)
        time.sleep(1.0)  # the bridges connect (acks do not depend on it: the outbox stores)
        c = Raw(local, f"ao-{local}", a.v5)
        sent, acks, reasons = [], [], {}
        nxt = 0
        deadline = time.time() + a.timeout
        while len(acks) < a.n and time.time() < deadline:
            while nxt < a.n and len(sent) - len(acks) < a.window:
                pid = nxt % 65535 + 1
                c.publish(topics[nxt % len(topics)], pid, b"x" * 64, a.qos)
                sent.append(pid)
                nxt += 1
            first, body = c.read()
            if first >> 4 == (4 if a.qos == 1 else 5):  # PUBACK, PUBREC
                pid = int.from_bytes(body[:2], "big")
                if a.qos == 2:
                    c.pubrel(pid)
                acks.append(pid)
                if len(body) > 2 and body[2] != 0:
                    reasons[body[2]] = reasons.get(body[2], 0) + 1
        c.s.close()
    finally:
        proc.kill()
        proc.wait()
        mosq.kill()
        mosq.wait()
    # an ack is out of order when a message sent before it is still unacknowledged
    # (-n stays below 65535: packet ids do not repeat)
    idx = {pid: i for i, pid in enumerate(sent)}
    acked, low, out, first_bad = set(), 0, 0, None
    for k, pid in enumerate(acks):
        i = idx.get(pid, -1)
        while low in acked:
            low += 1
        if i != low:
            out += 1
            if first_bad is None:
                first_bad = (f" (first: ack #{k}, id {pid}, topic {topics[i % len(topics)]}, "
                             f"before id {sent[low]}, topic {topics[low % len(topics)]})")
        acked.add(i)
    print(f"{'two bridges' if a.two_bridges else 'one bridge'}, MQTT "
          f"{'5' if a.v5 else '3.1.1'}, QoS {a.qos}, window {a.window}: {len(acks)}/{a.n} "
          f"{'PUBACKs' if a.qos == 1 else 'PUBRECs'}, "
          f"{out} overtook an earlier one"
          + (first_bad or "")
          + (f", reason codes {reasons}" if reasons else ""))
    return 0 if out == 0 and len(acks) == a.n else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanomq", required=True)
    ap.add_argument("-n", type=int, default=3000, help="messages (< 65535)")
    ap.add_argument("--window", type=int, default=64, help="unacknowledged PUBLISHes at most")
    ap.add_argument("--two-bridges", action="store_true")
    ap.add_argument("--v5", action="store_true", help="connect with MQTT 5 (else 3.1.1)")
    ap.add_argument("--qos", type=int, default=1, choices=(1, 2),
                    help="2: PUBLISH at QoS 2, the PUBRECs are checked (PUBREL sent for each)")
    ap.add_argument("--topics", help="comma-separated topics to cycle over instead")
    ap.add_argument("--timeout", type=float, default=60)
    sys.exit(run(ap.parse_args()))


if __name__ == "__main__":
    main()
