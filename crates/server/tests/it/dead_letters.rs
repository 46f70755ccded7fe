//! Dead letters brought back: a purchase Meta refuses (credentials revoked)
//! dies; `/status` lists it with its reason and the replay command; `tally dead
//! list` and `show` find it; a replay while Meta still refuses leaves it dead
//! again; once Meta takes the credentials again, `tally dead replay` delivers
//! it exactly once with its original event id, and the journal holds each
//! replay. With the real `tally serve` and CLI, on SQLite and on Redis.

use crate::support::{RedisServer, TallyServe, TempDir, free_port};
use serde_json::{Value, json};
use tally_sandbox::{Mode, Sandbox};
use tally_server::store::redis::RedisStore;
use tally_server::store::sqlite::SqliteStore;
use tally_server::store::{JournalEntry, Outbox};

const SECRET: &str = "s2s-secret";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn tally(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run tally");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn rejected_then_replayed(store: &str, open: impl Fn() -> Box<dyn Outbox>) {
    let sandbox = Sandbox::new();
    let sb = sandbox.serve("127.0.0.1:0").await.expect("sandbox");
    let dir = TempDir::new("dead-letters");
    let port = free_port();
    let config = dir.join("tally.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nstore = \"{store}\"\n\
             [collector]\nserver_secrets = [\"{SECRET}\"]\nrate_per_ip = 0\n\
             [meta]\npixel_id = \"1234567890\"\naccess_token = \"{token}\"\nbase_url = \"{url}/meta\"\n",
            token = tally_sandbox::meta::ACCESS_TOKEN,
            url = sb.base_url,
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let serve = TallyServe::start(std::path::Path::new(&config), &base).await;
    let http = reqwest::Client::new();

    // Meta refuses the credentials: the backend's purchase is rejected and dies.
    sandbox.meta.faults.set(Mode::Unauthorized);
    let consent = json!({"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"});
    let body = json!({
        "context": {"v":1,"createdAt":1,"clientId":"123.456","pageUrl":"https://shop.example/thanks","consent":consent,"userData":{"email":"jane@example.com"}},
        "userAgent": "Mozilla/5.0 (backend says)",
        "ipAddress": "203.0.113.7",
        "events": [{"name":"purchase","transactionId":"ORD-DEAD-1","value":42.5,"currency":"EUR"}],
    });
    let r = http.post(format!("{base}/collect")).bearer_auth(SECRET).json(&body).send().await.expect("collect");
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    let event_id = answer["results"][0]["eventId"].as_str().expect("event id").to_owned();
    assert_eq!(answer["results"][0]["destinations"]["meta"]["outcome"], "failed", "{answer}");
    assert!(sandbox.meta.purchases().is_empty());

    // /status lists it with its reason and the command that replays it.
    let r = http.get(format!("{base}/status.json")).bearer_auth(SECRET).send().await.expect("status");
    let status: Value = r.json().await.expect("status json");
    let letter = &status["dead_letters"][0];
    assert_eq!(letter["destination"], "meta", "{status:#}");
    assert_eq!(letter["event_id"], event_id.as_str());
    assert_eq!(letter["order_id"], "ORD-DEAD-1");
    let id = letter["id"].as_str().expect("dead id").to_owned();
    assert_eq!(letter["replay_command"], format!("tally dead replay {id}"));
    let reason = letter["reason"].as_str().expect("reason").to_owned();
    assert!(!reason.is_empty());
    let page = http.get(format!("{base}/status")).basic_auth("ops", Some(SECRET)).send().await.expect("page");
    let html = page.text().await.expect("html");
    assert!(html.contains("Dead letters") && html.contains(&format!("tally dead replay {id}")), "{html}");
    drop(serve);

    // The CLI finds it.
    let list = tally(&["dead", "list", "--config", &config]).await;
    assert_eq!(list.code, Some(0), "{}{}", list.stdout, list.stderr);
    for shown in [id.as_str(), "meta", "purchase", "ORD-DEAD-1", event_id.as_str()] {
        assert!(list.stdout.contains(shown), "dead list shows {shown}: {}", list.stdout);
    }
    let other = tally(&["dead", "list", "--destination", "ga4", "--config", &config]).await;
    assert!(other.stdout.contains("no dead entries match"), "{}", other.stdout);
    let show = tally(&["dead", "show", &id, "--config", &config]).await;
    assert_eq!(show.code, Some(0), "{}{}", show.stdout, show.stderr);
    assert!(
        show.stdout.contains("\"transactionId\": \"ORD-DEAD-1\"") && show.stdout.contains(&reason),
        "{}",
        show.stdout
    );

    // Replayed before the cause is fixed: refused again, dead again, said so.
    let early = tally(&["dead", "replay", &id, "--config", &config]).await;
    assert_eq!(early.code, Some(3), "{}{}", early.stdout, early.stderr);
    assert!(early.stdout.contains("dead again"), "{}", early.stdout);
    assert!(sandbox.meta.purchases().is_empty());

    // Meta takes the credentials again: the replay delivers it, once, with its event id.
    sandbox.meta.faults.set(Mode::Up);
    let replay = tally(&["dead", "replay", "--destination", "meta", "--since", "1h", "--config", &config]).await;
    assert_eq!(replay.code, Some(0), "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay.stdout.contains("replaying 1 dead entry") && replay.stdout.contains("delivered"),
        "{}",
        replay.stdout
    );
    let purchases = sandbox.meta.purchases();
    assert_eq!(purchases.len(), 1, "{purchases:?}");
    assert_eq!(purchases[0].event_id.as_deref(), Some(event_id.as_str()), "the original event id");
    let empty = tally(&["dead", "list", "--config", &config]).await;
    assert!(empty.stdout.contains("no dead entries"), "{}", empty.stdout);
    let again = tally(&["dead", "replay", "--destination", "meta", "--config", &config]).await;
    assert_eq!(again.code, Some(2), "nothing left to replay: {}{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("no dead entries match"), "{}", again.stderr);
    assert_eq!(sandbox.meta.purchases().len(), 1, "still once");

    // Each replay is in the order journal, with the original event id.
    let replays: Vec<JournalEntry> = open()
        .journal_since(0)
        .expect("journal")
        .into_iter()
        .map(|r| r.entry)
        .filter(|e| matches!(e, JournalEntry::Replayed { .. }))
        .collect();
    assert_eq!(replays.len(), 2, "{replays:?}");
    for r in replays {
        let JournalEntry::Replayed { destination, event_id: id, order_id, .. } = r else { unreachable!() };
        assert_eq!(
            (destination.as_str(), id.as_str(), order_id.as_deref()),
            ("meta", event_id.as_str(), Some("ORD-DEAD-1"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_purchase_is_replayed_once_with_its_event_id_on_sqlite() {
    let dir = TempDir::new("dead-sqlite");
    let db = dir.join("tally.db");
    let store = format!("sqlite:{}", db.display());
    rejected_then_replayed(&store, || Box::new(SqliteStore::open(&db, 1000).expect("open sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_purchase_is_replayed_once_with_its_event_id_on_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    rejected_then_replayed(&url, || Box::new(RedisStore::connect(&url, "tally", 1000).expect("connect redis"))).await;
}
