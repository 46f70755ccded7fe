//! Delivery lanes: one per destination, between the tracker and the network.
//!
//! Everything a destination is sent goes through its lane, whether an inline
//! call waits for the answer or the outbox worker hands over a backlog:
//!
//! * **Batches across visitors.** Work waiting in the lane is gathered into one
//!   round, up to [`LaneSettings::max_batch`] events, where the API takes events
//!   of many users in one request (Meta, TikTok, Rokt). Elsewhere a round is one
//!   visitor's events (GA4 takes one client id per request). A short
//!   [`LaneSettings::linger`] lets a round fill before it leaves.
//! * **A bounded window.** At most the window's worth of rounds are in flight at
//!   once, so throughput is `window × batch / latency`, not one request per
//!   round trip. While the window is full, waiting work keeps joining the next
//!   round, so batches grow exactly when the destination is slow.
//! * **Adaptive pressure** (a pure state machine, tested natively): a 429 or
//!   `Retry-After` pauses the whole lane for that long and halves its window,
//!   other transient failures halve it, successes grow it back by one per
//!   window's worth (AIMD). An optional request rate limit keeps under quotas.
//!
//! A crash loses no work (every event is in the outbox before it enters a
//! lane) and re-sends at most what was in flight: `window × max_batch` events
//! per destination, all with the event ids they carried before, which the
//! destinations deduplicate on.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_core::DestinationKind;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::outcome::Outcome;

/// How a destination's lane batches and paces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaneSettings {
    /// Events per round at most. For destinations that batch across visitors
    /// this is the request size (capped at the API's limit); elsewhere a round
    /// is one visitor's events.
    pub max_batch: usize,
    /// Rounds (requests) in flight at once at most; the adaptive window moves
    /// between 1 and this.
    pub window: usize,
    /// How long a round waits for more events before it leaves, where
    /// visitors share a request (Meta, TikTok, Rokt). Zero sends at once.
    pub linger: Duration,
    /// Requests per minute at most (a quota such as the Data Manager API's
    /// 300 per minute per project); `None` for no limit.
    pub max_requests_per_minute: Option<u32>,
}

impl LaneSettings {
    /// The defaults for `kind`: wide windows where requests cannot be merged
    /// (GA4: one client per request), full requests and a few in flight where
    /// they can. `cargo xtask bench` measures them at 0–250 ms latency
    /// (BENCHMARKS.md, section 6).
    ///
    /// ```
    /// use tally_core::DestinationKind;
    /// use tally_server::LaneSettings;
    /// let meta = LaneSettings::for_kind(DestinationKind::Meta);
    /// assert_eq!(meta.max_batch, 1000);
    /// assert!(LaneSettings::for_kind(DestinationKind::Ga4).window >= 64);
    /// ```
    pub fn for_kind(kind: DestinationKind) -> LaneSettings {
        use tally_core::destinations as d;
        let (max_batch, window) = match kind {
            DestinationKind::Ga4 => (d::ga4::MAX_EVENTS, 96),
            DestinationKind::Meta => (d::meta::MAX_EVENTS, 8),
            DestinationKind::TikTok => (d::tiktok::MAX_EVENTS, 8),
            DestinationKind::Pinterest => (d::pinterest::MAX_EVENTS, 8),
            DestinationKind::Rokt => (d::rokt::MAX_EVENTS, 16),
            DestinationKind::GoogleAds => (d::data_manager::MAX_EVENTS, d::data_manager::MAX_CONCURRENT_REQUESTS),
            // One event per request: Servoki's API takes one; a webhook batches only when its settings say.
            DestinationKind::Servoki | DestinationKind::Webhook => (1, 16),
        };
        // The Data Manager API's project quota; Google Ads API uploads count against far larger ones.
        let max_requests_per_minute =
            (kind == DestinationKind::GoogleAds).then_some(d::data_manager::REQUESTS_PER_MINUTE);
        LaneSettings { max_batch, window, linger: Duration::from_millis(5), max_requests_per_minute }
    }

