//! # tally-sandbox
//!
//! Local HTTP stand-ins for the destinations Tally delivers to. Each one
//! checks a request the way the real API does (path, query, auth, required
//! fields, formats, limits), answers the way the real API answers, and records
//! what it accepted, what it deduplicated and what it dropped, with the reason.
//! Tests and the demo shop point `base_url`s at them; nothing leaves loopback.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let sandbox = tally_sandbox::Sandbox::new();
//! let server = sandbox.serve("127.0.0.1:0").await?;
//! let ga4_base = format!("{}/ga4", server.base_url);
//! // … point the tracker at ga4_base, send, then:
//! assert_eq!(sandbox.ga4.purchases().len(), 0);
//! # Ok(()) }
//! ```
//!
//! Where each stand-in is mounted by [`Sandbox::router`], and what to configure:
//!
//! | destination | mount | point the tracker at |
//! |---|---|---|
//! | GA4 MP | `/ga4` | base URL `…/ga4` |
//! | Google Ads API | `/google-ads` | base URL `…/google-ads`, token URL `…/google-ads/token` |
//! | Google Data Manager API | `/data-manager` | base URL `…/data-manager/v1`, token URL `…/data-manager/token` |
//! | Meta CAPI | `/meta` | base URL `…/meta` |
//! | Pinterest Conversions API | `/pinterest` | base URL `…/pinterest/v5` |
//! | Rokt Event API | `/rokt` | URL `…/rokt/v2/events` |
//! | Servoki-style | `/servoki` | URL `…/servoki/api/events/server` |
//! | TikTok Events API | `/tiktok` | URL `…/tiktok/open_api/v1.3/event/track/` |
//! | webhook sinks | `/webhook` | URL `…/webhook/<sink>` |
//!
//! Every request that reaches [`Sandbox::router`] is also kept verbatim in
//! [`Sandbox::traffic`] (method, path, query, headers, body), so a test can
//! assert on what left the tracker — for instance that no user data did.
//!
//! The checks are written from the destinations' documentation, independently
//! of `tally-core`'s builders and validators, so a bug there shows up here.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod data_manager;
pub mod fault;
pub mod ga4;
pub mod google_ads;
pub mod google_oauth;
pub mod meta;
pub mod pinterest;
pub mod rokt;
pub mod servoki;
pub mod tiktok;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub use data_manager::DataManagerSandbox;
pub use fault::Mode;
pub use ga4::Ga4Sandbox;
pub use google_ads::GoogleAdsSandbox;
pub use meta::MetaSandbox;
pub use pinterest::PinterestSandbox;
pub use rokt::RoktSandbox;
pub use servoki::ServokiSandbox;
pub use tiktok::TikTokSandbox;
pub use webhook::WebhookSandbox;

/// Every sandbox destination, sharing one HTTP server.
#[derive(Clone)]
pub struct Sandbox {
    /// GA4 Measurement Protocol, mounted at `/ga4`.
    pub ga4: Ga4Sandbox,
    /// Google Ads API and its OAuth token endpoint, mounted at `/google-ads`.
    pub google_ads: GoogleAdsSandbox,
    /// Google Data Manager API and its OAuth token endpoint, mounted at `/data-manager`.
    pub data_manager: DataManagerSandbox,
    /// Meta Conversions API, mounted at `/meta`.
    pub meta: MetaSandbox,
    /// Pinterest Conversions API, mounted at `/pinterest`.
    pub pinterest: PinterestSandbox,
    /// Rokt Event API v2, mounted at `/rokt`.
    pub rokt: RoktSandbox,
    /// A Servoki-style server-events endpoint, mounted at `/servoki`.
    pub servoki: ServokiSandbox,
    /// TikTok Events API 2.0, mounted at `/tiktok`.
    pub tiktok: TikTokSandbox,
    /// Webhook / warehouse sinks, mounted at `/webhook/<sink>`.
    pub webhook: WebhookSandbox,
    /// Every request any of them received, verbatim.
    pub traffic: Traffic,
}

