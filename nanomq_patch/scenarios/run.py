#!/usr/bin/env python3
"""Outage scenarios for NanoMQ's MQTT bridge, stock versus patched with nmq-outbox.

It builds nothing: it takes a built `nanomq` binary. Run as root (network namespaces):

    run.py run --nanomq /path/to/nanomq --label stock --scenario linkdown --out results/
    run.py run --image nanomq-outbox:0.25.6 --label image --scenario linkdown --out results/
    run.py report results/            # markdown tables of every result.json below results/
    run.py analyse results/           # recompute the result.json files from the logs

Topology, created by this script and removed on exit (also on Ctrl-C / SIGTERM):
    netns <prefix>a: NanoMQ (listener 127.0.0.1:1883) + the publisher, veth 10.99.1.1/24
    netns <prefix>b: mosquitto (the remote, 10.99.1.2:1883) + the subscriber, veth 10.99.1.2/24
No address outside 10.99.1.0/24 and the namespaces' own loopback is used.
With --image, NanoMQ runs in a container of that image (podman, or --engine docker) that joins
netns <prefix>a (--network ns:/run/netns/<prefix>a) and sees the run's directory at the same path.

The bridge uses the reported configuration (MQTT 5, clean_start false, keepalive 3 s,
forwards test1..test5 at QoS 1,1,2,2,2, max_send_queue_len 256, max_parallel_processes 32,
cancel_timeout 5000, resend_interval 50, resend_wait 65000, cache disk_cache_size 102400 and
flush_mem_threshold 100). The publisher sends test1 at 5 msg/s and test2..test5 at 1 msg/s
(QoS 1,1,2,2,2), payload "topic|seq|publish time". Timeline: 10 s normal, 100 s outage,
20 s more, publisher stops, 60 s drain.

Scenarios:
    linkdown   the NanoMQ side of the veth goes down (like `docker network disconnect`)
    blackhole  every packet between the two namespaces is dropped (iptables DROP, no RST)
    drain-cut  linkdown; after the restore, as soon as the first backlog message reaches the
               subscriber, a second 20 s linkdown cut hits the drain
    kill       linkdown; 50 s into the outage NanoMQ gets SIGKILL and is restarted 2 s later
    slow-pubcomp  no outage: the bridge reaches mosquitto through a proxy (in NanoMQ's
               namespace) that holds the PUBCOMPs from mosquitto for 6 s (> cancel_timeout
               5 s) in the first 2 s of every 15 s of the 100 s "outage" window; PUBREC and
               everything else pass at once (a QoS 2 direct send whose PUBCOMP is late: issue
               8 item 14)
    reload     no outage: the bridge is reloaded through NanoMQ's REST API (PUT
               /api/v4/bridges/remote with its own configuration) every 10 s during the
               100 s "outage" window (issue 8 item 18)
    reload-fail  linkdown, and halfway through the 10 s before the cut a REST reload of the
               bridge that fails (PUT with a server URL that has a path: NanoNNG refuses the
               dialer, NNG_EADDRINVAL, a step after the outbox's attach); no corrected reload
               follows: the bridge must go on with its old connection and outbox, reconnect
               after the restore and drain (issue 20)
    reload-slow  "reload" through the proxy of slow-pubcomp holding every PUBCOMP for 6 s during
               the window: QoS 2 messages are in flight (PUBREC came) at each reload
    drain-reload  linkdown; after the restore, as soon as the first backlog message reaches
               the subscriber, the bridge is reloaded as in "reload" (rows in flight on the old
               connection: issue 8 item 18)
    wrong-ack  linkdown, with the bridge going through the proxy of slow-pubcomp, which from
               the restore on sends a PUBACK before every PUBREC of mosquitto (an ack that
               does not fit a QoS 2 row: issue 8 item 15)
    kill-released  no outage: the bridge goes through the proxy of slow-pubcomp holding every
               PUBCOMP for 6 s during the window; 50 s into it NanoMQ gets SIGKILL (QoS 2
               rows whose PUBREC came are on disk as released) and is restarted 2 s later
               (issue 12 item 3; give the bridge a session expiry with --bridge)
    takeover   the link is down before NanoMQ starts and stays down; 50 s into the outage
               NanoMQ gets SIGKILL and --restart-nanomq (e.g. a patched build after a stock
               one, on the same cache directory) starts 2 s later (issue 12 item 5)
    reload-disk-full  "reload" with the cache of "disk-full": the outbox refuses every message, the
               stock path (ctx_msgs) carries them while the bridge is reloaded (issue 8 items
               13 and 18)
    slow-link  no outage: during the window NanoMQ's uplink is throttled (tc tbf 16 kbit/s on
               its veth end, TCP send buffer 4 KiB in its namespace) while a publisher on
               mosquitto's side sends 150 msg/s of test6 at QoS 2 to the bridge's subscription
               (mosquitto: max_inflight_messages 0): the acks NanoMQ owes, its replayed rows and
               their PUBRELs queue behind a busy pipe past the 64 entries of NanoNNG's send
               queue ("ack msg lost due to busy socket"; issue 8 item 16)
    disk-full  linkdown, the cache directory is a 256 KiB tmpfs and flush_mem_threshold 1: the
               outbox runs out of disk during the outage and refuses messages (issue 8 item 13)
    chaos      a seeded schedule of faults while the publisher runs --chaos-seconds (default
               180; --scale does not apply): from random.Random(--seed) (default: drawn at random;
               the seed is in events.log, on stdout and in result.json), so a seed replays the same
               schedule. One fault after another, each after 3-10 s of healthy link (drains):
                 linkdown        the NanoMQ side of the veth down for 3-12 s
                 blackhole       iptables DROP both ways (as "blackhole") for 3-12 s
                 flap            3-6 cycles of veth down 0.2-1 s, up 0.2-1 s
                 kill            NanoMQ SIGKILL, restarted 1-2 s later (same command, same cache)
                 remote-restart  mosquitto SIGTERM (it saves its persistence file), started again
                                 0.5-2 s later
               No fault starts in the last 3 s. Then everything is restored and, with --drain-bound,
               the run waits until every acked message is received. In this scenario mosquitto
               has "persistence true" (persistence_location in the run's directory) and the
               subscriber a persistent session (MQTT 5, Session Expiry Interval 3600, QoS 2
               subscriptions, clean start false from its first connect on: mosquitto persists
               no session whose connection had clean start): a graceful remote restart keeps
               what mosquitto accepted for it. Use --ack-after-commit (a SIGKILL then loses
               nothing acked). Every fault is a "cut <kind>" event followed by "restore" (flap
               cycles, kills and remote restarts log their steps in between); the plan is in
               chaos-plan.json. result.json's total adds seed, faults (by kind), dup_bound (faults
               x 32, the bridge's in-flight limit: duplicates beyond it are suspect), nanomq_exits
               (NanoMQ found dead without a SIGKILL of the schedule) and lost_detail (each lost
               message: QoS, publish and ack times, the fault nearest to its ack).

    healthy    no fault at all: the publisher's timeline on a healthy link (with --quic
               --two-bridges: both QUIC bridges forward; issue 22 item 4)
    relay-stop  --quic only: the QUIC relay (the bridge's remote end) is killed (SIGKILL) for
               the outage and started again at the restore (issue 22's table: "the relay gone
               for 15 s"); the link itself stays up

    session-lost  linkdown, the bridge going through the proxy of slow-pubcomp, which drops
               the PUBRELs of NanoMQ in the last 3 s (at most) before the cut: rows whose
               PUBREC came are released, their messages still unreleased at mosquitto. The
               bridge's MQTT 5 session has no Session Expiry Interval, so mosquitto ends it
               when it notices the cut and the reconnect gets Session Present 0: a PUBREL
               then finds nothing at mosquitto (which answers PUBCOMP all the same and delivers
               a QoS 2 message only on its PUBREL): only a new PUBLISH delivers it (issue 20).
               result.json: dropped_pubrels, connack_session_present (one flag per CONNACK).

--quic: the bridge speaks MQTT over QUIC (server = "mqtt-quic://10.99.1.2:14567"; a nanomq built
with -DNNG_ENABLE_QUIC=ON, build.sh --quic) to quic_relay.py (aioquic) in mosquitto's
namespace, which relays each QUIC connection to mosquitto over one TCP connection (its log:
relay.log). The cuts (linkdown, blackhole) then hit the QUIC path. The bridge keeps NanoMQ's
QUIC defaults (conf.c: quic_keepalive 120 s, quic_idle_timeout 120 s, quic_discon_timeout
20 s); its MQTT keepalive (3 s) is the one that notices a cut.

--hybrid: a hybrid bridge (hybrid_bridging = true, issue 22 item 3): at every disconnect
NanoMQ's switch thread opens a new socket for the next address (server, then hybrid_servers)
and closes the old one. Without --quic the addresses are mosquitto's listeners 1883 and 1885
(a second listener), with --quic the QUIC relay then mosquitto's 1883. NanoMQ runs a hybrid
bridge only when built with -DNNG_ENABLE_QUIC=ON (a TCP-only build bridges to server alone).
result.json: hybrid_switches (NanoMQ's "Bridge has switched to" lines, the first connect
included) and cache_files (the .db files of the cache directory). publisher_connects: the
publisher's connections NanoMQ logged ("scenario_pub online").

The remote's limits (issue 20), options that go with any scenario (e.g. linkdown):
    --mosquitto 'max_qos 1'      CONNACK Maximum QoS 1 (mosquitto disconnects, 0x9B, a client
                                 that publishes at QoS 2)
    --mosquitto 'retain_available false' with --retain-topic T [--retain-every K]: every K-th
                                 message of T published with RETAIN (mosquitto disconnects,
                                 0x9A, a client that publishes one)
    --mosquitto 'max_packet_size N' with --big-topic T [--big-every K] [--big-size S]: every
                                 K-th message of T is S bytes ("topic|seq|time|xxx...":
                                 the subscriber reads the first three fields); mosquitto
                                 advertises N in its CONNACK and disconnects (0x95) a client
                                 that sends a bigger packet
    --acl-deny T                 an acl_file denies T to the bridge (username nmqbridge; any
                                 other client may use every topic): PUBACK/PUBREC 0x87
The options are saved in params.json. The big messages and those of a denied topic are the
"dead-letter set": not counted in "lost" but in dead_expected (acked by NanoMQ),
dead_received (delivered all the same) and lost_silently (dead_expected - dead_received -
the outbox's dead letters: "dead_lettered" of the "outbox at exit" JSON, else "dead_letters",
in result.json with qos_downgraded and retain_cleared; --probe-rest adds them to
rest_outage/rest_after). big_sent and retained_sent count the flagged messages NanoMQ acked.
remote_disconnects counts, by mosquitto's wording, the ends of the bridge's connections that
mosquitto logged before the drain was over, but for the keepalive timeout of a cut.

--topics T1,T2 publishes only these of test1..test5 (the others stay forwarded by the bridge);
--timeline N,O,A,D sets the seconds before the cut, of the outage, after the restore until the
publisher stops, and the drain (without --drain-bound: a fixed wait), instead of --scale's
10,100,20,60 x scale. Issue 22's configuration (QoS 1 at 10 msg/s, 400 messages, the relay gone
15 s, counted 20 s after the restore): --scenario relay-stop --quic --topics test1
--rate-scale 2 --timeline 7,15,18,0 (with --timeline the publisher lingers 2 s for late acks
after its last message: counted 18 + 2 s after the restore).

"sent" counts the messages NanoMQ acknowledged to the publisher (PUBACK / PUBCOMP): from then
on they are NanoMQ's responsibility. With --pub-v5 the publisher speaks MQTT 5: "refused"
counts the messages acknowledged with an error reason code (PUBACK/PUBREC >= 0x80, e.g. 0x97
from ack_after_commit when the outbox refuses), "unaccounted" those neither delivered nor
refused. --two-bridges adds a bridge forwarding the same topics to b/<topic>: "second_bridge"
counts what it delivered and lost. Needs: iproute2, iptables, mosquitto, paho-mqtt (pip).
"""
import argparse
import atexit
import bisect
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

