//! The notifier `serve` runs: it matches queued live events against the rules (making one
//! delivery per event, rule and channel, in one transaction that also takes them off the queue),
//! then sends what is due, one worker per channel so that a slow or limited channel holds up no
//! other. Each worker paces its channel (a token bucket per kind), honours `Retry-After`, backs
//! off on 5xx and network errors, marks the channel failing on a permanent refusal, and folds a
//! backlog past a limit into one roll-up message. A delivery is marked sent only after its
//! receiver said 2xx: after a crash the ones not yet marked are sent again, with the same
//! message id (`webhook-id`), so at most the messages in flight at the crash can repeat.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use sm_warehouse::{AccountRecord, ChannelRecord, DeliveryRecord, DeliveryUpdate, NewDelivery};
use tokio::sync::mpsc;

use super::channel::{Answer, ChannelSettings, judge};
use super::message::{self, Notice};
use super::rule::RuleSpec;
use crate::error::{EngineError, ErrorCode};
use crate::{Engine, now};

/// How the notifier behaves; `serve`'s flags set it.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Events made longer ago than this when they reached the mirror are not sent (a backlog
    /// after downtime is history, not news).
    pub max_age_secs: i64,
    /// A chat channel with more messages than this due at once gets one roll-up instead.
    pub rollup_after: usize,
    /// Our dashboard's address, for links to the object (none: no such link).
    pub dashboard_base: Option<String>,
    /// A delivery still failing this long after it was made is given up.
    pub give_up_after_secs: i64,
    /// The whole of one request to a channel.
    pub request_timeout: Duration,
    /// How often the queue and the due deliveries are read while there is work (five times
    /// less often while there is none).
    pub tick: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            max_age_secs: 3600,
            rollup_after: 20,
            dashboard_base: None,
            give_up_after_secs: 24 * 3600,
            request_timeout: Duration::from_secs(10),
            tick: Duration::from_millis(50),
        }
    }
}

/// What the notifier did since it started (for `/metrics`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifyStats {
    pub planned: u64,
    pub too_old: u64,
    pub sent: u64,
    pub rolled_up: u64,
    pub retried: u64,
    pub failed: u64,
}

pub struct Notifier {
    engine: Arc<Engine>,
    config: NotifyConfig,
    http: reqwest::Client,
    /// Deliveries handed to a worker and not yet recorded: not handed out again.
    in_flight: Mutex<HashSet<i64>>,
    /// Held by a dispatch from its read of due deliveries until they are marked in flight, and
    /// by a worker taking its finished ones out of `in_flight`: otherwise a read made just
    /// before a worker's outcomes were written could hand out deliveries already sent.
    dispatching: tokio::sync::Mutex<()>,
    workers: Mutex<HashMap<String, mpsc::UnboundedSender<Vec<DeliveryRecord>>>>,
    stats: Mutex<NotifyStats>,
}

/// The label a channel's settings are sealed under.
pub(crate) fn sealing_label(channel_id: &str) -> String {
    format!("notify_channel/{channel_id}")
}

/// A channel's settings, opened.
pub(crate) fn settings_of(
    engine: &Engine,
    channel: &ChannelRecord,
) -> Result<ChannelSettings, EngineError> {
    let json = engine
        .vault
        .open_labeled(&channel.config_sealed, &sealing_label(&channel.id))
        .map_err(|e| EngineError::new(ErrorCode::Vault, e.to_string()))?;
    serde_json::from_str(&json).map_err(|e| {
        EngineError::new(
            ErrorCode::Internal,
            format!(
                "the channel {}'s settings are unreadable: {e}",
                channel.name
            ),
        )
    })
}