/// A running sandbox server.
pub struct RunningSandbox {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSandbox {
    /// `base_url` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        // Google has one token endpoint: a token minted there serves both
        // Google APIs if its refresh token was granted both scopes (as the
        // sandbox's is; `set_refresh_token_scopes` narrows it).
        let oauth = google_oauth::GoogleOAuth::new(&[google_oauth::DATAMANAGER_SCOPE, google_oauth::ADWORDS_SCOPE]);
        let s = Sandbox {
            ga4: Ga4Sandbox::default(),
            google_ads: GoogleAdsSandbox::with_oauth(oauth.clone()),
            data_manager: DataManagerSandbox::with_oauth(oauth),
            meta: MetaSandbox::default(),
            pinterest: PinterestSandbox::default(),
            rokt: RoktSandbox::default(),
            servoki: ServokiSandbox::default(),
            tiktok: TikTokSandbox::default(),
            webhook: WebhookSandbox::default(),
            traffic: Traffic::default(),
        };
        // One Google Ads account behind both Google APIs.
        s.google_ads.link_data_manager(&s.data_manager);
        s
    }
}

impl Sandbox {
    /// Fresh sandboxes with nothing recorded.
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// The routes of every destination, to mount into another app.
    pub fn router(&self) -> Router {
        Router::new()
            .nest("/ga4", self.ga4.router())
            .nest("/google-ads", self.google_ads.router())
            .nest("/data-manager", self.data_manager.router())
            .nest("/meta", self.meta.router())
            .nest("/pinterest", self.pinterest.router())
            .nest("/rokt", self.rokt.router())
            .nest("/servoki", self.servoki.router())
            .nest("/tiktok", self.tiktok.router())
            .nest("/webhook", self.webhook.router())
            .layer(axum::middleware::from_fn_with_state(self.traffic.clone(), record_traffic))
    }

    /// Serves on `addr` (use port 0 for a free one) until dropped.
    pub async fn serve(&self, addr: &str) -> std::io::Result<RunningSandbox> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RunningSandbox { base_url: format!("http://{addr}"), addr, task })
    }
}

/// One request as it arrived, for assertions on what left the tracker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RawRequest {
    /// `POST`, …
    pub method: String,
    /// The path, mount prefix included (`/meta/v25.0/123/events`).
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers, lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl RawRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Every request that reached [`Sandbox::router`], verbatim.
#[derive(Clone, Default)]
pub struct Traffic {
    requests: Arc<Mutex<Vec<RawRequest>>>,
    off: Arc<std::sync::atomic::AtomicBool>,
}