TOPICS = {"test1": (1, 0.2), "test2": (1, 1.0), "test3": (2, 1.0), "test4": (2, 1.0),
          "test5": (2, 1.0)}  # topic: (QoS, interval)
if os.environ.get("NMQSC_QOS0") == "1":  # run --qos0 (the roles inherit it)
    TOPICS["test0"] = (0, 1.0)
if os.environ.get("NMQSC_TOPICS"):  # run --topics (the roles inherit it)
    for _t in [t for t in TOPICS if t not in os.environ["NMQSC_TOPICS"].split(",")]:
        del TOPICS[_t]
A_ADDR, B_ADDR = "10.99.1.1", "10.99.1.2"
SCENARIOS = ("linkdown", "blackhole", "drain-cut", "kill", "slow-pubcomp", "reload", "disk-full",
             "wrong-ack", "drain-reload", "reload-slow", "kill-released", "takeover",
             "slow-link", "reload-disk-full", "chaos", "session-lost", "reload-fail", "healthy",
             "relay-stop")
CHAOS_KINDS = ("linkdown", "blackhole", "flap", "kill", "remote-restart")
INFLIGHT = 32  # the bridge's max_parallel_processes: the in-flight limit (chaos: dup_bound)
PROXY_PORT = 1884  # slow-pubcomp: the proxy's port on NanoMQ's namespace loopback
QUIC_PORT = 14567  # --quic: quic_relay.py's UDP port on mosquitto's side (B_ADDR)
HYBRID_PORT = 1885  # --hybrid without --quic: mosquitto's second listener (B_ADDR)

NANOMQ_CONF = """\
mqtt {{
    max_packet_size = 1MB
}}
listeners.tcp {{
    bind = "127.0.0.1:1883"
}}
log {{
    to = [file]
    level = {log_level}
    dir = "{dir}"
    file = "nanomq.log"
}}
{http}bridges.mqtt.remote {{
    server = "{scheme}://{remote}"
    proto_ver = {proto_ver}
    clientid = "bridge_client_123"
    clean_start = false
    keepalive = 3s
    backoff_max = 10s
    forwards = [
        {{ remote_topic = "test1", local_topic = "test1", qos = 1 }}
        {{ remote_topic = "test2", local_topic = "test2", qos = 1 }}
        {{ remote_topic = "test3", local_topic = "test3", qos = 2 }}
        {{ remote_topic = "test4", local_topic = "test4", qos = 2 }}
        {{ remote_topic = "test5", local_topic = "test5", qos = 2 }}
{forwards_extra}    ]
    subscription = [
        {{ remote_topic = "test6", local_topic = "test6", qos = 2 }}
    ]
    max_parallel_processes = 32
    max_send_queue_len = 256
    max_recv_queue_len = 256
    resend_interval = 50
    resend_wait = 65000
    cancel_timeout = 5000
    retry_qos_0 = {retry_qos_0}
{bridge_extra}}}
bridges.mqtt.cache {{
    disk_cache_size = 102400
    mounted_file_path = "{dir}/cache/"
    flush_mem_threshold = {flush}
    resend_interval = 5000
{ack}}}
"""

HTTP_CONF = """\
http_server {
    port = 8081
    limit_conn = 4
    username = admin
    password = public
    auth_type = basic
}
"""

MOSQUITTO_CONF = """\
listener 1883 0.0.0.0
user root
allow_anonymous true
{persistence}
max_queued_messages 1000000
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
{extra}"""


def sh(*cmd, check=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout.strip()}")
    return r


def paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        sys.exit("paho-mqtt is missing: pip install paho-mqtt")
    return mqtt


# ---------------------------------------------------------------------------------------------
# Roles run inside a namespace (ip netns exec ... run.py pub|sub)

def role_pub(args):
    """Publishes the schedule for args.duration seconds; logs publish calls and acks. SIGUSR1
    writes every thread's stack to stderr (pub.out): a hung publisher shows where it hangs."""
    import faulthandler
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    mqtt = paho()
    out = open(args.out, "a", buffering=1)
    lock = threading.Lock()  # never held while calling paho (its callbacks hold its own locks)
    pending = {}  # mid -> (topic, seq)
    early = {}  # mid -> ack time, for an ack that beat the bookkeeping below

    v5 = os.environ.get("NMQSC_PUB_V5") == "1"  # run --pub-v5
    pubrec = {}  # mid -> PUBREC reason code (paho does not pass it on)

    def on_publish(client, userdata, mid, reason_code=None, properties=None):
        now = time.time()
        code = pubrec.pop(mid, None) if v5 else None
        if code is None and v5 and reason_code is not None:
            code = reason_code.value
        kind = "F" if code is not None and code >= 0x80 else "A"  # F: acked with an error
        with lock:
            ts = pending.pop(mid, None)
            if ts is None:
                early[mid] = (now, kind, code)
        if ts:
            out.write(f"{kind} {now:.3f} {ts[0]} {ts[1]}" +
                      (f" {code:#04x}\n" if kind == "F" else "\n"))

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scenario_pub",
                    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                    **({} if v5 else {"clean_session": True}))
    if v5:
        handle_pubrec = c._handle_pubrec

        def pubrec_with_reason():  # MQTT 5 PUBREC: packet id, reason code (0 if absent)
            pkt = c._in_packet["packet"]
            pubrec[int.from_bytes(pkt[:2], "big")] = pkt[2] if len(pkt) > 2 else 0
            return handle_pubrec()
        c._handle_pubrec = pubrec_with_reason
    c.on_publish = on_publish
    # After a reconnect paho resends what was unacknowledged from its network thread while
    # publish() on this thread already sends new messages: on the wire a new message can pass
    # an older one of the same topic (seen after NanoMQ's SIGKILL). So nothing new is
    # published while the connection is down, nor after a reconnect until every earlier
    # message is acknowledged: the wire order is the publish order, which the analysis checks.
    online, reconnected = threading.Event(), threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties=None):
        if not reason_code.is_failure:
            online.set()

    def on_disconnect(client, userdata, flags, reason_code, properties=None):
        online.clear()
        reconnected.set()
    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(1, 2)
    c.connect_async(args.host, args.port, keepalive=10)
    c.loop_start()
    seq = {t: 0 for t in TOPICS}
    start = time.monotonic()
    end = start + args.duration + 60
    online.wait(max(0.0, end - time.monotonic()))

    def resync():
        """After a reconnect: wait (bounded) until every earlier message is acknowledged."""
        while time.monotonic() < end:
            online.wait(max(0.0, min(0.5, end - time.monotonic())))
            with lock:
                left = len(pending)
            if online.is_set() and left == 0:
                reconnected.clear()
                return
            time.sleep(0.02)
    tick = 0
    period = 0.2 / args.rate_scale  # --rate-scale 20: every topic 20 times as often
    while True:
        due = start + tick * period
        now = time.monotonic()
        if due - start >= args.duration:
            break
        if due > now:
            time.sleep(due - now)
        if reconnected.is_set() or not online.is_set():
            resync()
            # the ticks missed meanwhile are skipped, not caught up in a burst: NanoMQ's
            # parallel workers reorder a topic's messages that arrive a few ms apart (stock
            # too), which would hide the order the bridge keeps
            tick = max(tick, int((time.monotonic() - start) / period))
            due = start + tick * period
            if due - start >= args.duration:
                break
        for topic, (qos, every) in TOPICS.items():
            if tick % round(every / 0.2) == 0:  # in ticks: the rates scale together
                seq[topic] += 1
                t = time.time()
                payload = f"{topic}|{seq[topic]}|{t:.3f}"
                # --big-*: every k-th message of one topic padded to the size given (after a
                # 4th field: the subscriber reads the first three); --retain-*: RETAIN set on
                # every k-th of one topic. The P line ends with the flags: " big", " retain".
                big = topic == args.big_topic and seq[topic] % args.big_every == 0
                retain = topic == args.retain_topic and seq[topic] % args.retain_every == 0
                if big:
                    payload += "|" + "x" * max(0, args.big_size - len(payload) - 1)
                out.write(f"P {t:.3f} {topic} {seq[topic]}" + (" big" if big else "")
                          + (" retain" if retain else "") + "\n")
                info = c.publish(topic, payload, qos=qos, retain=retain)
                with lock:
                    acked = early.pop(info.mid, None)
                    if acked is None:
                        pending[info.mid] = (topic, seq[topic])
                if acked is not None:
                    now, kind, code = acked
                    out.write(f"{kind} {now:.3f} {topic} {seq[topic]}" +
                              (f" {code:#04x}\n" if kind == "F" else "\n"))
        tick += 1
    time.sleep(args.linger)  # late acks (e.g. after NanoMQ restarted)
    # disconnect first: loop_stop alone joins a network thread that runs until no QoS 1/2
    # message of the client is unacknowledged, and one published into a connection NanoMQ's
    # SIGKILL ended never is (paho does not resend it under clean start): a chaos run's
    # publisher then did not exit until the harness killed it 240 s later
    c.disconnect()
    c.loop_stop()
    out.write(f"END {time.time():.3f}\n")


