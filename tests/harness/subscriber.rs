//! A subscriber on the broker: a second MQTT 5 connection with a persistent session
//! (clean_start = false), subscribed at QoS 2, that records every message it receives. QoS 2 is
//! handled as a receiver must (a PUBLISH whose packet id awaits its PUBREL is a resend, not a
//! new message). It reconnects when the broker restarts.

use super::mqtt::{qos_num, Conn, ConnectOptions};
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet, PingReq, PubAck, PubComp, PubRec, Subscribe, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// One message received.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub topic: String,
    pub qos: u8,
    /// DUP set by the broker: a redelivery on the subscriber's own link.
    pub dup: bool,
    pub payload: Vec<u8>,
}

struct Shared {
    arrivals: Mutex<Vec<Arrival>>,
    arrived: Notify,
    connects: Mutex<u64>,
}

pub struct Subscriber {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects as `client_id`, subscribes to `test/#` at QoS 2 and returns once subscribed
    /// (bounded: panics after 10 s).
    pub async fn start(broker: SocketAddr, client_id: &str) -> Subscriber {
        Self::start_on(broker, client_id, "test/#").await
    }

    pub async fn start_on(broker: SocketAddr, client_id: &str, filter: &str) -> Subscriber {
        let shared = Arc::new(Shared {
            arrivals: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            connects: Mutex::new(0),
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(run(
            broker,
            client_id.to_string(),
            filter.to_string(),
            Arc::clone(&shared),
            ready_tx,
        ));
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("the subscriber did not get its SUBACK in 10 s")
            .expect("the subscriber task ended");
        Subscriber { shared, task }
    }

    /// Messages received so far.
    pub fn count(&self) -> usize {
        self.shared.arrivals.lock().unwrap().len()
    }

    /// A cheap handle that reads [`Subscriber::count`] from another task.
    pub fn counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let sh = Arc::clone(&self.shared);
        move || sh.arrivals.lock().unwrap().len() as u64
    }

    /// Everything received so far, in arrival order (locked: keep the guard short).
    pub fn arrivals(&self) -> MutexGuard<'_, Vec<Arrival>> {
        self.shared.arrivals.lock().unwrap()
    }

    /// Connections made (1 + reconnects).
    pub fn connects(&self) -> u64 {
        *self.shared.connects.lock().unwrap()
    }

    /// Waits (bounded) until `pred` holds on what was received; re-checked at every arrival.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Arrival]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.shared.arrived.notified();
            if pred(&self.arrivals()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                return pred(&self.arrivals());
            }
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    broker: SocketAddr,
    id: String,
    filter: String,
    sh: Arc<Shared>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    // QoS 2 packet ids received and not yet released: a PUBLISH with one of them is a resend.
    let mut awaiting_rel: HashSet<u16> = HashSet::new();
    let opts = ConnectOptions::persistent(&id, Duration::from_secs(30));
    loop {
        let Ok((mut conn, ack)) = Conn::connect_with(broker, &opts).await else {
            // The broker is down (restart): retry, paced.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        *sh.connects.lock().unwrap() += 1;
        if !ack.session_present {
            // A new session: the QoS 2 state of an old one is gone with it.
            awaiting_rel.clear();
            let mut sub = Subscribe::new(Filter::new(filter.clone(), QoS::ExactlyOnce), None);
            sub.pkid = 1;
            if conn.send(&Packet::Subscribe(sub)).await.is_err() {
                continue;
            }
        } else if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        loop {
            let p = match tokio::time::timeout(Duration::from_secs(15), conn.read()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => break,
                Err(_) => {
                    if conn.send(&Packet::PingReq(PingReq)).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let r = match p {
                Packet::SubAck(a) => {
                    assert!(
                        a.return_codes
                            .iter()
                            .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
                        "subscription refused: {a:?}"
                    );
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    Ok(())
                }
                Packet::Publish(p) => {
                    let fresh = p.qos != QoS::ExactlyOnce || awaiting_rel.insert(p.pkid);
                    if fresh {
                        sh.arrivals.lock().unwrap().push(Arrival {
                            at: Instant::now(),
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            qos: qos_num(p.qos),
                            dup: p.dup,
                            payload: p.payload.to_vec(),
                        });
                        sh.arrived.notify_waiters();
                    }
                    match p.qos {
                        QoS::AtLeastOnce => {
                            conn.send(&Packet::PubAck(PubAck::new(p.pkid, None))).await
                        }
                        QoS::ExactlyOnce => {
                            conn.send(&Packet::PubRec(PubRec::new(p.pkid, None))).await
                        }
                        QoS::AtMostOnce => Ok(()),
                    }
                }
                Packet::PubRel(r) => {
                    awaiting_rel.remove(&r.pkid);
                    conn.send(&Packet::PubComp(PubComp::new(r.pkid, None)))
                        .await
                }
                _ => Ok(()),
            };
            if r.is_err() {
                break;
            }
        }
    }
}