/// How long one conversation with a mail server may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request (or one email); the answer judged. A network failure is a retry (its words without the
/// URL, which holds the channel's secret).
pub(crate) async fn send(
    http: &reqwest::Client,
    settings: &ChannelSettings,
    notice: &Notice,
    message_id: &str,
) -> Answer {
    if settings.kind == super::ChannelKind::Email {
        return super::email::send(settings, notice, message_id, SMTP_TIMEOUT).await;
    }
    let outgoing = settings.request(notice, message_id, now());
    let mut request = http.post(&outgoing.url).body(outgoing.body);
    for (name, value) in &outgoing.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.text().await.unwrap_or_default();
            judge(status, retry_after.as_deref(), &body)
        }
        Err(error) => Answer::Retry {
            after: None,
            reason: network_words(&error.without_url()),
        },
    }
}

fn network_words(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time".into()
    } else if error.is_connect() {
        "could not connect".into()
    } else {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            text = format!("{text}: {inner}");
            source = inner.source();
        }
        text
    }
}

/// The client channels are sent with.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, EngineError> {
    sm_stripe::client::plain_http_client(timeout)
        .map_err(|e| EngineError::new(ErrorCode::Internal, e.to_string()))
}

impl Notifier {
    pub fn new(engine: Arc<Engine>, config: NotifyConfig) -> Result<Arc<Notifier>, EngineError> {
        let http = http_client(config.request_timeout)?;
        Ok(Arc::new(Notifier {
            engine,
            config,
            http,
            in_flight: Mutex::new(HashSet::new()),
            dispatching: tokio::sync::Mutex::new(()),
            workers: Mutex::new(HashMap::new()),
            stats: Mutex::new(NotifyStats::default()),
        }))
    }

    pub fn stats(&self) -> NotifyStats {
        self.stats.lock().clone()
    }