def role_burst(args):
    """Publishes test6 at QoS 2, args.rate msg/s for args.duration seconds (slow-link)."""
    mqtt = paho()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scenario_burst",
                    protocol=mqtt.MQTTv311, clean_session=True)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(args.host, args.port, keepalive=10)
    c.loop_start()
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.duration:
        due = start + n / args.rate
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        n += 1
        c.publish("test6", f"test6|{n}", qos=2)
    time.sleep(2)
    c.loop_stop()
    c.disconnect()
    print(f"burst: {n} published")


def role_sub(args):
    """Subscribes to test1..test5 at QoS 2 on the remote; logs every delivery. With
    --session-expiry N (chaos) the session outlives a disconnect and a graceful restart of a
    persistent remote: Session Expiry Interval N and clean start false on every connect, also
    the first (mosquitto 2.0 writes only the sessions of clients whose current connection has
    clean start false into its persistence file; the run starts without one, so the first
    connect gets a new session all the same); it subscribes when the CONNACK says no session
    is present and the C line ends with that flag."""
    mqtt = paho()
    out = open(args.out, "a", buffering=1)

    def on_connect(client, userdata, flags, reason_code, properties=None):
        if args.session_expiry and flags.session_present:
            out.write(f"C {time.time():.3f} 1\n")  # the remote kept the subscriptions
            return
        # b/<topic>: what the second bridge of --two-bridges forwards
        client.subscribe([(t, 2) for t in TOPICS] + [("b/" + t, 2) for t in TOPICS])
        out.write(f"C {time.time():.3f}" + (" 0\n" if args.session_expiry else "\n"))

    def on_message(client, userdata, msg):
        try:  # "topic|seq|time", or "topic|seq|time|padding" (pub --big-size)
            topic, seq, tpub = msg.payload.decode().split("|")[:3]
        except (ValueError, UnicodeDecodeError):
            return
        if msg.topic.startswith("b/"):
            topic = "b/" + topic
        out.write(f"R {time.time():.3f} {topic} {seq} {tpub} {int(msg.dup)} {msg.mid}\n")

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scenario_sub",
                    protocol=mqtt.MQTTv5)
    c.on_connect = on_connect
    c.on_message = on_message
    c.reconnect_delay_set(1, 2)
    props = None
    if args.session_expiry:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = args.session_expiry
    c.connect_async(args.host, args.port, keepalive=30,
                    clean_start=False if args.session_expiry else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=props)
    c.loop_start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    stop.wait(args.duration)
    c.loop_stop()


def role_proxy(args):
    """TCP proxy NanoMQ -> mosquitto. Between the Unix times args.start and args.end it holds
    PUBCOMP packets from mosquitto for args.delay seconds (every other packet passes at once),
    or with args.puback_first sends a PUBACK before every PUBREC, or with args.drop_pubrel
    drops every PUBREL from NanoMQ (from when args.start_file appears until args.end_file
    does). Logs each held PUBCOMP ("H <time> <packet id>"), each injected PUBACK ("I <time>
    <packet id>") and each dropped PUBREL ("D <time> <packet id>")."""
    import asyncio
    import re
    log = open(args.out, "a", buffering=1)
    trace = open(args.trace, "a", buffering=1) if args.trace else None
    up_host, up_port = args.to.rsplit(":", 1)
    started = None  # when args.start_file appeared
    conns = [0]

    def split(buf):
        """Whole MQTT packets at the head of buf: ([(packet, header length)], rest)."""
        out = []
        while True:
            n, mult, i, done = 0, 1, 1, False
            while i < len(buf) and i <= 4:
                n += (buf[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if buf[i - 1] & 0x80 == 0:
                    done = True
                    break
            if not done or len(buf) < i + n:
                return out, buf
            out.append((buf[:i + n], i))
            buf = buf[i + n:]

    def traced(conn, way, pkt, i):
        """--trace: "<time> <conn> <up|down> <type> <packet id> [<topic>|<seq>]" per packet."""
        if trace is None:
            return
        kind = pkt[0] >> 4
        pid, what = "-", ""
        if kind == 3:
            tl = int.from_bytes(pkt[i:i + 2], "big")
            if (pkt[0] >> 1) & 3:
                pid = int.from_bytes(pkt[i + 2 + tl:i + 4 + tl], "big")
            m = re.search(rb"(test\d)\|(\d+)\|", pkt)
            what = f" {m.group(1).decode()}|{m.group(2).decode()}" if m else ""
            what += " dup" if pkt[0] & 8 else ""
        elif kind in (4, 5, 6, 7):
            pid = int.from_bytes(pkt[i:i + 2], "big")
        elif kind == 2 and len(pkt) > i:  # CONNACK: Session Present flag
            what = f" sp{pkt[i] & 1}"
        trace.write(f"{time.time():.3f} {conn} {way} {kind} {pid}{what}\n")

    def dropping():
        """--drop-pubrel: between --start-file and --end-file."""
        return (args.start_file is not None and os.path.exists(args.start_file)
                and not (args.end_file and os.path.exists(args.end_file)))

    async def pipe_up(reader, writer, conn):
        buf = b""
        try:
            while data := await reader.read(65536):
                if args.drop_pubrel:  # whole packets only: a partial one waits in buf
                    pkts, buf = split(buf + data)
                    data = b""
                    for pkt, i in pkts:
                        traced(conn, "up", pkt, i)
                        if pkt[0] >> 4 == 6 and dropping():
                            pid = int.from_bytes(pkt[i:i + 2], "big")
                            log.write(f"D {time.time():.3f} {pid}\n")
                            continue
                        data += pkt
                elif trace is not None:
                    pkts, buf = split(buf + data)
                    for pkt, i in pkts:
                        traced(conn, "up", pkt, i)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def pipe_down(reader, writer, conn):
        nonlocal started
        loop = asyncio.get_running_loop()
        buf = b""
        try:
            while data := await reader.read(65536):
                pkts, buf = split(buf + data)
                for pkt, i in pkts:
                    traced(conn, "down", pkt, i)
                    now = time.time()
                    if args.start_file and started is None and os.path.exists(args.start_file):
                        started = now
                    live = not args.drop_pubrel and (
                        args.start <= now < args.end or started is not None) and (
                        args.period <= 0 or (now - args.start) % args.period < args.burst)
                    if args.puback_first and live and pkt[0] >> 4 == 5:
                        pid = int.from_bytes(pkt[i:i + 2], "big")
                        log.write(f"I {now:.3f} {pid}\n")
                        writer.write(bytes([0x40, 2]) + pkt[i:i + 2])
                        writer.write(pkt)
                    elif not args.puback_first and live and pkt[0] >> 4 == 7:
                        pid = int.from_bytes(pkt[i:i + 2], "big")
                        log.write(f"H {now:.3f} {pid}\n")
                        loop.call_later(args.delay, writer.write, pkt)
                    else:
                        writer.write(pkt)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            await asyncio.sleep(args.delay)  # held packets still go out
            writer.close()

    async def client(creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection(up_host, int(up_port))
        except OSError:
            cwriter.close()
            return
        log.write(f"C {time.time():.3f}\n")
        conns[0] += 1
        await asyncio.gather(pipe_up(creader, uwriter, conns[0]),
                             pipe_down(ureader, cwriter, conns[0]))

    async def serve():
        srv = await asyncio.start_server(client, "127.0.0.1", args.port)
        async with srv:
            await asyncio.sleep(args.duration)

    asyncio.run(serve())


def http_call(url, body=None, user="admin", password="public"):
    import base64
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "PUT")
    req.add_header("Authorization",
                   "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read().decode()


def role_reload(args):
    """PUT the bridge's own configuration (the HOCON of NANOMQ_CONF, as JSON): NanoMQ reloads
    the bridge (a new client socket replaces the old one)."""
    node = {
        "server": args.server, "proto_ver": args.proto_ver, "clientid": "bridge_client_123",
        "clean_start": False, "keepalive": "3s", "backoff_max": "10s",
        "forwards": [{"remote_topic": t, "local_topic": t, "qos": q}
                     for t, (q, _) in TOPICS.items()],
        "subscription": [{"remote_topic": "test6", "local_topic": "test6", "qos": 2}],
        "max_parallel_processes": 32, "max_send_queue_len": 256, "max_recv_queue_len": 256,
        "resend_interval": 50, "resend_wait": 65000, "cancel_timeout": 5000,
        "retry_qos_0": True,
    }
    try:
        status, text = http_call(args.url, {args.url.rstrip("/").rsplit("/", 1)[1]: node})
        print(status, text)
    except Exception as e:  # reported in events.log, the run goes on
        print("reload failed:", e)


# ---------------------------------------------------------------------------------------------
# The orchestrator

class Lab:
    def __init__(self, out, prefix):
        self.out = out
        self.a, self.b = prefix + "a", prefix + "b"
        self.procs = {}
        self.containers = {}  # process name: (engine, container name)
        self.events = open(os.path.join(out, "events.log"), "a", buffering=1)
        self.cut_kind = None
        self.relay_cmd = None  # --quic: how the relay was started (relay-stop starts it again)

    def event(self, what):
        self.events.write(f"{time.time():.3f} {what}\n")
        print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True)

    def up(self):
        self.down()
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        sh("ip", "link", "add", "nmqsc0", "netns", self.a, "type", "veth",
           "peer", "name", "nmqsc1", "netns", self.b)
        for ns, dev, addr in ((self.a, "nmqsc0", A_ADDR), (self.b, "nmqsc1", B_ADDR)):
            sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self):
        for name in list(self.procs):
            self.stop(name, signal.SIGKILL)
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns, check=False)

    def start(self, name, ns, cmd, cwd=None, env=None):
        """Starts cmd in netns ns (None: cmd joins it by itself, e.g. a container)."""
        log = open(os.path.join(self.out, name + ".out"), "a")
        e = dict(os.environ)
        e.update(env or {})
        wrap = ["ip", "netns", "exec", ns] if ns else []
        self.procs[name] = subprocess.Popen(wrap + cmd, cwd=cwd,
                                            stdout=log, stderr=subprocess.STDOUT, env=e,
                                            start_new_session=True)
        return self.procs[name]

    def stop(self, name, sig=signal.SIGTERM, wait=10):
        c = self.containers.get(name)
        if c is not None and name in self.procs:
            # the engine delivers the signal to the container's init (NanoMQ)
            engine, cname = c
            sh(engine, "kill", "--signal", "KILL" if sig == signal.SIGKILL else "TERM", cname,
               check=False)
            try:
                self.procs[name].wait(timeout=wait)
            except subprocess.TimeoutExpired:
                sh(engine, "kill", "--signal", "KILL", cname, check=False)
            sh(engine, "rm", "-f", cname, check=False)
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
            p.wait(timeout=wait)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)

    def cut(self, kind, note=""):
        self.cut_kind = kind
        if kind == "blackhole":
            sh("ip", "netns", "exec", self.a, "iptables", "-I", "INPUT", "-s", B_ADDR, "-j", "DROP")
            sh("ip", "netns", "exec", self.a, "iptables", "-I", "OUTPUT", "-d", B_ADDR, "-j", "DROP")
        elif kind == "relay-stop":  # the QUIC relay gone; started again by restore()
            self.stop("relay", signal.SIGKILL)
        else:
            sh("ip", "-n", self.a, "link", "set", "nmqsc0", "down")
        self.event(f"cut {kind}{note}")

    def restore(self):
        open(os.path.join(self.out, "restored"), "w").close()  # the wrong-ack proxy starts
        if self.cut_kind == "blackhole":
            sh("ip", "netns", "exec", self.a, "iptables", "-D", "INPUT", "-s", B_ADDR, "-j", "DROP")
            sh("ip", "netns", "exec", self.a, "iptables", "-D", "OUTPUT", "-d", B_ADDR, "-j", "DROP")
        elif self.cut_kind == "relay-stop":
            self.start("relay", self.b, self.relay_cmd)
        else:
            sh("ip", "-n", self.a, "link", "set", "nmqsc0", "up")
        self.cut_kind = None
        self.event("restore")


