//! Test harness shared by the integration tests: temporary directories, a real
//! `redis-server` on a free loopback port, and the fixtures the destination
//! tests share (a tracker against a local sandbox, quick retries, envelopes
//! and purchases).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tally_core::{Amount, ContextEnvelope, Currency};
use tally_sandbox::{RunningSandbox, Sandbox};
use tally_server::RetryPolicy;
use tally_server::{GoogleAdsConfig, PurchaseInput, ServerTracker, ServerTrackerBuilder};

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
                // DEBUG SLEEP makes a slow Redis for the lane tests (loopback only).
                .args(["--enable-debug-command", "local"])
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

/// A free loopback port (probed; it may be taken again before it is bound).
pub fn free_port() -> u16 {
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

/// Retries quick enough for a test: three attempts, 10 to 50 ms apart, 5 s per request.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
    }
}

/// The local sandbox (every destination's fake), serving on a free loopback port.
pub async fn sandbox() -> (Sandbox, RunningSandbox) {
    let sandbox = Sandbox::new();
    let run = sandbox.serve("127.0.0.1:0").await.unwrap_or_else(|e| panic!("serving the sandbox: {e}"));
    (sandbox, run)
}

/// A sandbox and a tracker against it: `configure` adds the destinations (it
/// gets the running sandbox for their URLs), with `retry` as the retry policy.
pub async fn tracker_on_sandbox(
    retry: RetryPolicy,
    configure: impl FnOnce(&RunningSandbox, ServerTrackerBuilder) -> ServerTrackerBuilder,
) -> (Sandbox, RunningSandbox, ServerTracker) {
    let (sandbox, run) = sandbox().await;
    let tracker = configure(&run, ServerTracker::builder())
        .retry(retry)
        .build()
        .unwrap_or_else(|e| panic!("building the tracker: {e}"));
    (sandbox, run, tracker)
}

/// The stand-in's Google Ads account (customer 123-456-7890, its OAuth
/// client, Data Manager, token and Google Ads API URLs on `run`): each test
/// adds the conversion actions and options it needs.
pub fn google_ads_on(run: &RunningSandbox) -> GoogleAdsConfig {
    use tally_sandbox::google_ads::{CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
    GoogleAdsConfig::new("123-456-7890", CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        .data_manager_url(run.url("/data-manager"))
        .token_url(run.url("/data-manager/token"))
        .base_url(run.url("/google-ads"))
}

/// A context envelope from its JSON.
pub fn envelope(json: &str) -> ContextEnvelope {
    ContextEnvelope::parse_json(json).unwrap_or_else(|e| panic!("envelope {json}: {e}"))
}

/// A purchase `txn` of `value` (decimal text, `"30.03"`) in `currency` (`"USD"`).
pub fn purchase(txn: &str, value: &str, currency: &str) -> PurchaseInput {
    PurchaseInput::new(txn, amount(value), Currency::parse(currency).unwrap_or_else(|e| panic!("{currency}: {e}")))
}

/// An amount from decimal text.
pub fn amount(value: &str) -> Amount {
    Amount::parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// A `tally serve --config <file>` child process (the crate's own binary),
/// killed on drop.
pub struct TallyServe(Child);

impl TallyServe {
    /// Starts `tally serve` with `config` and waits until `base_url`/healthz answers.
    pub async fn start(config: &Path, base_url: &str) -> TallyServe {
        let child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tally serve: {e}"));
        TallyServe(child).healthy_at(base_url).await
    }

    /// [`TallyServe::start`] with `dir` as the working directory; also gives
    /// the lines it prints on standard output.
    pub async fn start_in(
        config: &Path,
        dir: &Path,
        base_url: &str,
    ) -> (TallyServe, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tally serve: {e}"));
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        (TallyServe(child).healthy_at(base_url).await, rx)
    }

    async fn healthy_at(self, base_url: &str) -> TallyServe {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !healthy(base_url).await {
            assert!(Instant::now() < deadline, "tally serve did not become healthy at {base_url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self
    }
}

impl Drop for TallyServe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 20 ms for up to `secs` seconds; whether it came true.
pub async fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Whether `GET base_url/healthz` answers 2xx.
pub async fn healthy(base_url: &str) -> bool {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build();
    match http {
        Ok(h) => h.get(format!("{base_url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    }
}
