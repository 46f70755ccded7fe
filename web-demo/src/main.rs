//! `cargo xtask demo`: the demo shop on http://127.0.0.1:8080 with embedded defaults.

fn server_tracker_text(running: &tally_demo::RunningDemo) -> String {
    let path = running.shop.config.server_tracker;
    match running.node_pid() {
        Some(pid) => format!("{} ({}; Node pid {pid})", path.as_str(), path.describe()),
        None => format!("{} ({})", path.as_str(), path.describe()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut config = tally_demo::DemoConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--addr", Some(v)) => config.addr = v,
            ("--webhook-delay-ms", Some(v)) => config.webhook_delay_ms = v.parse().unwrap_or(config.webhook_delay_ms),
            ("--webhook-deliveries", Some(v)) => {
                config.webhook_deliveries = v.parse().unwrap_or(config.webhook_deliveries)
            }
            ("--data-dir", Some(v)) => config.data_dir = Some(v.into()),
            ("--server-tracker", Some(v)) => match tally_demo::server_tracker::ServerTrackerPath::parse(&v) {
                Ok(p) => config.server_tracker = p,
                Err(e) => {
                    eprintln!("tally-demo: {e}");
                    return std::process::ExitCode::from(2);
                }
            },
            _ => {
                eprintln!(
                    "usage: tally-demo [--addr 127.0.0.1:8080] [--webhook-delay-ms 1500] [--webhook-deliveries 1] [--data-dir web-demo/data] [--server-tracker rust|js]"
                );
                return std::process::ExitCode::from(2);
            }
        }
    }
    match tally_demo::start(config).await {
        Ok(running) => {
            println!("Tally demo shop: {}/", running.base_url);
            println!("Inspector:       {}/inspector", running.base_url);
            println!("Admin:           {}/admin", running.base_url);
            println!("Server tracker:  {}", server_tracker_text(&running));
            let _ = tokio::signal::ctrl_c().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tally-demo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
