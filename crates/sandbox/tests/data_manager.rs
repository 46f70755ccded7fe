//! The Data Manager stand-in over real HTTP on loopback: every check rejects
//! what it should (and stores nothing), the official examples pass, request
//! status, quota, scopes and the service-account grant.

use std::time::Duration;

use serde_json::{Value, json};
use tally_sandbox::google_oauth::{
    ADWORDS_SCOPE, DATAMANAGER_SCOPE, JWT_BEARER_GRANT, TEST_ROGUE_KEY, TEST_SERVICE_ACCOUNT_EMAIL,
    TEST_SERVICE_ACCOUNT_KEY, sandbox_refresh_token_form,
};
use tally_sandbox::{DataManagerSandbox, Mode, RunningSandbox, Sandbox};

const EXAMPLE_B: &str = include_str!("fixtures/example_b.json");
const EXAMPLE_C: &str = include_str!("fixtures/example_c.json");

struct Dm {
    s: DataManagerSandbox,
    server: RunningSandbox,
    http: reqwest::Client,
    token: String,
}

impl Dm {
    async fn new() -> Dm {
        let sandbox = Sandbox::new();
        let server = sandbox.serve("127.0.0.1:0").await.unwrap();
        let http = reqwest::Client::new();
        let mut dm = Dm { s: sandbox.data_manager.clone(), server, http, token: String::new() };
        dm.token = dm.refresh_token_grant().await["access_token"].as_str().unwrap().to_owned();
        dm
    }

    async fn refresh_token_grant(&self) -> Value {
        refresh_token_grant(&self.http, &self.server.url("/data-manager/token")).await
    }