    /// With at most `n` rounds in flight (at least 1).
    pub fn window(mut self, n: usize) -> LaneSettings {
        self.window = n.max(1);
        self
    }

    /// With at most `n` events per round (at least 1).
    pub fn max_batch(mut self, n: usize) -> LaneSettings {
        self.max_batch = n.max(1);
        self
    }

    /// With rounds waiting up to `d` to fill.
    pub fn linger(mut self, d: Duration) -> LaneSettings {
        self.linger = d;
        self
    }

    /// With at most `n` requests per minute (`None`: no limit).
    pub fn max_requests_per_minute(mut self, n: Option<u32>) -> LaneSettings {
        self.max_requests_per_minute = n.filter(|n| *n > 0);
        self
    }
}

/// What a finished round says about the destination's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Answered (sent, or refused for reasons of the events themselves).
    Healthy,
    /// Rate limited: pause the lane for the given time (or a second).
    Throttled(Option<Duration>),
    /// Down or erroring (5xx, timeouts): shrink the window.
    Struggling,
    /// Nothing was sent (every event a duplicate, or the store unavailable).
    Idle,
}

/// Whether a round may leave now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Yes: this many requests may start.
    Go(usize),
    /// The window is full: wait for a round to finish.
    Full,
    /// Paused (`Retry-After`) or over the rate limit until then.
    Until(Instant),
    /// Paused by `Retry-After` until then: inline callers get their answer
    /// (queued) instead of waiting.
    Paused(Instant),
}

/// The pure state of a lane's window, pause and rate limit.
#[derive(Debug, Clone)]
pub(crate) struct Pressure {
    max: usize,
    window: f64,
    /// Below this the window doubles per round trip (slow start, as TCP
    /// does): a lane that shrank to 1 during an outage is back at full width
    /// after a few round trips, not one request per round trip later.
    /// Throttling lowers it; an outage does not (it says nothing of capacity).
    threshold: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
    per_minute: Option<u32>,
    starts: VecDeque<Instant>,
}

/// A pause with no `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

impl Pressure {
    pub(crate) fn new(settings: &LaneSettings) -> Pressure {
        let max = settings.window.max(1);
        Pressure {
            max,
            window: max as f64,
            threshold: max as f64,
            in_flight: 0,
            paused_until: None,
            per_minute: settings.max_requests_per_minute,
            starts: VecDeque::new(),
        }
    }

    /// The current window (rounds allowed in flight).
    pub(crate) fn window(&self) -> usize {
        (self.window.floor() as usize).clamp(1, self.max)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether a round may start at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        if let Some(until) = self.paused_until {
            if until > now {
                return Admit::Paused(until);
            }
            self.paused_until = None;
        }
        if let Some(limit) = self.per_minute {
            while self.starts.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
                self.starts.pop_front();
            }
            if self.starts.len() >= limit as usize
                && let Some(first) = self.starts.front()
            {
                return Admit::Until(*first + Duration::from_secs(60));
            }
        }
        let window = self.window();
        if self.in_flight >= window { Admit::Full } else { Admit::Go(window - self.in_flight) }
    }

    /// A round of `requests` requests started at `now`.
    pub(crate) fn start(&mut self, now: Instant, requests: usize) {
        self.in_flight += requests;
        if self.per_minute.is_some() {
            self.starts.extend(std::iter::repeat_n(now, requests));
        }
    }

    /// A round of `requests` requests finished at `now` with `signal`.
    pub(crate) fn finish(&mut self, signal: Signal, now: Instant, requests: usize) {
        self.in_flight = self.in_flight.saturating_sub(requests);
        match signal {
            Signal::Healthy => {
                let grown = if self.window < self.threshold {
                    self.window + requests as f64
                } else {
                    self.window + requests as f64 / self.window
                };
                self.window = grown.min(self.max as f64);
            }
            Signal::Throttled(after) => {
                self.window = (self.window / 2.0).max(1.0);
                self.threshold = self.window;
                let until = now + after.unwrap_or(DEFAULT_PAUSE);
                self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
            }
            Signal::Struggling => self.window = (self.window / 2.0).max(1.0),
            Signal::Idle => {}
        }
    }
}

