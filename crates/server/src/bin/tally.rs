//! `tally`: the standalone first-party collector.
//!
//! ```text
//! tally serve [--config tally.toml]   run the collector (settings from the file, else TALLY_* variables)
//! tally check [--config tally.toml]   validate the configuration and exit (writes nothing)
//! tally reconcile --orders orders.csv|orders.json --deliveries log.json [--json]
//!                                     backend orders vs what each destination counted
//! tally reconcile --since 24h [--config tally.toml] [--json]
//!                                     the same from the collector's own order journal
//! tally dead list|show|replay …        the dead letters: list them, show one, replay them
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
use tally_server::status::DeadLetter;
use tally_server::store::Outbox;
use tally_server::store::redis::RedisStore;
use tally_server::store::sqlite::SqliteStore;

/// The subcommands, in the order the help lists them.
const COMMANDS: [&str; 5] = ["serve", "check", "reconcile", "dead", "help"];

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
  dead list [--destination <name>] [--since <24h>] [--config tally.toml] [--json]
                                what was given up on (rejected, retries exhausted), newest
                                first, with why and each entry's id
  dead show <id> [--config tally.toml]
                                one dead entry: the event as stored, its visitor (hashed), why
  dead replay [<id>...] [--destination <name>] [--since <24h>] [--config tally.toml] [--wait 30s]
                                once the cause is fixed: put dead entries back into the outbox
                                and deliver them with their original event ids (the destinations
                                deduplicate on them); each replay goes into the order journal.
                                Exit status 3 when some are not delivered within --wait
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
    Dead(&'a [String]),
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
        "serve" | "check" | "reconcile" | "dead" if wants_help => Command::Help,
        "serve" => Command::Serve(rest),
        "check" => Command::Check(rest),
        "reconcile" => Command::Reconcile(rest),
        "dead" => Command::Dead(rest),
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
    let journal = open_store(&cfg, "reconcile", "its journal", "read GET /status.json there")?;
    let now = tally_server::now_ms();
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

/// The store `tally serve` wrote to (SQLite or Redis), for a command that
/// reads it (`command`); a memory store keeps `what` inside the serving
/// process, where `instead` says how to reach it.
fn open_store(cfg: &TallyConfig, command: &str, what: &str, instead: &str) -> Result<Box<dyn Outbox>, String> {
    let store = cfg.server.store.as_str();
    if let Some(path) = store.strip_prefix("sqlite:") {
        if !Path::new(path).is_file() {
            return Err(format!("server.store: no database at {path}: {command} reads what tally serve wrote there"));
        }
        Ok(Box::new(SqliteStore::open(path, cfg.server.outbox_capacity).map_err(|e| format!("server.store: {e}"))?))
    } else if store.starts_with("redis://") || store.starts_with("rediss://") {
        Ok(Box::new(
            RedisStore::connect(store, "tally", cfg.server.outbox_capacity)
                .map_err(|e| format!("server.store: {e}"))?,
        ))
    } else {
        Err(format!(
            "server.store: {store:?} keeps {what} inside the serving process: {instead}, or use a sqlite: or redis:// store"
        ))
    }
}

/// What `tally dead list | show | replay` were asked for.
#[derive(Debug, Default)]
struct DeadArgs {
    ids: Vec<String>,
    destination: Option<String>,
    since_ms: Option<i64>,
    config: Vec<String>,
    json: bool,
    wait_ms: Option<i64>,
}

fn parse_dead_args(args: &[String]) -> Result<DeadArgs, String> {
    let mut out = DeadArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--destination" => out.destination = Some(value("--destination")?),
            "--since" => out.since_ms = Some(parse_span(&value("--since")?)?),
            "--wait" => out.wait_ms = Some(parse_span(&value("--wait")?)?),
            "--config" => out.config = vec!["--config".to_owned(), value("--config")?],
            "--json" => out.json = true,
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown argument {flag:?} (dead takes --destination, --since, --config, --json and, to replay, --wait)"
                ));
            }
            id => out.ids.push(id.to_owned()),
        }
    }
    Ok(out)
}

