//! `tally`: the standalone first-party collector.
//!
//! ```text
//! tally serve [--config tally.toml]   run the collector (settings from the file, else TALLY_* variables)
//! tally check [--config tally.toml]   validate the configuration and exit
//! tally reconcile --orders orders.csv|orders.json --deliveries log.json [--json]
//!                                     backend orders vs what each destination counted
//! ```
//!
//! `reconcile` reads orders as CSV (`order_id,value,currency[,refunded]`) or a
//! JSON array of `{order_id, value, currency, refunded?}`, and a delivery log as a
//! JSON array (or one JSON object per line) of `{destination, kind: "purchase"|"refund",
//! transaction_id, value?, currency, duplicate?}`. Transaction ids may be the order
//! ids or the keys Tally sent to Google (`EventId::order_key`); both are matched.
//! It prints one row per destination and currency and exits with status 3 when
//! any row does not match (count, revenue to the cent, no double counting).

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
    eprintln!(
        "usage: tally <serve|check> [--config tally.toml]\n       tally reconcile --orders <csv|json> --deliveries <json> [--json]"
    );
    ExitCode::from(2)
}

fn reconcile_cmd(args: &[String]) -> Result<bool, String> {
    use tally_core::reconcile::{Delivery, OrderRecord, parse_orders_csv, reconcile};
    let mut orders_path = None;
    let mut log_path = None;
    let mut json_out = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--orders" => orders_path = it.next(),
            "--deliveries" => log_path = it.next(),
            "--json" => json_out = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let (Some(orders_path), Some(log_path)) = (orders_path, log_path) else {
        return Err("reconcile needs --orders <file> and --deliveries <file>".into());
    };
    let orders_text = std::fs::read_to_string(orders_path).map_err(|e| format!("{orders_path}: {e}"))?;
    let orders: Vec<OrderRecord> = if orders_text.trim_start().starts_with('[') {
        serde_json::from_str(&orders_text).map_err(|e| format!("{orders_path}: {e}"))?
    } else {
        parse_orders_csv(&orders_text).map_err(|e| format!("{orders_path}: {e}"))?
    };
    let log_text = std::fs::read_to_string(log_path).map_err(|e| format!("{log_path}: {e}"))?;
    let mut log: Vec<Delivery> = if log_text.trim_start().starts_with('[') {
        serde_json::from_str(&log_text).map_err(|e| format!("{log_path}: {e}"))?
    } else {
        log_text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("{log_path}:{}: {e}", n + 1)))
            .collect::<Result<_, _>>()?
    };
    // Google destinations know an order by its order key; map it back.
    let keys: std::collections::HashMap<String, String> = orders
        .iter()
        .filter_map(|o| {
            let t = tally_core::TransactionId::parse(&o.order_id).ok()?;
            Some((tally_core::EventId::order_key(&t).as_str().to_owned(), o.order_id.clone()))
        })
        .collect();
    for d in &mut log {
        if let Some(id) = keys.get(&d.transaction_id) {
            d.transaction_id = id.clone();
        }
    }
    let report = reconcile(&orders, &log, &Default::default());
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "| destination | currency | orders | purchases | ratio | backend | destination | mismatch | duplicates | missing | unknown |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        let pct = |bp: Option<i64>| bp.map(|b| format!("{:.2} %", b as f64 / 100.0)).unwrap_or_else(|| "-".into());
        for r in &report.rows {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.destination,
                r.currency,
                r.orders,
                r.purchases,
                pct(r.ratio_bp),
                r.backend_revenue,
                r.destination_revenue,
                pct(r.revenue_mismatch_bp),
                r.duplicates,
                r.missing.len(),
                r.unknown.len()
            );
        }
    }
    Ok(report.all_match())
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
    if cmd == "reconcile" {
        return match reconcile_cmd(&args[1..]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("tally: some destinations do not match the backend orders");
                ExitCode::from(3)
            }
            Err(e) => {
                eprintln!("tally: {e}");
                ExitCode::from(2)
            }
        };
    }
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

/// Where the queue lives, said at start: a memory store loses it on restart.
fn store_note(store: &str) -> String {
    match store.strip_prefix("sqlite:") {
        Some(path) => {
            let full = std::fs::canonicalize(path).map(|p| p.display().to_string()).unwrap_or_else(|_| path.to_owned());
            format!("outbox and dedup keys in SQLite at {full} (kept across restarts)")
        }
        None if store == "memory" => {
            "outbox and dedup keys in memory (store = \"memory\"): a restart loses what is queued".to_owned()
        }
        None => format!("outbox and dedup keys in {}", store.split('@').next_back().unwrap_or(store)),
    }
}

async fn serve(cfg: &TallyConfig, tracker: ServerTracker, collector_cfg: collector::CollectorConfig) -> ExitCode {
    let app = collector::serve_router(tracker.clone(), collector_cfg);
    let listener = match tokio::net::TcpListener::bind(&cfg.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tally: cannot listen on {}: {e}", cfg.server.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    println!("tally: collecting on http://{addr}/collect ({})", tracker.destination_names().join(", "));
    println!("tally: {}", store_note(&cfg.server.store));
    // Deliveries left in a durable outbox by a previous process start again now.
    let _started = tracker.flush(Duration::ZERO).await;
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
