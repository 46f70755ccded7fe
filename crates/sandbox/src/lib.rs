//! # tally-sandbox
//!
//! Local HTTP stand-ins for the destinations Tally delivers to. Each one
//! checks a request the way the real API does (path, query, auth, required
//! fields, formats, limits), answers the way the real API answers, and records
//! what it accepted, what it deduplicated and what it dropped, with the reason.
//! Tests and the demo shop point `base_url`s at them; nothing leaves loopback.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let sandbox = tally_sandbox::Sandbox::new();
//! let server = sandbox.serve("127.0.0.1:0").await?;
//! let ga4_base = format!("{}/ga4", server.base_url);
//! // … point the tracker at ga4_base, send, then:
//! assert_eq!(sandbox.ga4.purchases().len(), 0);
//! # Ok(()) }
//! ```

pub mod fault;
pub mod ga4;

use std::net::SocketAddr;

use axum::Router;

pub use fault::Mode;
pub use ga4::Ga4Sandbox;

/// Every sandbox destination, sharing one HTTP server.
#[derive(Clone, Default)]
pub struct Sandbox {
    /// GA4 Measurement Protocol, mounted at `/ga4`.
    pub ga4: Ga4Sandbox,
}

/// A running sandbox server.
pub struct RunningSandbox {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sandbox {
    /// Fresh sandboxes with nothing recorded.
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// The routes of every destination, to mount into another app.
    pub fn router(&self) -> Router {
        Router::new().nest("/ga4", self.ga4.router())
    }

    /// Serves on `addr` (use port 0 for a free one) until dropped.
    pub async fn serve(&self, addr: &str) -> std::io::Result<RunningSandbox> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RunningSandbox {
            base_url: format!("http://{addr}"),
            addr,
            task,
        })
    }
}
