//! `tally`: the standalone first-party collector.
//!
//! ```text
//! tally serve [--config tally.toml]   run the collector (settings from the file, else TALLY_* variables)
//! tally check [--config tally.toml]   validate the configuration and exit (writes nothing)
//! tally reconcile --orders orders.csv|orders.json --deliveries log.json [--json]
//!                                     backend orders vs what each destination counted
//! tally reconcile --since 24h [--config tally.toml] [--json]
//!                                     the same from the collector's own order journal
//! tally help | --help | -h            the usage; tally --version | -V: the version
//! ```
//!
//! Help and version need no configuration; an unknown command is named, with the real ones.
//!
//! `reconcile` reads orders as CSV (`order_id,value,currency[,refunded]`) or a
//! JSON array of `{order_id, value, currency, refunded?}`, and a delivery log as a
//! JSON array (or one JSON object per line) of `{destination, kind: "purchase"|"refund",
//! transaction_id, value?, currency, duplicate?}`. Transaction ids may be the order
//! ids or the keys Tally sent to Google (`EventId::order_key`); both are matched.
//! It prints one row per destination and currency, money in the currency's minor
//! unit (`10.00 EUR`, `1200 JPY`) and the missing and unknown orders by id (the
//! first five, then how many more), and exits with status 3 when any row does
//! not match (count, revenue to the cent, no double counting).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tally_server::ServerTracker;
use tally_server::collector;
use tally_server::config_file::TallyConfig;
use tally_server::serve::ConnectionLimits;
use tally_server::store::redis::RedisStore;
use tally_server::store::sqlite::SqliteStore;

/// The subcommands, in the order the help lists them.
const COMMANDS: [&str; 4] = ["serve", "check", "reconcile", "help"];

const USAGE: &str = "\
usage: tally <command> [options]

commands:
  serve [--config tally.toml]   run the first-party collector (POST /collect); without --config
                                the settings come from TALLY_* environment variables
  check [--config tally.toml]   validate the configuration and exit; writes nothing
  reconcile --orders <orders.csv|orders.json> --deliveries <log.json|log.jsonl> [--json]
                                compare your order export with what each destination counted,
                                per currency (exit status 3 when anything does not match)
  reconcile --since <24h|90m|7d> [--config tally.toml] [--json]
                                the same report from the collector's own order journal (the
                                store the configuration names), no export needed
  help                          print this help (also -h, --help)

  --version                     print the version (also -V)
";

/// What the command line asks for, read before any configuration is loaded.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Help,
    Version,
    Serve(&'a [String]),
    Check(&'a [String]),
    Reconcile(&'a [String]),
    /// Nothing given: the usage goes to stderr.
    Missing,
    Unknown(&'a str),
}

fn parse_command(args: &[String]) -> Command<'_> {
    let Some((cmd, rest)) = args.split_first() else {
        return Command::Missing;
    };
    let wants_help = rest.iter().any(|a| a == "--help" || a == "-h");
    match cmd.as_str() {
        "help" | "--help" | "-h" => Command::Help,
        "--version" | "-V" | "version" => Command::Version,
        "serve" | "check" | "reconcile" if wants_help => Command::Help,
        "serve" => Command::Serve(rest),
        "check" => Command::Check(rest),
        "reconcile" => Command::Reconcile(rest),
        other => Command::Unknown(other),
    }
}

fn usage() -> ExitCode {
    eprint!("{USAGE}");
    ExitCode::from(2)
}

/// How many order ids a `missing` or `unknown` cell lists before "and N more".
const SHOWN_IDS: usize = 5;

fn reconcile_cmd(args: &[String]) -> Result<bool, String> {
    use tally_core::reconcile::{Delivery, OrderRecord, parse_orders_csv, reconcile};
    if args.iter().any(|a| a == "--since") {
        return reconcile_since(args);
    }
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
        print_table(&report);
    }
    Ok(report.all_match())
}

/// `reconcile --since <span> [--config file] [--json]`: the collector's own
/// order journal over the last `span`, from the store the configuration names.
fn reconcile_since(args: &[String]) -> Result<bool, String> {
    use tally_server::store::Outbox;
    let mut span = None;
    let mut config_args = Vec::new();
    let mut json_out = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--since" => span = it.next(),
            "--config" => config_args.extend(["--config".to_owned(), it.next().cloned().unwrap_or_default()]),
            "--json" => json_out = true,
            other => return Err(format!("unknown argument {other:?} (reconcile --since takes --config and --json)")),
        }
    }
    let span = span.ok_or("--since needs a span, e.g. 24h, 90m or 7d")?;
    let span_ms = parse_span(span)?;
    let cfg = load(&config_args)?;
    let names = tracker(&cfg, Mode::Check)?.destination_names();
    let store = cfg.server.store.as_str();
    let journal: Box<dyn Outbox> = if let Some(path) = store.strip_prefix("sqlite:") {
        if !Path::new(path).is_file() {
            return Err(format!("server.store: no database at {path}: reconcile reads what tally serve wrote there"));
        }
        Box::new(SqliteStore::open(path, cfg.server.outbox_capacity).map_err(|e| format!("server.store: {e}"))?)
    } else if store.starts_with("redis://") || store.starts_with("rediss://") {
        Box::new(
            RedisStore::connect(store, "tally", cfg.server.outbox_capacity)
                .map_err(|e| format!("server.store: {e}"))?,
        )
    } else {
        return Err(format!(
            "server.store: {store:?} keeps its journal inside the serving process: read GET /status.json there, \
             or use a sqlite: or redis:// store"
        ));
    };
    let now = tally_server::tracker::now_ms();
    // A day more than asked, so a delivery is matched with an order confirmed before the span.
    let rows = journal.journal_since(now - span_ms - 24 * 3_600_000).map_err(|e| e.to_string())?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let label = format!("Last {span}");
    let window = tally_server::status::window_since(&rows, &names, now, span_ms, &label);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&window).map_err(|e| e.to_string())?);
    } else {
        println!("{label}, from the order journal in {store}:\n");
        print_table(&window.report);
    }
    Ok(window.report.all_match())
}