/// The events of one visitor waiting in a lane, as outbox entries.
pub(crate) struct Job<P> {
    /// The events, with their outbox ids and idempotency keys.
    pub pending: Vec<P>,
    /// Whom they are about.
    pub ctx: Arc<tally_core::destinations::DeliveryContext>,
    /// Where an inline caller waits for the outcomes (`None` for outbox work).
    pub reply: Option<oneshot::Sender<Vec<Outcome>>>,
    /// When the outbox leased them (outbox work only): work still waiting
    /// after its lease ended is left to the outbox, which hands it out again.
    pub leased_until: Option<Instant>,
}

impl<P> Job<P> {
    fn len(&self) -> usize {
        self.pending.len()
    }
}

/// What a lane does with its rounds: the tracker's delivery (claim, send,
/// settle, reply) and, while paused, answering inline callers at once.
pub(crate) trait RoundRunner<P>: Send + Sync + 'static {
    /// Delivers one round and says how the destination answered.
    fn run(&self, round: Vec<Job<P>>) -> Pin<Box<dyn Future<Output = Signal> + Send + '_>>;
    /// The lane is paused until `until`: reschedule these jobs' events for
    /// then and answer their callers (queued).
    fn defer(&self, jobs: Vec<Job<P>>, until: Instant) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A running lane: submit work with [`Lane::submit`] or [`Lane::offer`].
pub(crate) struct Lane<P> {
    tx: mpsc::Sender<Job<P>>,
    queued: Arc<AtomicUsize>,
    pressure: Arc<Mutex<Pressure>>,
    settings: LaneSettings,
}

impl<P: Send + 'static> Lane<P> {
    /// Starts a lane on the current runtime. `merges`: whether rounds may
    /// carry several visitors' events.
    pub(crate) fn start(settings: LaneSettings, merges: bool, runner: Arc<dyn RoundRunner<P>>) -> Lane<P> {
        // Room for what the worker may hand over (two windows of full rounds,
        // see `room`) even if every job is a single event, plus inline callers.
        let capacity = 2 * settings.window.max(1) * settings.max_batch.max(1) + 64;
        let (tx, rx) = mpsc::channel(capacity);
        let queued = Arc::new(AtomicUsize::new(0));
        let pressure = Arc::new(Mutex::new(Pressure::new(&settings)));
        let lane = LaneLoop {
            rx,
            settings,
            merges,
            queued: queued.clone(),
            pressure: pressure.clone(),
            runner,
            done: Arc::new(Notify::new()),
        };
        tokio::spawn(lane.run());
        Lane { tx, queued, pressure, settings }
    }

    /// Hands over work, waiting while the lane is full (inline calls).
    pub(crate) async fn submit(&self, job: Job<P>) -> Result<(), Job<P>> {
        let n = job.len();
        self.queued.fetch_add(n, Ordering::SeqCst);
        self.tx.send(job).await.map_err(|e| {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            e.0
        })
    }

    /// Hands over work if there is room now (outbox work); gives it back otherwise.
    pub(crate) fn offer(&self, job: Job<P>) -> Result<(), Job<P>> {
        let n = job.len();
        self.queued.fetch_add(n, Ordering::SeqCst);
        self.tx.try_send(job).map_err(|e| {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            }
        })
    }

    /// How many more events the outbox worker should hand this lane now: two
    /// windows' worth minus what waits, none while paused.
    pub(crate) fn room(&self) -> usize {
        let mut p = self.pressure.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(p.admit(Instant::now()), Admit::Paused(_) | Admit::Until(_)) {
            return 0;
        }
        let want = 2 * self.settings.window * self.settings.max_batch;
        want.saturating_sub(self.queued.load(Ordering::SeqCst))
    }

    /// `(window, rounds in flight)` now, for metrics.
    pub(crate) fn gauge(&self) -> (usize, usize) {
        let p = self.pressure.lock().unwrap_or_else(|e| e.into_inner());
        (p.window(), p.in_flight())
    }
}

