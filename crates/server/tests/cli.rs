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
    for args in [&["--help"][..], &["-h"], &["help"], &["serve", "--help"], &["reconcile", "-h"]] {
        let out = tally(args);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "tally {args:?}: {}{}", stdout, text(&out.stderr));
        assert!(stdout.starts_with("usage: tally <command>"), "tally {args:?}: {stdout}");
        for cmd in ["serve", "check", "reconcile", "TALLY_*", "--version"] {
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
    assert!(stderr.contains("serve, check, reconcile, help"), "{stderr}");
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
