//! Notification operations every surface calls: channels (add with their secrets sealed, list
//! masked, send a test, remove), rules (add, list in words, remove) and the log of what was
//! sent, when, and what failed.

use serde::Serialize;
use sm_warehouse::{ChannelRecord, DeliveryQuery, RuleRecord};

use crate::error::{EngineError, ErrorCode};
use crate::notify::channel::{Answer, ChannelKind, ChannelOptions, ChannelSettings};
use crate::notify::deliver::{http_client, sealing_label, send, settings_of};
use crate::notify::message::{Notice, Tone};
use crate::notify::rule::{self, RuleSpec};
use crate::{Engine, now};

/// A channel as people see it: never its secrets.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub target: String,
    /// `untested`, `ok` or `failing`.
    pub status: String,
    pub status_message: Option<String>,
    pub created_at: i64,
    pub rules: usize,
}

/// What adding a channel gives back: the channel, and a webhook's signing secret, shown this
/// once (the receiver needs it to check signatures).
#[derive(Debug, Clone, Serialize)]
pub struct ChannelAdded {
    pub channel: ChannelView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// What a new channel is (no `Debug`: its URL and secrets must not reach a log).
#[derive(Clone)]
pub struct ChannelInput {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret: Option<String>,
    pub token: Option<String>,
    /// An email channel's recipients, sender and extra CA certificates (PEM text).
    pub to: Vec<String>,
    pub from: Option<String>,
    pub ca_pem: Option<String>,
}

fn check_label(what: &str, name: &str) -> Result<String, EngineError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(EngineError::invalid(format!(
            "a {what} name is 1 to 64 characters, without control characters"
        )));
    }
    Ok(name.to_owned())
}

fn view(channel: &ChannelRecord, rules: &[RuleRecord]) -> ChannelView {
    ChannelView {
        id: channel.id.clone(),
        name: channel.name.clone(),
        kind: channel.kind.clone(),
        target: channel.target_masked.clone(),
        status: channel.status.clone(),
        status_message: channel.status_message.clone(),
        created_at: channel.created_at,
        rules: rules.iter().filter(|r| r.channel_id == channel.id).count(),
    }
}

