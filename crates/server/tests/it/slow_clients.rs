//! Slow clients against the real `tally serve` (loopback only): hundreds of
//! connections that dribble a header or a body a byte at a time, stop
//! mid-request, open HTTP/2 and say nothing, or say nothing at all, are closed by the server within
//! its (small, configured) timeouts, while valid requests are still answered;
//! and at the connection cap a new client waits for a slot instead of being
//! served beside the stalled ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{TallyServe, TempDir, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "s2s-slow";
/// Far above every configured timeout: a stalled connection still open then is a failure.
const DEADLINE: Duration = Duration::from_secs(60);

async fn start(dir: &TempDir, server: &str, sandbox_url: &str) -> (TallyServe, String) {
    let port = free_port();
    let config = dir.join("tally.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nstore = \"memory\"\n{server}\n\
             [collector]\nserver_secrets = [\"{SECRET}\"]\nrate_per_ip = 0\n\
             [ga4]\nmeasurement_id = \"G-SLOW1\"\napi_secret = \"secret\"\nbase_url = \"{sandbox_url}/ga4\"\n"
        ),
    )
    .expect("write config");
    let base = format!("http://127.0.0.1:{port}");
    (TallyServe::start(&config, &base).await, format!("127.0.0.1:{port}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Sends a header one byte every 50 ms, never finishing it.
    DribbleHeader,
    /// Sends full headers of a 4000-byte body, then the body one byte every 50 ms.
    DribbleBody,
    /// Sends half a request line and then nothing.
    StopMidHeader,
    /// Opens HTTP/2 (prior knowledge) and then says nothing.
    SilentHttp2,
    /// Connects and sends nothing at all.
    Silent,
}

/// What the server did with a stalled connection: closed it (with what it
/// answered first), or not before [`DEADLINE`].
#[derive(Debug)]
struct Ended {
    closed: bool,
    answer: Vec<u8>,
}

/// Plays `stall` on `stream` until the server closes the connection (a read
/// of 0 bytes, a reset, a refused write) or [`DEADLINE`] passes.
async fn play(stall: Stall, mut stream: TcpStream, open: Arc<AtomicUsize>) -> Ended {
    let first: Vec<u8> = match stall {
        Stall::DribbleHeader => b"POST /collect HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec(),
        Stall::DribbleBody => format!(
            "POST /collect HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\n\
             Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{\"events\":["
        )
        .into_bytes(),
        Stall::StopMidHeader => b"GET /heal".to_vec(),
        // The connection preface and an empty SETTINGS frame (RFC 9113 §3.4).
        Stall::SilentHttp2 => [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], &[0, 0, 0, 4, 0, 0, 0, 0, 0]].concat(),
        Stall::Silent => Vec::new(),
    };
    let dribbles = matches!(stall, Stall::DribbleHeader | Stall::DribbleBody);
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, async {
        if stream.write_all(&first).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick(), if dribbles => {
                    if stream.write_all(b"a").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    open.fetch_sub(1, Ordering::SeqCst);
    Ended { closed: ended.is_ok(), answer }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_and_valid_requests_still_answered() {
    let (_sandbox, sb) = crate::support::sandbox().await;
    let dir = TempDir::new("slowloris");
    let limits = "header_read_timeout_ms = 500\nbody_read_timeout_ms = 1000\nidle_timeout_ms = 1000";
    let (_tally, addr) = start(&dir, limits, &sb.base_url).await;

    const PER_KIND: usize = 60;
    let open = Arc::new(AtomicUsize::new(0));
    let mut stalls = Vec::new();
    for kind in [Stall::DribbleHeader, Stall::DribbleBody, Stall::StopMidHeader, Stall::SilentHttp2, Stall::Silent] {
        for _ in 0..PER_KIND {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            open.fetch_add(1, Ordering::SeqCst);
            stalls.push((kind, tokio::spawn(play(kind, stream, Arc::clone(&open)))));
        }
    }

    // Valid requests are answered while the stalled connections are held.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut answered_during_attack = 0;
    while open.load(Ordering::SeqCst) > 0 {
        let r = http.get(format!("http://{addr}/healthz")).send().await.expect("healthz during the attack");
        assert_eq!(r.status(), 200);
        if open.load(Ordering::SeqCst) > 0 {
            answered_during_attack += 1;
        }
        if answered_during_attack >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let purchase = serde_json::json!({
        "context": {"v":1,"createdAt":1,"clientId":"123.456","consent":{"analytics_storage":"granted","ad_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}},
        "events": [{"name":"purchase","transactionId":"ORD-SLOW-1","value":12.5,"currency":"EUR"}],
    });
    let r = http
        .post(format!("http://{addr}/collect"))
        .bearer_auth(SECRET)
        .json(&purchase)
        .send()
        .await
        .expect("collect during the attack");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    assert!(answered_during_attack > 0, "no valid request was answered while stalled connections were open");

    // Every stalled connection was closed by the server.
    for (kind, task) in stalls {
        let ended = task.await.expect("stall task");
        assert!(ended.closed, "a {kind:?} connection was still open after {DEADLINE:?}");
        if kind == Stall::DribbleBody {
            let text = String::from_utf8_lossy(&ended.answer);
            assert!(text.starts_with("HTTP/1.1 408"), "a dribbled body is answered 408: {text}");
            assert!(text.contains("did not arrive within 1000 ms"), "{text}");
        }
    }
    // The server still serves afterwards.
    assert_eq!(http.get(format!("http://{addr}/healthz")).send().await.expect("healthz").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_new_client_waits_for_a_stalled_one_to_close() {
    let (_sandbox, sb) = crate::support::sandbox().await;
    let dir = TempDir::new("conncap");
    let limits = "header_read_timeout_ms = 1000\nidle_timeout_ms = 60000\nmax_connections = 8";
    let (_tally, addr) = start(&dir, limits, &sb.base_url).await;
    // Eight clients take every slot and stop mid-header.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream.write_all(b"GET /heal").await.expect("send half a request line");
        stalled.push(stream);
    }
    // A ninth client asks for /healthz at once …
    let mut ninth = TcpStream::connect(&addr).await.expect("connect the ninth");
    ninth.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, ninth.read_to_end(&mut answer))
        .await
        .expect("the ninth client is answered once a slot frees")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // … and is answered only after the server closed a stalled one (whose end
    // of stream reached this side before the answer did).
    let mut buf = [0u8; 64];
    let closed_before = stalled
        .iter()
        .filter(|s| match s.try_read(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        })
        .count();
    assert!(closed_before > 0, "the ninth client was served while all eight slots were held by stalled clients");
    for mut s in stalled {
        let end = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await;
        assert!(matches!(end, Ok(Ok(0) | Err(_))), "a stalled connection outlived the header timeout: {end:?}");
    }
}
