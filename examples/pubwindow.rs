//! A native MQTT QoS 1 publisher with an in-flight window, for
//! `nanomq_patch/scenarios/ackbench.py --native` (issue 21 item 4).
//!
//! ackbench's paho publisher (Python) costs about 100 us of CPU per message on this machine,
//! twice what NanoMQ spends: its throughput then follows the CPU the Python process gets and
//! how the acks happen to arrive, more than NanoMQ's cost. This one costs a few microseconds per
//! message, so the broker is what the window-bound run measures.
//!
//! ```sh
//! cargo build --release --example pubwindow
//! target/release/examples/pubwindow 127.0.0.1:1883 20000 32 [PAYLOAD_BYTES] [TOPIC] [--v311]
//! ```
//! MQTT 5 unless `--v311`. Prints `acked <n> secs <s>` and exits 0 when every message was
//! acknowledged with success, 1 otherwise (a refusal, a closed connection, 60 s without an
//! ack).

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Appends MQTT's variable byte integer.
fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    varint(&mut p, body.len());
    p.extend_from_slice(body);
    p
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Reads one packet: (first byte, body).
fn read_packet(r: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    let first = b[0];
    let (mut len, mut shift) = (0usize, 0u32);
    loop {
        r.read_exact(&mut b)?;
        len |= ((b[0] & 0x7f) as usize) << shift;
        if b[0] & 0x80 == 0 || shift >= 21 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((first, body))
}

fn fail(msg: &str) -> ! {
    eprintln!("pubwindow: {msg}");
    std::process::exit(1)
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let v311 = args.iter().any(|a| a == "--v311");
    args.retain(|a| a != "--v311");
    if args.len() < 4 {
        fail("usage: pubwindow HOST:PORT MESSAGES WINDOW [PAYLOAD_BYTES] [TOPIC] [--v311]");
    }
    let n: u64 = args[2]
        .parse()
        .unwrap_or_else(|_| fail("MESSAGES: a number"));
    let window: u64 = args[3].parse().unwrap_or_else(|_| fail("WINDOW: a number"));
    let size: usize = args.get(4).map_or(100, |s| s.parse().unwrap_or(100));
    let topic = args.get(5).map_or("tp", |s| s.as_str()).as_bytes().to_vec();
    if window == 0 || window > 65535 {
        fail("WINDOW: 1 to 65535");
    }

    let mut sock = TcpStream::connect(&args[1]).unwrap_or_else(|e| fail(&e.to_string()));
    sock.set_nodelay(true).ok();
    sock.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut connect = Vec::new();
    string(&mut connect, b"MQTT");
    if v311 {
        connect.extend_from_slice(&[4, 0x02, 0, 60]); // 3.1.1, clean session, keepalive 60
    } else {
        connect.extend_from_slice(&[5, 0x02, 0, 60, 0]); // 5, clean start, no properties
    }
    string(
        &mut connect,
        format!("pubwindow-{}", std::process::id()).as_bytes(),
    );
    sock.write_all(&packet(0x10, &connect))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut reader = BufReader::new(sock.try_clone().unwrap_or_else(|e| fail(&e.to_string())));
    match read_packet(&mut reader) {
        Ok((0x20, b)) if b.len() >= 2 && b[1] == 0 => {}
        Ok((t, b)) => fail(&format!("no CONNACK with success: type {t:#x} {b:?}")),
        Err(e) => fail(&e.to_string()),
    }

    // (in flight, acked, failed)
    let st = Arc::new((Mutex::new((0u64, 0u64, false)), Condvar::new()));
    let st2 = st.clone();
    let acks = std::thread::spawn(move || {
        let (m, cv) = &*st2;
        loop {
            let res = read_packet(&mut reader);
            let mut g = m.lock().unwrap();
            match res {
                Ok((first, body)) if first >> 4 == 4 => {
                    // PUBACK: a reason code other than success (0) or no matching
                    // subscribers (0x10) is a refusal
                    if body.len() >= 3 && body[2] != 0 && body[2] != 0x10 {
                        g.2 = true;
                    }
                    g.0 = g.0.saturating_sub(1);
                    g.1 += 1;
                }
                Ok(_) => continue,
                Err(_) => g.2 = true,
            }
            let done = g.1 >= n || g.2;
            cv.notify_all();
            if done {
                return;
            }
        }
    });

    let payload = vec![b'x'; size];
    let start = Instant::now();
    let mut pid: u16 = 0;
    let (m, cv) = &*st;
    for _ in 0..n {
        {
            let mut g = m.lock().unwrap();
            while g.0 >= window && !g.2 {
                g = cv.wait(g).unwrap();
            }
            if g.2 {
                break;
            }
            g.0 += 1;
        }
        pid = if pid == u16::MAX { 1 } else { pid + 1 };
        let mut body = Vec::with_capacity(topic.len() + size + 5);
        string(&mut body, &topic);
        body.extend_from_slice(&pid.to_be_bytes());
        if !v311 {
            body.push(0); // no properties
        }
        body.extend_from_slice(&payload);
        if let Err(e) = sock.write_all(&packet(0x32, &body)) {
            fail(&e.to_string());
        }
    }
    let _ = acks.join();
    let secs = start.elapsed().as_secs_f64();
    let g = m.lock().unwrap();
    println!("acked {} secs {secs:.6}", g.1);
    let _ = sock.write_all(&[0xe0, 0]); // DISCONNECT
    std::process::exit(if g.1 == n && !g.2 { 0 } else { 1 });
}