    /// Plans and sends until `stop` resolves; a failed round is logged and tried again.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            // Small, frequent rounds while events come (a burst of work every few hundred
            // milliseconds showed in webhook intake's latency); few while none do.
            let wait = match self.round().await {
                Ok(true) => self.config.tick,
                Ok(false) => self.config.tick * 5,
                Err(error) => {
                    tracing::warn!(error = %error.message, "notifications: a round failed");
                    self.config.tick * 5
                }
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round: match what is queued, hand out what is due. Whether there was anything.
    pub async fn round(self: &Arc<Self>) -> Result<bool, EngineError> {
        let mut planned = 0;
        loop {
            let read = self.plan().await?;
            if read == 0 {
                break;
            }
            planned += read;
        }
        Ok(self.dispatch().await? > 0 || planned > 0)
    }

    /// Matches up to a page of queued events; how many were read.
    async fn plan(&self) -> Result<usize, EngineError> {
        let (queued, rules) = self
            .engine
            .store_call(|store| {
                let queued = store.notify_queued(1000)?;
                let rules = if queued.is_empty() {
                    Vec::new()
                } else {
                    store.rules()?
                };
                Ok((queued, rules))
            })
            .await?;
        if queued.is_empty() {
            return Ok(0);
        }
        let specs: Vec<(String, String, RuleSpec)> = rules
            .iter()
            .filter_map(|r| {
                let spec = serde_json::from_str(&r.spec).ok()?;
                Some((r.id.clone(), r.channel_id.clone(), spec))
            })
            .collect();
        let at = now();
        let mut deliveries = Vec::new();
        let mut too_old = 0;
        for entry in &queued {
            if entry.queued_at - entry.event.created > self.config.max_age_secs {
                too_old += 1;
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(&entry.event.data) else {
                continue;
            };
            for (rule_id, channel_id, spec) in &specs {
                if !spec.matches(&entry.connection, &entry.event.event_type, &event) {
                    continue;
                }
                let (due_at, digest) = spec.due(at);
                deliveries.push(NewDelivery {
                    connection: entry.connection.clone(),
                    event_id: entry.event.id.clone(),
                    rule_id: rule_id.clone(),
                    channel_id: channel_id.clone(),
                    state: if digest { "digest" } else { "pending" }.into(),
                    due_at,
                    created_at: at,
                });
            }
        }
        let matched: Vec<_> = queued
            .iter()
            .map(|q| (q.connection.clone(), q.event.id.clone()))
            .collect();
        let read = queued.len();
        let planned = self
            .engine
            .store_call(move |store| store.notify_plan(&matched, &deliveries))
            .await?;
        let mut stats = self.stats.lock();
        stats.planned += planned;
        stats.too_old += too_old;
        Ok(read)
    }

    /// Hands due deliveries to their channel's worker (started when first needed); how many.
    async fn dispatch(self: &Arc<Self>) -> Result<usize, EngineError> {
        let _dispatching = self.dispatching.lock().await;
        let due = self
            .engine
            .store_call(|store| store.deliveries_due(now(), 5000))
            .await?;
        // Each channel's share handed over at once, so that its worker sees the whole
        // backlog (and rolls it up) rather than the first few.
        let mut by_channel: HashMap<String, Vec<DeliveryRecord>> = HashMap::new();
        let mut handed = 0;
        {
            let mut in_flight = self.in_flight.lock();
            for delivery in due {
                if in_flight.insert(delivery.id) {
                    handed += 1;
                    by_channel
                        .entry(delivery.channel_id.clone())
                        .or_default()
                        .push(delivery);
                }
            }
        }
        for (channel_id, deliveries) in by_channel {
            let mut workers = self.workers.lock();
            let sender = workers.entry(channel_id.clone()).or_insert_with(|| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(self.clone().channel_worker(channel_id.clone(), receiver));
                sender
            });
            if let Err(returned) = sender.send(deliveries) {
                let mut in_flight = self.in_flight.lock();
                for d in &returned.0 {
                    in_flight.remove(&d.id);
                }
                workers.remove(&channel_id);
            }
        }
        Ok(handed)
    }

    /// Sends one channel's deliveries as they come, paced.
    async fn channel_worker(
        self: Arc<Self>,
        channel_id: String,
        mut receiver: mpsc::UnboundedReceiver<Vec<DeliveryRecord>>,
    ) {
        let mut bucket: Option<Bucket> = None;
        loop {
            let Some(mut batch) = receiver.recv().await else {
                return;
            };
            while let Ok(more) = receiver.try_recv() {
                batch.extend(more);
            }
            let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
            if let Err(error) = self.work(&channel_id, batch, &mut bucket).await {
                tracing::warn!(error = %error.message, "notifications: sending failed");
            }
            let _dispatching = self.dispatching.lock().await;
            let mut in_flight = self.in_flight.lock();
            for id in ids {
                in_flight.remove(&id);
            }
        }
    }

    /// Sends a batch of one channel's due deliveries and records what happened.
    async fn work(
        &self,
        channel_id: &str,
        batch: Vec<DeliveryRecord>,
        bucket: &mut Option<Bucket>,
    ) -> Result<(), EngineError> {
        let wanted = channel_id.to_owned();
        let (channel, accounts) = self
            .engine
            .store_call(move |store| {
                let channel = store.channels()?.into_iter().find(|c| c.id == wanted);
                Ok((channel, store.accounts()?))
            })
            .await?;
        let Some(channel) = channel else {
            // Removed: its deliveries were canceled with it.
            return Ok(());
        };
        let at = now();
        if channel.status == "failing" {
            let reason = format!(
                "not sent: the channel is failing ({})",
                channel.status_message.as_deref().unwrap_or("refused")
            );
            self.stats.lock().failed += batch.len() as u64;
            return self
                .record(finished(&batch, "failed", Some(reason), at, false))
                .await;
        }
        let settings = Arc::new(settings_of(&self.engine, &channel)?);
        let bucket = bucket.get_or_insert_with(|| Bucket::new(settings.kind.pace()));
        if let Some(wait) = bucket.paused_for() {
            // The channel rests (a 429, a 5xx): these wait until it ends, behind the message
            // it refused, which is older.
            let again_at = at + wait.as_secs_f64().ceil() as i64;
            return self.record(deferred(&batch, again_at)).await;
        }
        let (digests, pending): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|d| d.state == "digest");
        // A digest per rule: every event it held, in one message.
        let mut by_rule: HashMap<String, Vec<DeliveryRecord>> = HashMap::new();
        for d in digests {
            by_rule.entry(d.rule_id.clone()).or_default().push(d);
        }
        let mut groups: Vec<(String, Vec<DeliveryRecord>)> = by_rule
            .into_values()
            .map(|group| (format!("Digest: {} events", group.len()), group))
            .collect();
        if settings.kind.rolls_up() && pending.len() > self.config.rollup_after {
            groups.push((format!("{} events at once", pending.len()), pending));
        } else {
            for d in pending {
                groups.push((String::new(), vec![d]));
            }
        }
        let mut sent_any = false;
        let mut groups = groups.into_iter();
        // Outcomes are written together, not per request: the database's one writer serves
        // webhook intake first.
        let mut updates = Vec::new();
        let mut last_record = Instant::now();
        loop {
            // Up to the kind's number of requests side by side (one for chat), each paced.
            let chunk: Vec<(String, Vec<DeliveryRecord>)> =
                groups.by_ref().take(settings.kind.parallel()).collect();
            if chunk.is_empty() {
                self.record(updates).await?;
                if channel.status != "ok" && sent_any {
                    self.set_status(&channel, "ok", None).await?;
                }
                return Ok(());
            }
            let notices = self.notices(&chunk, &accounts).await?;
            let mut sends = tokio::task::JoinSet::new();
            for (index, ((_, group), notice)) in chunk.iter().zip(notices).enumerate() {
                bucket.take().await;
                let message_id = if group.len() == 1 {
                    format!("msg_{}", group[0].id)
                } else {
                    format!("msg_{}_{}", group[0].id, group[group.len() - 1].id)
                };
                let (http, settings) = (self.http.clone(), settings.clone());
                sends.spawn(
                    async move { (index, send(&http, &settings, &notice, &message_id).await) },
                );
            }
            let mut answers: Vec<Option<Answer>> = (0..chunk.len()).map(|_| None).collect();
            while let Some(done) = sends.join_next().await {
                let (index, answer) = done.map_err(|e| {
                    EngineError::new(ErrorCode::Internal, format!("a send failed: {e}"))
                })?;
                answers[index] = Some(answer);
            }
            let at = now();
            let mut rest_at: Option<i64> = None;
            let mut gone: Option<String> = None;
            for ((title, group), answer) in chunk.into_iter().zip(answers) {
                let n = group.len() as u64;
                match answer.expect("every send answers") {
                    Answer::Sent => {
                        let single = group.len() == 1 && title.is_empty();
                        let mut stats = self.stats.lock();
                        if single {
                            stats.sent += n;
                        } else {
                            stats.rolled_up += n;
                        }
                        drop(stats);
                        let state = if single { "sent" } else { "rolled_up" };
                        updates.extend(finished(&group, state, None, at, true));
                        sent_any = true;
                    }
                    Answer::Retry { after, reason } => {
                        let after = after.map(|a| a.min(Duration::from_secs(3600)));
                        let (retried, again_at, gave_up) = retry_updates(
                            &group,
                            after,
                            &reason,
                            at,
                            self.config.give_up_after_secs,
                        );
                        let mut stats = self.stats.lock();
                        stats.retried += n - gave_up;
                        stats.failed += gave_up;
                        drop(stats);
                        updates.extend(retried);
                        rest_at = Some(rest_at.map_or(again_at, |t| t.max(again_at)));
                    }
                    Answer::Refused(reason) => {
                        self.stats.lock().failed += n;
                        updates.extend(finished(&group, "failed", Some(reason), at, true));
                    }
                    Answer::ChannelGone(reason) => {
                        self.stats.lock().failed += n;
                        updates.extend(finished(&group, "failed", Some(reason.clone()), at, true));
                        gone = Some(reason);
                    }
                }
            }
            if let Some(reason) = gone {
                self.record(updates).await?;
                // What this round still held is given up with it (the next round finds the
                // channel failing).
                return self.set_status(&channel, "failing", Some(reason)).await;
            }
            if let Some(again_at) = rest_at {
                // The channel rests until the refused message is due again (a 429's
                // Retry-After, or the back-off after a 5xx), and not a moment longer: what
                // comes meanwhile waits behind it, in order.
                bucket.pause(Duration::from_secs_f64(
                    (again_at as f64 - unix_now()).max(0.0),
                ));
                let rest: Vec<DeliveryRecord> = groups.flat_map(|(_, g)| g).collect();
                updates.extend(deferred(&rest, again_at));
                return self.record(updates).await;
            }
            // People's channels (one message at a time, about a second apart) record each;
            // a webhook's outcomes are written every 250 ms or 500, whichever comes first —
            // what a crash can send again (with the same webhook-id).
            if settings.kind.parallel() == 1
                || updates.len() >= 500
                || last_record.elapsed() >= Duration::from_millis(250)
            {
                self.record(std::mem::take(&mut updates)).await?;
                last_record = Instant::now();
            }
        }
    }