def chaos_plan(seed, seconds):
    """The fault schedule of the chaos scenario, drawn from random.Random(seed) alone: a list of
    {"at": seconds after the publisher's start, "kind": one of CHAOS_KINDS, its parameters}.
    Each fault follows 3-10 s of healthy link; the offsets assume the nominal durations (a
    kill or a remote restart counts 0.5 s / 1.5 s beyond its pause); drawing stops at the first
    fault that would end in the last 3 s."""
    rng = random.Random(seed)
    plan, t = [], 0.0
    while True:
        gap = round(rng.uniform(3, 10), 2)
        kind = rng.choice(CHAOS_KINDS)
        if kind in ("linkdown", "blackhole"):
            f = {"down_s": round(rng.uniform(3, 12), 2)}
            dur = f["down_s"]
        elif kind == "flap":
            f = {"cycles": [[round(rng.uniform(0.2, 1.0), 2), round(rng.uniform(0.2, 1.0), 2)]
                            for _ in range(rng.randint(3, 6))]}
            dur = sum(d + u for d, u in f["cycles"])
        elif kind == "kill":
            f = {"restart_after_s": round(rng.uniform(1, 2), 2)}
            dur = f["restart_after_s"] + 0.5
        else:  # remote-restart
            f = {"restart_after_s": round(rng.uniform(0.5, 2), 2)}
            dur = f["restart_after_s"] + 1.5
        if t + gap + dur > seconds - 3:
            return plan
        plan.append(dict(at=round(t + gap, 2), kind=kind, **f))
        t += gap + dur


def run_chaos(lab, plan, t0, seconds, start_nanomq, start_mosquitto):
    """Applies the plan (see chaos_plan) one fault after another: each starts at its offset,
    but never less than 2 s after the previous one ended, and none after the publisher stopped.
    Every fault is "cut <kind> ..." ... "restore" in events.log."""
    last_end = 0.0
    for i, f in enumerate(plan, 1):
        kind = f["kind"]
        wait = max(t0 + f["at"] - time.monotonic(), last_end + 2 - time.monotonic(), 0)
        time.sleep(wait)
        if time.monotonic() > t0 + seconds - 1:
            lab.event(f"chaos fault {i}/{len(plan)} {kind} skipped: the schedule ran late")
            continue
        for name, restart in (("nanomq", start_nanomq), ("mosquitto", start_mosquitto)):
            p = lab.procs.get(name)
            if p is not None and p.poll() is not None:  # died without a fault of the plan
                lab.event(f"{name} exited by itself (rc {p.returncode}): started again")
                restart()
        note = f" (fault {i}/{len(plan)}, planned at {f['at']} s)"
        if kind in ("linkdown", "blackhole"):
            lab.cut(kind, f" {f['down_s']} s{note}")
            time.sleep(f["down_s"])
            lab.restore()
        elif kind == "flap":
            lab.event(f"cut flap {len(f['cycles'])} cycles{note}")
            for k, (down, up) in enumerate(f["cycles"], 1):
                sh("ip", "-n", lab.a, "link", "set", "nmqsc0", "down")
                lab.event(f"flap {k} down {down} s")
                time.sleep(down)
                sh("ip", "-n", lab.a, "link", "set", "nmqsc0", "up")
                lab.event(f"flap {k} up {up} s")
                if k < len(f["cycles"]):
                    time.sleep(up)
            lab.event("restore")
        elif kind == "kill":
            lab.event(f"cut kill{note}")
            lab.stop("nanomq", signal.SIGKILL)
            lab.event("nanomq SIGKILL")
            time.sleep(f["restart_after_s"])
            start_nanomq()
            lab.event("nanomq restarted")
            lab.event("restore")
        else:
            lab.event(f"cut remote-restart{note}")
            p = lab.procs.get("mosquitto")
            t = time.monotonic()
            lab.stop("mosquitto", signal.SIGTERM, wait=30)
            rc = p.returncode if p is not None else None
            lab.event(f"mosquitto SIGTERM: exited {rc} after {time.monotonic() - t:.1f} s"
                      + ("" if rc == 0 else " (not graceful: its persistence file may be old)"))
            time.sleep(f["restart_after_s"])
            start_mosquitto()
            lab.event("mosquitto started")
            lab.event("restore")
        if f["kind"] == "flap":
            time.sleep(f["cycles"][-1][1])  # the last cycle's up time belongs to the fault
        last_end = time.monotonic()


def chaos_restore_all(lab, start_nanomq, start_mosquitto):
    """After the schedule: the veth up, no DROP rule, NanoMQ and mosquitto running."""
    sh("ip", "-n", lab.a, "link", "set", "nmqsc0", "up", check=False)
    for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d")):
        for _ in range(10):  # one rule per blackhole cut at most; bounded
            if sh("ip", "netns", "exec", lab.a, "iptables", "-D", chain, flag, B_ADDR, "-j",
                  "DROP", check=False).returncode != 0:
                break
            lab.event(f"chaos: a DROP rule was left in {chain}: removed")
    lab.cut_kind = None
    for name, restart in (("nanomq", start_nanomq), ("mosquitto", start_mosquitto)):
        p = lab.procs.get(name)
        if p is None or p.poll() is not None:
            lab.event(f"{name} exited by itself (rc {None if p is None else p.returncode}): "
                      "started again")
            restart()
    lab.event("chaos over: link up, no DROP rule, nanomq and mosquitto running")


def wait_for(pred, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def read_lines(path, tag):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.startswith(tag + " ")]
    except FileNotFoundError:
        return []


def refusals(out):
    """What the remote cannot take, from params.json (the run's options) and pub.log's P lines:
    (the dead-letter set: the big messages and those of the denied topics, the big ones, the
    retained ones, the denied topics), messages as (topic, seq)."""
    try:
        params = json.load(open(os.path.join(out, "params.json")))
    except (OSError, ValueError):
        params = {}
    refused_topics = set(params.get("refused_topics") or [])
    pub = read_lines(os.path.join(out, "pub.log"), "P")
    big = {(r[2], int(r[3])) for r in pub if "big" in r[4:]}
    retained = {(r[2], int(r[3])) for r in pub if "retain" in r[4:]}
    dead_set = big | {(r[2], int(r[3])) for r in pub if r[2] in refused_topics}
    return dead_set, big, retained, refused_topics


def undelivered(out, two_bridges=False):
    """The messages NanoMQ acked to the publisher that the subscriber has not received (through
    the second bridge too, with --two-bridges). QoS 0 (test0) is not waited for: it replays in
    the same order as the rest, and a lost one would only hold the run to its bound; nor are
    the messages the remote refuses (the dead-letter set, see refusals)."""
    dead_set = {(t, str(s)) for t, s in refusals(out)[0]}
    acked = {(r[2], r[3]) for r in read_lines(os.path.join(out, "pub.log"), "A")
             if r[2] != "test0"} - dead_set
    got = {(r[2], r[3]) for r in read_lines(os.path.join(out, "sub.log"), "R")}
    missing = acked - got
    if two_bridges:
        missing |= {("b/" + t, s) for (t, s) in acked} - got
    return missing


