#!/usr/bin/env python3
"""Exit signals under load (issue 20, B5): NanoMQ stopped with SIGTERM or SIGINT while local
publishers flood a bridge with an outbox and ack_after_commit (its workers commit on their own
threads, its ack thread runs): every stop must be a clean one, bounded in time.

    sigstress.py --nanomq /path/to/nanomq --out DIR [--remote-bin mosquitto] [--runs 20]
                 [--publishers 4] [--load 1.0] [--prefix sgs]

Each run, in a network namespace of its own (loopback only): mosquitto (the remote, port
1885), NanoMQ with one bridge (outbox, ack_after_commit) forwarding test1 at QoS 1 and test2
at QoS 2, --publishers flooding MQTT 5 processes (QoS 1 and 2, up to 100 messages in flight each),
then, once NanoMQ has acked --load seconds' worth of messages, one SIGTERM (odd runs: SIGINT).
A run passes when NanoMQ exits within 15 s (the bound: B5's alarm() ends a close that hangs
after 5 s, with SIGALRM) with the stock exit status (SIGTERM 0, SIGINT 1) and its log has the
"outbox at exit: {...}" line with no drop ("dropped" all 0).
The old handler (close in the signal handler) deadlocks only when the signal lands on a thread
holding a lock the close needs; Linux delivers a process signal to the main thread mostly, so
this is a regression guard, not a reproducer; --target thread sends each signal to one of
NanoMQ's threads other than the main one that do not block it (tgkill; a process signal is
never delivered to a thread that blocks it), where such a lock is more likely held.
--target writer sends it to the outbox's writer thread: the old handler then ran
nmq_outbox_close() on the thread that close joins, every time ("nmq_outbox_close: internal
error: panic caught: failed to join thread: Resource deadlock avoided"): the outbox was not
closed (its last group commit not written). A run also fails on any "nmq_outbox_close:" error
line or "panic caught" in NanoMQ's output.
Last line: "sigstress: N passed, M failed".
"""
import argparse
import ctypes
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)

NANOMQ_CONF = """\
listeners.tcp {{
    bind = "127.0.0.1:1883"
}}
log {{
    to = [file]
    level = info
    dir = "{dir}"
    file = "nanomq.log"
}}
bridges.mqtt.remote {{
    server = "mqtt-tcp://127.0.0.1:1885"
    proto_ver = 5
    clientid = "sigstress_bridge"
    keepalive = 3s
    forwards = [
        {{ remote_topic = "test1", local_topic = "test1", qos = 1 }}
        {{ remote_topic = "test2", local_topic = "test2", qos = 2 }}
    ]
    max_parallel_processes = 32
}}
bridges.mqtt.cache {{
    disk_cache_size = 102400
    mounted_file_path = "{dir}/cache/"
    flush_mem_threshold = 100
    ack_after_commit = true
}}
"""

MOSQUITTO_CONF = """\
listener 1885 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
log_dest file {dir}/mosquitto.log
"""


def role_flood(args):
    """Publishes test1 (QoS 1) and test2 (QoS 2) as fast as NanoMQ acks, until killed; appends
    the count acked to --count every 0.2 s."""
    import paho.mqtt.client as mqtt
    # MQTT 5: a message the closing outbox refuses is acked with a reason code (0x80) under
    # ack_after_commit and not forwarded; an MQTT 3.1.1 publisher's would take the stock path,
    # acked, and be counted lost at exit (dropped.fallback_queue: what arrives during the
    # close of a NanoMQ still taking traffic, with the old handler as with this one)
    try:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"flood{os.getpid()}",
                        protocol=mqtt.MQTTv5 if args.proto == 5 else mqtt.MQTTv311)
    except AttributeError:  # paho < 2
        c = mqtt.Client(client_id=f"flood{os.getpid()}",
                        protocol=mqtt.MQTTv5 if args.proto == 5 else mqtt.MQTTv311)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(200)
    acked = [0]
    c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    c.connect("127.0.0.1", 1883)
    c.loop_start()
    n, last = 0, 0.0
    while True:
        r = c.publish("test1" if n % 2 == 0 else "test2", f"{n}".encode(), qos=1 + n % 2)
        if r.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.001)
            continue
        if r.rc != 0:  # NanoMQ went away
            time.sleep(0.05)
            continue
        n += 1
        if time.monotonic() - last > 0.2:
            last = time.monotonic()
            with open(args.count, "w") as f:
                f.write(str(acked[0]))