struct LaneLoop<P> {
    rx: mpsc::Receiver<Job<P>>,
    settings: LaneSettings,
    merges: bool,
    queued: Arc<AtomicUsize>,
    pressure: Arc<Mutex<Pressure>>,
    runner: Arc<dyn RoundRunner<P>>,
    done: Arc<Notify>,
}

impl<P: Send + 'static> LaneLoop<P> {
    fn pressure(&self) -> std::sync::MutexGuard<'_, Pressure> {
        self.pressure.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(mut self) {
        let max = self.settings.max_batch.max(1);
        let mut waiting = Waiting { jobs: VecDeque::new(), events: 0, closed: false };
        loop {
            if waiting.jobs.is_empty() {
                match self.rx.recv().await {
                    Some(job) => waiting.push(job),
                    None => return,
                }
            }
            // What is already waiting joins, then a short linger to fill the round.
            while waiting.events < max {
                match self.rx.try_recv() {
                    Ok(job) => waiting.push(job),
                    Err(_) => break,
                }
            }
            // Only where visitors share a request: elsewhere each visitor is
            // its own request, and waiting would only add latency.
            if self.merges && waiting.events < max && !waiting.closed && !self.settings.linger.is_zero() {
                let until = tokio::time::Instant::now() + self.settings.linger;
                while waiting.events < max {
                    match tokio::time::timeout_at(until, self.rx.recv()).await {
                        Ok(Some(job)) => waiting.push(job),
                        Ok(None) => waiting.closed = true,
                        Err(_) => break,
                    }
                    if waiting.closed {
                        break;
                    }
                }
            }
            // Wait for room in the window; what arrives meanwhile joins.
            let slots = loop {
                let admit = self.pressure().admit(Instant::now());
                match admit {
                    Admit::Go(n) => break Some(n),
                    Admit::Paused(until) => {
                        self.queued.fetch_sub(waiting.events, Ordering::SeqCst);
                        waiting.events = 0;
                        let jobs: Vec<Job<P>> = waiting.jobs.drain(..).collect();
                        self.runner.defer(jobs, until).await;
                        break None;
                    }
                    Admit::Full | Admit::Until(_) => {
                        let wake = match admit {
                            Admit::Until(t) => tokio::time::Instant::from_std(t),
                            _ => tokio::time::Instant::now() + Duration::from_secs(1),
                        };
                        let open = waiting.events < max && !waiting.closed;
                        tokio::select! {
                            _ = self.done.notified() => {}
                            _ = tokio::time::sleep_until(wake) => {}
                            job = self.rx.recv(), if open => match job {
                                Some(job) => waiting.push(job),
                                None => waiting.closed = true,
                            },
                        }
                    }
                }
            };
            let Some(slots) = slots else { continue };
            // One round: up to `max` events. Merged, it is one request; else
            // each visitor's events are a request, as many as the window has room for.
            let max_jobs = if self.merges { usize::MAX } else { slots.max(1) };
            let mut jobs = Vec::new();
            let mut events = 0;
            while let Some(next) = waiting.jobs.front() {
                if !jobs.is_empty() && (events + next.len() > max || jobs.len() >= max_jobs) {
                    break;
                }
                let Some(job) = waiting.jobs.pop_front() else { break };
                events += job.len();
                jobs.push(job);
            }
            waiting.events -= events;
            self.queued.fetch_sub(events, Ordering::SeqCst);
            let now = Instant::now();
            // Outbox work whose lease ended while it waited is the outbox's again.
            jobs.retain(|j| j.leased_until.is_none_or(|until| until > now));
            if jobs.is_empty() {
                continue;
            }
            let requests = if self.merges { 1 } else { jobs.len() };
            self.pressure().start(now, requests);
            let (runner, pressure, done) = (self.runner.clone(), self.pressure.clone(), self.done.clone());
            tokio::spawn(async move {
                let signal = runner.run(jobs).await;
                pressure.lock().unwrap_or_else(|e| e.into_inner()).finish(signal, Instant::now(), requests);
                done.notify_one();
            });
        }
    }
}