    async fn ingest_with(&self, body: &Value, token: &str, query: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(self.server.url(&format!("/data-manager/v1/events:ingest{query}")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap(), headers)
    }

    async fn ingest(&self, body: &Value) -> (u16, Value) {
        let (s, v, _) = self.ingest_with(body, &self.token, "").await;
        (s, v)
    }

    async fn status(&self, request_id: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.server.url(&format!("/data-manager/v1/requestStatus:retrieve?requestId={request_id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

async fn refresh_token_grant(http: &reqwest::Client, url: &str) -> Value {
    let r =
        http.post(url).header("content-type", "application/x-www-form-urlencoded").body(sandbox_refresh_token_form());
    r.send().await.unwrap().json().await.unwrap()
}

fn example(text: &str, validate_only: bool) -> Value {
    let mut v: Value = serde_json::from_str(text).unwrap();
    v["validateOnly"] = json!(validate_only);
    v
}

fn detail<'a>(body: &'a Value, ty: &str) -> Option<&'a Value> {
    body["error"]["details"].as_array()?.iter().find(|d| d["@type"] == format!("type.googleapis.com/google.rpc.{ty}"))
}

fn violations(body: &Value) -> Vec<(Option<String>, Option<String>)> {
    detail(body, "BadRequest")
        .and_then(|b| b["fieldViolations"].as_array())
        .map(|v| {
            v.iter()
                .map(|x| (x["field"].as_str().map(str::to_owned), x["reason"].as_str().map(str::to_owned)))
                .collect()
        })
        .unwrap_or_default()
}

fn rfc3339_in(secs_from_now: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t = now + secs_from_now;
    let (days, rem) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[tokio::test]
async fn the_official_examples_are_accepted_and_validate_only_stores_nothing() {
    let dm = Dm::new().await;
    for text in [EXAMPLE_B, EXAMPLE_C] {
        let (status, body) = dm.ingest(&example(text, true)).await;
        assert_eq!(status, 200, "{body}");
        let id = body["requestId"].as_str().unwrap().to_owned();
        assert!(id.starts_with("t-"), "{id}");
        assert!(body.get("fieldWarnings").is_none(), "{body}");
        // No status for a validateOnly request.
        let (status, sbody) = dm.status(&id).await;
        assert_eq!(status, 400, "{sbody}");
        assert_eq!(violations(&sbody), [(Some("request_id".into()), Some("INVALID_REQUEST_ID".into()))]);
    }
    assert!(dm.s.conversions().is_empty());
    assert_eq!(dm.s.ingests().len(), 2);
    assert!(dm.s.ingests().iter().all(|i| i.validate_only));

    let (status, body) = dm.ingest(&example(EXAMPLE_B, false)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = dm.ingest(&example(EXAMPLE_C, false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(dm.s.conversions().len(), 5);
    let b2 = dm.s.conversion("DEF987654321").unwrap();
    assert_eq!(b2.gclid.as_deref(), Some("GCLID123"));
    assert_eq!(b2.hashed_emails.len(), 3);
    assert_eq!(b2.hashed_phones.len(), 3);
    assert_eq!(b2.value, Some(1.99));
    assert_eq!(b2.currency.as_deref(), Some("USD"));
    assert_eq!(b2.operating_account, "1234567890");
    assert_eq!(b2.product_destination_id, "987654321");
    assert_eq!(b2.ad_user_data.as_deref(), Some("CONSENT_GRANTED"));
    let c = dm.s.conversion("ORD-1001").unwrap();
    assert_eq!(c.login_account.as_deref(), Some("9876543210"));
    assert!(c.has_address);
    // The event's consent overrides the request's.
    assert_eq!(c.ad_personalization.as_deref(), Some("CONSENT_DENIED"));
    assert_eq!(c.user_agent.as_deref(), Some("Mozilla/5.0 (X11; Linux x86_64)"));
    assert_eq!(c.ip_address.as_deref(), Some("203.0.113.7"));
    assert_eq!(c.cart_items.len(), 1);
    assert_eq!(c.cart_items[0].quantity, Some(2));
    assert_eq!(c.cart_items[0].merchant_product_id.as_deref(), Some("SKU-1"));
    assert_eq!(c.session_attributes.as_deref(), Some("BASE64URL_SESSION_ATTRIBUTES_FROM_GOOGLE_TAG"));
    assert!(dm.s.rejections().is_empty());
}

/// A name, a change to Example B, and the (field, reason) it must be refused with.
type Case = (&'static str, Box<dyn Fn(&mut Value)>, Option<&'static str>, Option<&'static str>);

#[tokio::test]
async fn each_rule_rejects_the_whole_request_and_names_the_field() {
    let dm = Dm::new().await;
    let future = rfc3339_in(86_400);
    let cases: Vec<Case> = vec![
        (
            "account id with dashes",
            Box::new(|v| v["destinations"][0]["operatingAccount"]["accountId"] = json!("123-456-7890")),
            Some("destinations[0].operating_account.account_id"),
            Some("INVALID_NUMBER_FORMAT"),
        ),
        (
            "unknown account type",
            Box::new(|v| v["destinations"][0]["operatingAccount"]["accountType"] = json!("GOOGLE_ADS_ACCOUNT")),
            Some("destinations[0].operating_account.account_type"),
            Some("INVALID_ENUM_VALUE"),
        ),
        (
            "no account type",
            Box::new(|v| {
                v["destinations"][0]["operatingAccount"].as_object_mut().unwrap().remove("accountType");
            }),
            Some("destinations[0].operating_account.account_type"),
            Some("REQUIRED_FIELD_MISSING"),
        ),
        (
            "no operating account",
            Box::new(|v| {
                v["destinations"][0].as_object_mut().unwrap().remove("operatingAccount");
            }),
            Some("destinations[0].operating_account"),
            Some("REQUIRED_FIELD_MISSING"),
        ),
        (
            "login account not numeric",
            Box::new(|v| {
                v["destinations"][0]["loginAccount"] = json!({"accountType": "GOOGLE_ADS", "accountId": "abc"})
            }),
            Some("destinations[0].login_account.account_id"),
            Some("INVALID_NUMBER_FORMAT"),
        ),
        (
            "empty conversion action",
            Box::new(|v| v["destinations"][0]["productDestinationId"] = json!("")),
            Some("destinations[0].product_destination_id"),
            Some("REQUIRED_FIELD_MISSING"),
        ),
        (
            "conversion action as a resource name",
            Box::new(|v| {
                v["destinations"][0]["productDestinationId"] = json!("customers/1234567890/conversionActions/987654321")
            }),
            Some("destinations[0].product_destination_id"),
            Some("INVALID_CONVERSION_ACTION_ID"),
        ),
        (
            "eleven destinations",
            Box::new(|v| {
                let d = v["destinations"][0].clone();
                v["destinations"] = Value::Array(vec![d; 11]);
            }),
            Some("destinations"),
            Some("TOO_MANY_DESTINATIONS"),
        ),
        (
            "duplicate references",
            Box::new(|v| {
                let mut d = v["destinations"][0].clone();
                d["reference"] = json!("a");
                v["destinations"] = json!([d.clone(), d]);
            }),
            Some("destinations[1].reference"),
            Some("DUPLICATE_DESTINATION_REFERENCE"),
        ),
        ("no events", Box::new(|v| v["events"] = json!([])), Some("events"), Some("REQUIRED_FIELD_MISSING")),
        (
            "2,001 events",
            Box::new(|v| {
                let e = v["events"][0].clone();
                v["events"] = Value::Array(vec![e; 2001]);
            }),
            Some("events"),
            Some("TOO_MANY_EVENTS"),
        ),
        (
            "no event timestamp",
            Box::new(|v| {
                v["events"][2].as_object_mut().unwrap().remove("eventTimestamp");
            }),
            Some("events[2].event_timestamp"),
            Some("REQUIRED_FIELD_MISSING"),
        ),
        (
            "the Google Ads API's date-time format",
            Box::new(|v| v["events"][3]["eventTimestamp"] = json!("2025-06-06 09:22:16+00:00")),
            Some("events[3].event_timestamp"),
            Some("INVALID_FORMAT"),
        ),
        (
            "a future event",
            Box::new(move |v| v["events"][0]["eventTimestamp"] = json!(future.clone())),
            Some("events[0].event_timestamp"),
            Some("EVENT_TIME_INVALID"),
        ),
        (
            "no identifier",
            Box::new(|v| {
                v["events"][0].as_object_mut().unwrap().remove("userData");
            }),
            Some("events[0]"),
            Some("NO_IDENTIFIERS_PROVIDED"),
        ),
        (
            "a reference no destination has",
            Box::new(|v| v["events"][0]["destinationReferences"] = json!(["nope"])),
            Some("events[0].destination_references[0]"),
            Some("INVALID_DESTINATION"),
        ),
        (
            "empty user identifiers",
            Box::new(|v| v["events"][0]["userData"]["userIdentifiers"] = json!([])),
            Some("events[0].user_data.user_identifiers"),
            Some("REQUIRED_FIELD_MISSING"),
        ),
        (
            "eleven user identifiers",
            Box::new(|v| {
                let id = v["events"][1]["userData"]["userIdentifiers"][0].clone();
                v["events"][1]["userData"]["userIdentifiers"] = Value::Array(vec![id; 11]);
            }),
            Some("events[1].user_data.user_identifiers"),
            Some("TOO_MANY_USER_IDENTIFIERS"),
        ),
        (
            "an identifier with two values",
            Box::new(|v| {
                v["events"][0]["userData"]["userIdentifiers"][1]["phoneNumber"] =
                    json!("fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30")
            }),
            Some("events[0].user_data.user_identifiers[1]"),
            Some("INVALID_ARGUMENT"),
        ),
        (
            "user data without encoding",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("encoding");
            }),
            Some("encoding"),
            Some("REQUIRED_FIELD_MISSING"),
        ),
        (
            "a malformed hex hash",
            Box::new(|v| {
                v["events"][1]["userData"]["userIdentifiers"][2]["emailAddress"] = json!("not-hex@example.com")
            }),
            Some("events[1].user_data.user_identifiers[2]"),
            Some("INVALID_HEX_ENCODING"),
        ),
        (
            "a hex value that is no SHA-256",
            Box::new(|v| v["events"][1]["userData"]["userIdentifiers"][3]["phoneNumber"] = json!("abcdef")),
            Some("events[1].user_data.user_identifiers[3]"),
            Some("INVALID_SHA256_FORMAT"),
        ),
        (
            "BASE64 declared, hex sent",
            Box::new(|v| v["encoding"] = json!("BASE64")),
            Some("events[0].user_data.user_identifiers[0]"),
            Some("INVALID_SHA256_FORMAT"),
        ),
        (
            "an address without postal code",
            Box::new(|v| {
                v["events"][0]["userData"]["userIdentifiers"][0] = json!({"address": {
                    "givenName": "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
                    "familyName": "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f",
                    "regionCode": "US"}})
            }),
            Some("events[0].user_data.user_identifiers[0].address.postal_code"),
            Some("REQUIRED_FIELD_MISSING"),
        ),
        (
            "an address with a hashed region",
            Box::new(|v| {
                v["events"][0]["userData"]["userIdentifiers"][0] = json!({"address": {
                    "givenName": "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
                    "familyName": "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f",
                    "regionCode": "9b202ecbc6d45c6d8901d989a918878397a3eb9d00e8f48022fc051b19d21a1d",
                    "postalCode": "94043"}})
            }),
            Some("events[0].user_data.user_identifiers[0].address.region_code"),
            Some("INVALID_REGION_CODE"),
        ),
        (
            "an address with an unhashed given name",
            Box::new(|v| {
                v["events"][0]["userData"]["userIdentifiers"][0] = json!({"address": {
                    "givenName": "Jane",
                    "familyName": "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f",
                    "regionCode": "US", "postalCode": "94043"}})
            }),
            Some("events[0].user_data.user_identifiers[0].address.given_name"),
            Some("INVALID_HEX_ENCODING"),
        ),
        (
            "a lower-case currency",
            Box::new(|v| v["events"][2]["currency"] = json!("eur")),
            Some("events[2].currency"),
            Some("INVALID_CURRENCY_CODE"),
        ),
        (
            "Google Ads API consent spelling",
            Box::new(|v| v["consent"]["adUserData"] = json!("GRANTED")),
            Some("consent.ad_user_data"),
            Some("INVALID_ENUM_VALUE"),
        ),
        (
            "an integer enum without $alt",
            Box::new(|v| v["events"][0]["eventSource"] = json!(1)),
            Some("events[0].event_source"),
            Some("INVALID_ENUM_VALUE"),
        ),
        (
            "an IP address that is none",
            Box::new(|v| v["events"][0]["eventDeviceInfo"] = json!({"ipAddress": "999.1.2.3"})),
            Some("events[0].event_device_info.ip_address"),
            Some("INVALID_FORMAT"),
        ),
        (
            "a quantity that is no integer",
            Box::new(|v| {
                v["events"][0]["cartData"] =
                    json!({"items": [{"merchantProductId": "A", "unitPrice": 1.0, "quantity": "two"}]})
            }),
            Some("events[0].cart_data.items[0].quantity"),
            None,
        ),
        (
            "a conversion value as a string",
            Box::new(|v| v["events"][0]["conversionValue"] = json!("5.31")),
            Some("events[0].conversion_value"),
            None,
        ),
        (
            "third-party user data",
            Box::new(|v| v["events"][0]["thirdPartyUserData"] = v["events"][0]["userData"].clone()),
            Some("events[0].third_party_user_data"),
            Some("THIRD_PARTY_USER_DATA_NOT_ALLOWED"),
        ),
    ];
    let n = cases.len();
    for (name, mutate, field, reason) in cases {
        let mut body = example(EXAMPLE_B, false);
        mutate(&mut body);
        let (status, answer) = dm.ingest(&body).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT", "{name}");
        assert_eq!(answer["error"]["code"], 400, "{name}");
        let info = detail(&answer, "ErrorInfo").unwrap_or_else(|| panic!("{name}: no ErrorInfo in {answer}"));
        assert_eq!(info["domain"], "datamanager.googleapis.com", "{name}");
        let rid = detail(&answer, "RequestInfo").unwrap()["requestId"].as_str().unwrap().to_owned();
        assert_eq!(info["metadata"]["requestId"], rid.as_str(), "{name}");
        let want = (field.map(str::to_owned), reason.map(str::to_owned));
        assert!(violations(&answer).contains(&want), "{name}: wanted {want:?} in {answer}");
        assert!(dm.s.conversions().is_empty(), "{name}: fast-fail stores nothing");
    }
    assert_eq!(dm.s.rejections().len(), n);
    assert!(dm.s.ingests().is_empty());
    let last = dm.s.rejections().pop().unwrap();
    assert_eq!(last.reasons(), ["THIRD_PARTY_USER_DATA_NOT_ALLOWED"]);
    assert_eq!(last.fields(), ["events[0].third_party_user_data"]);
}

#[tokio::test]
async fn unknown_names_are_refused_as_google_json_parsers_do() {
    let dm = Dm::new().await;
    let mut body = example(EXAMPLE_B, false);
    body["testEventCode"] = json!("TEST123");
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"]["message"],
        "Invalid JSON payload received. Unknown name \"testEventCode\": Cannot find field."
    );
    let mut body = example(EXAMPLE_B, false);
    body["events"][1]["adIdentifiers"]["hashedEmail"] = json!("x");
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"]["message"],
        "Invalid JSON payload received. Unknown name \"hashedEmail\" at 'events[1].ad_identifiers': Cannot find field."
    );
    assert_eq!(violations(&answer), [(Some("events[1].ad_identifiers".into()), None)]);
    // Google Ads API field names are unknown here.
    let mut body = example(EXAMPLE_B, false);
    body["events"][0]["currencyCode"] = json!("USD");
    assert_eq!(dm.ingest(&body).await.0, 400);
    // proto3 JSON also takes the original snake_case names.
    let mut body = example(EXAMPLE_B, false);
    let d = body["destinations"][0].as_object_mut().unwrap();
    let id = d.remove("productDestinationId").unwrap();
    d.insert("product_destination_id".into(), id);
    body["events"][0]["transaction_id"] = body["events"][0].as_object_mut().unwrap().remove("transactionId").unwrap();
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(dm.s.conversion("ABC1234567").unwrap().product_destination_id, "987654321");
    assert!(dm.s.rejections().iter().all(|r| r.http_status == 400));
}

#[tokio::test]
async fn integer_enums_are_taken_only_with_the_enum_encoding_parameter() {
    let dm = Dm::new().await;
    let mut body = example(EXAMPLE_B, false);
    body["destinations"][0]["operatingAccount"]["accountType"] = json!(1);
    body["events"][0]["eventSource"] = json!(1);
    body["consent"] = json!({"adUserData": 1, "adPersonalization": 2});
    body["encoding"] = json!(1);
    let (status, _, _) = dm.ingest_with(&body, &dm.token, "").await;
    assert_eq!(status, 400);
    let (status, answer, _) = dm.ingest_with(&body, &dm.token, "?$alt=json;enum-encoding=int").await;
    assert_eq!(status, 200, "{answer}");
    let c = dm.s.conversion("ABC1234567").unwrap();
    assert_eq!(c.operating_account_type, "GOOGLE_ADS");
    assert_eq!(c.event_source.as_deref(), Some("WEB"));
    assert_eq!(c.ad_user_data.as_deref(), Some("CONSENT_GRANTED"));
    assert_eq!(c.ad_personalization.as_deref(), Some("CONSENT_DENIED"));
}

#[tokio::test]
async fn one_bad_event_sinks_the_batch_and_fields_can_be_withheld() {
    let dm = Dm::new().await;
    let mut body = example(EXAMPLE_B, false);
    body["events"][3]["userData"]["userIdentifiers"][1]["emailAddress"] = json!("ZZ");
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 400);
    assert_eq!(
        violations(&answer),
        [(Some("events[3].user_data.user_identifiers[1]".into()), Some("INVALID_HEX_ENCODING".into()))]
    );
    assert!(dm.s.conversions().is_empty());
    dm.s.omit_violation_fields(true);
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 400);
    assert_eq!(violations(&answer), [(None, Some("INVALID_HEX_ENCODING".into()))]);
    // The record still knows where it was.
    assert_eq!(dm.s.rejections()[1].fields(), ["events[3].user_data.user_identifiers[1]"]);
    // Without the bad event the other three go through.
    body["events"].as_array_mut().unwrap().remove(3);
    assert_eq!(dm.ingest(&body).await.0, 200);
    assert_eq!(dm.s.conversions().len(), 3);
}

#[tokio::test]
async fn optional_field_problems_are_warnings_on_a_200() {
    let dm = Dm::new().await;
    let mut body = example(EXAMPLE_B, false);
    body["events"][1]["cartData"] = json!({"merchantId": "1234567", "items": [{"quantity": "1", "unitPrice": 2.0}, {"merchantProductId": "B", "quantity": 3}]});
    body["events"][2]["adIdentifiers"] = json!({"gbraid": "GBRAID1"});
    body["events"][2]["cartData"] = json!({"items": [{"merchantProductId": "C", "unitPrice": 1.5}]});
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 200, "{answer}");
    let warnings: Vec<(String, String)> = answer["fieldWarnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["reason"].as_str().unwrap().to_owned(), w["field"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        warnings,
        [
            ("WARNING_REASON_CART_DATA_ITEM_MERCHANT_PRODUCT_ID_MISSING".into(), "events[1].cart_data.items[0]".into()),
            ("WARNING_REASON_CART_DATA_ITEM_UNIT_PRICE_MISSING".into(), "events[1].cart_data.items[1]".into()),
            ("WARNING_REASON_CART_DATA_NOT_SUPPORTED_WITH_GBRAID_OR_WBRAID".into(), "events[2].cart_data".into()),
        ]
    );
    assert_eq!(dm.s.ingests()[0].warnings.len(), 3);
    let c = dm.s.conversion("DEF987654321").unwrap();
    assert_eq!(c.cart_items[1].quantity, Some(3), "a number is taken for an int64 too");
    assert_eq!(dm.s.conversion("GHI5656565656").unwrap().gbraid.as_deref(), Some("GBRAID1"));
}

#[tokio::test]
async fn the_same_transaction_id_restates_the_value_and_supplements_missing_user_data() {
    let dm = Dm::new().await;
    let mut body = example(EXAMPLE_B, false);
    // The third event arrives first with only its click.
    body["events"][2].as_object_mut().unwrap().remove("userData");
    assert_eq!(dm.ingest(&body).await.0, 200);
    assert_eq!(dm.s.conversions().len(), 4);
    assert!(dm.s.conversion("GHI5656565656").unwrap().hashed_emails.is_empty());

    let mut again = example(EXAMPLE_B, false);
    again["events"][0]["conversionValue"] = json!(2.5);
    again["events"][0]["currency"] = json!("EUR");
    again["events"][0]["userData"]["userIdentifiers"] =
        json!([{"phoneNumber": "525c2390a4e2a9766fa8ddc341dd10414603baebefa401f5a5e29f55e176525d"}]);
    let (status, answer) = dm.ingest(&again).await;
    assert_eq!(status, 200, "no duplicate error: {answer}");
    assert_eq!(dm.s.conversions().len(), 4, "the count does not increase");
    let first = dm.s.conversion("ABC1234567").unwrap();
    assert_eq!((first.value, first.currency.as_deref(), first.restatements), (Some(2.5), Some("EUR"), 1));
    assert_eq!(first.hashed_emails.len(), 2, "user data kept: it had some");
    assert!(first.hashed_phones.is_empty());
    let third = dm.s.conversion("GHI5656565656").unwrap();
    assert_eq!(third.hashed_emails.len(), 2, "user data added: it had none");
    assert_eq!(third.restatements, 1);

    // Another conversion action is another conversion.
    let mut other = example(EXAMPLE_B, false);
    other["destinations"][0]["productDestinationId"] = json!("111");
    assert_eq!(dm.ingest(&other).await.0, 200);
    assert_eq!(dm.s.conversions().len(), 8);
}

#[tokio::test]
async fn request_status_goes_from_processing_to_a_final_state_per_destination() {
    let dm = Dm::new().await;
    dm.s.set_processing_delay(Duration::from_secs(3600));
    dm.s.reject_gclid("GCLID123");
    let mut body = example(EXAMPLE_B, false);
    let mut second = body["destinations"][0].clone();
    second["reference"] = json!("second");
    second["productDestinationId"] = json!("222");
    let mut first = body["destinations"][0].clone();
    first["reference"] = json!("first");
    body["destinations"] = json!([first, second]);
    // Events 0 and 1 go to "second" only; 2 and 3 to both.
    body["events"][0]["destinationReferences"] = json!(["second"]);
    body["events"][1]["destinationReferences"] = json!(["second"]);
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["requestId"].as_str().unwrap().to_owned();

    let (status, st) = dm.status(&id).await;
    assert_eq!(status, 200, "{st}");
    let per = st["requestStatusPerDestination"].as_array().unwrap();
    assert_eq!(per.len(), 2);
    assert!(per.iter().all(|d| d["requestStatus"] == "PROCESSING" && d.get("errorInfo").is_none()), "{st}");

    dm.s.finish_processing();
    let (_, st) = dm.status(&id).await;
    let per = st["requestStatusPerDestination"].as_array().unwrap();
    assert_eq!(per[0]["destination"]["reference"], "first");
    assert_eq!(per[0]["destination"]["productDestinationId"], "987654321");
    assert_eq!(per[0]["requestStatus"], "SUCCESS");
    assert_eq!(per[0]["eventsIngestionStatus"]["recordCount"], "2");
    assert!(per[0].get("errorInfo").is_none());
    assert_eq!(per[1]["destination"]["reference"], "second");
    assert_eq!(per[1]["requestStatus"], "PARTIAL_SUCCESS");
    assert_eq!(per[1]["eventsIngestionStatus"]["recordCount"], "4");
    assert_eq!(
        per[1]["errorInfo"]["errorCounts"],
        json!([{"recordCount": "1", "reason": "PROCESSING_ERROR_REASON_INVALID_GCLID"}])
    );
    // The event with the bad click was not stored; the others were (per destination).
    assert!(dm.s.conversion("DEF987654321").is_none());
    assert_eq!(dm.s.conversions().len(), 5);

    // All events bad: FAILED. And the delay alone also ends PROCESSING.
    dm.s.set_processing_delay(Duration::ZERO);
    let mut bad = example(EXAMPLE_B, false);
    bad["events"] = json!([bad["events"][1].clone()]);
    let (_, answer) = dm.ingest(&bad).await;
    let (_, st) = dm.status(answer["requestId"].as_str().unwrap()).await;
    assert_eq!(st["requestStatusPerDestination"][0]["requestStatus"], "FAILED", "{st}");
    assert_eq!(dm.status("t-unknown").await.0, 400);
    assert_eq!(dm.s.status_requests(), 4);
}

#[tokio::test]
async fn over_the_per_minute_quota_is_a_429_without_retry_after() {
    let dm = Dm::new().await;
    dm.s.set_requests_per_minute(2);
    let body = example(EXAMPLE_B, true);
    assert_eq!(dm.ingest(&body).await.0, 200);
    assert_eq!(dm.ingest(&body).await.0, 200);
    let (status, answer, headers) = dm.ingest_with(&body, &dm.token, "").await;
    assert_eq!(status, 429, "{answer}");
    assert!(headers.get("retry-after").is_none());
    assert_eq!(answer["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        detail(&answer, "ErrorInfo").unwrap()["metadata"]["quota_limit"],
        "IngestionMutateRequestsPerMinutePerProject"
    );
    assert_eq!(dm.s.rejections().last().unwrap().status, "RESOURCE_EXHAUSTED");
    dm.s.set_requests_per_minute(0);
    assert_eq!(dm.ingest(&body).await.0, 200);
    // Faults as elsewhere.
    dm.s.faults.set(Mode::Down);
    assert_eq!(dm.ingest(&body).await.0, 503);
    dm.s.faults.set(Mode::Up);
}

#[tokio::test]
async fn a_token_needs_the_datamanager_scope() {
    let dm = Dm::new().await;
    // The sandbox's refresh token was granted both Google scopes (one token
    // endpoint serves both APIs, as Google's does).
    let grant = dm.refresh_token_grant().await;
    assert_eq!(grant["scope"], format!("{DATAMANAGER_SCOPE} {ADWORDS_SCOPE}"));
    let body = example(EXAMPLE_B, true);
    // No token, a token from another endpoint, an expired one.
    let r = dm.http.post(dm.server.url("/data-manager/v1/events:ingest")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(dm.ingest_with(&body, "ya29.made-up", "").await.0, 401);
    // A refresh token consented for the Google Ads API only.
    dm.s.set_refresh_token_scopes(&[ADWORDS_SCOPE]);
    let grant = dm.refresh_token_grant().await;
    assert_eq!(grant["scope"], ADWORDS_SCOPE);
    let adwords_only = grant["access_token"].as_str().unwrap();
    let (status, answer, _) = dm.ingest_with(&body, adwords_only, "").await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(detail(&answer, "ErrorInfo").unwrap()["reason"], "ACCESS_TOKEN_SCOPE_INSUFFICIENT");
    // Both scopes: fine.
    dm.s.set_refresh_token_scopes(&[ADWORDS_SCOPE, DATAMANAGER_SCOPE]);
    let grant = dm.refresh_token_grant().await;
    assert_eq!(grant["scope"], format!("{ADWORDS_SCOPE} {DATAMANAGER_SCOPE}"));
    assert_eq!(dm.ingest_with(&body, grant["access_token"].as_str().unwrap(), "").await.0, 200);
    dm.s.oauth.expire_tokens();
    assert_eq!(dm.ingest(&body).await.0, 401);
    assert_eq!(dm.s.rejections().iter().filter(|r| r.http_status == 401).count(), 3);
}

#[tokio::test]
async fn headers_the_guides_forbid_are_flagged_and_login_accounts_can_be_required() {
    let dm = Dm::new().await;
    let body = example(EXAMPLE_B, false);
    let r = dm
        .http
        .post(dm.server.url("/data-manager/v1/events:ingest"))
        .bearer_auth(&dm.token)
        .header("developer-token", "abc")
        .header("login-customer-id", "9876543210")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "flagged, not refused");
    assert_eq!(dm.s.flagged_headers(), ["developer-token", "login-customer-id"]);

    dm.s.require_login_account("9876543210");
    let (status, answer) = dm.ingest(&body).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(violations(&answer), [(Some("destinations[0].login_account".into()), Some("PERMISSION_DENIED".into()))]);
    assert_eq!(dm.ingest(&example(EXAMPLE_C, false)).await.0, 200);
}

// --- The service-account (JWT-bearer) grant ---------------------------------

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            s.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    s
}

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, c)| acc | (u32::from(val(*c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn sign_assertion(key_json: &str, claims: &Value, alg: &str) -> String {
    let key: Value = serde_json::from_str(key_json).unwrap();
    let pem = key["private_key"].as_str().unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&b64_decode(&body)).unwrap();
    let header = json!({"alg": alg, "typ": "JWT", "kid": key["private_key_id"]});
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
        .unwrap();
    format!("{signing_input}.{}", b64url(&sig))
}

async fn jwt_grant(dm: &Dm, assertion: &str) -> (u16, Value) {
    let r = dm
        .http
        .post(dm.server.url("/data-manager/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type={}&assertion={assertion}", JWT_BEARER_GRANT.replace(':', "%3A")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_service_account_gets_a_token_with_a_signed_assertion() {
    let dm = Dm::new().await;
    let aud = dm.server.url("/data-manager/token");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |scope: &str, aud: &str, iat: u64, exp: u64| json!({"iss": TEST_SERVICE_ACCOUNT_EMAIL, "scope": scope, "aud": aud, "iat": iat, "exp": exp});
    let good = claims(DATAMANAGER_SCOPE, &aud, now, now + 3600);
    let (status, grant) = jwt_grant(&dm, &sign_assertion(TEST_SERVICE_ACCOUNT_KEY, &good, "RS256")).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["scope"], DATAMANAGER_SCOPE);
    assert_eq!(grant["token_type"], "Bearer");
    let token = grant["access_token"].as_str().unwrap();
    assert_eq!(dm.ingest_with(&example(EXAMPLE_B, true), token, "").await.0, 200);
    assert_eq!(dm.s.oauth.grants().last().unwrap().service_account.as_deref(), Some(TEST_SERVICE_ACCOUNT_EMAIL));

    let refused = [
        ("another key", sign_assertion(TEST_ROGUE_KEY, &good, "RS256"), "invalid_grant", "Invalid JWT Signature."),
        (
            "another audience",
            sign_assertion(
                TEST_SERVICE_ACCOUNT_KEY,
                &claims(DATAMANAGER_SCOPE, "https://oauth2.googleapis.com/token", now, now + 3600),
                "RS256",
            ),
            "invalid_grant",
            "aud",
        ),
        (
            "two hours",
            sign_assertion(TEST_SERVICE_ACCOUNT_KEY, &claims(DATAMANAGER_SCOPE, &aud, now, now + 7200), "RS256"),
            "invalid_grant",
            "short-lived",
        ),
        (
            "expired",
            sign_assertion(TEST_SERVICE_ACCOUNT_KEY, &claims(DATAMANAGER_SCOPE, &aud, now - 7200, now - 3600), "RS256"),
            "invalid_grant",
            "short-lived",
        ),
        (
            "no scope",
            sign_assertion(TEST_SERVICE_ACCOUNT_KEY, &claims("", &aud, now, now + 3600), "RS256"),
            "invalid_scope",
            "scope",
        ),
        ("not RS256", sign_assertion(TEST_SERVICE_ACCOUNT_KEY, &good, "HS256"), "invalid_grant", "RS256"),
        ("garbage", "a.b".to_owned(), "invalid_grant", "three"),
    ];
    for (name, assertion, error, needle) in refused {
        let (status, answer) = jwt_grant(&dm, &assertion).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["error"], error, "{name}: {answer}");
        assert!(answer["error_description"].as_str().unwrap().contains(needle), "{name}: {answer}");
    }
    // A token for the adwords scope only is minted, but the API refuses it.
    let (_, grant) = jwt_grant(
        &dm,
        &sign_assertion(TEST_SERVICE_ACCOUNT_KEY, &claims(ADWORDS_SCOPE, &aud, now, now + 3600), "RS256"),
    )
    .await;
    let token = grant["access_token"].as_str().unwrap();
    assert_eq!(dm.ingest_with(&example(EXAMPLE_B, true), token, "").await.0, 403);
    // An unregistered account.
    dm.s.oauth.remove_service_account(TEST_SERVICE_ACCOUNT_EMAIL);
    let (status, answer) = jwt_grant(&dm, &sign_assertion(TEST_SERVICE_ACCOUNT_KEY, &good, "RS256")).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn one_token_endpoint_serves_both_google_apis_and_each_checks_its_scope() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve("127.0.0.1:0").await.unwrap();
    let http = reqwest::Client::new();
    // Minted at the Google Ads mount, used at Data Manager: one Google token endpoint.
    let grant = refresh_token_grant(&http, &server.url("/google-ads/token")).await;
    assert_eq!(grant["scope"], format!("{DATAMANAGER_SCOPE} {ADWORDS_SCOPE}"));
    let ingest = |token: String| {
        let (http, url) = (http.clone(), server.url("/data-manager/v1/events:ingest"));
        async move { http.post(url).bearer_auth(token).json(&example(EXAMPLE_B, true)).send().await.unwrap().status() }
    };
    assert_eq!(ingest(grant["access_token"].as_str().unwrap().to_owned()).await, 200);
    assert_eq!(sandbox.google_ads.token_requests(), 1);
    assert_eq!(sandbox.data_manager.token_requests(), 1, "the same endpoint's count");
    // A token consented for the Google Ads API only: Data Manager refuses it.
    sandbox.data_manager.set_refresh_token_scopes(&[ADWORDS_SCOPE]);
    let grant = refresh_token_grant(&http, &server.url("/data-manager/token")).await;
    assert_eq!(grant["scope"], ADWORDS_SCOPE);
    assert_eq!(ingest(grant["access_token"].as_str().unwrap().to_owned()).await, 403);
    // On its own, each stand-in's endpoint grants its own API's scope.
    let alone = tally_sandbox::GoogleAdsSandbox::default();
    let only = crate::Sandbox { google_ads: alone, ..Sandbox::new() }.serve("127.0.0.1:0").await.unwrap();
    let grant = refresh_token_grant(&http, &only.url("/google-ads/token")).await;
    assert_eq!(grant["scope"], ADWORDS_SCOPE);
}