fn random_id(prefix: &str) -> Result<String, EngineError> {
    let bytes = crate::vault::random_bytes::<8>()?;
    Ok(format!(
        "{prefix}_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn conflict(error: EngineError, what: String) -> EngineError {
    if error.code == ErrorCode::Conflict {
        EngineError::new(ErrorCode::Conflict, format!("{what} exists already"))
            .hint("choose another name, or remove that one first")
    } else {
        error
    }
}

pub async fn add_channel(
    engine: &Engine,
    input: ChannelInput,
) -> Result<ChannelAdded, EngineError> {
    let name = check_label("channel", &input.name)?;
    let kind = ChannelKind::parse(&input.kind)?;
    let settings = ChannelSettings::new(
        kind,
        &input.url,
        ChannelOptions {
            secret: input.secret.clone(),
            token: input.token,
            to: input.to,
            from: input.from,
            ca_pem: input.ca_pem,
        },
    )?;
    let id = random_id("ch")?;
    let sealed = engine.vault.seal_labeled(
        &serde_json::to_string(&settings).expect("settings serialize"),
        &sealing_label(&id),
    );
    let at = now();
    let record = ChannelRecord {
        id,
        name: name.clone(),
        kind: kind.name().to_owned(),
        target_masked: settings.target_masked(),
        config_sealed: sealed,
        status: "untested".into(),
        status_message: None,
        created_at: at,
        updated_at: at,
    };
    let stored = record.clone();
    engine
        .store_call(move |store| store.insert_channel(&stored))
        .await
        .map_err(|e| conflict(e, format!("a channel named {name}")))?;
    Ok(ChannelAdded {
        channel: view(&record, &[]),
        // Shown when it was made here; one the user gave they know already.
        signing_secret: settings.secret.filter(|_| input.secret.is_none()),
    })
}

pub async fn channels(engine: &Engine) -> Result<Vec<ChannelView>, EngineError> {
    let (channels, rules) = engine
        .store_call(|store| Ok((store.channels()?, store.rules()?)))
        .await?;
    Ok(channels.iter().map(|c| view(c, &rules)).collect())
}

/// A channel by name or id.
async fn channel(engine: &Engine, name: &str) -> Result<ChannelRecord, EngineError> {
    let wanted = name.trim().to_owned();
    engine
        .store_call(|store| store.channels())
        .await?
        .into_iter()
        .find(|c| c.name == wanted || c.id == wanted)
        .ok_or_else(|| {
            EngineError::new(ErrorCode::NotFound, format!("no channel named {wanted}"))
                .hint("`stripe-mirror notify channel list` shows them")
        })
}

/// The outcome of a test message.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    pub channel: ChannelView,
    pub delivered: bool,
    /// What the receiver said when it did not take the message.
    pub error: Option<String>,
}

impl TestOutcome {
    /// The error every surface shows when the receiver did not take the test message (none when
    /// it did).
    pub fn refusal(&self) -> Option<EngineError> {
        if self.delivered {
            return None;
        }
        Some(
            EngineError::new(
                ErrorCode::Upstream,
                format!(
                    "the test message to \"{}\" was not taken: {}",
                    self.channel.name,
                    self.error.as_deref().unwrap_or("no reason given")
                ),
            )
            .hint("the channel is marked failing until a message goes through: check its URL, then remove it and add it again if it changed"),
        )
    }
}

/// Sends a sample message now and records the channel's status from the answer: `ok` when it
/// was taken, `failing` with the receiver's words when not.
pub async fn test_channel(engine: &Engine, name: &str) -> Result<TestOutcome, EngineError> {
    let mut record = channel(engine, name).await?;
    let settings = settings_of(engine, &record)?;
    let notice = Notice {
        title: "Test message from stripe-mirror".into(),
        summary: format!(
            "This channel ({}) will receive the notifications its rules choose.",
            record.name
        ),
        facts: vec![("Channel".into(), record.name.clone())],
        stripe_url: None,
        mirror_url: None,
        event_id: String::new(),
        event_type: "notification.test".into(),
        test: true,
        occurred_at: now(),
        tone: Tone::Neutral,
    };
    let http = http_client(std::time::Duration::from_secs(10))?;
    let message_id = format!("msg_test_{}", now());
    let answer = send(&http, &settings, &notice, &message_id).await;
    let error = match answer {
        Answer::Sent => None,
        Answer::Retry { reason, .. } | Answer::Refused(reason) | Answer::ChannelGone(reason) => {
            Some(reason)
        }
    };
    record.status = if error.is_none() { "ok" } else { "failing" }.into();
    record.status_message = error.clone();
    record.updated_at = now();
    let stored = record.clone();
    let rules = engine
        .store_call(move |store| {
            store.update_channel(&stored)?;
            store.rules()
        })
        .await?;
    Ok(TestOutcome {
        channel: view(&record, &rules),
        delivered: error.is_none(),
        error,
    })
}

/// Removes a channel with its rules (how many went); what it had not sent is canceled.
pub async fn remove_channel(engine: &Engine, name: &str) -> Result<usize, EngineError> {
    let record = channel(engine, name).await?;
    let id = record.id.clone();
    engine
        .store_call(move |store| {
            let rules = store.rules()?.iter().filter(|r| r.channel_id == id).count();
            store.delete_channel(&id)?;
            Ok(rules)
        })
        .await
}

/// A new rule, as a surface parsed it.
#[derive(Debug, Clone, Default)]
pub struct RuleInput {
    pub name: String,
    pub channel: String,
    /// `charge.succeeded,payout.failed`, `charge.*`, `*` or `default` (none: `default`).
    pub events: Option<String>,
    /// `acct_…`, or a connection's name (none: every account).
    pub account: Option<String>,
    pub include_test: bool,
    /// `50`, `49.99usd`.
    pub min_amount: Option<String>,
    /// `22:00-07:00`.
    pub quiet_hours: Option<String>,
    /// `daily@09:00`, `weekly@mon09:00`.
    pub digest: Option<String>,
    /// `Europe/Paris`, `+02:00` (the zone of quiet hours and digests; UTC when none).
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub channel: String,
    pub spec: RuleSpec,
    /// The rule in words.
    pub description: String,
    pub created_at: i64,
}

pub async fn add_rule(engine: &Engine, input: RuleInput) -> Result<RuleView, EngineError> {
    let name = check_label("rule", &input.name)?;
    let target = channel(engine, &input.channel).await?;
    let events = rule::parse_events(input.events.as_deref().unwrap_or("default"))?;
    let account = match input.account.as_deref().map(str::trim) {
        None | Some("") | Some("all") => None,
        Some(wanted) => {
            let wanted = wanted.to_owned();
            let accounts = engine.store_call(|store| store.accounts()).await?;
            let found = accounts
                .iter()
                .find(|a| a.connection.account_id == wanted || a.name == wanted)
                .map(|a| a.connection.account_id.clone());
            Some(found.ok_or_else(|| {
                EngineError::new(ErrorCode::NotFound, format!("no connected account {wanted}"))
                    .hint("give an acct_… id or a connection's name (`stripe-mirror accounts`), or leave --account out for every account")
            })?)
        }
    };
    let (min_amount, min_currency) = match input.min_amount.as_deref() {
        Some(text) => {
            let (amount, currency) = rule::parse_min_amount(text)?;
            (Some(amount), currency)
        }
        None => (None, None),
    };
    let time_zone = match input.time_zone.as_deref() {
        Some(text) => sm_reports::calendar::Zone::parse(text).map_err(EngineError::invalid)?,
        None => sm_reports::calendar::Zone::utc(),
    };
    let spec = RuleSpec {
        events,
        account,
        include_test: input.include_test,
        min_amount,
        min_currency,
        quiet_hours: input
            .quiet_hours
            .as_deref()
            .map(rule::parse_quiet_hours)
            .transpose()?,
        digest: input
            .digest
            .as_deref()
            .map(rule::parse_digest)
            .transpose()?,
        time_zone,
    };
    if spec.quiet_hours.is_some() && spec.digest.is_some() {
        return Err(EngineError::invalid(
            "a rule has quiet hours or a digest, not both: a digest is sent at its time anyway",
        ));
    }
    let record = RuleRecord {
        id: random_id("rule")?,
        name: name.clone(),
        channel_id: target.id.clone(),
        spec: serde_json::to_string(&spec).expect("a spec serializes"),
        created_at: now(),
    };
    let stored = record.clone();
    engine
        .store_call(move |store| store.insert_rule(&stored))
        .await
        .map_err(|e| conflict(e, format!("a rule named {name}")))?;
    Ok(RuleView {
        id: record.id,
        name: record.name,
        channel: target.name,
        description: spec.describe(),
        spec,
        created_at: record.created_at,
    })
}

pub async fn rules(engine: &Engine) -> Result<Vec<RuleView>, EngineError> {
    let (rules, channels) = engine
        .store_call(|store| Ok((store.rules()?, store.channels()?)))
        .await?;
    Ok(rules
        .into_iter()
        .filter_map(|r| {
            let spec: RuleSpec = serde_json::from_str(&r.spec).ok()?;
            let channel = channels
                .iter()
                .find(|c| c.id == r.channel_id)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            Some(RuleView {
                id: r.id,
                name: r.name,
                channel,
                description: spec.describe(),
                spec,
                created_at: r.created_at,
            })
        })
        .collect())
}

pub async fn remove_rule(engine: &Engine, name: &str) -> Result<(), EngineError> {
    let wanted = name.trim().to_owned();
    let found = rules(engine)
        .await?
        .into_iter()
        .find(|r| r.name == wanted || r.id == wanted)
        .ok_or_else(|| {
            EngineError::new(ErrorCode::NotFound, format!("no rule named {wanted}"))
                .hint("`stripe-mirror notify rule list` shows them")
        })?;
    engine
        .store_call(move |store| store.delete_rule(&found.id))
        .await?;
    Ok(())
}

/// One line of the log.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub id: i64,
    pub connection: String,
    pub event_id: String,
    pub event_type: String,
    pub rule: String,
    pub channel: String,
    pub state: String,
    pub attempts: i64,
    pub created_at: i64,
    /// When it is (or was to be) tried next.
    pub due_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

/// What was sent, when, and what failed: newest first, optionally one channel's, in some
/// states.
pub async fn log(
    engine: &Engine,
    channel_name: Option<&str>,
    states: Vec<String>,
    limit: usize,
) -> Result<Vec<LogEntry>, EngineError> {
    let channel_id = match channel_name {
        Some(name) => Some(channel(engine, name).await?.id),
        None => None,
    };
    let query = DeliveryQuery {
        limit: limit.clamp(1, 1000),
        channel_id,
        states,
        since: None,
    };
    let (deliveries, channels, rules) = engine
        .store_call(move |store| Ok((store.deliveries(&query)?, store.channels()?, store.rules()?)))
        .await?;
    let rule_names: std::collections::HashMap<&str, &str> = rules
        .iter()
        .map(|r| (r.id.as_str(), r.name.as_str()))
        .collect();
    let channel_names: std::collections::HashMap<&str, &str> = channels
        .iter()
        .map(|c| (c.id.as_str(), c.name.as_str()))
        .collect();
    let name_of = |names: &std::collections::HashMap<&str, &str>, id: &str| {
        names
            .get(id)
            .map(|n| (*n).to_owned())
            .unwrap_or_else(|| format!("{id} (removed)"))
    };
    Ok(deliveries
        .into_iter()
        .map(|d| LogEntry {
            id: d.id,
            connection: d.connection.label(),
            rule: name_of(&rule_names, &d.rule_id),
            channel: name_of(&channel_names, &d.channel_id),
            event_id: d.event_id,
            event_type: d.event_type,
            state: d.state,
            attempts: d.attempts,
            created_at: d.created_at,
            due_at: d.due_at,
            finished_at: d.finished_at,
            error: d.last_error,
        })
        .collect())
}