    /// The messages of a chunk: each delivery's own (what it needs read from the mirror in one
    /// go), or the roll-up or digest of many.
    async fn notices(
        &self,
        chunk: &[(String, Vec<DeliveryRecord>)],
        accounts: &[AccountRecord],
    ) -> Result<Vec<Notice>, EngineError> {
        let work: Vec<(String, Vec<DeliveryRecord>)> = chunk.to_vec();
        let accounts = accounts.to_vec();
        let base = self.config.dashboard_base.clone();
        self.engine
            .store_call(move |store| {
                Ok(work
                    .iter()
                    .map(|(title, group)| {
                        if group.len() == 1 && title.is_empty() {
                            let d = &group[0];
                            let account = accounts
                                .iter()
                                .find(|a| a.connection == d.connection)
                                .cloned()
                                .unwrap_or_else(|| placeholder_account(d));
                            let event: Value =
                                serde_json::from_str(&d.event_data).unwrap_or(Value::Null);
                            let related =
                                message::related(store, &d.connection, &event["data"]["object"]);
                            return message::for_event(&account, &event, &related, base.as_deref());
                        }
                        let events: Vec<_> = group
                            .iter()
                            .map(|d| {
                                (
                                    d.connection.clone(),
                                    serde_json::from_str::<Value>(&d.event_data)
                                        .unwrap_or(Value::Null),
                                )
                            })
                            .collect();
                        message::summary_of(title, &events, &accounts)
                    })
                    .collect())
            })
            .await
    }

