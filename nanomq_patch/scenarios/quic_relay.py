#!/usr/bin/env python3
"""A QUIC remote for the outage scenarios: MQTT over QUIC in, MQTT over TCP out.

    quic_relay.py --listen 10.99.1.2:14567 --to 127.0.0.1:1883 [--duration S] [--log FILE]

NanoMQ's QUIC bridge (server = "mqtt-quic://HOST:PORT", a build with -DNNG_ENABLE_QUIC=ON)
dials with ALPN "mqtt" (NanoNNG src/supplemental/quic/msquic_dial.c, quic_alpn) and uses
several bidirectional streams of one QUIC connection: the first one it opens (the "main"
stream: CONNECT, PINGREQ, PUBACK, ...) and four sub streams; its transport
(src/mqtt/transport/quic/mqtt_quic.c, mqtt_quictran_pipe_send_start) puts every PUBLISH on
sub stream 3 or 4 at random and every SUBSCRIBE on sub stream 1 or 2. It reads on all of
them. This relay gives each QUIC connection one TCP connection to the broker (--to: mosquitto
2.0.20 in the scenarios): what arrives on any stream is cut at MQTT packet boundaries and each
whole packet is written to the TCP connection in the order it was completed; what the broker
sends goes back packet by packet (one QUIC send each) on the stream that carried the CONNECT
(--ack-stream main, the default), or (--ack-stream same) each ack on the stream of the packet
it answers (PUBACK and PUBREC on the PUBLISH's, PUBCOMP on the PUBREL's, SUBACK on the
SUBSCRIBE's) and the rest on the CONNECT's. Either way NanoNNG 0.25.5's QUIC client now and
then sends no PUBREL for a PUBREC (its QoS 2 message then waits for cancel_timeout and is
dropped: stock behaviour, seen on a healthy link with either; with quic_qos_priority = true,
QoS 1/2 PUBLISH packets on the main stream, it was not seen).
Either side closing closes the other.
The order of packets from different streams is the order in which their last byte reached the
relay (QUIC orders bytes within a stream only).

The certificate is self-signed, made at start (the bridge does not verify it by default).
Every loop is bounded: --duration ends the relay (default 3600 s); SIGTERM/SIGINT end it at
once, closing every connection. Its log (--log, else stderr) has one line per connection
event and, at the end, "relay: N connections, M packets up, K bytes down".
--trace FILE logs every packet up ("time conn stream type [topic packet-id [seq N]]", seq: the
scenarios' payload "topic|seq|time") and down ("time conn down type [packet-id]"): which
stream carried which PUBLISH, in which order they reached the broker.
Needs aioquic (pip install aioquic).
"""
import argparse
import asyncio
import datetime
import ipaddress
import os
import re
import signal
import sys
import tempfile
import time

try:
    from aioquic.asyncio import QuicConnectionProtocol, serve
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import (ConnectionTerminated, HandshakeCompleted, StreamDataReceived,
                                     StreamReset)
except ImportError:
    sys.exit("quic_relay.py: aioquic is missing: pip install aioquic")

ALPN = "mqtt"
MAX_PACKET = 268435455 + 5  # MQTT's largest remaining length plus the fixed header


