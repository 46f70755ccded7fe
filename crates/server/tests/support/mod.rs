//! Test harness shared by the store tests: temporary directories and a real
//! `redis-server` on a free loopback port.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory whose name starts with `tag`.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "tally-{tag}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Where the Debian package installs the server. `TALLY_REDIS_SERVER` overrides it.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

fn redis_server_binary() -> PathBuf {
    let p = std::env::var_os("TALLY_REDIS_SERVER").map_or_else(|| PathBuf::from(REDIS_SERVER), PathBuf::from);
    if p.is_file() {
        return p;
    }
    panic!(
        "redis-server not found at {}: the Redis store tests need a real Redis. \
         Install it with `sudo apt-get install redis-server` (what `cargo xtask test` does), \
         or point TALLY_REDIS_SERVER at a redis-server binary. These tests never skip silently.",
        p.display()
    );
}

/// A `redis-server` child process on a free 127.0.0.1 port, with no persistence,
/// killed (and its directory removed) on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`. Panics with the
    /// server's output if it does not come up.
    pub fn start() -> RedisServer {
        let bin = redis_server_binary();
        let mut last_error = String::new();
        // The free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port();
            let dir = TempDir::new("redis");
            let log = dir.join("redis.log");
            let child = Command::new(&bin)
                .arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--protected-mode", "yes"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let mut server = RedisServer { child, port, _dir: dir };
            match server.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return server,
                Err(e) => {
                    let out = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = format!("{e}\n--- redis.log ---\n{out}");
                    // drop kills it; try another port
                }
            }
        }
        panic!("redis-server ({}) did not come up: {last_error}", bin.display());
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server exited with {status}"));
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no PONG on port {} within {timeout:?}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| panic!("probing a free port: {e}"));
    l.local_addr().unwrap_or_else(|e| panic!("probing a free port: {e}")).port()
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"+PONG"),
        Err(_) => false,
    }
}