/// `24h`, `90m`, `7d`, `3600s` in ms.
fn parse_span(span: &str) -> Result<i64, String> {
    let bad = || format!("--since {span:?}: write a number and a unit, e.g. 24h, 90m, 7d or 3600s");
    let (n, unit) = span.split_at(span.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).filter(|ms| *ms > 0).ok_or_else(bad)
}

/// The report as a Markdown table, one row per destination and currency.
fn print_table(report: &tally_core::reconcile::ReconcileReport) {
    use tally_core::reconcile::{list_ids, money};
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
            money(r.backend_revenue, &r.currency),
            money(r.destination_revenue, &r.currency),
            pct(r.revenue_mismatch_bp),
            r.duplicates,
            list_ids(&r.missing, SHOWN_IDS),
            list_ids(&r.unknown, SHOWN_IDS)
        );
    }
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

/// Whether the configuration is only checked or served: a check writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Check,
    Serve,
}

/// The folder a SQLite database at `db` needs that does not exist yet (`None`
/// when it exists), or why none can be made there. Reads the file system only.
fn missing_sqlite_folder(db: &Path) -> Result<Option<PathBuf>, String> {
    if db.as_os_str().is_empty() {
        return Err("server.store: sqlite: needs a file path, e.g. sqlite:/var/lib/tally/tally.db".into());
    }
    if db.is_dir() {
        return Err(format!(
            "server.store: {} is a folder; name the database file in it, e.g. sqlite:{}",
            db.display(),
            db.join("tally.db").display()
        ));
    }
    let folder = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if folder.is_dir() {
        return Ok(None);
    }
    match folder.ancestors().skip(1).find(|a| a.exists()) {
        Some(a) if !a.is_dir() => Err(format!(
            "server.store: the folder {} cannot be made because {} is a file, not a folder",
            folder.display(),
            a.display()
        )),
        _ => Ok(Some(folder.to_path_buf())),
    }
}

/// The tracker `cfg` describes. A check opens no SQLite file (so creates
/// none); serving creates the database's folder when it is missing.
fn tracker(cfg: &TallyConfig, mode: Mode) -> Result<ServerTracker, String> {
    let b = cfg.tracker_builder().map_err(|e| e.to_string())?;
    let store = cfg.server.store.as_str();
    let cap = cfg.server.outbox_capacity;
    let b = if store == "memory" {
        b
    } else if let Some(path) = store.strip_prefix("sqlite:") {
        let db = Path::new(path);
        let missing = missing_sqlite_folder(db)?;
        if mode == Mode::Check {
            if let Some(folder) = missing {
                println!("tally: note: the folder {} does not exist yet; tally serve creates it", folder.display());
            }
            b
        } else {
            if let Some(folder) = missing {
                std::fs::create_dir_all(&folder)
                    .map_err(|e| format!("server.store: cannot create the folder {}: {e}", folder.display()))?;
                println!("tally: created the folder {} for the SQLite database", folder.display());
            }
            let s = SqliteStore::open(db, cap).map_err(|e| format!("server.store: {e}"))?;
            b.durable(Arc::new(s))
        }
    } else if store.starts_with("redis://") || store.starts_with("rediss://") {
        // Connecting only sends PING, so a check writes nothing here either.
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
    let (mode, config_args) = match parse_command(&args) {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("tally {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Missing => return usage(),
        Command::Unknown(other) => {
            eprintln!("tally: unknown command {other:?}; the commands are {} (see tally --help)", COMMANDS.join(", "));
            return ExitCode::from(2);
        }
        Command::Reconcile(rest) => {
            return match reconcile_cmd(rest) {
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
        Command::Serve(rest) => (Mode::Serve, rest),
        Command::Check(rest) => (Mode::Check, rest),
    };
    let cfg = match load(config_args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tally: {e}");
            return ExitCode::FAILURE;
        }
    };
    let built = tracker(&cfg, mode).and_then(|t| {
        let collector = cfg.collector_config().map_err(|e| e.to_string())?;
        let limits = cfg.connection_limits().map_err(|e| e.to_string())?;
        Ok((t, (collector, limits)))
    });
    let (tracker, collector_cfg) = match built {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tally: {e}");
            return ExitCode::FAILURE;
        }
    };
    for note in tracker.configuration_notes() {
        println!("tally: note: {note}");
    }
    for warning in cfg.warnings() {
        eprintln!("tally: warning: {warning}");
    }
    if mode == Mode::Serve {
        return serve_collector(&cfg, tracker, collector_cfg).await;
    }
    println!(
        "tally: configuration ok ({} destination(s): {})",
        tracker.destination_names().len(),
        tracker.destination_names().join(", ")
    );
    ExitCode::SUCCESS
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

async fn serve_collector(
    cfg: &TallyConfig,
    tracker: ServerTracker,
    (collector_cfg, limits): (collector::CollectorConfig, ConnectionLimits),
) -> ExitCode {
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
    // Header, body and idle timeouts and a connection cap: a client that stops
    // mid-request cannot hold a connection (axum::serve has no read timeout).
    let served = tally_server::serve::serve(listener, app, limits, shutdown).await;
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