/// Work received and not yet sent, oldest first.
struct Waiting<P> {
    jobs: VecDeque<Job<P>>,
    events: usize,
    closed: bool,
}

impl<P> Waiting<P> {
    fn push(&mut self, job: Job<P>) {
        self.events += job.len();
        self.jobs.push_back(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(window: usize) -> LaneSettings {
        LaneSettings { max_batch: 10, window, linger: Duration::ZERO, max_requests_per_minute: None }
    }

    #[test]
    fn the_window_bounds_rounds_in_flight() {
        let now = Instant::now();
        let mut p = Pressure::new(&settings(2));
        assert_eq!(p.admit(now), Admit::Go(2));
        p.start(now, 1);
        assert_eq!(p.admit(now), Admit::Go(1));
        p.start(now, 1);
        assert_eq!(p.admit(now), Admit::Full);
        p.finish(Signal::Healthy, now, 1);
        assert_eq!(p.admit(now), Admit::Go(1));
        // A round of several requests takes several places.
        let mut q = Pressure::new(&settings(8));
        q.start(now, 5);
        assert_eq!(q.admit(now), Admit::Go(3));
        q.finish(Signal::Idle, now, 5);
        assert_eq!(q.admit(now), Admit::Go(8));
    }

    #[test]
    fn throttling_pauses_and_halves_and_success_grows_back() {
        let now = Instant::now();
        let mut p = Pressure::new(&settings(8));
        p.start(now, 1);
        p.finish(Signal::Throttled(Some(Duration::from_secs(5))), now, 1);
        assert_eq!(p.window(), 4);
        assert_eq!(p.admit(now + Duration::from_secs(4)), Admit::Paused(now + Duration::from_secs(5)));
        assert!(matches!(p.admit(now + Duration::from_secs(5)), Admit::Go(_)), "the pause ends at Retry-After");
        // A later, shorter pause does not shorten a longer one.
        p.finish(Signal::Throttled(Some(Duration::from_secs(10))), now, 1);
        p.finish(Signal::Throttled(Some(Duration::from_secs(1))), now, 1);
        assert_eq!(p.admit(now + Duration::from_secs(9)), Admit::Paused(now + Duration::from_secs(10)));
        // No Retry-After: a second.
        let mut q = Pressure::new(&settings(8));
        q.finish(Signal::Throttled(None), now, 1);
        assert!(matches!(q.admit(now), Admit::Paused(t) if t == now + DEFAULT_PAUSE));
        // After an outage: slow start, the window doubling per window's worth
        // of successes, back to 8, never beyond.
        let mut r = Pressure::new(&settings(8));
        for _ in 0..3 {
            r.finish(Signal::Struggling, now, 1);
        }
        assert_eq!(r.window(), 1);
        let mut widths = Vec::new();
        for _ in 0..4 {
            let w = r.window();
            r.finish(Signal::Healthy, now, w);
            widths.push(r.window());
        }
        assert_eq!(widths, [2, 4, 8, 8]);
        // After throttling: additive above the halved threshold.
        let mut t = Pressure::new(&settings(8));
        t.finish(Signal::Throttled(Some(Duration::ZERO)), now, 1);
        assert_eq!(t.window(), 4);
        t.finish(Signal::Healthy, now, 4);
        assert_eq!(t.window(), 5, "one more per window's worth of successes");
        r.finish(Signal::Idle, now, 1);
        assert_eq!(r.window(), 8);
    }

    #[test]
    fn a_rate_limit_holds_rounds_until_the_minute_allows() {
        let now = Instant::now();
        let mut p = Pressure::new(&LaneSettings { max_requests_per_minute: Some(2), ..settings(8) });
        p.start(now, 1);
        p.finish(Signal::Healthy, now, 1);
        p.start(now + Duration::from_secs(1), 1);
        p.finish(Signal::Healthy, now, 1);
        assert_eq!(p.admit(now + Duration::from_secs(30)), Admit::Until(now + Duration::from_secs(60)));
        assert!(matches!(p.admit(now + Duration::from_secs(60)), Admit::Go(_)));
    }

    struct Recorder {
        merges: bool,
        rounds: Mutex<Vec<Vec<usize>>>,
        peak: AtomicUsize,
        now: AtomicUsize,
        latency: Duration,
    }

    impl RoundRunner<usize> for Recorder {
        fn run(&self, round: Vec<Job<usize>>) -> Pin<Box<dyn Future<Output = Signal> + Send + '_>> {
            Box::pin(async move {
                let requests = if self.merges { 1 } else { round.len() };
                let n = self.now.fetch_add(requests, Ordering::SeqCst) + requests;
                self.peak.fetch_max(n, Ordering::SeqCst);
                self.rounds.lock().unwrap().push(round.iter().flat_map(|j| j.pending.clone()).collect());
                tokio::time::sleep(self.latency).await;
                self.now.fetch_sub(requests, Ordering::SeqCst);
                for j in round {
                    if let Some(r) = j.reply {
                        let _ = r.send(vec![Outcome::sent(1); j.pending.len()]);
                    }
                }
                Signal::Healthy
            })
        }
        fn defer(&self, _: Vec<Job<usize>>, _: Instant) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async {})
        }
    }

    fn job(i: usize) -> (Job<usize>, oneshot::Receiver<Vec<Outcome>>) {
        let (tx, rx) = oneshot::channel();
        (Job { pending: vec![i], ctx: Arc::default(), reply: Some(tx), leased_until: None }, rx)
    }

    #[tokio::test]
    async fn a_slow_destination_gets_full_batches_and_never_more_than_the_window() {
        let rec = Arc::new(Recorder {
            merges: true,
            rounds: Mutex::default(),
            peak: AtomicUsize::new(0),
            now: AtomicUsize::new(0),
            latency: Duration::from_millis(50),
        });
        let lane = Lane::start(settings(2), true, rec.clone());
        let mut waits = Vec::new();
        for i in 0..100 {
            let (j, rx) = job(i);
            lane.submit(j).await.ok().unwrap();
            waits.push(rx);
        }
        for w in waits {
            assert_eq!(w.await.unwrap().len(), 1);
        }
        let rounds = rec.rounds.lock().unwrap().clone();
        let mut all: Vec<usize> = rounds.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "every event once");
        assert!(rounds.iter().all(|r| r.len() <= 10), "no round above max_batch: {rounds:?}");
        assert!(rounds.len() <= 12, "rounds fill while the window is busy: {} rounds", rounds.len());
        assert!(rec.peak.load(Ordering::SeqCst) <= 2, "window exceeded");
    }

    #[tokio::test]
    async fn a_lane_that_does_not_merge_sends_each_visitor_as_a_request_within_the_window() {
        let rec = Arc::new(Recorder {
            merges: false,
            rounds: Mutex::default(),
            peak: AtomicUsize::new(0),
            now: AtomicUsize::new(0),
            latency: Duration::from_millis(20),
        });
        let lane = Lane::start(settings(4), false, rec.clone());
        let mut waits = Vec::new();
        for i in 0..40 {
            let (j, rx) = job(i);
            lane.submit(j).await.ok().unwrap();
            waits.push(rx);
        }
        for w in waits {
            w.await.unwrap();
        }
        let rounds = rec.rounds.lock().unwrap().clone();
        let mut all: Vec<usize> = rounds.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>(), "every visitor once");
        let peak = rec.peak.load(Ordering::SeqCst);
        assert!(peak <= 4, "{peak} requests at once, window 4");
        assert!(peak >= 2, "requests overlap up to the window");
        assert!(rounds.len() < 40, "visitors share rounds (and their store calls): {} rounds", rounds.len());
    }
}
