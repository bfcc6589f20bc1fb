//! A real mosquitto (the Debian package) on 127.0.0.1, started by the test itself.
//!
//! Its config, persistence file and log live in a temp dir of its own. It is ready when it logs
//! "running" (read from its stderr, unbuffered, no polling of the port); a port taken by someone else in
//! the meantime is detected from its log and another port is tried. Stopped with SIGTERM (the
//! persistence file is written, sessions survive a restart), killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released: another process may take it before it is
/// used; [`Mosquitto::start`] retries when that happens).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The mosquitto binary; panics (the test fails loudly) when it is not installed.
pub fn mosquitto_bin() -> &'static str {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mosquitto is not installed (apt-get install mosquitto; scripts/test.sh does it)")
}

/// Broker settings.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// `max_inflight_messages`: the Receive Maximum mosquitto announces in CONNACK.
    pub receive_maximum: u16,
    /// `persistence true` (sessions and queued messages survive [`Mosquitto::restart`]).
    pub persistence: bool,
    /// More config lines, appended as they are.
    pub extra: String,
}

impl Default for MosquittoOptions {
    fn default() -> Self {
        MosquittoOptions {
            receive_maximum: 64,
            persistence: true,
            extra: String::new(),
        }
    }
}

/// A mosquitto broker on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    opts: MosquittoOptions,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Every log line of every run of this broker (also in `<dir>/mosquitto.log`).
    log: Arc<Mutex<Vec<String>>>,
}

impl Mosquitto {
    /// Starts a broker with the default options (Receive Maximum 64, persistence on).
    pub fn start() -> Mosquitto {
        Self::start_with(MosquittoOptions::default())
    }

    pub fn start_with(opts: MosquittoOptions) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        // Started as root, mosquitto drops to the `mosquitto` user: it must be able to write
        // its persistence file here, or sessions do not survive a restart.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut m = Mosquitto {
            port: 0,
            opts,
            dir,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
        };
        for attempt in 1..=5 {
            m.port = free_port();
            match m.spawn() {
                Ok(()) => return m,
                Err(e) if e.contains("Address already in use") && attempt < 5 => continue,
                Err(e) => panic!("mosquitto did not start: {e}"),
            }
        }
        unreachable!()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The temp dir holding the config, the persistence file and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every log line so far (all runs).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// Starts the process and waits (bounded) for its "running" log line.
    fn spawn(&mut self) -> Result<(), String> {
        let o = &self.opts;
        std::fs::write(
            self.conf_path(),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence {pers}\n\
                 persistence_location {dir}/\nautosave_interval 1\nmax_queued_messages 0\n\
                 max_inflight_messages {rm}\nlog_dest stderr\nlog_timestamp_format %H:%M:%S\n{extra}\n",
                port = self.port,
                pers = o.persistence,
                dir = self.dir.path().display(),
                rm = o.receive_maximum,
                extra = o.extra,
            ),
        )
        .unwrap();
        let mut child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", mosquitto_bin()))?;
        // One reader thread per stream keeps the pipes drained; lines go to the log, the file
        // and, until ready, to this function.
        let (tx, rx) = mpsc::channel::<String>();
        let file = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("mosquitto.log"))
                .unwrap(),
        ));
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let (tx, log, file) = (tx.clone(), Arc::clone(&self.log), Arc::clone(&file));
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = writeln!(file.lock().unwrap(), "{line}");
                    let _ = tx.send(line.clone());
                    log.lock().unwrap().push(line);
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(" running") => break,
                Ok(line) => seen.push(line),
                // Both pipes closed: the process is gone.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    return Err(seen.join("\n"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("no \"running\" line in 10 s:\n{}", seen.join("\n")));
                }
            }
        }
        self.child = Some(child);
        Ok(())
    }

    /// Graceful stop (SIGTERM: the persistence file is written), then a start on the same port.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("mosquitto did not restart on port {}: {e}", self.port);
        }
    }

    /// Graceful stop: SIGTERM, then waits for the process (bounded: SIGKILL after 10 s).
    pub fn stop(&mut self) {
        self.signal_and_wait(15);
    }

    /// SIGKILL: whatever mosquitto had not saved is gone.
    pub fn kill(&mut self) {
        self.signal_and_wait(9);
    }

    fn signal_and_wait(&mut self, sig: i32) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let pid = c.id().to_string();
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(&pid)
            .status();
        // Wait for the exit on a thread, bounded: SIGKILL after 10 s.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = c.wait();
            let _ = tx.send(());
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = Command::new("kill").arg("-9").arg(&pid).status();
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
