//! tally-server's integration tests, as one test binary (`cargo test -p
//! tally-server --test it`, or `--test it <module>::` for one file's tests):
//! one link step instead of one per file. Every module runs in this one
//! process, in parallel: a test may not change the environment or the
//! current directory, install a global subscriber, or bind a fixed port;
//! child processes (`tally`, `redis-server`, node) get their settings on their
//! own command line.

mod support;

mod api_contract;
mod api_fuzz;
mod bots;
mod cli;
mod collect_fuzz;
mod collector;
mod collector_input;
mod compliance;
mod config;
mod consent_no_user_data;
mod crash_recovery;
mod dead_letters;
mod ga4;
mod google_ads;
mod google_ads_api;
mod js_server_tracker;
mod lanes;
mod meta;
mod metrics_auth;
mod oauth;
mod production_qa;
mod readme;
mod reconcile_cli;
mod repeated_refunds;
mod rokt;
mod servoki;
mod shared_redis;
mod slow_clients;
mod store_redis;
mod store_sqlite;
mod tiktok;
mod trackbridge_envelope;
mod webhook;