def wait_for(pred, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def acked(out, pubs):
    n = 0
    for i in range(pubs):
        try:
            n += int(open(os.path.join(out, f"count{i}")).read() or 0)
        except (OSError, ValueError):
            pass
    return n


def one_run(args, i, ns):
    out = os.path.join(os.path.abspath(args.out), f"run{i}")
    os.makedirs(os.path.join(out, "cache"), exist_ok=True)
    with open(os.path.join(out, "nanomq.conf"), "w") as f:
        f.write(NANOMQ_CONF.format(dir=out))
    with open(os.path.join(out, "mosquitto.conf"), "w") as f:
        f.write(MOSQUITTO_CONF.format(dir=out))
    ex = ["ip", "netns", "exec", ns]
    procs = []
    try:
        mosq = subprocess.Popen(ex + [args.remote_bin, "-c", os.path.join(out, "mosquitto.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(mosq)
        nmq = subprocess.Popen(ex + [os.path.abspath(args.nanomq), "start", "--conf",
                                     os.path.join(out, "nanomq.conf")],
                               stdout=open(os.path.join(out, "nanomq.out"), "w"),
                               stderr=subprocess.STDOUT,
                               env=dict(os.environ, NANOMQ_PID_FILE=os.path.join(out, "pid")))
        procs.append(nmq)
        # stdout, not nanomq.log: the log rotates at 10 KB and the line can be in nanomq.log.1
        # by the time it is read (a CI run failed "never connected" on a bridge that was)
        stdout = os.path.join(out, "nanomq.out")
        if not wait_for(lambda: "connected!" in open(stdout, errors="replace").read(), 15):
            return False, "the bridge never connected"
        for p in range(args.publishers):
            procs.append(subprocess.Popen(
                ex + [sys.executable, os.path.abspath(__file__), "flood", "--count",
                      os.path.join(out, f"count{p}"), "--proto", str(args.proto)],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(out, f"flood{p}.err"), "w")))
        # under way: the publishers have been acked a load's worth (first: 1 s of it)
        first = [None]

        def loaded():
            n = acked(out, args.publishers)
            if n > 0 and first[0] is None:
                first[0] = time.monotonic()
            return first[0] is not None and time.monotonic() - first[0] >= args.load
        if not wait_for(loaded, 30):
            return False, f"no load: {acked(out, args.publishers)} acked in 30 s"
        sig = signal.SIGINT if i % 2 else signal.SIGTERM
        before = acked(out, args.publishers)
        t0 = time.monotonic()
        # the NanoMQ process itself (ip netns exec execs it: the same pid); --target thread:
        # to one of its threads other than the main one, at random (a worker, the outbox's
        # writer, nng's), where a lock the close needs may be held
        if args.target in ("thread", "writer"):
            def blocks(t):  # a thread that blocks the signal never takes it (B5's thread)
                for line in open(f"/proc/{nmq.pid}/task/{t}/status"):
                    if line.startswith("SigBlk:"):
                        return bool(int(line.split()[1], 16) >> (int(sig) - 1) & 1)
                return False
            tids = [int(t) for t in os.listdir(f"/proc/{nmq.pid}/task")
                    if int(t) != nmq.pid and not blocks(t)]
            if args.target == "writer":  # the outbox's writer thread
                tids = [t for t in tids if open(f"/proc/{nmq.pid}/task/{t}/comm").read()
                        .startswith("nmq-outbox-writ")]
                if not tids:
                    return False, "no nmq-outbox-writer thread"
            tid = random.choice(tids)
            name = open(f"/proc/{nmq.pid}/task/{tid}/comm").read().strip()
            if libc.syscall(234, nmq.pid, tid, int(sig)) != 0:  # SYS_tgkill (x86_64)
                return False, f"tgkill {tid} failed"
            sig_to = f" to thread {tid} ({name})"
        else:
            os.kill(nmq.pid, sig)
            sig_to = ""
        try:
            rc = nmq.wait(timeout=15)
        except subprocess.TimeoutExpired:
            return False, f"{sig.name}{sig_to}: NanoMQ still running after 15 s (hung exit)"
        secs = time.monotonic() - t0
        want = 1 if sig == signal.SIGINT else 0
        # NanoMQ's log rotates (10 KB files): its stdout has every line
        text = open(os.path.join(out, "nanomq.out"), errors="replace").read()
        m = re.findall(r"outbox at exit: (\{.*\})", text)
        bad = re.findall(r"nmq_outbox_close: .*|panic caught.*", text)
        if rc != want:
            return False, (f"{sig.name}{sig_to}: exit status {rc} (want {want}; -14 = SIGALRM: the "
                           f"close hung) after {secs:.1f} s")
        if bad:
            return False, f"{sig.name}{sig_to}: the close failed: {bad[0][:160]}"
        if not m:
            return False, f"{sig.name}{sig_to}: no 'outbox at exit' line"
        drops = {k: v for k, v in json.loads(m[-1]).get("dropped", {}).items() if v}
        if drops:
            return False, f"{sig.name}: outbox at exit dropped {drops}"
        return True, (f"{sig.name}{sig_to}: exit {rc} in {secs:.2f} s, {before} acked before, "
                      f"outbox at exit: {m[-1][:120]}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    fl = sub.add_parser("flood")
    fl.add_argument("--count", required=True)
    fl.add_argument("--proto", type=int, choices=(4, 5), default=5)
    ap.add_argument("--nanomq")
    ap.add_argument("--out")
    ap.add_argument("--remote-bin", default="mosquitto")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--prefix", default="sgs")
    ap.add_argument("--target", choices=("process", "thread", "writer"), default="process",
                    help="send the signal to the process (the kernel picks the thread: mostly "
                    "the main one), to one of its other threads at random, or to the outbox's "
                    "writer thread")
    ap.add_argument("--seed", type=int, help="--target thread: the choice's seed")
    ap.add_argument("--proto", type=int, choices=(4, 5), default=5,
                    help="the publishers' MQTT version: 4 (3.1.1) has no reason codes, so a "
                    "message refused at exit would take the stock path and be lost there")
    args = ap.parse_args()
    if args.cmd == "flood":
        return role_flood(args)
    if not args.nanomq or not args.out:
        ap.error("--nanomq and --out are needed")
    if os.geteuid() != 0:
        sys.exit("sigstress needs root (a network namespace)")
    if args.seed is not None:
        random.seed(args.seed)
    ns = args.prefix + "ns"
    subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    passed = failed = 0
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        for i in range(args.runs):
            ok, what = one_run(args, i, ns)
            passed += ok
            failed += not ok
            print(f"run {i}: {'PASS' if ok else 'FAIL'}: {what}", flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    print(f"sigstress: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