def probe_rest(lab, py, me, when):
    """Saves the bridge's REST object and the Prometheus text as NanoMQ serves them now
    (rest-<when>.json, prometheus-<when>.txt): the analysis reads the outbox figures."""
    base = "http://127.0.0.1:8081/api/v4/"
    for what, url in (("rest", base + "bridges/remote"), ("prometheus", base + "prometheus")):
        path = os.path.join(lab.out, f"{what}-{when}.{'json' if what == 'rest' else 'txt'}")
        r = subprocess.run(["ip", "netns", "exec", lab.a, py, me, "get", "--url", url,
                            "--out", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        # one line: a traceback (NanoMQ gone) would break events.log's "time what" lines
        tail = " ".join(r.stdout.split())[-200:]
        lab.event(f"probe {what} {when}: {r.returncode} {tail}")


def role_get(args):
    """GET args.url from NanoMQ's HTTP API (basic auth admin:public) into args.out."""
    status, text = http_call(args.url)
    with open(args.out, "w") as f:
        f.write(text)
    print(status, len(text))


def cmd_run(args):
    if os.geteuid() != 0:
        sys.exit("run needs root (network namespaces)")
    if (args.nanomq is None) == (args.image is None):
        sys.exit("give either --nanomq <binary> or --image <container image>")
    nanomq = os.path.abspath(args.nanomq) if args.nanomq else None
    if args.qos0:
        os.environ["NMQSC_QOS0"] = "1"
        TOPICS["test0"] = (0, 1.0)
    if args.pub_v5:
        os.environ["NMQSC_PUB_V5"] = "1"
    if args.topics:
        names = args.topics.split(",")
        if any(t not in TOPICS for t in names):
            sys.exit(f"--topics: a comma-separated subset of {', '.join(TOPICS)}")
        os.environ["NMQSC_TOPICS"] = args.topics
        for t in [t for t in TOPICS if t not in names]:
            del TOPICS[t]
    if args.scenario == "relay-stop" and not args.quic:
        sys.exit("relay-stop needs --quic (it stops the QUIC relay)")
    out = os.path.abspath(os.path.join(args.out, f"{args.label}-{args.scenario}"))
    os.makedirs(os.path.join(out, "cache"), exist_ok=True)
    for f in os.listdir(out):
        if f.endswith((".log", ".out", ".json", ".db", ".db-wal", ".db-shm")) or f in (
                "restored", "drop-pubrel"):
            os.remove(os.path.join(out, f))
    k = args.scale
    normal, outage, after, drain = 10 * k, 100 * k, 20 * k, 60 * k
    if args.timeline:  # seconds, not scaled
        try:
            normal, outage, after, drain = (float(x) for x in args.timeline.split(","))
        except ValueError:
            sys.exit("--timeline: NORMAL,OUTAGE,AFTER,DRAIN (seconds)")
    chaos = args.scenario == "chaos"
    if chaos:  # the publisher runs the schedule's length; the faults start from its start
        if args.seed is None:
            args.seed = random.SystemRandom().randrange(1, 1 << 31)
        normal, outage, after, drain = 0, args.chaos_seconds, 0, args.drain_bound or 60
        # a fresh remote state and outbox: nothing from an earlier run of this directory
        shutil.rmtree(os.path.join(out, "mosquitto-data"), ignore_errors=True)
        shutil.rmtree(os.path.join(out, "cache"), ignore_errors=True)
        os.makedirs(os.path.join(out, "cache"))
    lab = Lab(out, args.prefix)
    atexit.register(lab.down)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *a: sys.exit("stopped by signal"))
    me = os.path.abspath(__file__)
    py = sys.executable
    proxied = args.scenario in ("slow-pubcomp", "wrong-ack", "reload-slow", "kill-released",
                                "session-lost")
    # what the analysis needs to know of the options: which messages the remote cannot take
    with open(os.path.join(out, "params.json"), "w") as f:
        json.dump({"big": None if args.big_topic is None else dict(
                       topic=args.big_topic, every=args.big_every, size=args.big_size),
                   "retain": None if args.retain_topic is None else dict(
                       topic=args.retain_topic, every=args.retain_every),
                   "refused_topics": args.acl_deny, "mosquitto": args.mosquitto}, f)
    if args.acl_deny:  # the bridge (user nmqbridge) may not publish to these topics
        acl = os.path.join(out, "acl")
        with open(acl, "w") as f:
            f.write("# anonymous clients (the subscriber): every topic\n"
                    "topic readwrite #\n"
                    "user nmqbridge\n"
                    + "".join(f"topic deny {t}\n" for t in args.acl_deny)
                    + "topic readwrite #\n")
        os.chmod(acl, 0o600)  # mosquitto warns of a world-readable acl_file
        args.mosquitto += [f"acl_file {acl}"]
        args.bridge += ['username = "nmqbridge"']
    remote = f"127.0.0.1:{PROXY_PORT}" if proxied else f"{B_ADDR}:1883"
    scheme = "tls+mqtt-tcp" if args.tls else "mqtt-tcp"
    if args.quic:  # MQTT over QUIC to quic_relay.py beside mosquitto
        if proxied or args.tls or "reload" in args.scenario or args.image:
            sys.exit("--quic goes with neither the proxied nor the reload scenarios, --tls "
                     "or --image")
        remote, scheme = f"{B_ADDR}:{QUIC_PORT}", "mqtt-quic"
    if args.hybrid:  # issue 22 item 3: the bridge switches address at every disconnect
        if proxied or args.tls or "reload" in args.scenario or args.image:
            sys.exit("--hybrid goes with neither the proxied nor the reload scenarios (NanoMQ "
                     "does not reload a hybrid bridge), --tls or --image")
        if args.quic:  # the QUIC relay first, mosquitto's TCP listener second
            second = f"mqtt-tcp://{B_ADDR}:1883"
        else:  # two TCP listeners of mosquitto
            second = f"mqtt-tcp://{B_ADDR}:{HYBRID_PORT}"
            args.mosquitto += [f"listener {HYBRID_PORT} 0.0.0.0"]
        args.bridge += ["hybrid_bridging = true", f'hybrid_servers = ["{second}"]']
    if args.tls:  # mosquitto gets a TLS listener on 8883 with a self-signed certificate
        if proxied:
            sys.exit("--tls does not go with the proxied scenarios")
        remote = f"{B_ADDR}:8883"
        crt, key = os.path.join(out, "tls.crt"), os.path.join(out, "tls.key")
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
           "-subj", f"/CN={B_ADDR}", "-keyout", key, "-out", crt)
        args.mosquitto += ["listener 8883 0.0.0.0", f"certfile {crt}", f"keyfile {key}"]
        args.bridge += [f'ssl {{ enable = true, cacertfile = "{crt}", verify_peer = false }}']
    with open(os.path.join(out, "nanomq.conf"), "w") as f:
        f.write(NANOMQ_CONF.format(dir=out, remote=remote, log_level=args.log_level,
                                   proto_ver=args.proto_ver,
                                   scheme=scheme,
                                   http=HTTP_CONF if "reload" in args.scenario or args.http or args.probe_rest
                                   else "",
                                   retry_qos_0=args.retry_qos_0,
                                   forwards_extra=(
                                       '        { remote_topic = "test0", local_topic = '
                                       '"test0", qos = 0 }\n' if args.qos0 else ""),
                                   bridge_extra="".join(f"    {l}\n" for l in args.bridge),
                                   # disk-full: a commit per message, so that a full disk
                                   # refuses appends at once instead of 8 x 100 later
                                   flush=1 if "disk-full" in args.scenario else 100,
                                   ack=("    ack_after_commit = true\n"
                                        if args.ack_after_commit else "")))
    if args.two_bridges:  # a second bridge forwards the same topics to b/<topic>
        conf = open(os.path.join(out, "nanomq.conf")).read()
        a = conf.index("bridges.mqtt.remote {")
        b = conf.index("bridges.mqtt.cache {")
        second = (conf[a:b].replace("bridges.mqtt.remote {", "bridges.mqtt.second {")
                  .replace('"bridge_client_123"', '"bridge_client_456"')
                  .replace('remote_topic = "test', 'remote_topic = "b/test'))
        with open(os.path.join(out, "nanomq.conf"), "w") as f:
            f.write(conf[:b] + second + conf[b:])
    extra = list(args.mosquitto)
    if args.scenario == "slow-link":
        extra += ["max_inflight_messages 0", "max_queued_messages 100000"]
    with open(os.path.join(out, "mosquitto.conf"), "w") as f:
        f.write(MOSQUITTO_CONF.format(
            dir=out, extra="".join(l + "\n" for l in extra),
            # chaos: a graceful restart keeps the subscriber's session and queued messages
            persistence=(f"persistence true\npersistence_location {out}/mosquitto-data/"
                         if chaos else "persistence false")))
    if chaos:
        os.makedirs(os.path.join(out, "mosquitto-data"), exist_ok=True)
    nmq_env = {"NANOMQ_PID_FILE": os.path.join(out, "nanomq.pid")}
    nmq_cmd = [nanomq, "start", "--conf", os.path.join(out, "nanomq.conf")]
    nmq_ns = lab.a
    if args.image:
        cname = args.prefix + "-nanomq"
        lab.containers["nanomq"] = (args.engine, cname)
        sh(args.engine, "rm", "-f", cname, check=False)
        nmq_cmd = [args.engine, "run", "--rm", "--name", cname,
                   "--network", f"ns:/run/netns/{lab.a}", "-v", f"{out}:{out}", "-w", out,
                   "-e", f"NANOMQ_PID_FILE={nmq_env['NANOMQ_PID_FILE']}",
                   args.image, "nanomq", "start", "--conf", os.path.join(out, "nanomq.conf")]
        nmq_ns = None
        nanomq = "image:" + args.image

    restart_cmd = nmq_cmd
    if args.restart_nanomq:  # e.g. stock first, patched after the kill (the takeover)
        restart_cmd = [os.path.abspath(args.restart_nanomq)] + nmq_cmd[1:]
    lab.up()
    lab.event(f"setup {args.label} {args.scenario} nanomq={nanomq}")
    if chaos:
        plan = chaos_plan(args.seed, args.chaos_seconds)
        with open(os.path.join(out, "chaos-plan.json"), "w") as f:
            json.dump({"seed": args.seed, "seconds": args.chaos_seconds, "plan": plan}, f,
                      indent=1)
        count = {kd: sum(f["kind"] == kd for f in plan) for kd in CHAOS_KINDS}
        lab.event(f"chaos seed={args.seed} seconds={args.chaos_seconds} faults={len(plan)} "
                  + " ".join(f"{kd}={n}" for kd, n in count.items())
                  + f" rate_scale={args.rate_scale} ack_after_commit={args.ack_after_commit}")
        if not args.ack_after_commit:
            lab.event("chaos without --ack-after-commit: a SIGKILL can lose acked messages")
    cache = os.path.join(out, "cache")
    if args.scenario == "slow-link":
        # a small send buffer, so that a throttled link keeps NanoNNG's pipe busy
        sh("ip", "netns", "exec", lab.a, "sysctl", "-q", "-w", "net.ipv4.tcp_wmem=4096 4096 4096")
    if "disk-full" in args.scenario:
        sh("mount", "-t", "tmpfs", "-o", "size=256k", "nmqsc-cache", cache)
        atexit.register(lambda: sh("umount", cache, check=False))
    total = normal + outage + after + drain + 120
    if proxied:
        t = time.time() + 5  # the publisher starts about 5 s from now
        window = ((0, 0) if args.scenario in ("wrong-ack", "session-lost")
                  else (t + normal, t + normal + outage))
        lab.start("proxy", lab.a, [py, me, "proxy", "--port", str(PROXY_PORT),
                                   "--to", f"{B_ADDR}:1883", "--delay", "6",
                                   "--start", str(window[0]), "--end", str(window[1]),
                                   "--out", os.path.join(out, "proxy.log"),
                                   "--trace", os.path.join(out, "proxy-trace.log"),
                                   "--duration", str(total)]
                  + (["--puback-first", "--start-file", os.path.join(out, "restored")]
                     if args.scenario == "wrong-ack" else
                     ["--drop-pubrel", "--start-file", os.path.join(out, "drop-pubrel"),
                      "--end-file", os.path.join(out, "restored")]
                     if args.scenario == "session-lost" else
                     ["--period", "15", "--burst", "2"] if args.scenario == "slow-pubcomp" else []))
    mosq_cmd = [args.remote_bin, "-c", os.path.join(out, "mosquitto.conf")]
    lab.start("mosquitto", lab.b, mosq_cmd)
    time.sleep(0.5)
    if args.quic:
        lab.relay_cmd = [py, os.path.join(os.path.dirname(me), "quic_relay.py"),
                         "--listen", f"{B_ADDR}:{QUIC_PORT}", "--to", "127.0.0.1:1883",
                         "--duration", str(total + 60),
                         "--log", os.path.join(out, "relay.log"),
                         "--trace", os.path.join(out, "relay-trace.log")]
        lab.start("relay", lab.b, lab.relay_cmd)
        if not wait_for(lambda: os.path.exists(os.path.join(out, "relay.log")) and
                        "listening" in open(os.path.join(out, "relay.log")).read(), 15):
            sys.exit("quic_relay.py did not start (relay.out)")
    lab.start("sub", lab.b, [py, me, "sub", "--host", "127.0.0.1", "--port", "1883",
                             "--out", os.path.join(out, "sub.log"), "--duration", str(total)]
              + (["--session-expiry", "3600"] if chaos else []))
    if not wait_for(lambda: read_lines(os.path.join(out, "sub.log"), "C"), 15):
        sys.exit("the subscriber did not connect to mosquitto")
    if args.scenario == "takeover":
        lab.cut("linkdown")
    lab.start("nanomq", nmq_ns, nmq_cmd, cwd=out, env=nmq_env)
    mlog = os.path.join(out, "mosquitto.log")
    def bridge_in_log():
        return os.path.exists(mlog) and "bridge_client_123" in open(mlog).read()
    if args.scenario == "takeover":
        time.sleep(2)  # NanoMQ listening; its bridge cannot connect
    elif not wait_for(bridge_in_log, 30):
        sys.exit("the NanoMQ bridge did not connect to mosquitto")
    else:
        lab.event("bridge connected")
    time.sleep(1)
    pub_dur = normal + outage + after
    lab.start("pub", lab.a, [py, me, "pub", "--host", "127.0.0.1", "--port", "1883",
                             "--out", os.path.join(out, "pub.log"), "--duration", str(pub_dur),
                             # --timeline: 2 s for late acks, part of the count's time
                             "--linger", "2" if args.timeline else str(max(2.0, 5 * k)),
                             "--rate-scale", str(args.rate_scale)]
              + (["--big-topic", args.big_topic, "--big-every", str(args.big_every),
                  "--big-size", str(args.big_size)] if args.big_topic else [])
              + (["--retain-topic", args.retain_topic, "--retain-every",
                  str(args.retain_every)] if args.retain_topic else []))
    t0 = time.monotonic()
    lab.event("publisher started")

    def until(t):
        time.sleep(max(0.0, t0 + t - time.monotonic()))

    if args.scenario == "session-lost":
        # the last 3 s before the cut (at most): the remote's PUBRECs reach the bridge, its
        # PUBRELs do not reach the remote; the cut ends the remote's session (no Session Expiry
        # Interval), so the rows released meanwhile meet Session Present 0 at the reconnect
        until(max(0.0, normal - 3))
        open(os.path.join(out, "drop-pubrel"), "w").close()
        lab.event("proxy drops PUBRELs")
    until(normal)
    if chaos:
        run_chaos(lab, plan, t0, args.chaos_seconds,
                  lambda: lab.start("nanomq", nmq_ns, restart_cmd, cwd=out, env=nmq_env),
                  lambda: lab.start("mosquitto", lab.b, mosq_cmd))
        until(args.chaos_seconds)
        chaos_restore_all(lab,
                          lambda: lab.start("nanomq", nmq_ns, restart_cmd, cwd=out, env=nmq_env),
                          lambda: lab.start("mosquitto", lab.b, mosq_cmd))
    elif args.scenario == "slow-link":
        lab.event("cut slow-link")
        sh("ip", "netns", "exec", lab.a, "tc", "qdisc", "add", "dev", "nmqsc0", "root", "tbf",
           "rate", "16kbit", "burst", "1600", "latency", "10s")
        lab.start("burst", lab.b, [py, me, "burst", "--host", "127.0.0.1", "--port", "1883",
                                   "--rate", "150", "--duration", str(outage)])
        until(normal + outage)
        sh("ip", "netns", "exec", lab.a, "tc", "qdisc", "del", "dev", "nmqsc0", "root")
        lab.event("restore")
    elif args.scenario in ("slow-pubcomp", "reload", "reload-slow", "reload-disk-full",
                           "kill-released"):
        # no outage: the fault window is marked like one, for the analysis
        lab.event(f"cut {args.scenario}")
        if args.scenario in ("reload", "reload-slow", "reload-disk-full"):
            base = "http://127.0.0.1:8081/api/v4/bridges/remote"
            n = 0
            while time.monotonic() < t0 + normal + outage - 10:
                until(normal + 10 * n + 5)
                r = subprocess.run(["ip", "netns", "exec", lab.a, py, me, "reload",
                                    "--url", base, "--server", f"mqtt-tcp://{remote}",
                                    "--proto-ver", str(args.proto_ver)],
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
                lab.event(f"reload {n}: {r.stdout.strip()[-200:]}")
                n += 1
        if args.scenario == "kill-released":
            until(normal + outage / 2)
            held = len(read_lines(os.path.join(out, "proxy.log"), "H"))
            lab.stop("nanomq", signal.SIGKILL)
            lab.event(f"nanomq SIGKILL ({held} PUBCOMPs held so far)")
            time.sleep(2)
            lab.start("nanomq", nmq_ns, restart_cmd, cwd=out, env=nmq_env)
            lab.event("nanomq restarted")
        until(normal + outage)
        lab.event("restore")
    elif args.scenario == "healthy":
        lab.event("no fault")
    elif args.scenario != "takeover":
        if args.scenario == "reload-fail":
            until(normal / 2)
            r = subprocess.run(["ip", "netns", "exec", lab.a, py, me, "reload", "--url",
                                "http://127.0.0.1:8081/api/v4/bridges/remote",
                                "--server", f"mqtt-tcp://{remote}/reload-fail",
                                "--proto-ver", str(args.proto_ver)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            lab.event("reload (failing): " + " ".join(r.stdout.split())[-200:])
            until(normal)
        lab.cut(args.scenario if args.scenario in ("blackhole", "relay-stop") else "linkdown")
    if args.scenario in ("kill", "takeover"):
        # --kill-at: seconds into the (unscaled) 100 s outage; default its middle
        until(normal + (outage / 2 if args.kill_at is None else args.kill_at * k))
        lab.stop("nanomq", signal.SIGKILL)
        lab.event("nanomq SIGKILL")
        time.sleep(2)
        lab.start("nanomq", nmq_ns, restart_cmd, cwd=out, env=nmq_env)
        lab.event(f"nanomq restarted{' as ' + args.restart_nanomq if args.restart_nanomq else ''}")
    if args.scenario not in ("slow-pubcomp", "reload", "reload-slow", "kill-released",
                             "slow-link", "reload-disk-full", "chaos", "healthy"):
        if args.probe_rest:  # what an operator sees during the outage
            until(normal + outage * 0.8)
            probe_rest(lab, py, me, "outage")
        until(normal + outage)
        lab.restore()
    if args.scenario in ("drain-cut", "drain-reload"):
        restore_t = time.time()

        def backlog_seen():
            return any(float(r[1]) > restore_t and float(r[4]) < restore_t
                       for r in read_lines(os.path.join(out, "sub.log"), "R")[-50:])
        seen = wait_for(backlog_seen, 30 * max(k, 0.34), step=0.02)
        lab.event("first backlog delivery" if seen else "no backlog delivery within 30 s")
        if args.scenario == "drain-reload":
            r = subprocess.run(["ip", "netns", "exec", lab.a, py, me, "reload", "--url",
                                "http://127.0.0.1:8081/api/v4/bridges/remote",
                                "--server", f"mqtt-tcp://{remote}",
                                "--proto-ver", str(args.proto_ver)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            lab.event(f"reload: {r.stdout.strip()[-200:]}")
        else:
            lab.cut("linkdown")
            time.sleep(20 * k)
            lab.restore()
    try:
        lab.procs["pub"].wait(timeout=pub_dur + 120)
        lab.event("publisher stopped")
    except subprocess.TimeoutExpired:
        if not chaos:
            raise
        # seen once in a chaos run (paho 2.2): the publisher published its last message and
        # never wrote END; its stacks go to pub.out, the run goes on to the drain and analysis
        os.kill(lab.procs["pub"].pid, signal.SIGUSR1)
        time.sleep(1)
        lab.stop("pub", signal.SIGKILL)
        lab.event("publisher did not exit: stacks in pub.out, killed")
    if args.drain_bound:
        # the event: every message NanoMQ acked has reached the subscriber (through each
        # bridge); the bound only ends a run that loses some
        seen = wait_for(lambda: not undelivered(out, args.two_bridges), args.drain_bound,
                        step=0.25)
        lab.event("all delivered" if seen else
                  f"drain bound reached: {len(undelivered(out, args.two_bridges))} undelivered")
    else:
        time.sleep(drain)
    if args.probe_rest:
        probe_rest(lab, py, me, "after")
    lab.event("drain over")
    lab.stop("sub")
    lab.stop("nanomq")
    lab.stop("mosquitto")
    lab.stop("proxy")
    lab.stop("relay")
    lab.stop("burst")
    lab.down()
    res = analyse(out, args.label, args.scenario)
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res["total"]))


# ---------------------------------------------------------------------------------------------
# Analysis

def longest_increasing(seq):
    tails = []
    for x in seq:
        i = bisect.bisect_left(tails, x)
        tails[i:i + 1] = [x]
    return len(tails)


def analyse(out, label, scenario):
    ev = [l.rstrip("\n").split(" ", 1) for l in open(os.path.join(out, "events.log"))]
    ev = [(float(t), what) for t, what in ev]
    cuts = [t for t, w in ev if w.startswith("cut")]
    restores = [t for t, w in ev if w == "restore"]
    pub = read_lines(os.path.join(out, "pub.log"), "P")
    acked = {(r[2], int(r[3])) for r in read_lines(os.path.join(out, "pub.log"), "A")}
    # acked with an error reason code (MQTT 5 publisher, --pub-v5): refused, the publisher knows
    refused = {(r[2], int(r[3])) for r in read_lines(os.path.join(out, "pub.log"), "F")}
    published = {(r[2], int(r[3])): float(r[1]) for r in pub}
    # the messages the remote cannot take (params.json: the run's options): the big ones
    # (pub --big-*: " big" on their P line) and those of the topics it refuses (--acl-deny).
    # Each should be a dead letter of the outbox, not delivered, not lost silently; they
    # are not counted in "lost", but in dead_expected (those NanoMQ acked), dead_received
    # and lost_silently.
    dead_set, big, retained, refused_topics = refusals(out)
    recv = read_lines(os.path.join(out, "sub.log"), "R")
    if any(t == "test0" for (t, _) in published):
        TOPICS.setdefault("test0", (0, 1.0))
    res = {"label": label, "scenario": scenario, "topics": {}}
    tot = dict(published=0, sent=0, received=0, unique=0, lost=0, duplicated=0,
               out_of_order=0, lost_unacked=0, refused=0, unaccounted=0, dead_expected=0,
               dead_received=0)
    first_cut, last_restore = (cuts[0] if cuts else 0), (restores[-1] if restores else 0)
    backlog_first, backlog_last, remote = None, None, []
    for topic in TOPICS:
        sent = {s for (t, s) in acked if t == topic}
        pubd = {s for (t, s) in published if t == topic}
        seen, order, intake, dup = set(), [], [], 0
        for r in recv:
            if r[2] != topic:
                continue
            s = int(r[3])
            if s in seen:
                dup += 1
                continue
            seen.add(s)
            order.append(s)
            if len(r) > 6:
                intake.append((int(r[6]), s))
            tpub = float(r[4])
            if first_cut <= tpub < last_restore:
                trecv = float(r[1])
                backlog_last = trecv if backlog_last is None else max(backlog_last, trecv)
                if trecv >= last_restore:
                    backlog_first = (trecv if backlog_first is None
                                     else min(backlog_first, trecv))
        # out of order: the fewest deliveries to take away for the rest to be in order
        # (first deliveries only; length minus the longest increasing subsequence)
        ooo = len(order) - longest_increasing(order)
        # The same, in the order mosquitto took the messages in: it numbers the PUBLISHes to
        # the subscriber when it queues them, so sorting by that packet id undoes its own
        # delivery reordering (a new message may overtake older ones still queued for the
        # subscriber when max_inflight_messages is reached). None without packet ids.
        intake.sort()
        ooo_remote = (len(intake) - longest_increasing([x for _, x in intake])
                      if len(intake) == len(order) and len(intake) < 65000 else None)
        refd = {s for (t, s) in refused if t == topic}
        dead = {s for (t, s) in dead_set if t == topic}
        d = dict(published=len(pubd), sent=len(sent), received=len(seen) + dup,
                 unique=len(seen), lost=len(sent - dead - seen), duplicated=dup,
                 out_of_order=ooo, dead_expected=len(sent & dead),
                 dead_received=len(dead & seen),
                 lost_unacked=len((pubd - sent - refd) - seen), refused=len(refd),
                 # neither delivered nor acked with an error code
                 unaccounted=len(pubd - seen - refd))
        res["topics"][topic] = d
        for key in tot:
            tot[key] += d[key]
        d["out_of_order_at_remote"] = ooo_remote
        remote.append(ooo_remote)
    tot["out_of_order_at_remote"] = None if None in remote else sum(remote)
    # --two-bridges: what the second bridge delivered (b/<topic>) of the acked messages
    seen_b = {(r[2][2:], int(r[3])) for r in recv if r[2].startswith("b/")}
    if seen_b:
        tot["second_bridge"] = dict(unique=len(seen_b), lost=len(acked - seen_b))
    tot["drain_s"] = round(backlog_last - last_restore, 1) if backlog_last else None
    # the first backlog message after the (last) restore marks the reconnect, whose delay is
    # the transport's (reconnect backoff, SYN retries after a silent drop), not the cache's
    tot["first_backlog_s"] = round(backlog_first - last_restore, 1) if backlog_first else None
    # NanoMQ's stdout has every log line; nanomq.log is rotated at 10 KB by the logger
    log = os.path.join(out, "nanomq.out")
    if not os.path.exists(log):
        log = os.path.join(out, "nanomq.log")
    text = open(log, errors="replace").read() if os.path.exists(log) else ""
    tot["ctx_msgs_lost_lines"] = text.count("Cached Message in ctx_msgs is lost")
    tot["outbox_refused_lines"] = text.count("outbox refused a m")
    # --hybrid: each (re)start of the bridge on the next address (the first connect included)
    # and the files of the cache directory (one outbox, no stock cache per transport)
    tot["hybrid_switches"] = text.count("Bridge has switched to")
    # the publisher's connections NanoMQ accepted (1 unless it was closed, or NanoMQ restarted)
    tot["publisher_connects"] = text.count("scenario_pub online")
    cdir = os.path.join(out, "cache")
    tot["cache_files"] = sorted(f for f in os.listdir(cdir) if f.endswith(".db")) if \
        os.path.isdir(cdir) else []
    # publish() to PUBACK/PUBCOMP at the publisher, for the messages acked before the first cut
    # (a healthy link: ack after commit adds the group-commit wait here)
    acks = {(r[2], int(r[3])): float(r[1]) for r in read_lines(os.path.join(out, "pub.log"), "A")}
    lat = sorted((acks[m] - t) * 1000 for m, t in published.items()
                 if m in acks and (not cuts or t < first_cut))
    tot["ack_ms_p50"] = round(lat[len(lat) // 2], 1) if lat else None
    tot["ack_ms_p99"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1) if lat else None
    tot["busy_socket_lost_lines"] = (text.count("lost due to busy socket") +
                                     text.count("pipe is busy and lmq is full"))
    # the outbox's last counters, logged at exit (level info): drops and, with the reason,
    # messages it refused that the stock fallback path then lost (issue 8 item 13)
    tot["outbox_at_exit"] = None
    for name in ("nanomq.log", "nanomq.out"):
        path = os.path.join(out, name)
        if tot["outbox_at_exit"] is None and os.path.exists(path):
            for line in open(path, errors="replace"):
                if "outbox at exit: " in line:
                    try:
                        tot["outbox_at_exit"] = json.loads(line.split("outbox at exit: ", 1)[1])
                    except ValueError:
                        pass
    # the lines an operator relies on: the outbox opened (with what it found on disk) and
    # the bridge attached to it
    import re
    tot["outbox_open_waiting"] = [int(m) for m in re.findall(
        r"nmq-outbox \S+: bridge remote -> \S+, (\d+) messages waiting", text)]
    tot["outbox_attached_lines"] = text.count("bridge [remote]: durable outbox")
    # what each attach line says after the file (window, dead letters, attempts, backoff, and
    # which of them came from a key)
    tot["outbox_attached"] = re.findall(r"bridge \[remote\]: durable outbox \S+, (.*)", text)
    # --probe-rest: the outbox as REST and Prometheus showed it late in the outage and after
    for when in ("outage", "after"):
        try:
            ob = json.load(open(os.path.join(out, f"rest-{when}.json")))
            ob = ob.get("data", ob) if isinstance(ob, dict) else {}
            ob = ob.get("bridge", ob) if isinstance(ob, dict) else {}
            found = []
            def walk(x):
                if isinstance(x, dict):
                    if isinstance(x.get("outbox"), dict):
                        found.append(x["outbox"])
                    for v in x.values():
                        walk(v)
                elif isinstance(x, list):
                    for v in x:
                        walk(v)
            walk(ob)
            o = found[0] if found else {}
            tot[f"rest_{when}"] = {k: o.get(k) for k in (
                "link_up", "messages", "enqueued", "acked", "dead_letters", "dead_lettered",
                "qos_downgraded", "retain_cleared")}
        except (OSError, ValueError):
            tot[f"rest_{when}"] = None
        try:
            text_p = open(os.path.join(out, f"prometheus-{when}.txt")).read()
            m = re.search(r'^nanomq_bridge_outbox_messages\{bridge="remote"\} (\d+)', text_p, re.M)
            tot[f"prometheus_{when}_messages"] = int(m.group(1)) if m else None
        except OSError:
            tot[f"prometheus_{when}_messages"] = None
    # dead letters (issue 20): those the outbox kept at exit (a gauge) and made since it opened
    ex = tot["outbox_at_exit"] if isinstance(tot["outbox_at_exit"], dict) else {}
    tot["dead_letters"] = ex.get("dead_letters")
    tot["dead_lettered"] = ex.get("dead_lettered")
    n_dead = tot["dead_lettered"] if tot["dead_lettered"] is not None else tot["dead_letters"]
    # acked, not delivered and not a dead letter: lost without a trace (stock, old hooks)
    tot["lost_silently"] = max(0, tot["dead_expected"] - tot["dead_received"] - (n_dead or 0))
    tot["big_sent"] = len(big & acked)
    tot["retained_sent"] = len(retained & acked)
    tot["qos_downgraded"] = ex.get("qos_downgraded")
    tot["retain_cleared"] = ex.get("retain_cleared")
    tot["refused_topics"] = sorted(refused_topics)
    # how mosquitto saw the bridge's connections end, but for the keepalive timeout a cut
    # causes and the shutdown after the drain: a refusal that ends the connection (a PUBLISH
    # above its limits: 0x95, 0x9A, 0x9B; a PUBREL with an error code: protocol error) or a
    # close by NanoMQ ("closed its connection"); reason: count
    over = [t for t, w in ev if w == "drain over"]
    tot["remote_disconnects"] = {}
    try:
        for line in open(os.path.join(out, "mosquitto.log"), errors="replace"):
            m = re.match(r"(\d+): (?:Client bridge_client_123 (disconnected.*|closed its "
                         r"connection)|Bad socket read/write on client bridge_client_123: "
                         r"(.*))\.$", line.rstrip("\n"))
            if m and not (over and int(m.group(1)) >= int(over[0])):
                why = m.group(2) or m.group(3)
                tot["remote_disconnects"][why] = tot["remote_disconnects"].get(why, 0) + 1
    except OSError:
        pass
    # the subscriptions mosquitto logged (--mosquitto 'log_type subscribe'): client id: topics
    tot["remote_subscriptions"] = {}
    try:
        for line in open(os.path.join(out, "mosquitto.log"), errors="replace"):
            m = re.match(r"\d+: (bridge_client_\d+) \d (\S+)$", line.rstrip("\n"))
            if m:
                tot["remote_subscriptions"].setdefault(m.group(1), []).append(m.group(2))
    except OSError:
        pass
    tot["held_pubcomps"] = len(read_lines(os.path.join(out, "proxy.log"), "H"))
    tot["dropped_pubrels"] = len(read_lines(os.path.join(out, "proxy.log"), "D"))
    # the Session Present flag of each CONNACK through the proxy (--trace), in order
    tot["connack_session_present"] = [
        int(r[5][2:]) for r in (l.split() for l in open(os.path.join(out, "proxy-trace.log")))
        if len(r) > 5 and r[2] == "down" and r[3] == "2" and r[5].startswith("sp")
    ] if os.path.exists(os.path.join(out, "proxy-trace.log")) else None
    tot["injected_pubacks"] = len(read_lines(os.path.join(out, "proxy.log"), "I"))
    seeds = [re.match(r"chaos seed=(\d+)", w) for _, w in ev]
    seeds = [int(m.group(1)) for m in seeds if m]
    if scenario == "chaos" or seeds:
        # the faults applied (not planned): one "cut <kind>" event each
        kinds = [w.split()[1] for _, w in ev if w.startswith("cut ")]
        tot["seed"] = res["seed"] = seeds[0] if seeds else None
        tot["faults"] = {kd: kinds.count(kd) for kd in CHAOS_KINDS}
        tot["dup_bound"] = len(kinds) * INFLIGHT
        tot["nanomq_exits"] = sum(1 for _, w in ev if w.startswith("nanomq exited by itself"))
        # each lost message with the fault nearest to its ack: (start, end, kind)
        windows, start = [], None
        for t, w in ev:
            if w.startswith("cut "):
                start = (t, w.split()[1])
            elif w == "restore" and start:
                windows.append((start[0], t, start[1]))
                start = None
        got = {(r[2], int(r[3])) for r in recv}
        lost = sorted(acked - got, key=lambda m: acks.get(m, 0))
        detail = []
        for m in lost[:100]:
            ta = acks.get(m)
            near = min(windows, key=lambda x: 0 if x[0] <= ta <= x[1]
                       else min(abs(ta - x[0]), abs(ta - x[1])), default=None)
            detail.append(dict(
                topic=m[0], seq=m[1], qos=TOPICS.get(m[0], (None,))[0],
                published=published.get(m), acked=ta,
                fault=None if near is None else dict(
                    kind=near[2], cut=near[0], restore=near[1],
                    ack_minus_cut_s=round(ta - near[0], 3),
                    ack_minus_restore_s=round(ta - near[1], 3))))
        tot["lost_detail"] = detail
    res["total"] = tot
    return res


def cmd_analyse(args):
    for d in args.dirs:
        for root, _, files in os.walk(d):
            if "result.json" in files and "events.log" in files:
                old = json.load(open(os.path.join(root, "result.json")))
                res = analyse(root, old["label"], old["scenario"])
                with open(os.path.join(root, "result.json"), "w") as f:
                    json.dump(res, f, indent=1)


def cmd_report(args):
    rows = []
    for d in args.dirs:
        for root, _, files in os.walk(d):
            if "result.json" in files:
                rows.append(json.load(open(os.path.join(root, "result.json"))))
    order = {s: i for i, s in enumerate(SCENARIOS)}
    rows.sort(key=lambda r: (order.get(r["scenario"], 9), r["label"]))
    print("| scenario | build | sent (acked by NanoMQ) | received | lost | duplicated | "
          "out of order at the subscriber | out of order as mosquitto took them in | "
          "restore to first / last backlog msg (s) | 'ctx_msgs is lost' log lines |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["total"]
        drain = "-" if t["drain_s"] is None else f"{t.get('first_backlog_s')} / {t['drain_s']}"
        remote = t.get("out_of_order_at_remote")
        print(f"| {r['scenario']} | {r['label']} | {t['sent']} | {t['received']} | {t['lost']} | "
              f"{t['duplicated']} | {t['out_of_order']} | {'-' if remote is None else remote} | "
              f"{drain} | {t['ctx_msgs_lost_lines']} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--nanomq", help="the nanomq binary to test")
    r.add_argument("--image", help="or: a container image whose nanomq to test")
    r.add_argument("--engine", default="podman", help="container engine for --image")
    r.add_argument("--label", required=True, help="e.g. stock or patched")
    r.add_argument("--scenario", required=True, choices=SCENARIOS)
    r.add_argument("--out", required=True)
    r.add_argument("--scale", type=float, default=1.0, help="time scale (1 = the full timeline)")
    r.add_argument("--prefix", default="nmqsc", help="namespace name prefix")
    r.add_argument("--log-level", default="warn")
    r.add_argument("--kill-at", type=float, help="kill: SIGKILL this many seconds into the "
                   "outage (of the unscaled 100 s; scaled with --scale); default 50")
    r.add_argument("--rate-scale", type=float, default=1.0,
                   help="publisher rates times this (20: 180 msg/s instead of 9)")
    r.add_argument("--ack-after-commit", action="store_true",
                   help="bridges.mqtt.cache.ack_after_commit = true (issue 13)")
    r.add_argument("--pub-v5", action="store_true",
                   help="the publisher speaks MQTT 5 (PUBACK/PUBREC reason codes: F lines)")
    r.add_argument("--two-bridges", action="store_true",
                   help="a second bridge forwards test1..test5 to b/test1..b/test5")
    r.add_argument("--mosquitto", action="append", default=[],
                   help="an extra mosquitto.conf line, e.g. 'max_inflight_messages 0'")
    r.add_argument("--bridge", action="append", default=[],
                   help="an extra line in the bridge block, e.g. 'connect_timeout = 0s'")
    r.add_argument("--restart-nanomq", help="kill, kill-released, takeover: restart with this binary "
                   "instead (e.g. a stock run taken over by a patched binary)")
    r.add_argument("--qos0", action="store_true",
                   help="also publish and forward topic test0 at QoS 0 (1 msg/s)")
    r.add_argument("--retry-qos-0", default="true", choices=("true", "false"),
                   help="the bridge's retry_qos_0 (default true, the reported configuration)")
    r.add_argument("--tls", action="store_true",
                   help="the bridge connects over TLS (tls+mqtt-tcp://, mosquitto listener 8883)")
    r.add_argument("--quic", action="store_true",
                   help="the bridge speaks MQTT over QUIC (mqtt-quic://) to quic_relay.py in "
                   "front of mosquitto (a nanomq built with -DNNG_ENABLE_QUIC=ON)")
    r.add_argument("--hybrid", action="store_true",
                   help="a hybrid bridge (hybrid_bridging = true): server, then hybrid_servers "
                   "in turn at every disconnect: mosquitto's TCP listeners 1883 and "
                   f"{HYBRID_PORT}, or with --quic the QUIC relay then mosquitto's 1883. NanoMQ "
                   "runs hybrid bridges only in a QUIC build (-DNNG_ENABLE_QUIC=ON); a TCP-only "
                   "build bridges to server alone")
    r.add_argument("--http", action="store_true",
                   help="enable NanoMQ's HTTP API on 127.0.0.1:8081 of its namespace")
    r.add_argument("--proto-ver", type=int, default=5, choices=(4, 5),
                   help="the bridge's MQTT version (5, the reported configuration; 4: 3.1.1)")
    r.add_argument("--remote-bin", default="mosquitto",
                   help="the remote broker's binary (e.g. a mosquitto 2.0.20 that keeps order)")
    r.add_argument("--drain-bound", type=float, default=0,
                   help="after the publisher: wait until every acked message was received, at "
                   "most this many seconds (0: the timeline's fixed drain)")
    r.add_argument("--seed", type=int, help="chaos: the schedule's seed (default: drawn at "
                   "random, printed in events.log and result.json)")
    r.add_argument("--chaos-seconds", type=float, default=180,
                   help="chaos: how long the publisher runs under the schedule (default 180)")
    r.add_argument("--big-topic", help="every --big-every-th message of this topic is "
                   "--big-size bytes (oversized: a remote with a smaller max_packet_size)")
    r.add_argument("--big-every", type=int, default=10)
    r.add_argument("--big-size", type=int, default=2000)
    r.add_argument("--retain-topic", help="every --retain-every-th message of this topic is "
                   "published with RETAIN (retain-off: a remote with retain_available false)")
    r.add_argument("--retain-every", type=int, default=10)
    r.add_argument("--acl-deny", action="append", default=[],
                   help="mosquitto denies the bridge (username nmqbridge, acl_file) this topic: "
                   "PUBACK/PUBREC 0x87 (refused-topic; repeatable)")
    r.add_argument("--topics", help="publish only these topics (comma-separated, of test1..test5)")
    r.add_argument("--timeline", help="NORMAL,OUTAGE,AFTER,DRAIN seconds (instead of --scale's "
                   "10,100,20,60 x scale)")
    r.add_argument("--probe-rest", action="store_true",
                   help="GET the bridge's REST object and Prometheus text late in the outage "
                   "and after the drain (implies --http)")
    px = sub.add_parser("proxy")
    px.add_argument("--port", type=int, required=True)
    px.add_argument("--to", required=True)
    px.add_argument("--delay", type=float, required=True)
    px.add_argument("--start", type=float, required=True)
    px.add_argument("--end", type=float, required=True)
    px.add_argument("--out", required=True)
    px.add_argument("--duration", type=float, required=True)
    px.add_argument("--puback-first", action="store_true")
    px.add_argument("--start-file", help="also active from when this file exists")
    px.add_argument("--end-file", help="--drop-pubrel: until this file exists")
    px.add_argument("--drop-pubrel", action="store_true",
                    help="drop the PUBRELs from NanoMQ (session-lost)")
    px.add_argument("--period", type=float, default=0, help="only the first --burst seconds "
                    "of every --period seconds (0: the whole window)")
    px.add_argument("--burst", type=float, default=0)
    px.add_argument("--trace", help="log every packet both ways (time, connection, type, id)")
    rl = sub.add_parser("reload", help="reload a bridge with its own configuration (REST)")
    rl.add_argument("--url", required=True)
    rl.add_argument("--server", required=True)
    rl.add_argument("--proto-ver", type=int, default=5)
    gt = sub.add_parser("get")
    gt.add_argument("--url", required=True)
    gt.add_argument("--out", required=True)
    bu = sub.add_parser("burst")
    bu.add_argument("--host", required=True)
    bu.add_argument("--port", type=int, required=True)
    bu.add_argument("--rate", type=float, required=True)
    bu.add_argument("--duration", type=float, required=True)
    p = sub.add_parser("pub")
    s = sub.add_parser("sub")
    for x in (p, s):
        x.add_argument("--host", required=True)
        x.add_argument("--port", type=int, required=True)
        x.add_argument("--out", required=True)
        x.add_argument("--duration", type=float, required=True)
    p.add_argument("--linger", type=float, default=5)
    s.add_argument("--session-expiry", type=int, default=0,
                   help="a persistent session: Session Expiry Interval (s), clean start once")
    p.add_argument("--rate-scale", type=float, default=1.0)
    p.add_argument("--big-topic")
    p.add_argument("--big-every", type=int, default=10)
    p.add_argument("--big-size", type=int, default=2000)
    p.add_argument("--retain-topic")
    p.add_argument("--retain-every", type=int, default=10)
    rep = sub.add_parser("report")
    rep.add_argument("dirs", nargs="+")
    ana = sub.add_parser("analyse", help="recompute result.json from the logs")
    ana.add_argument("dirs", nargs="+")
    args = ap.parse_args()
    {"run": cmd_run, "pub": role_pub, "sub": role_sub, "report": cmd_report,
     "analyse": cmd_analyse, "proxy": role_proxy, "reload": role_reload,
     "burst": role_burst, "get": role_get}[args.cmd](args)


if __name__ == "__main__":
    main()
