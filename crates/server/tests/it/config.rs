//! Every configuration mistake fails at `build()` with a message that says
//! what to fix.

use tally_server::{
    ConfigError, Ga4Config, GoogleAdsConfig, MetaConfig, PinterestConfig, RoktConfig, ServerTracker,
    ServerTrackerBuilder, ServokiConfig, TikTokConfig, WebhookConfig,
};

fn ads() -> GoogleAdsConfig {
    GoogleAdsConfig::new("123-456-7890", "client.apps.googleusercontent.com", "client-secret", "1//refresh")
        .conversion_action("AbC-purchase", "555666777")
        .conversion_action("lead", "customers/1234567890/conversionActions/42")
        .label("purchase", "AbC-purchase")
        .label("generate_lead", "lead")
}

fn meta() -> MetaConfig {
    MetaConfig::new("1234567890", "EAAtoken")
}

fn rokt() -> RoktConfig {
    RoktConfig::new("12345", "rpub-abc", "rsec-xyz")
}

fn error(b: ServerTrackerBuilder) -> String {
    match b.build() {
        Ok(_) => panic!("build() accepted a bad configuration"),
        Err(e) => e.to_string(),
    }
}

fn expect(b: ServerTrackerBuilder, parts: &[&str]) {
    let e = error(b);
    for p in parts {
        assert!(e.contains(p), "{e:?} should mention {p:?}");
    }
}

fn with_ads(c: GoogleAdsConfig) -> ServerTrackerBuilder {
    ServerTracker::builder().google_ads(c)
}

#[test]
fn a_complete_configuration_builds_with_every_destination() {
    let t = ServerTracker::builder()
        .ga4(Ga4Config::new("G-ABC123", "secret"))
        .google_ads(ads().login_customer_id("987-654-3210").developer_token("dev-token"))
        .meta(meta().test_event_code("TEST123"))
        .rokt(rokt())
        .servoki(ServokiConfig::new("shop.example", "servoki_key"))
        .tiktok(TikTokConfig::new("C4PIXEL", "tt-token"))
        .pinterest(PinterestConfig::new("549755885175", "pina-token"))
        .webhook("warehouse", WebhookConfig::new("https://hooks.example/tally", "whsec_1"))
        .webhook("crm", WebhookConfig::new("https://crm.example/in", "whsec_2"))
        .build()
        .unwrap();
    assert_eq!(
        t.destination_names(),
        ["ga4", "google_ads", "meta", "pinterest", "rokt", "servoki", "tiktok", "webhook:warehouse", "webhook:crm"]
    );
}

#[test]
fn nothing_configured() {
    assert_eq!(ServerTracker::builder().build().err(), Some(ConfigError::NoDestination));
    expect(ServerTracker::builder(), &["no destination is configured", "google_ads"]);
}

#[test]
fn google_ads_ids_and_credentials() {
    let mut c = ads();
    c.customer_id = " ".into();
    expect(with_ads(c), &["google_ads.customer_id is required", "10-digit"]);
    let mut c = ads();
    c.customer_id = "123-456-789".into();
    expect(with_ads(c), &["google_ads.customer_id is invalid", "\"123-456-789\"", "10 digits"]);
    expect(with_ads(ads().login_customer_id("98-76")), &["google_ads.login_customer_id is invalid", "manager"]);
    let mut c = ads();
    c.client_id = String::new();
    expect(with_ads(c), &["google_ads.client_id is required", "Credentials"]);
    let mut c = ads();
    c.client_secret = String::new().into();
    expect(with_ads(c), &["google_ads.client_secret is required"]);
    let mut c = ads();
    c.refresh_token = String::new().into();
    expect(with_ads(c), &["google_ads.refresh_token is required", "datamanager"]);
    expect(with_ads(ads().developer_token("  ")), &["google_ads.developer_token is invalid", "optional"]);
    expect(with_ads(ads().api_version("26")), &["google_ads.api_version is invalid", "v26"]);
    expect(with_ads(ads().base_url("ftp://ads")), &["google_ads.base_url is invalid", "http(s)"]);
    expect(with_ads(ads().token_url("not a url")), &["google_ads.token_url is invalid"]);
    // Dashes are fine.
    assert!(with_ads(ads().login_customer_id("987-654-3210")).build().is_ok());
}