def self_signed(cn, where):
    """A key and a self-signed certificate for cn in directory where: (certfile, keyfile)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        alt = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(cn))])
    except ValueError:
        alt = x509.SubjectAlternativeName([x509.DNSName(cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(alt, critical=False).sign(key, hashes.SHA256()))
    certfile, keyfile = os.path.join(where, "relay.crt"), os.path.join(where, "relay.key")
    with open(certfile, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return certfile, keyfile


def split_packets(buf):
    """Whole MQTT packets at the start of buf: (packets, rest). Raises ValueError on a
    malformed remaining length."""
    out, i = [], 0
    while True:
        if len(buf) - i < 2:
            break
        n, mult, j = 0, 1, i + 1
        while True:
            if j >= len(buf):
                return out, buf[i:]  # the length is not complete yet
            b = buf[j]
            n += (b & 0x7F) * mult
            j += 1
            if not b & 0x80:
                break
            mult *= 128
            if j - i > 5:
                raise ValueError("malformed remaining length")
        end = j + n
        if end > len(buf):
            break
        out.append(bytes(buf[i:end]))
        i = end
    return out, buf[i:]


class Stats:
    conns = 0
    up = 0
    down = 0


def log(msg):
    print(f"{time.time():.3f} {msg}", file=LOG, flush=True)


LOG = sys.stderr
TRACE = None
TYPES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ",
         13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}


def packet_id(p):
    """The packet identifier of a PUBLISH (QoS 1, 2), PUBACK..PUBCOMP, (UN)SUBSCRIBE and
    (UN)SUBACK, else None."""
    t = p[0] >> 4
    i = 1
    while p[i] & 0x80:
        i += 1
    i += 1  # the variable header
    if t == 3:
        if not (p[0] >> 1) & 3:
            return None
        n = int.from_bytes(p[i:i + 2], "big")
        i += 2 + n
    elif t not in (4, 5, 6, 7, 8, 9, 10, 11):
        return None
    return int.from_bytes(p[i:i + 2], "big") if len(p) >= i + 2 else None


# where an ack from the broker goes: the stream of the packet it answers
ANSWERS = {4: 3, 5: 3, 7: 6, 9: 8, 11: 10}  # PUBACK, PUBREC: PUBLISH; PUBCOMP: PUBREL; ...


def describe(p):
    """'TYPE' or, for a PUBLISH, 'PUBLISH topic packet-id' (0 at QoS 0), for an ack 'TYPE id'."""
    t = p[0] >> 4
    name = TYPES.get(t, str(t))
    if t in (4, 5, 6, 7) and len(p) >= 4:
        return f"{name} {int.from_bytes(p[2:4], 'big')}"
    if t != 3:
        return name
    i = 1
    while p[i] & 0x80:
        i += 1
    i += 1
    n = int.from_bytes(p[i:i + 2], "big")
    topic = p[i + 2:i + 2 + n].decode(errors="replace")
    pid = int.from_bytes(p[i + 2 + n:i + 4 + n], "big") if (p[0] >> 1) & 3 else 0
    m = re.search(rb"\|(\d+)\|", p[i + 2 + n:])  # the scenarios' payload "topic|seq|time"
    return f"{name} {topic} {pid}" + (f" seq {int(m.group(1))}" if m else "")


class Relay(QuicConnectionProtocol):
    target = ("127.0.0.1", 1883)
    same = False  # --ack-stream same
    live = set()

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        Stats.conns += 1
        self.n = Stats.conns
        self.bufs = {}  # stream id: bytes not yet a whole packet
        self.reply = None  # the stream that carried the CONNECT
        self.ids = {}  # (packet type, packet id): the stream it came on
        self.pending = []  # packets before the TCP connection is up
        self.writer = None
        self.reader_task = None
        self.closed = False
        Relay.live.add(self)

    def quic_event_received(self, event):
        if isinstance(event, HandshakeCompleted):
            log(f"conn {self.n}: handshake done (alpn {event.alpn_protocol})")
            self.reader_task = asyncio.ensure_future(self.tcp())
        elif isinstance(event, StreamDataReceived):
            buf = self.bufs.get(event.stream_id, b"") + event.data
            try:
                pkts, rest = split_packets(buf)
            except ValueError as e:
                log(f"conn {self.n}: stream {event.stream_id}: {e}: closing")
                self.shut()
                return
            self.bufs[event.stream_id] = rest
            for p in pkts:
                if self.reply is None and p[0] >> 4 == 1:  # CONNECT
                    self.reply = event.stream_id
                    log(f"conn {self.n}: CONNECT on stream {event.stream_id}")
                Stats.up += 1
                pid = packet_id(p)
                if pid is not None:
                    self.ids[(p[0] >> 4, pid)] = event.stream_id
                if TRACE:
                    print(f"{time.time():.3f} {self.n} {event.stream_id} {describe(p)}",
                          file=TRACE)
                if self.writer is None:
                    self.pending.append(p)
                else:
                    self.writer.write(p)
        elif isinstance(event, StreamReset):
            log(f"conn {self.n}: stream {event.stream_id} reset ({event.error_code})")
            self.bufs.pop(event.stream_id, None)
        elif isinstance(event, ConnectionTerminated):
            log(f"conn {self.n}: QUIC connection ended ({event.error_code} "
                f"{event.reason_phrase!r})")
            self.shut(quic=False)

    async def tcp(self):
        try:
            reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(*Relay.target), timeout=5)
        except (OSError, asyncio.TimeoutError) as e:
            log(f"conn {self.n}: broker {Relay.target} unreachable: {e}")
            self.shut()
            return
        log(f"conn {self.n}: TCP to {Relay.target} up")
        for p in self.pending:
            self.writer.write(p)
        self.pending = []
        rest = b""
        try:
            while not self.closed:
                data = await reader.read(65536)
                if not data:
                    log(f"conn {self.n}: the broker closed the TCP connection")
                    break
                if self.reply is None:
                    log(f"conn {self.n}: {len(data)} bytes from the broker before a CONNECT")
                    break
                Stats.down += len(data)
                pkts, rest = split_packets(rest + data)
                for p in pkts:
                    if TRACE:
                        print(f"{time.time():.3f} {self.n} down {describe(p)}", file=TRACE)
                    t, pid = p[0] >> 4, packet_id(p)
                    sid = self.ids.pop((ANSWERS.get(t), pid), self.reply)
                    if not Relay.same:
                        sid = self.reply
                    self._quic.send_stream_data(sid, p)
                    self.transmit()
        except (OSError, ValueError, asyncio.CancelledError):
            pass
        self.shut()

    def shut(self, quic=True):
        if self.closed:
            return
        self.closed = True
        Relay.live.discard(self)
        if self.writer is not None:
            self.writer.close()
        if self.reader_task is not None and self.reader_task is not asyncio.current_task():
            self.reader_task.cancel()
        if quic:
            self._quic.close(error_code=0, reason_phrase="relay closes")
            self.transmit()
        log(f"conn {self.n}: closed")


async def main_async(args):
    host, port = args.listen.rsplit(":", 1)
    thost, tport = args.to.rsplit(":", 1)
    Relay.target = (thost, int(tport))
    Relay.same = args.ack_stream == "same"
    conf = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                             idle_timeout=args.idle_timeout)
    with tempfile.TemporaryDirectory(prefix="quic-relay.") as d:
        conf.load_cert_chain(*self_signed(host, d))
    server = await serve(host, int(port), configuration=conf, create_protocol=Relay)
    log(f"relay: listening on {host}:{port} (QUIC, ALPN {ALPN}) -> TCP {args.to}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except asyncio.TimeoutError:
        log("relay: --duration reached")
    for r in list(Relay.live):
        r.shut()
    await asyncio.sleep(0.1)  # the CONNECTION_CLOSE frames go out
    server.close()
    log(f"relay: {Stats.conns} connections, {Stats.up} packets up, {Stats.down} bytes down")


def main():
    global LOG, TRACE
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True, help="HOST:PORT (UDP) for the QUIC side")
    ap.add_argument("--to", default="127.0.0.1:1883", help="the broker, HOST:PORT (TCP)")
    ap.add_argument("--duration", type=float, default=3600)
    ap.add_argument("--idle-timeout", type=float, default=10,
                    help="QUIC idle timeout of the relay's side, seconds")
    ap.add_argument("--ack-stream", choices=("main", "same"), default="main",
                    help="where the broker's acks go: the CONNECT's stream, or the stream of "
                    "the packet each answers")
    ap.add_argument("--log")
    ap.add_argument("--trace", help="log every packet to this file")
    args = ap.parse_args()
    if args.log:
        LOG = open(args.log, "a", buffering=1)
    if args.trace:
        TRACE = open(args.trace, "a", buffering=1)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