    /// Writes attempts' outcomes, in one transaction.
    async fn record(&self, updates: Vec<DeliveryUpdate>) -> Result<(), EngineError> {
        if updates.is_empty() {
            return Ok(());
        }
        self.engine
            .store_call(move |store| store.update_deliveries(&updates))
            .await
    }

    async fn set_status(
        &self,
        channel: &ChannelRecord,
        status: &str,
        message: Option<String>,
    ) -> Result<(), EngineError> {
        let mut changed = channel.clone();
        changed.status = status.to_owned();
        changed.status_message = message;
        changed.updated_at = now();
        self.engine
            .store_call(move |store| store.update_channel(&changed))
            .await
    }
}

/// Deliveries finished in `state` (with the reason when failed); `attempted`: a request was
/// made (a failing channel's are given up without one).
fn finished(
    group: &[DeliveryRecord],
    state: &str,
    error: Option<String>,
    at: i64,
    attempted: bool,
) -> Vec<DeliveryUpdate> {
    group
        .iter()
        .map(|d| DeliveryUpdate {
            id: d.id,
            state: state.to_owned(),
            attempts: d.attempts + i64::from(attempted),
            due_at: d.due_at,
            finished_at: Some(at),
            last_error: error.clone(),
        })
        .collect()
}

/// Deliveries not tried, moved to `due_at` (no attempt counted).
fn deferred(rest: &[DeliveryRecord], due_at: i64) -> Vec<DeliveryUpdate> {
    rest.iter()
        .map(|d| DeliveryUpdate {
            id: d.id,
            state: d.state.clone(),
            attempts: d.attempts,
            due_at: due_at.max(d.due_at),
            finished_at: None,
            last_error: d.last_error.clone(),
        })
        .collect()
}