#[test]
fn google_ads_conversion_actions_and_labels() {
    let mut c = ads();
    c.conversion_actions.clear();
    c.labels = Default::default();
    expect(with_ads(c), &["google_ads.conversion_actions is required", "at least one label"]);
    expect(
        with_ads(ads().conversion_action("signup", "abc")),
        &["google_ads.conversion_actions is invalid", "\"signup\"", "numeric action id"],
    );
    expect(
        with_ads(ads().label("sign_up", "AbC-signup")),
        &[
            "google_ads.labels is invalid",
            "sign_up label \"AbC-signup\" names no configured conversion action",
            "AbC-purchase, lead",
        ],
    );
    expect(with_ads(ads().label("search", "nope")), &["search label \"nope\""]);
}

#[test]
fn meta_settings() {
    let m = |c: MetaConfig| ServerTracker::builder().meta(c);
    expect(m(MetaConfig::new("", "t")), &["meta.pixel_id is required", "Events Manager"]);
    expect(m(MetaConfig::new("px-123", "t")), &["meta.pixel_id is invalid", "\"px-123\""]);
    expect(m(MetaConfig::new("123", " ")), &["meta.access_token is required", "Conversions API"]);
    expect(m(meta().api_version("25")), &["meta.api_version is invalid", "v25.0"]);
    expect(m(meta().test_event_code("")), &["meta.test_event_code is invalid"]);
    expect(m(meta().base_url("graph")), &["meta.base_url is invalid"]);
}

#[test]
fn rokt_settings() {
    let r = |c: RoktConfig| ServerTracker::builder().rokt(c);
    expect(r(RoktConfig::new("", "rpub-a", "rsec-b")), &["rokt.account_id is required"]);
    expect(r(RoktConfig::new("x".repeat(65), "rpub-a", "rsec-b")), &["rokt.account_id is invalid", "64"]);
    expect(r(RoktConfig::new("1", "", "rsec-b")), &["rokt.public_key is required", "rpub-"]);
    expect(r(RoktConfig::new("1", "rpub-a", "")), &["rokt.secret is required", "rsec-"]);
    expect(r(RoktConfig::new("1", "pub-a", "rsec-b")), &["rokt.public_key is invalid", "starting with rpub-"]);
    expect(r(RoktConfig::new("1", "rpub-a", "secret")), &["rokt.secret is invalid", "starting with rsec-"]);
    let mut c = rokt();
    c.rokt_version = String::new();
    expect(r(c), &["rokt.rokt_version is invalid", "2020-05-21"]);
    expect(r(rokt().url("api.rokt.com/v2/events")), &["rokt.url is invalid"]);
}

#[test]
fn servoki_and_tiktok_settings() {
    let s = |c: ServokiConfig| ServerTracker::builder().servoki(c);
    expect(s(ServokiConfig::new("", "k")), &["servoki.site is required"]);
    expect(s(ServokiConfig::new("shop.example", "")), &["servoki.api_key is required", "API keys"]);
    expect(s(ServokiConfig::new("shop.example", "k").url("x")), &["servoki.url is invalid"]);
    let t = |c: TikTokConfig| ServerTracker::builder().tiktok(c);
    expect(t(TikTokConfig::new("", "t")), &["tiktok.pixel_code is required"]);
    expect(t(TikTokConfig::new("C4 PIXEL!", "t")), &["tiktok.pixel_code is invalid"]);
    expect(t(TikTokConfig::new("C4PIXEL", "")), &["tiktok.access_token is required"]);
    expect(t(TikTokConfig::new("C4PIXEL", "t").url("ftp://x")), &["tiktok.url is invalid"]);
}

#[test]
fn pinterest_settings() {
    let p = |c: PinterestConfig| ServerTracker::builder().pinterest(c);
    expect(p(PinterestConfig::new(" ", "t")), &["pinterest.ad_account_id is required", "Ads Manager"]);
    expect(p(PinterestConfig::new("5497-5588", "t")), &["pinterest.ad_account_id is invalid", "\"5497-5588\""]);
    expect(p(PinterestConfig::new("1".repeat(19), "t")), &["pinterest.ad_account_id is invalid", "18 digits"]);
    expect(p(PinterestConfig::new("549755885175", "")), &["pinterest.access_token is required", "conversion"]);
    expect(p(PinterestConfig::new("549755885175", "t").base_url("ftp://x")), &["pinterest.base_url is invalid"]);
    assert!(p(PinterestConfig::new("549755885175", "t").test(true)).build().is_ok());
}