impl Traffic {
    /// Stops (`false`) or resumes (`true`) recording. Benchmarks that retry
    /// millions of events against a stand-in turn it off, so what the process
    /// holds is the tracker's, not this log's.
    pub fn set_recording(&self, on: bool) {
        self.off.store(!on, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RawRequest>> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All requests so far, in arrival order.
    pub fn all(&self) -> Vec<RawRequest> {
        self.lock().clone()
    }

    /// Requests whose path starts with `prefix` (`/meta`, `/google-ads/v26`).
    pub fn under(&self, prefix: &str) -> Vec<RawRequest> {
        self.lock().iter().filter(|r| r.path.starts_with(prefix)).cloned().collect()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// Largest body the recorder reads (larger ones are passed on unread as empty).
const MAX_RECORDED_BODY: usize = 16 * 1024 * 1024;

async fn record_traffic(State(traffic): State<Traffic>, req: Request, next: Next) -> Response {
    if traffic.off.load(Ordering::SeqCst) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_RECORDED_BODY).await {
        Ok(b) => b,
        Err(_) => return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "sandbox: body too large").into_response(),
    };
    traffic.lock().push(RawRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// Slow mode: a delay before a sandbox answers (to exercise client timeouts).
#[derive(Clone, Debug, Default)]
pub struct Latency(Arc<AtomicU64>);

impl Latency {
    /// Delays every answer by `d` (zero: answer at once).
    pub fn set(&self, d: Duration) {
        self.0.store(u64::try_from(d.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// The current delay.
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }

    pub(crate) async fn wait(&self) {
        let d = self.get();
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// Helpers shared by the stand-ins, written from the specs (no `tally-core`).
pub(crate) mod util {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Now, Unix milliseconds.
    pub fn now_ms() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }

    /// 64 lower-case hex digits (a SHA-256 digest as the ad platforms want it).
    pub fn is_sha256_hex(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// A short pseudo-random hex id (trace ids, request ids): not secure, just distinct.
    pub fn trace_id(seed: u64) -> String {
        let d = sha256(format!("{seed}.{}", now_ms()).as_bytes());
        hex(&d[..8])
    }

    /// Lower-case hex.
    pub fn hex(bytes: &[u8]) -> String {
        const H: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            s.push(char::from(H[usize::from(b >> 4)]));
            s.push(char::from(H[usize::from(b & 15)]));
        }
        s
    }

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// SHA-256 (FIPS 180-4), for verifying webhook signatures without `tally-core`.
    pub fn sha256(data: &[u8]) -> [u8; 32] {
        let mut h: [u32; 8] =
            [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
        let bit_len = (data.len() as u64).wrapping_mul(8);
        let mut msg = data.to_vec();
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bit_len.to_be_bytes());
        for chunk in msg.chunks_exact(64) {
            let mut w = [0u32; 64];
            for (i, word) in chunk.chunks_exact(4).enumerate() {
                w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            }
            for i in 16..64 {
                let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
                let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
            }
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
            for i in 0..64 {
                let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
                let ch = (e & f) ^ (!e & g);
                let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
                let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
                let maj = (a & b) ^ (a & c) ^ (b & c);
                let t2 = s0.wrapping_add(maj);
                hh = g;
                g = f;
                f = e;
                e = d.wrapping_add(t1);
                d = c;
                c = b;
                b = a;
                a = t1.wrapping_add(t2);
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
                *x = x.wrapping_add(y);
            }
        }
        let mut out = [0u8; 32];
        for (i, x) in h.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
        }
        out
    }

    /// HMAC-SHA256 (RFC 2104).
    pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&sha256(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut inner = Vec::with_capacity(64 + msg.len());
        inner.extend(k.iter().map(|b| b ^ 0x36));
        inner.extend_from_slice(msg);
        let ih = sha256(&inner);
        let mut outer = Vec::with_capacity(96);
        outer.extend(k.iter().map(|b| b ^ 0x5c));
        outer.extend_from_slice(&ih);
        sha256(&outer)
    }

    /// Constant-time equality of two byte strings.
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Standard base64 (with or without padding).
    pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
        let val = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            })
        };
        let t = s.trim().trim_end_matches('=');
        if t.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(t.len() * 3 / 4);
        for chunk in t.as_bytes().chunks(4) {
            let mut acc = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                acc |= val(c)? << (18 - 6 * i);
            }
            let bytes = acc.to_be_bytes();
            out.extend_from_slice(&bytes[1..chunk.len()]);
        }
        Some(out)
    }

    /// Unpadded (or padded) base64url (RFC 4648 §5), as in JWTs.
    pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
        if s.contains(['+', '/']) {
            return None;
        }
        base64_decode(&s.replace('-', "+").replace('_', "/"))
    }