/// The dead entries `args` select: by id, destination and age, newest first.
fn select_dead(
    all: Vec<tally_server::store::outbox::DeadEntry>,
    args: &DeadArgs,
    now_ms: i64,
) -> Vec<tally_server::store::outbox::DeadEntry> {
    all.into_iter()
        .filter(|d| args.ids.is_empty() || args.ids.contains(&d.id))
        .filter(|d| args.destination.as_ref().is_none_or(|name| &d.entry.destination == name))
        .filter(|d| args.since_ms.is_none_or(|span| d.dead_at_ms >= now_ms - span))
        .collect()
}

/// `tally dead list | show | replay`. `Ok(false)`: some replayed entries were not delivered.
async fn dead_cmd(args: &[String]) -> Result<bool, String> {
    let Some((sub, rest)) = args.split_first() else {
        return Err("dead needs list, show or replay (see tally --help)".into());
    };
    let args = parse_dead_args(rest)?;
    let cfg = load(&args.config)?;
    let instead = "read the dead letters on GET /status there";
    match sub.as_str() {
        "list" => {
            if !args.ids.is_empty() {
                return Err(format!("dead list takes no ids ({}); dead show <id> shows one", args.ids.join(" ")));
            }
            let store = open_store(&cfg, "tally dead", "its dead letters", instead)?;
            let all = store.dead_entries(usize::MAX).map_err(|e| e.to_string())?;
            let chosen = select_dead(all, &args, tally_server::now_ms());
            let letters: Vec<DeadLetter> = chosen.iter().map(DeadLetter::from).collect();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&letters).map_err(|e| e.to_string())?);
            } else if letters.is_empty() {
                println!(
                    "tally: no dead entries{}",
                    if args.destination.is_some() || args.since_ms.is_some() { " match" } else { "" }
                );
            } else {
                println!("| id | dead at (UTC) | destination | event | order | event id | attempts | reason |");
                println!("|---|---|---|---|---|---|---|---|");
                for d in &letters {
                    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    println!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} |",
                        d.id,
                        tally_server::status::utc(d.dead_at_ms),
                        d.destination,
                        dash(&d.event),
                        dash(&d.order_id),
                        dash(&d.event_id),
                        d.attempts,
                        d.reason.replace('|', "\\|")
                    );
                }
                println!("\n{} dead; replay with: tally dead replay <id>... or --destination <name>", letters.len());
            }
            Ok(true)
        }
        "show" => {
            let [id] = args.ids.as_slice() else {
                return Err("dead show takes one id (from tally dead list)".into());
            };
            let store = open_store(&cfg, "tally dead", "its dead letters", instead)?;
            let all = store.dead_entries(usize::MAX).map_err(|e| e.to_string())?;
            let d = all
                .into_iter()
                .find(|d| &d.id == id)
                .ok_or_else(|| format!("no dead entry {id:?} (see tally dead list)"))?;
            let pretty = |text: &str| {
                serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or_else(|| text.to_owned())
            };
            let letter = DeadLetter::from(&d);
            println!("id:           {}", d.id);
            println!("destination:  {}", d.entry.destination);
            println!("dead at:      {} UTC", tally_server::status::utc(d.dead_at_ms));
            println!("attempts:     {}", d.entry.attempts);
            println!("reason:       {}", d.reason);
            println!("last error:   {}", d.entry.last_error.as_deref().unwrap_or("-"));
            println!("event id:     {}", letter.event_id.as_deref().unwrap_or("-"));
            println!("replay:       {}", letter.replay_command);
            println!("event:\n{}", pretty(&d.entry.event_json));
            println!("visitor (user data hashed):\n{}", pretty(&d.entry.visitor_json));
            Ok(true)
        }
        "replay" => dead_replay(&cfg, &args).await,
        other => Err(format!("unknown dead command {other:?}: use list, show or replay")),
    }
}

