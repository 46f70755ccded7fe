//! Harness for the end-to-end tests: a real headless Chromium driven through
//! chromedriver (both from Debian's packages), against the demo shop served on
//! loopback. Nothing leaves the machine: Chromium runs with background
//! networking off.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A headless Chromium session; the driver process is killed on drop.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(9515)
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium profile.
    pub async fn launch() -> Browser {
        let port = free_port();
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin}: {e} (cargo xtask test installs chromium-driver)"));
        let profile = std::env::temp_dir().join(format!("tally-e2e-{port}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&profile);
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::rustls().expect("tls").capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot connect to chromedriver: {e}"),
            }
        };
        Browser { client, driver, _profile: TempDir(profile) }
    }

    /// Opens `url` and waits until the page's script set `body[data-ready]`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
        self.wait_ready().await;
    }

    /// Waits for `body[data-ready="1"]`.
    pub async fn wait_ready(&self) {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("body[data-ready='1']"))
            .await
            .expect("page did not become ready");
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Runs `script` in the page (a function body; `return` gives the value).
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.expect("execute")
    }

    /// An attribute of the element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.attr(name).await.ok().flatten()
    }

    /// Closes the session.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Starts the demo shop on a free loopback port.
pub async fn start_demo(webhook_delay_ms: u64) -> tally_demo::RunningDemo {
    let config =
        tally_demo::DemoConfig { addr: "127.0.0.1:0".into(), webhook_delay_ms, ..tally_demo::DemoConfig::default() };
    tally_demo::start(config).await.expect("demo starts")
}

/// Polls `cond` every 100 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}