    /// Decodes an `application/x-www-form-urlencoded` body.
    pub fn form_decode(body: &str) -> Vec<(String, String)> {
        fn dec(s: &str) -> String {
            let b = s.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'+' => out.push(b' '),
                    b'%' if i + 2 < b.len() => {
                        match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                            Ok(v) => {
                                out.push(v);
                                i += 2;
                            }
                            Err(_) => out.push(b'%'),
                        }
                    }
                    c => out.push(c),
                }
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        body.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (dec(k), dec(v)),
                None => (dec(p), String::new()),
            })
            .collect()
    }

    fn days_in_month(y: i64, m: u32) -> u32 {
        match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            _ => 28,
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let mp = i64::from((m + 9) % 12);
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn digits(s: &str) -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }

    /// `YYYY-MM-DD` + `sep` + `hh:mm:ss` → Unix seconds (as if UTC), checked.
    fn date_time(s: &str, sep: char) -> Option<i64> {
        let (date, time) = s.split_once(sep)?;
        let mut d = date.split('-');
        let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
        if d.next().is_some() || y.len() != 4 || mo.len() != 2 || da.len() != 2 || time.len() != 8 {
            return None;
        }
        let (y, mo, da) = (i64::from(digits(y)?), digits(mo)?, digits(da)?);
        let mut t = time.split(':');
        let (h, mi, se) = (digits(t.next()?)?, digits(t.next()?)?, digits(t.next()?)?);
        if !(1..=12).contains(&mo) || da == 0 || da > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59 {
            return None;
        }
        Some(days_from_civil(y, mo, da) * 86_400 + i64::from(h * 3600 + mi * 60 + se))
    }

    /// `±hh:mm` → seconds east of UTC.
    fn offset(s: &str) -> Option<i64> {
        let sign = match s.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = s[1..].split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m) = (digits(h)?, digits(m)?);
        if h > 14 || m > 59 {
            return None;
        }
        Some(sign * i64::from(h * 3600 + m * 60))
    }

    /// Google Ads' `yyyy-mm-dd hh:mm:ss+|-hh:mm` → Unix ms.
    pub fn parse_ads_date_time(s: &str) -> Option<i64> {
        if s.len() != 25 || !s.is_ascii() {
            return None;
        }
        let (dt, off) = s.split_at(19);
        Some((date_time(dt, ' ')? - offset(off)?) * 1000)
    }

    /// RFC 3339 (`2026-05-01T20:32:45Z`, `…45.339+02:00`) → Unix ms.
    pub fn parse_rfc3339(s: &str) -> Option<i64> {
        if s.len() < 20 || !s.is_ascii() {
            return None;
        }
        let (dt, rest) = s.split_at(19);
        let secs = date_time(dt, 'T')?;
        let (frac_ms, zone) = match rest.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return None;
                }
                let frac = &r[..n];
                let ms: i64 = format!("{:0<3}", &frac[..n.min(3)]).parse().ok()?;
                (ms, &r[n..])
            }
            None => (0, rest),
        };
        let off = match zone {
            "Z" | "z" => 0,
            other => offset(other)?,
        };
        Some((secs - off) * 1000 + frac_ms)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sha256_and_hmac_vectors() {
            assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
            assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
            let long = vec![b'a'; 1000];
            assert_eq!(hex(&sha256(&long)), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
            // RFC 4231 test case 2.
            assert_eq!(
                hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
            );
            // RFC 4231 test case 6 (key longer than the block).
            assert_eq!(
                hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
            );
        }

        #[test]
        fn base64_and_forms() {
            assert_eq!(base64_decode("cnB1Yi1hYmM6cnNlYy14eXo=").unwrap(), b"rpub-abc:rsec-xyz");
            assert_eq!(base64_decode("YQ").unwrap(), b"a");
            assert!(base64_decode("a").is_none());
            assert!(base64_decode("!!!!").is_none());
            assert_eq!(
                form_decode("grant_type=refresh_token&client_secret=s%2Fcr%2Bt&x=a+b&bad=%zz%"),
                vec![
                    ("grant_type".into(), "refresh_token".into()),
                    ("client_secret".into(), "s/cr+t".into()),
                    ("x".into(), "a b".into()),
                    ("bad".into(), "%zz%".into()),
                ]
            );
        }

        #[test]
        fn times() {
            assert_eq!(parse_ads_date_time("2026-05-01 20:32:45+00:00"), Some(1_777_667_565_000));
            assert_eq!(parse_ads_date_time("2026-05-01 12:32:45-08:00"), Some(1_777_667_565_000));
            for bad in [
                "2026-05-01T20:32:45+00:00",
                "2026-05-01 20:32:45",
                "2026-02-30 00:00:00+00:00",
                "2026-05-01 20:32:45Z",
            ] {
                assert_eq!(parse_ads_date_time(bad), None, "{bad}");
            }
            assert_eq!(parse_rfc3339("2020-05-22T10:21:29.339Z"), Some(1_590_142_889_339));
            assert_eq!(parse_rfc3339("2026-05-01T22:32:45+02:00"), Some(1_777_667_565_000));
            assert_eq!(parse_rfc3339("2026-05-01 20:32:45Z"), None);
            assert_eq!(parse_rfc3339("2026-13-01T20:32:45Z"), None);
            assert_eq!(parse_rfc3339("2026-05-01T20:32:4€Z"), None);
            assert_eq!(parse_ads_date_time("2026-05-01 20:32:4€00:00"), None);
        }
    }
}
