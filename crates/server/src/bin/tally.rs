//! `tally`: the standalone first-party collector.
//!
//! ```text
//! tally serve [--config tally.toml]   run the collector (settings from the file, else TALLY_* variables)
//! tally check [--config tally.toml]   validate the configuration and exit
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tally_server::ServerTracker;
use tally_server::collector;
use tally_server::config_file::TallyConfig;
use tally_server::store::redis::RedisStore;
use tally_server::store::sqlite::SqliteStore;

fn usage() -> ExitCode {
    eprintln!("usage: tally <serve|check> [--config tally.toml]");
    ExitCode::from(2)
}

fn load(args: &[String]) -> Result<TallyConfig, String> {
    match args {
        [] => TallyConfig::from_env().map_err(|e| e.to_string()),
        [flag, path] if flag == "--config" => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            TallyConfig::from_toml(&text).map_err(|e| format!("{path}: {e}"))
        }
        _ => Err("expected --config <file>".into()),
    }
}

fn tracker(cfg: &TallyConfig) -> Result<ServerTracker, String> {
    let b = cfg.tracker_builder().map_err(|e| e.to_string())?;
    let store = cfg.server.store.as_str();
    let cap = cfg.server.outbox_capacity;
    let b = if store == "memory" {
        b
    } else if let Some(path) = store.strip_prefix("sqlite:") {
        let s = SqliteStore::open(path, cap).map_err(|e| format!("server.store: {e}"))?;
        b.durable(Arc::new(s))
    } else if store.starts_with("redis://") || store.starts_with("rediss://") {
        let s = RedisStore::connect(store, "tally", cap).map_err(|e| format!("server.store: {e}"))?;
        b.durable(Arc::new(s))
    } else {
        return Err(format!("server.store: {store:?}: use memory, sqlite:<path> or redis://host:port"));
    };
    b.build().map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        return usage();
    };
    let cfg = match load(&args[1..]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tally: {e}");
            return ExitCode::FAILURE;
        }
    };
    let built = tracker(&cfg).and_then(|t| cfg.collector_config().map(|c| (t, c)).map_err(|e| e.to_string()));
    let (tracker, collector_cfg) = match built {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tally: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cmd.as_str() {
        "check" => {
            println!(
                "tally: configuration ok ({} destination(s): {})",
                tracker.destination_names().len(),
                tracker.destination_names().join(", ")
            );
            ExitCode::SUCCESS
        }
        "serve" => serve(&cfg, tracker, collector_cfg).await,
        _ => usage(),
    }
}

async fn serve(cfg: &TallyConfig, tracker: ServerTracker, collector_cfg: collector::CollectorConfig) -> ExitCode {
    let app =
        collector::router(tracker.clone(), collector_cfg).route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = match tokio::net::TcpListener::bind(&cfg.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tally: cannot listen on {}: {e}", cfg.server.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    println!("tally: collecting on http://{addr}/collect ({})", tracker.destination_names().join(", "));
    // Deliveries left in a durable outbox by a previous process start again now.
    let _ = tracker.flush(Duration::ZERO).await;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
    };
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    let report = tracker.flush(Duration::from_secs(5)).await;
    tracker.shutdown();
    if !report.complete {
        eprintln!(
            "tally: {} deliveries still queued at shutdown (kept in the store for the next start)",
            report.remaining.queued + report.remaining.in_flight
        );
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally: {e}");
            ExitCode::FAILURE
        }
    }
}
