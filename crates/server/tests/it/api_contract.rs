//! The collector's HTTP contract cannot drift: the committed OpenAPI document
//! (crates/server/openapi.json) against the router `tally serve` runs, the
//! outcome names against their one definition in tally-server, and
//! `tally-web/server` (pkg/server.js and its types) against the same names.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};
use tally_sandbox::Sandbox;
use tally_server::collector::{self, CollectorConfig, EventResult, OPENAPI_JSON, ROUTES, SERVE_ROUTES};
use tally_server::{DeliveryError, Ga4Config, Outcome, ServerTracker, SkipReason};

fn doc() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    &doc["components"]["schemas"][name]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// (METHOD, path) of every operation in the document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

#[test]
fn the_document_is_openapi_3_1_and_its_enums_are_the_codes() {
    let doc = doc();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    let report = &schema(&doc, "OutcomeReport")["properties"];
    assert_eq!(strings(&report["outcome"]["enum"]), Outcome::CODES);
    assert_eq!(strings(&report["reason"]["enum"]), SkipReason::CODES);
    assert_eq!(strings(&schema(&doc, "ErrorReport")["properties"]["code"]["enum"]), DeliveryError::CODES);
    assert_eq!(strings(&schema(&doc, "EventResult")["properties"]["status"]["enum"]), EventResult::STATUSES);
    // Every $ref points at a schema that exists.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schema(&doc, name).is_object(), "$ref {r} names no schema");
    }
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_is_built_from() {
    let listed: BTreeSet<(String, String)> =
        ROUTES.iter().chain(SERVE_ROUTES).map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(documented_operations(&doc()), listed);
}

