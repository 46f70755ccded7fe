//! The `tally` command line as a new user meets it: help and version work
//! without any configuration, and a mistyped command says what the real ones are.

use std::process::{Command, Output};

/// Runs the real binary with no environment at all, so no `TALLY_*`
/// variable can stand in for a configuration.
fn tally(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally")).args(args).env_clear().output().expect("run tally")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_works_without_a_configuration() {
    for args in [&["--help"][..], &["-h"], &["help"], &["serve", "--help"], &["reconcile", "-h"], &["dead", "--help"]] {
        let out = tally(args);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "tally {args:?}: {}{}", stdout, text(&out.stderr));
        assert!(stdout.starts_with("usage: tally <command>"), "tally {args:?}: {stdout}");
        for cmd in ["serve", "check", "reconcile", "dead replay", "TALLY_*", "--version"] {
            assert!(stdout.contains(cmd), "tally {args:?} names {cmd}: {stdout}");
        }
        assert!(!text(&out.stderr).contains("no destination"), "tally {args:?} loaded a configuration");
    }
}

#[test]
fn version_works_without_a_configuration() {
    for flag in ["--version", "-V"] {
        let out = tally(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("tally {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn an_unknown_command_is_named_and_the_real_ones_listed() {
    let out = tally(&["frobnicate"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown command \"frobnicate\""), "{stderr}");
    assert!(stderr.contains("serve, check, reconcile, dead, help"), "{stderr}");
    assert!(!stderr.contains("no destination"), "the configuration is not loaded for a typo: {stderr}");
}

#[test]
fn no_command_prints_the_usage_and_fails() {
    let out = tally(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("usage: tally <command>"), "{}", text(&out.stderr));
}

#[test]
fn check_still_loads_the_configuration() {
    let out = tally(&["check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("tally: "), "a configuration error, not the usage: {stderr}");
    assert!(!stderr.contains("usage:"), "{stderr}");
}

/// A scratch folder of its own for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// A configuration that passes `tally check`, with `server` and `collector` lines replaced.
fn config(dir: &std::path::Path, server: &str, collector: &str) -> std::path::PathBuf {
    let text = format!(
        "[server]\n{server}\n[collector]\nsite_keys = [\"pk_test\"]\n{collector}\n\
         [ga4]\nmeasurement_id = \"G-ABC123\"\napi_secret = \"secret\"\n"
    );
    let path = dir.join("tally.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn check(path: &std::path::Path) -> (Option<i32>, String, String) {
    let out = tally(&["check", "--config", path.to_str().expect("utf-8 path")]);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn check_accepts_a_good_configuration() {
    let dir = scratch("good");
    let (code, stdout, stderr) =
        check(&config(&dir, "listen = \"localhost:8787\"", "allowed_origins = [\"https://shop.example\"]"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("configuration ok"), "{stdout}");
}

#[test]
fn check_rejects_an_origin_browsers_never_send_and_shows_the_right_form() {
    let dir = scratch("origin");
    for (origin, right) in [
        ("shop.example/", "\"https://shop.example\""),
        ("https://shop.example/", "\"https://shop.example\""),
        ("https://Shop.example:443", "\"https://shop.example\""),
        ("localhost:5173", "\"http://localhost:5173\""),
    ] {
        let (code, stdout, stderr) = check(&config(&dir, "", &format!("allowed_origins = [{origin:?}]")));
        assert_eq!(code, Some(1), "{origin}: {stdout}{stderr}");
        assert!(stderr.contains("collector.allowed_origins is invalid"), "{origin}: {stderr}");
        assert!(stderr.contains(right), "{origin} should suggest {right}: {stderr}");
    }
}

#[test]
fn check_rejects_an_invalid_listen_address_and_shows_a_valid_one() {
    let dir = scratch("listen");
    for listen in ["8787", "127.0.0.1", ":8787", "0.0.0.0:99999", "http://127.0.0.1:8787", "300.1.1.1:80"] {
        let (code, stdout, stderr) = check(&config(&dir, &format!("listen = {listen:?}"), ""));
        assert_eq!(code, Some(1), "{listen}: {stdout}{stderr}");
        assert!(stderr.contains("server.listen is invalid"), "{listen}: {stderr}");
        assert!(stderr.contains("127.0.0.1:8787"), "{listen}: an example of a valid one: {stderr}");
    }
}

#[test]
fn check_writes_no_sqlite_file() {
    let dir = scratch("sqlite-check");
    let db = dir.join("tally.db");
    let (code, stdout, stderr) = check(&config(&dir, &format!("store = \"sqlite:{}\"", db.display()), ""));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!db.exists(), "tally check created {}", db.display());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_sqlite_folder_is_named_by_check_and_created_by_serve() {
    let dir = scratch("sqlite-folder");
    let folder = dir.join("var").join("lib");
    let db = folder.join("tally.db");
    let cfg = config(&dir, &format!("listen = \"127.0.0.1:0\"\nstore = \"sqlite:{}\"", db.display()), "");
    let (code, stdout, stderr) = check(&cfg);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("the folder {} does not exist yet", folder.display())), "{stdout}");
    assert!(!folder.exists(), "tally check created {}", folder.display());

    use std::io::BufRead;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--config", cfg.to_str().expect("utf-8 path")])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tally serve");
    let stdout = serve.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        let serving = line.contains("collecting on");
        lines.push(line);
        if serving {
            break;
        }
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(lines.iter().any(|l| l.contains("collecting on")), "serve did not start: {lines:?}");
    assert!(lines.iter().any(|l| l.contains(&format!("created the folder {}", folder.display()))), "{lines:?}");
    assert!(db.exists(), "the database was not created in the new folder");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sqlite_folder_that_cannot_be_made_is_named() {
    let dir = scratch("sqlite-file");
    std::fs::write(dir.join("plain"), "not a folder").expect("write file");
    let db = dir.join("plain").join("sub").join("tally.db");
    let (code, stdout, stderr) = check(&config(&dir, &format!("store = \"sqlite:{}\"", db.display()), ""));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("{} is a file, not a folder", dir.join("plain").display())), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_ga4_measurement_id_is_reported_once() {
    let dir = scratch("ga4");
    let path = dir.join("tally.toml");
    std::fs::write(&path, "[collector]\nsite_keys = [\"k\"]\n[ga4]\nmeasurement_id = \"UA-1\"\napi_secret = \"s\"\n")
        .expect("write config");
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.matches("ga4.measurement_id is invalid").count(), 1, "{stderr}");
    assert!(stderr.contains("\"UA-1\": expected G-"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_warns_when_metrics_are_public_on_a_non_loopback_address() {
    let dir = scratch("metrics-public");
    let (code, stdout, stderr) = check(&config(&dir, "listen = \"0.0.0.0:8787\"", "metrics = true"));
    assert_eq!(code, Some(0), "a warning, not an error: {stdout}{stderr}");
    assert!(stderr.contains("tally: warning: /metrics is served without a token on 0.0.0.0:8787"), "{stderr}");
    assert!(stderr.contains("metrics_token"), "says what to set: {stderr}");
    // With a token, on loopback, or without /metrics: nothing to warn about.
    for (server, collector) in [
        ("listen = \"0.0.0.0:8787\"", "metrics = true\nmetrics_token = \"t0ken\""),
        ("listen = \"127.0.0.1:8787\"", "metrics = true"),
        ("listen = \"[::1]:8787\"", "metrics = true"),
        ("listen = \"localhost:8787\"", "metrics = true"),
        ("listen = \"0.0.0.0:8787\"", ""),
    ] {
        let (code, stdout, stderr) = check(&config(&dir, server, collector));
        assert_eq!(code, Some(0), "{server} {collector}: {stdout}{stderr}");
        assert!(!stderr.contains("warning"), "{server} {collector}: {stderr}");
    }
    // An empty token is a mistake, not "no token".
    let (code, _, stderr) = check(&config(&dir, "", "metrics = true\nmetrics_token = \"\""));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("collector.metrics_token"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_rejects_zero_connection_limits() {
    let dir = scratch("limits");
    for setting in ["header_read_timeout_ms", "body_read_timeout_ms", "idle_timeout_ms", "max_connections"] {
        let (code, stdout, stderr) = check(&config(&dir, &format!("{setting} = 0"), ""));
        assert_eq!(code, Some(1), "{setting}: {stdout}{stderr}");
        assert!(stderr.contains(&format!("server.{setting}")), "{setting}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
