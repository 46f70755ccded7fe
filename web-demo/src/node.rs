//! The JS server tracker's Node process (`--server-tracker js`): started with
//! the demo, stopped with it. It runs `web-demo/node/payment-route.mjs`, a route
//! handler that imports `pkg/server.js` (`tally-web/server`) and reports to the
//! demo's collector with the server secret; [`JsServerTracker`] calls it.
//!
//! Lifecycle: the demo waits for the route to say it listens (or for Node to
//! exit, and shows what it printed); Node's stderr goes to the demo's log; the
//! process is killed when the [`NodeProcess`] is dropped, and exits by itself
//! when its stdin closes, so it does not outlive a demo that was killed. There
//! is no fallback to the Rust path: a missing `node` is an error at start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::server_tracker::{ConfirmError, Confirmed};

/// How long Node may take to start the route.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a call to the route may take (the collector delivers inline, with retries).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The last lines of Node's stderr kept for a start error.
const STDERR_LINES: usize = 20;

/// The route handler, next to this crate's sources.
pub fn route_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node/payment-route.mjs")
}

/// Why the JS server tracker did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No `node` to run.
    #[error(
        "--server-tracker js runs tally-web/server in Node.js 18 or newer, and `{node}` was not found: \
         install Node.js (or put it on PATH), or start the demo with --server-tracker rust"
    )]
    Missing {
        /// The program looked for.
        node: String,
    },
    /// `node` exists but could not be started.
    #[error("cannot start `{node}` for the JS server tracker: {source}")]
    Spawn {
        /// The program.
        node: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Node started but the route did not come up.
    #[error("the JS server tracker ({script}) did not start: {why}{stderr}")]
    NotReady {
        /// The route script.
        script: String,
        /// What went wrong.
        why: String,
        /// What Node printed on stderr, if anything (with a leading line break).
        stderr: String,
    },
}

/// The running Node process; killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    /// Node's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Which helper of the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /purchase`: `trackPurchase`.
    Purchase,
    /// `POST /refund`: `trackRefund`.
    Refund,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Purchase => "purchase",
            Route::Refund => "refund",
        }
    }
}

/// A client of the Node route (cheap to clone).
#[derive(Clone, Debug)]
pub struct JsServerTracker {
    base_url: String,
    http: reqwest::Client,
}

impl JsServerTracker {
    /// `http://127.0.0.1:<port>`, where the route listens.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends the order's stored envelope (its text as stored; `None` without one)
    /// and the helper's input to the route; the per-destination outcomes it answers.
    pub async fn track(&self, route: Route, envelope: Option<&str>, input: Value) -> Result<Confirmed, ConfirmError> {
        let url = format!("{}/{}", self.base_url, route.path());
        let res = self
            .http
            .post(&url)
            .timeout(CALL_TIMEOUT)
            .json(&json!({ "envelope": envelope, "input": input }))
            .send()
            .await
            .map_err(|e| ConfirmError::Unreachable(format!("the JS server tracker at {url} did not answer: {e}")))?;
        let status = res.status();
        let body: Value = res.json().await.map_err(|e| {
            ConfirmError::Unreachable(format!(
                "the JS server tracker at {url} answered HTTP {status} without JSON: {e}"
            ))
        })?;
        if status.is_success() {
            return Confirmed::from_js(&body).map_err(|e| ConfirmError::Unreachable(format!("tally-web/server: {e}")));
        }
        let error = &body["error"];
        let message = format!(
            "tally-web/server ({}): {}",
            error["code"].as_str().unwrap_or("error"),
            error["message"].as_str().unwrap_or("no message")
        );
        Err(if status.as_u16() == 422 { ConfirmError::Rejected(message) } else { ConfirmError::Unreachable(message) })
    }
}

/// Starts `node <script> <server_js>` reporting to `collect_url` with `secret`,
/// and waits until the route listens.
pub async fn start(
    node: &Path,
    script: &Path,
    server_js: &Path,
    collect_url: &str,
    secret: &str,
) -> Result<(JsServerTracker, NodeProcess), NodeError> {
    let node_name = node.display().to_string();
    let mut child = Command::new(node)
        .arg(script)
        .arg(server_js)
        .env("TALLY_COLLECT_URL", collect_url)
        .env("TALLY_SERVER_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => NodeError::Missing { node: node_name.clone() },
            _ => NodeError::Spawn { node: node_name.clone(), source },
        })?;
    let stderr_tail = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr_task = child.stderr.take().map(|err| {
        let tail = stderr_tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(target: "tally_demo::node", "{line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.push(line);
                if t.len() > STDERR_LINES {
                    t.remove(0);
                }
            }
        })
    });
    let mut process = NodeProcess { child };
    let port = match process.child.stdout.take() {
        Some(out) => wait_listening(out).await,
        None => Err("no stdout".to_owned()),
    };
    match port {
        Ok(port) => {
            let tracker =
                JsServerTracker { base_url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
            tracing::info!(pid = ?process.pid(), url = %tracker.base_url, "JS server tracker (tally-web/server in Node) listening");
            Ok((tracker, process))
        }
        Err(why) => {
            let exit = tokio::time::timeout(Duration::from_secs(2), process.child.wait()).await;
            let why = match exit {
                Ok(Ok(status)) => format!("{why} (node exited: {status})"),
                _ => why,
            };
            if let Some(task) = stderr_task {
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
            let tail = stderr_tail.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
            let stderr = if tail.is_empty() { String::new() } else { format!("\nnode said:\n{tail}") };
            Err(NodeError::NotReady { script: script.display().to_string(), why, stderr })
        }
    }
}

/// Reads Node's stdout until `{"listening":<port>}`; keeps draining it afterwards.
async fn wait_listening(out: tokio::process::ChildStdout) -> Result<u16, String> {
    let mut lines = BufReader::new(out).lines();
    let first = tokio::time::timeout(START_TIMEOUT, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    let port = serde_json::from_str::<Value>(&line)
                        .ok()
                        .and_then(|v| v.get("listening").and_then(Value::as_u64))
                        .and_then(|p| u16::try_from(p).ok());
                    match port {
                        Some(p) => return Ok(p),
                        None => tracing::info!(target: "tally_demo::node", "{line}"),
                    }
                }
                Ok(None) => return Err("node ended before the route listened".to_owned()),
                Err(e) => return Err(format!("cannot read node's output: {e}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("the route did not listen within {} s", START_TIMEOUT.as_secs())));
    if first.is_ok() {
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "tally_demo::node", "{line}");
            }
        });
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_node_is_a_clear_error() {
        let e = start(Path::new("/nonexistent/node"), &route_script(), Path::new("server.js"), "http://x", "s")
            .await
            .unwrap_err();
        assert!(matches!(e, NodeError::Missing { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("Node.js 18") && text.contains("--server-tracker rust"), "{text}");
    }

    #[tokio::test]
    async fn a_route_that_cannot_start_says_what_node_printed() {
        // A real node, a tracker module that is not there: Node exits with its error.
        let e = start(Path::new("node"), &route_script(), Path::new("/nonexistent/server.js"), "http://x", "s")
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, NodeError::NotReady { .. }), "{text}");
        assert!(text.contains("node exited") && text.contains("/nonexistent/server.js"), "{text}");
    }
}