#[test]
fn webhook_settings() {
    let ok = || WebhookConfig::new("https://hooks.example/in", "whsec_1");
    expect(ServerTracker::builder().webhook("Ware House", ok()), &["webhook.name is invalid", "\"Ware House\""]);
    expect(ServerTracker::builder().webhook("", ok()), &["webhook.name is invalid"]);
    expect(
        ServerTracker::builder().webhook("crm", ok()).webhook("crm", ok()),
        &["webhook.name is invalid", "\"crm\" is configured twice"],
    );
    expect(
        ServerTracker::builder().webhook("crm", WebhookConfig::new("hooks.example", "s")),
        &["webhook.url is invalid", "webhook \"crm\""],
    );
    expect(
        ServerTracker::builder().webhook("crm", WebhookConfig::new("https://hooks.example/in", "")),
        &["webhook.secret is required", "X-Tally-Signature"],
    );
}

#[test]
fn ga4_and_general_settings_still_checked() {
    expect(ServerTracker::builder().ga4(Ga4Config::new("G-ABC", "")), &["ga4.api_secret is required"]);
    expect(
        ServerTracker::builder().meta(meta()).dedup_retention(std::time::Duration::from_secs(60)),
        &["dedup_retention is invalid", "48 hours"],
    );
}

#[test]
fn debug_output_never_shows_secrets() {
    let text = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        ads().developer_token("dev-token-secret"),
        meta(),
        rokt(),
        ServokiConfig::new("shop.example", "servoki_key_secret"),
        TikTokConfig::new("C4PIXEL", "tt-token-secret"),
        WebhookConfig::new("https://hooks.example/in", "whsec_secret"),
    );
    for secret in [
        "client-secret",
        "1//refresh",
        "dev-token-secret",
        "EAAtoken",
        "rsec-xyz",
        "servoki_key_secret",
        "tt-token-secret",
        "whsec_secret",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("[redacted]"));
}

#[test]
fn google_ads_chooses_its_api_and_says_what_that_means() {
    use tally_server::config_file::TallyConfig;
    use tally_server::{GoogleAdsApi, Retractions};
    // The default: the Data Manager API; full refunds are skipped, and check says so.
    let t = with_ads(ads().developer_token("dev-token")).build().unwrap();
    let notes = t.configuration_notes().join("\n");
    assert!(notes.contains("developer_token is not used"), "{notes}");
    assert!(notes.contains("retraction_unsupported"), "{notes}");
    // The Google Ads API, chosen explicitly: the 2026 change is explained.
    let t = with_ads(ads().api(GoogleAdsApi::GoogleAdsApi)).build().unwrap();
    let notes = t.configuration_notes().join("\n");
    assert!(notes.contains("2026-06-15") && notes.contains("CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"), "{notes}");
    let t = with_ads(ads().retractions(Retractions::GoogleAdsApi)).build().unwrap();
    assert!(t.configuration_notes().join("\n").contains("adwords scope"));
    // The same from TOML, and a misspelt choice names the setting and the choices.
    let toml = |extra: &str| {
        format!(
            "[google_ads]\ncustomer_id = \"123-456-7890\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrefresh_token = \"r\"\n\
             conversion_actions = {{ buy = \"555\" }}\nlabels = {{ purchase = \"buy\" }}\n{extra}"
        )
    };
    let legacy = TallyConfig::from_toml(&toml("api = \"google_ads_api\"\nretractions = \"skip\"")).unwrap();
    let t = legacy.tracker_builder().unwrap().build().unwrap();
    assert!(t.configuration_notes().join("\n").contains("2026-06-15"));
    let bad = |extra: &str| match TallyConfig::from_toml(&toml(extra)).unwrap().tracker_builder() {
        Ok(_) => panic!("{extra} accepted"),
        Err(e) => e.to_string(),
    };
    let e = bad("api = \"google-ads\"");
    assert!(e.contains("google_ads.api") && e.contains("data_manager"), "{e}");
    let e = bad("retractions = \"never\"");
    assert!(e.contains("google_ads.retractions"), "{e}");
    let e = error(with_ads(ads().merchant_id("MC-1")));
    assert!(e.contains("google_ads.merchant_id"), "{e}");
    let e = error(with_ads(ads().data_manager_url("datamanager.googleapis.com")));
    assert!(e.contains("google_ads.data_manager_url"), "{e}");
}