async fn serve(metrics: bool) -> (String, Sandbox, tally_sandbox::RunningSandbox) {
    let sandbox = Sandbox::new();
    let run = sandbox.serve("127.0.0.1:0").await.unwrap();
    let tracker =
        ServerTracker::builder().ga4(Ga4Config::new("G-TEST123", "s").base_url(run.url("/ga4"))).build().unwrap();
    let config = CollectorConfig {
        site_keys: ["site-1".to_owned()].into(),
        server_secrets: ["s2s".to_owned()].into(),
        metrics,
        ..CollectorConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = collector::serve_router(tracker, config);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    (format!("http://{addr}"), sandbox, run)
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else() {
    let (base, _sandbox, _run) = serve(true).await;
    let http = reqwest::Client::new();
    let doc = doc();
    let ops = documented_operations(&doc);
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    for path in doc["paths"].as_object().unwrap().keys() {
        for m in methods {
            let r = http
                .request(m.parse().unwrap(), format!("{base}{path}"))
                .header("content-type", "application/json")
                .body("{\"events\":[]}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if ops.contains(&(m.to_owned(), path.clone())) {
                assert!(status != 404 && status != 405, "{m} {path} is documented but answered {status}");
            } else {
                assert_eq!(status, 405, "{m} {path} is not documented but answered {status}");
            }
        }
    }
    assert_eq!(http.get(format!("{base}/not-a-route")).send().await.unwrap().status(), 404);
    // The served document is the committed one.
    let r = http.get(format!("{base}/openapi.json")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap(), doc);
    // /metrics is documented as present only when enabled.
    let (base, _s, _r) = serve(false).await;
    assert_eq!(http.get(format!("{base}/metrics")).send().await.unwrap().status(), 404);
}

/// Checks `v` against the object schema `name`: required properties present,
/// no property the schema does not list, enums respected, `$ref`s followed.
fn conforms(doc: &Value, name: &str, v: &Value) {
    let s = schema(doc, name);
    let obj = v.as_object().unwrap_or_else(|| panic!("{name}: not an object: {v}"));
    for r in s["required"].as_array().into_iter().flatten() {
        assert!(obj.contains_key(r.as_str().unwrap()), "{name}: missing {r} in {v}");
    }
    for (k, val) in obj {
        let prop = &s["properties"][k];
        assert!(prop.is_object(), "{name}: {k} is not in the document ({v})");
        if let Some(e) = prop["enum"].as_array() {
            assert!(e.contains(val), "{name}.{k} = {val} is not one of {prop}");
        }
        if let Some(r) = prop["$ref"].as_str() {
            conforms(doc, r.trim_start_matches("#/components/schemas/"), val);
        }
        if let Some(r) = prop["additionalProperties"]["$ref"].as_str() {
            for inner in val.as_object().unwrap().values() {
                conforms(doc, r.trim_start_matches("#/components/schemas/"), inner);
            }
        }
    }
}

#[tokio::test]
async fn real_answers_conform_to_the_document() {
    let (base, sandbox, _run) = serve(false).await;
    let http = reqwest::Client::new();
    let doc = doc();
    let body = |txn: &str| {
        json!({"context":{"v":1,"createdAt":1,"clientId":"1.2","consent":{"analytics_storage":"granted"}},
               "events":[{"name":"purchase","transactionId":txn,"value":"9.99","currency":"EUR"},{"name":"purchase"}]})
    };
    let post = |b: Value| http.post(format!("{base}/collect")).bearer_auth("s2s").json(&b).send();
    let mut answers = vec![post(body("C-1")).await.unwrap().json::<Value>().await.unwrap()];
    answers.push(post(body("C-1")).await.unwrap().json().await.unwrap());
    sandbox.ga4.faults.set(tally_sandbox::Mode::Down);
    answers.push(post(body("C-2")).await.unwrap().json().await.unwrap());
    let outcomes: BTreeSet<String> = answers
        .iter()
        .flat_map(|a| a["results"].as_array().unwrap().iter())
        .filter_map(|r| r["destinations"]["ga4"]["outcome"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(outcomes, ["queued", "sent", "skipped"].map(str::to_owned).into(), "{answers:?}");
    for a in &answers {
        conforms(&doc, "CollectResponse", a);
        for r in a["results"].as_array().unwrap() {
            conforms(&doc, "EventResult", r);
        }
    }
    let r = http.post(format!("{base}/collect")).bearer_auth("wrong").json(&body("C-3")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(doc["paths"]["/collect"]["post"]["responses"]["401"].is_object());
    conforms(&doc, "ErrorBody", &r.json().await.unwrap());
}

fn pkg(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../pkg").join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The quoted names between `start` and the next `end` in `text`.
fn quoted_after(text: &str, start: &str, end: &str) -> Vec<String> {
    let from = text.find(start).unwrap_or_else(|| panic!("{start:?} not found")) + start.len();
    let to = from + text[from..].find(end).unwrap();
    text[from..to].split('\'').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn tally_web_server_uses_the_same_names() {
    let js = pkg("server.js");
    assert_eq!(quoted_after(&js, "export const OUTCOMES = Object.freeze([", "]"), Outcome::CODES);
    assert_eq!(quoted_after(&js, "export const SKIP_REASONS = Object.freeze([", "]"), SkipReason::CODES);
    assert_eq!(quoted_after(&js, "export const DELIVERY_ERRORS = Object.freeze([", "]"), DeliveryError::CODES);
    let dts = pkg("server.d.ts");
    assert_eq!(quoted_after(&dts, "export type OutcomeCode =", ";"), Outcome::CODES);
    assert_eq!(quoted_after(&dts, "export type SkipReasonCode =", ";"), SkipReason::CODES);
    assert_eq!(quoted_after(&dts, "export type DeliveryErrorCode =", ";"), DeliveryError::CODES);
    let status = quoted_after(&dts, "status: ", ";");
    assert!(status.iter().all(|s| EventResult::STATUSES.contains(&s.as_str())), "{status:?}");
}

/// A consent signal in the document (`Consent`) is exactly what the envelope
/// parser takes: each listed string is accepted; what the schema does not
/// allow (a boolean, another spelling, a number) is refused, naming the field.
#[test]
fn consent_values_are_what_the_document_allows() {
    let doc = doc();
    let consent = schema(&doc, "Consent");
    let keys: Vec<&String> = consent["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4);
    let parse = |key: &str, v: Value| {
        tally_core::ContextEnvelope::from_value(&json!({"v":1,"createdAt":1,"consent":{key: v}}))
            .map(|e| e.consent)
            .map_err(|e| e.field().to_owned())
    };
    for key in keys {
        let prop = &consent["properties"][key];
        assert_eq!(prop["type"], "string", "{key}: {prop}");
        let allowed = strings(&prop["enum"]);
        assert_eq!(allowed, ["granted", "denied", "unknown"], "{key}");
        for v in &allowed {
            assert!(parse(key, json!(v)).is_ok(), "{key} = {v:?} is in the document but refused");
        }
        for v in [json!(true), json!(false), json!("GRANTED"), json!("Denied"), json!(1), json!("")] {
            assert_eq!(parse(key, v.clone()), Err(format!("consent.{key}")), "{key} = {v} is not in the document");
        }
        // Absent or null: unknown, as the document says.
        assert!(parse(key, Value::Null).is_ok());
    }
}