/// Tried again later: after `after` (a 429's Retry-After, counted from now to the second after,
/// never sooner), else after a back-off that doubles from 5 s to 30 min; given up once older
/// than `give_up_after`. The updates, when the next try is, and how many were given up.
fn retry_updates(
    group: &[DeliveryRecord],
    after: Option<Duration>,
    reason: &str,
    at: i64,
    give_up_after: i64,
) -> (Vec<DeliveryUpdate>, i64, u64) {
    let mut gave_up = 0;
    let updates: Vec<DeliveryUpdate> = group
        .iter()
        .map(|d| {
            let attempts = d.attempts + 1;
            if at - d.created_at >= give_up_after {
                gave_up += 1;
                return DeliveryUpdate {
                    id: d.id,
                    state: "failed".into(),
                    attempts,
                    due_at: d.due_at,
                    finished_at: Some(at),
                    last_error: Some(format!("gave up after {attempts} attempts: {reason}")),
                };
            }
            let due_at = match after {
                Some(after) => (unix_now() + after.as_secs_f64()).ceil() as i64,
                None => at + (5i64 << (attempts - 1).clamp(0, 9)).min(1800),
            };
            DeliveryUpdate {
                id: d.id,
                state: d.state.clone(),
                attempts,
                due_at: due_at.max(at + 1),
                finished_at: None,
                last_error: Some(reason.to_owned()),
            }
        })
        .collect();
    let again_at = updates
        .iter()
        .filter(|u| u.finished_at.is_none())
        .map(|u| u.due_at)
        .max()
        .unwrap_or(at);
    (updates, again_at, gave_up)
}

/// Now, in Unix seconds with their fraction.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// An account record for a delivery whose connection was removed after it was planned.
fn placeholder_account(d: &DeliveryRecord) -> AccountRecord {
    AccountRecord {
        connection: d.connection.clone(),
        name: d.connection.account_id.clone(),
        stripe_name: None,
        icon_url: None,
        logo_url: None,
        key_kind: String::new(),
        key_masked: String::new(),
        key_sealed: Vec::new(),
        permissions: Value::Null,
        status: String::new(),
        status_message: None,
        start_date: None,
        webhook_endpoint_id: None,
        webhook_secret_sealed: None,
        api_base: None,
        api_version: None,
        created_at: 0,
        updated_at: 0,
    }
}

/// A token bucket: `capacity` messages at once, `per_sec` after, and a pause a 429 asked for.
struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    at: Instant,
    paused_until: Option<Instant>,
}

impl Bucket {
    fn new((capacity, per_sec): (f64, f64)) -> Bucket {
        Bucket {
            capacity,
            per_sec,
            tokens: capacity,
            at: Instant::now(),
            paused_until: None,
        }
    }

    /// How long the pause a 429 asked for still lasts.
    fn paused_for(&self) -> Option<Duration> {
        self.paused_until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    fn pause(&mut self, wait: Duration) {
        self.paused_until = Some(Instant::now() + wait);
        self.tokens = 0.0;
    }

    async fn take(&mut self) {
        if let Some(until) = self.paused_until.take() {
            tokio::time::sleep_until(until.into()).await;
            self.at = Instant::now();
        }
        loop {
            let elapsed = self.at.elapsed().as_secs_f64();
            self.at = Instant::now();
            self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - self.tokens) / self.per_sec;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}