/// Puts the selected dead entries back into the outbox with their original
/// events, notes each in the journal, delivers them through the configured
/// destinations and says what became of each.
async fn dead_replay(cfg: &TallyConfig, args: &DeadArgs) -> Result<bool, String> {
    use tally_server::store::{JournalEntry, JournalRow};
    // The same check as list: a durable store that tally serve wrote to.
    drop(open_store(cfg, "tally dead replay", "its dead letters", "read the dead letters on GET /status there")?);
    let tracker = tracker(cfg, Mode::Serve)?;
    let outbox = Arc::clone(tracker.outbox());
    let start = tally_server::now_ms();
    let all = outbox.dead_entries(usize::MAX).map_err(|e| e.to_string())?;
    let chosen = select_dead(all, args, start);
    if chosen.is_empty() {
        let missing = if args.ids.is_empty() { String::new() } else { format!(" ({})", args.ids.join(", ")) };
        return Err(format!("no dead entries match{missing}: see tally dead list"));
    }
    let configured = tracker.destination_names();
    if let Some(d) = chosen.iter().find(|d| !configured.contains(&d.entry.destination)) {
        return Err(format!(
            "dead entry {} is for {}, which the configuration does not have: configure it (fixed) first",
            d.id, d.entry.destination
        ));
    }
    let ids: Vec<String> = chosen.iter().map(|d| d.id.clone()).collect();
    let moved = outbox.replay_dead(&ids, start).map_err(|e| e.to_string())?;
    let replayed: Vec<_> = chosen.into_iter().filter(|d| moved.contains(&d.id)).collect();
    let rows: Vec<JournalRow> = replayed
        .iter()
        .map(|d| JournalRow {
            at_ms: start,
            entry: JournalEntry::Replayed {
                destination: d.entry.destination.clone(),
                event: d.event_name().unwrap_or_default(),
                event_id: d.event_id().unwrap_or_default(),
                order_id: d.order_id(),
                reason: d.reason.clone(),
            },
        })
        .collect();
    let keep_days = i64::try_from(cfg.server.journal_days.unwrap_or(8).max(1)).unwrap_or(i64::MAX);
    if let Err(e) = outbox.journal_append(&rows, start - keep_days.saturating_mul(86_400_000)) {
        eprintln!("tally: warning: the replays could not be written to the order journal: {e}");
    }
    println!("tally: replaying {} dead entr{}", replayed.len(), if replayed.len() == 1 { "y" } else { "ies" });
    let wait = Duration::from_millis(u64::try_from(args.wait_ms.unwrap_or(30_000)).unwrap_or(30_000));
    let report = tracker.flush(wait).await;
    tracker.shutdown();
    let after = outbox.dead_entries(usize::MAX).map_err(|e| e.to_string())?;
    // Delivered, as confirmed: an order's delivery in the journal (whichever
    // process sent it), else one of the deliveries this process counted.
    let delivered_orders: std::collections::HashSet<(String, String)> = outbox
        .journal_since(start)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| match r.entry {
            JournalEntry::Delivered { delivery, .. } => Some((delivery.destination, delivery.transaction_id)),
            _ => None,
        })
        .collect();
    let mut counted: std::collections::BTreeMap<String, u64> =
        tracker.metrics().by_destination().into_iter().map(|(name, c)| (name, c.delivered)).collect();
    let mut all_delivered = true;
    for d in &replayed {
        let what = format!(
            "{} {} {}{}",
            d.entry.destination,
            d.event_name().unwrap_or_else(|| "event".into()),
            d.event_id().unwrap_or_default(),
            d.order_id().map(|o| format!(" (order {o})")).unwrap_or_default()
        );
        let dest = &d.entry.destination;
        let in_journal = d.order_id().is_some_and(|o| delivered_orders.contains(&(dest.clone(), o)));
        let budget = counted.entry(dest.clone()).or_default();
        let by_this_process = *budget > 0;
        if in_journal || by_this_process {
            *budget = budget.saturating_sub(1);
        }
        if let Some(again) = after.iter().find(|a| a.entry.key == d.entry.key && a.dead_at_ms >= start) {
            all_delivered = false;
            println!("  {what}: dead again (id {}): {}", again.id, again.reason);
        } else if in_journal || by_this_process {
            println!("  {what}: delivered");
        } else {
            all_delivered = false;
            let why = if report.complete {
                "the outbox let it go without a delivery this process saw (a running tally serve may have sent it: see GET /status)"
            } else {
                "it stays in the outbox and tally serve (or the next replay) keeps trying"
            };
            println!("  {what}: not confirmed within {} s; {why}", wait.as_secs());
        }
    }
    Ok(all_delivered)
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
        Command::Dead(rest) => {
            return match dead_cmd(rest).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("tally: some replayed entries were not delivered");
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
