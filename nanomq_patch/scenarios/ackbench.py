#!/usr/bin/env python3
"""Ack after commit (issue 13): publisher-side cost of `bridges.mqtt.cache.ack_after_commit`.

One patched `nanomq` binary, run alternately with the mode off and on (same run, same machine),
everything on 127.0.0.1 with the bridge settings of throughput.py (mosquitto as the remote, one
forward at QoS 1, cache on). Two measurements per run:
  * latency: a paho QoS 1 publisher at a paced `--rate` msg/s; publish() to PUBACK, p50/p99;
  * throughput: `-n` messages as fast as the publisher's in-flight window (`--window`, 32)
    allows; PUBACKs per second at the publisher.

    ackbench.py --nanomq <patched nanomq> [-n 5000] [--runs 2] [--rate 200] [--window 32]
                [--native target/release/examples/pubwindow [--v311]]
Needs: mosquitto, paho-mqtt (pip).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import CONF, client, free_port, remote_mosquitto, wait_port  # noqa: E402


def cpu_secs(pid):
    """utime + stime of a process, in seconds (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ctx_switches(pid):
    """Context switches (voluntary + not) summed over a process's threads."""
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches",
                                        "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
        except OSError:
            pass  # a thread that ended
    return n


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def publisher(local, window):
    lock = threading.Lock()
    sent, lat = {}, []
    done = threading.Condition(lock)

    def on_publish(c, u, mid, rc=None, props=None):
        now = time.perf_counter()
        with lock:
            t = sent.pop(mid, None)
            if t is not None:
                lat.append(now - t)
            else:
                sent[mid] = -now  # ack before the bookkeeping: marked, taken below
            done.notify_all()

    pub = client(f"ab-pub-{local}-{time.time()}")
    pub.on_publish = on_publish
    pub.max_inflight_messages_set(window)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", local)
    pub.loop_start()

    def publish(payload):
        t = time.perf_counter()
        info = pub.publish("tp", payload, qos=1)
        with lock:
            early = sent.pop(info.mid, None)
            if early is not None and early < 0:
                lat.append(-early - t)
            else:
                sent[info.mid] = t

    def wait_all(n, timeout):
        end = time.time() + timeout
        with lock:
            while len(lat) < n and time.time() < end:
                done.wait(0.5)
            return len(lat)

    return pub, publish, wait_all, lat


def native_window(a, local, size):
    """The window-bound run with examples/pubwindow.rs: (acked, seconds)."""
    cmd = [a.native, f"127.0.0.1:{local}", str(a.n), str(a.window), str(size)]
    if a.v311:
        cmd.append("--v311")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    words = out.stdout.split()
    if out.returncode != 0 or len(words) < 4:
        sys.exit(f"pubwindow failed ({out.returncode}): {out.stdout} {out.stderr}")
    return int(words[1]), float(words[3])


def one_run(nanomq, mode, remote, a):
    d = tempfile.mkdtemp(prefix="nmq-ab-")
    os.chmod(d, 0o777)
    os.makedirs(os.path.join(d, "cache"))
    local = free_port()
    conf = CONF.format(local=local, remote=remote, dir=d)
    conf = conf.replace("    flush_mem_threshold = 100\n",
                        "    flush_mem_threshold = 100\n"
                        f"    ack_after_commit = {'true' if mode else 'false'}\n")
    with open(os.path.join(d, "nanomq.conf"), "w") as f:
        f.write(conf)
    proc = subprocess.Popen([nanomq, "start", "--conf", os.path.join(d, "nanomq.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(local)
        time.sleep(1.0)  # the bridge connects
        payload = b"x" * 100
        # latency, paced
        pub, publish, wait_all, lat = publisher(local, a.window)
        n = int(a.rate * a.seconds)
        t0 = time.time()
        for i in range(n):
            ahead = t0 + i / a.rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
            publish(payload)
        got = wait_all(n, 30)
        pub.loop_stop()
        pub.disconnect()
        lat_ms = [x * 1000 for x in lat]
        # throughput, window-bound
        c0, x0 = cpu_secs(proc.pid), ctx_switches(proc.pid)
        if a.native:
            got2, secs = native_window(a, local, len(payload))
        else:
            pub, publish, wait_all, lat2 = publisher(local, a.window)
            t0 = time.perf_counter()
            for i in range(a.n):
                publish(payload)
            got2 = wait_all(a.n, 120)
            secs = time.perf_counter() - t0
        cpu, xs = cpu_secs(proc.pid) - c0, ctx_switches(proc.pid) - x0
        if not a.native:
            pub.loop_stop()
            pub.disconnect()
        return dict(acked=got, of=n, p50=pct(lat_ms, 50) if lat_ms else None,
                    p99=pct(lat_ms, 99) if lat_ms else None, tp=got2 / secs, tp_acked=got2,
                    tp_of=a.n, cpu_us=cpu * 1e6 / max(got2, 1), cs=xs / max(got2, 1))
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanomq", required=True)
    ap.add_argument("-n", type=int, default=5000, help="messages of the throughput run")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rate", type=float, default=200, help="paced msg/s of the latency run")
    ap.add_argument("--seconds", type=float, default=10, help="length of the latency run")
    ap.add_argument("--window", type=int, default=32, help="publisher in-flight window")
    ap.add_argument("--native", metavar="PUBWINDOW",
                    help="the window-bound run with this native publisher (cargo build "
                         "--release --example pubwindow: target/release/examples/pubwindow) "
                         "instead of paho, whose own CPU (about 100 us per message) bounds it")
    ap.add_argument("--v311", action="store_true",
                    help="the native publisher speaks MQTT 3.1.1 (default 5)")
    a = ap.parse_args()
    remote, mosq = remote_mosquitto("nmq-ab-mosq-")
    try:
        wait_port(remote)
        res = {False: [], True: []}
        for i in range(a.runs):
            for mode in (False, True):
                r = one_run(a.nanomq, mode, remote, a)
                res[mode].append(r)
                print(f"run {i + 1} ack_after_commit={'on ' if mode else 'off'}: latency at "
                      f"{a.rate:.0f} msg/s p50 {r['p50']:.2f} ms p99 {r['p99']:.2f} ms "
                      f"({r['acked']}/{r['of']} acked); window {a.window}: {r['tp']:.0f} msg/s "
                      f"({r['tp_acked']}/{r['tp_of']}), nanomq CPU {r['cpu_us']:.1f} us/msg, "
                      f"{r['cs']:.2f} context switches/msg",
                      flush=True)
        med = {m: {k: statistics.median(x[k] for x in res[m]) for k in ("p50", "p99", "tp", "cpu_us", "cs")}
               for m in res}
        ratio = med[True]["tp"] / med[False]["tp"]
        print(f"median off: p50 {med[False]['p50']:.2f} ms p99 {med[False]['p99']:.2f} ms "
              f"{med[False]['tp']:.0f} msg/s {med[False]['cpu_us']:.1f} us/msg "
              f"{med[False]['cs']:.2f} cs/msg; on: p50 "
              f"{med[True]['p50']:.2f} ms p99 {med[True]['p99']:.2f} ms "
              f"{med[True]['tp']:.0f} msg/s {med[True]['cpu_us']:.1f} us/msg {med[True]['cs']:.2f} cs/msg; "
              f"throughput on/off "
              f"{ratio:.3f} (goal >= 0.90: {'PASS' if ratio >= 0.9 else 'MISS'})")
    finally:
        mosq.kill()
        mosq.wait()


if __name__ == "__main__":
    main()
