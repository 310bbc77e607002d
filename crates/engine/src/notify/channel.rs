//! Notification channels: what each kind needs (a URL, a signing secret, a token), how it is
//! shown without its secrets, how a [`Notice`] is written for it (Slack blocks, a Discord embed,
//! a Teams Adaptive Card, a Standard Webhooks signed JSON body, an ntfy push), how fast it may be
//! sent to, and what its answers mean.

use std::time::Duration;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::message::Notice;
use crate::error::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Slack,
    Discord,
    Teams,
    Webhook,
    Ntfy,
    Email,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 6] = [
        ChannelKind::Slack,
        ChannelKind::Discord,
        ChannelKind::Teams,
        ChannelKind::Webhook,
        ChannelKind::Ntfy,
        ChannelKind::Email,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Discord => "discord",
            ChannelKind::Teams => "teams",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Ntfy => "ntfy",
            ChannelKind::Email => "email",
        }
    }

    pub fn parse(text: &str) -> Result<ChannelKind, EngineError> {
        ChannelKind::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                EngineError::invalid(format!(
                    "`{text}` is not a kind of channel: choose slack, discord, teams, webhook, ntfy or email"
                ))
            })
    }

    /// How many messages may go at once, and how many per second after that: Slack asks for
    /// about one a second per webhook, Discord allows 5 per 2 s, Teams publishes no number (one
    /// a second, as Slack), ntfy.sh's default burst is 60 then one per 5 s (one a second keeps
    /// a self-hosted server happy too), a webhook consumer (a server of the user's) up to
    /// 2,000 a second; a mail server
    /// gets one message every two seconds (mail providers throttle bursts from one sender).
    pub fn pace(self) -> (f64, f64) {
        match self {
            ChannelKind::Slack | ChannelKind::Teams | ChannelKind::Ntfy => (1.0, 1.0),
            ChannelKind::Email => (3.0, 0.5),
            ChannelKind::Discord => (5.0, 2.5),
            ChannelKind::Webhook => (200.0, 2_000.0),
        }
    }

    /// How many requests go side by side: one for people's channels (order, and their rate
    /// limits); a webhook consumer is a server, sent up to 16 at a time.
    pub fn parallel(self) -> usize {
        if self == ChannelKind::Webhook { 16 } else { 1 }
    }

    /// Whether a backlog becomes one roll-up message (people read chat; a webhook's consumer is
    /// a program that wants every event).
    pub fn rolls_up(self) -> bool {
        self != ChannelKind::Webhook
    }
}

/// A channel's settings, secrets included: sealed as JSON in the store. Its `Debug` shows
/// nothing secret (the URL masked), so that no log line can carry one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSettings {
    pub kind: ChannelKind,
    /// Where to POST (the whole URL: Slack's, Discord's and Teams' carry their secret).
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_…`) of a webhook channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// An ntfy access token (sent as a bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// An email channel's recipients and sender.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Certificates (PEM) an email channel's server may be signed by, beside the system's
    /// (a company's own CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSettings")
            .field("kind", &self.kind)
            .field("target", &self.target_masked())
            .finish_non_exhaustive()
    }
}

/// What a channel takes beside its kind and URL.
#[derive(Clone, Default)]
pub struct ChannelOptions {
    /// A webhook's signing secret.
    pub secret: Option<String>,
    /// An ntfy token.
    pub token: Option<String>,
    /// An email channel's recipients, sender, and extra CA certificates (PEM).
    pub to: Vec<String>,
    pub from: Option<String>,
    pub ca_pem: Option<String>,
}

impl ChannelSettings {
    /// Checks a new channel's settings; a webhook without a secret gets one made.
    pub fn new(
        kind: ChannelKind,
        url: &str,
        options: ChannelOptions,
    ) -> Result<ChannelSettings, EngineError> {
        let url = url.trim();
        let parsed = reqwest::Url::parse(url).map_err(|_| {
            EngineError::invalid(format!("`{}` is not a URL", mask_url(url)))
                .hint(example_url(kind))
        })?;
        let host = parsed.host_str().unwrap_or_default();
        let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
        let ChannelOptions {
            secret,
            token,
            to,
            from,
            ca_pem,
        } = options;
        if kind == ChannelKind::Email {
            super::email::check(&parsed, &to, from.as_deref(), ca_pem.as_deref())?;
        } else {
            match parsed.scheme() {
                "https" => {}
                "http" if loopback => {}
                _ => {
                    return Err(EngineError::invalid(format!(
                        "a channel's URL must begin with https:// (http:// only to this machine), not `{}`",
                        mask_url(url)
                    ))
                    .hint(example_url(kind)));
                }
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(EngineError::invalid(
                    "put no user or password in the URL: give an ntfy token with --token",
                ));
            }
            if !to.is_empty() || from.is_some() || ca_pem.is_some() {
                return Err(EngineError::invalid(
                    "only an email channel has recipients, a sender and CA certificates",
                ));
            }
        }
        if kind == ChannelKind::Ntfy && parsed.path().trim_matches('/').is_empty() {
            return Err(EngineError::invalid(
                "an ntfy URL names a topic: https://ntfy.sh/your-topic",
            ));
        }
        let secret = match (kind, secret) {
            (ChannelKind::Webhook, Some(secret)) => {
                signing_key(&secret)?;
                Some(secret)
            }
            (ChannelKind::Webhook, None) => {
                let bytes = crate::vault::random_bytes::<24>()?;
                Some(format!(
                    "whsec_{}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                ))
            }
            (_, Some(_)) => {
                return Err(EngineError::invalid(
                    "only a webhook channel has a signing secret",
                ));
            }
            (_, None) => None,
        };
        if token.is_some() && kind != ChannelKind::Ntfy {
            return Err(EngineError::invalid("only an ntfy channel takes a token"));
        }
        Ok(ChannelSettings {
            kind,
            url: url.to_owned(),
            secret,
            token,
            to,
            from,
            ca_pem,
        })
    }

    /// Where it sends, for people: scheme, host and the path's first part; the rest (which on
    /// Slack, Discord and Teams is the secret) masked.
    pub fn target_masked(&self) -> String {
        if self.kind == ChannelKind::Email {
            return super::email::masked(&self.url, &self.to);
        }
        mask_url(&self.url)
    }

    /// The request that sends `notice`, with `message_id` naming it for the receiver
    /// (repeated unchanged on every retry, so a receiver can drop a repeat), at `now`.
    pub fn request(&self, notice: &Notice, message_id: &str, now: i64) -> Outgoing {
        let json_body = |body: Value| body.to_string().into_bytes();
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let mut url = self.url.clone();
        let body = match self.kind {
            ChannelKind::Slack => json_body(slack(notice)),
            ChannelKind::Discord => {
                // `wait=true`: Discord answers with the message, or an error, instead of 204
                // for a message it may not have kept.
                if !url.contains("wait=") {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str("wait=true");
                }
                json_body(discord(notice))
            }
            ChannelKind::Teams => json_body(teams(notice)),
            ChannelKind::Webhook => {
                let body = json_body(webhook(notice));
                let key =
                    signing_key(self.secret.as_deref().unwrap_or_default()).unwrap_or_default();
                headers.push(("webhook-id".into(), message_id.to_owned()));
                headers.push(("webhook-timestamp".into(), now.to_string()));
                headers.push((
                    "webhook-signature".into(),
                    sign(&key, message_id, now, &body),
                ));
                body
            }
            ChannelKind::Email => Vec::new(),
            ChannelKind::Ntfy => {
                headers = vec![
                    ("content-type".into(), "text/plain; charset=utf-8".into()),
                    // ntfy reads headers as UTF-8 only when RFC 2047-encoded; the title is
                    // plain ASCII or sent in the body's first line instead.
                    ("title".into(), ascii_or(&notice.title, "stripe-mirror")),
                    (
                        "priority".into(),
                        if notice.tone == super::message::Tone::Bad {
                            "4"
                        } else {
                            "3"
                        }
                        .into(),
                    ),
                    (
                        "tags".into(),
                        if notice.test { "test" } else { "moneybag" }.into(),
                    ),
                ];
                if let Some(link) = notice.mirror_url.as_ref().or(notice.stripe_url.as_ref()) {
                    headers.push(("click".into(), link.clone()));
                }
                if let Some(token) = &self.token {
                    headers.push(("authorization".into(), format!("Bearer {token}")));
                }
                ntfy(notice).into_bytes()
            }
        };
        Outgoing { url, headers, body }
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a channel's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Sent,
    /// Try again after this long (a 429's `Retry-After`), or after the back-off.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// This message is refused (a 400 about its content): give it up, keep the channel.
    Refused(String),
    /// The channel is gone or forbidden (401/403/404/410): mark it failing, stop sending.
    ChannelGone(String),
}

/// Reads an HTTP answer: status, `Retry-After` (seconds, or Discord's `retry_after` in the
/// body), body text (the receiver's reason, shortened).
pub fn judge(status: u16, retry_after: Option<&str>, body: &str) -> Answer {
    let said = body.trim().chars().take(200).collect::<String>();
    let reason = if said.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {said}")
    };
    match status {
        200..=299 => Answer::Sent,
        429 => {
            let from_body = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["retry_after"].as_f64());
            let seconds = retry_after
                .and_then(|v| v.trim().parse::<f64>().ok())
                .or(from_body)
                .filter(|s| s.is_finite() && *s >= 0.0);
            Answer::Retry {
                after: seconds.map(Duration::from_secs_f64),
                reason,
            }
        }
        401 | 403 | 404 | 410 => Answer::ChannelGone(reason),
        408 | 409 | 412 | 425 => Answer::Retry {
            after: None,
            reason,
        },
        400..=499 => Answer::Refused(reason),
        _ => Answer::Retry {
            after: None,
            reason,
        },
    }
}

fn example_url(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => {
            "a Slack incoming webhook looks like https://hooks.slack.com/services/T…/B…/…"
        }
        ChannelKind::Discord => {
            "a Discord webhook looks like https://discord.com/api/webhooks/ID/TOKEN"
        }
        ChannelKind::Teams => {
            "a Teams workflow URL comes from the \"When a Teams webhook request is received\" flow"
        }
        ChannelKind::Webhook => "give the https:// URL that receives the signed POSTs",
        ChannelKind::Ntfy => "an ntfy URL names the server and topic: https://ntfy.sh/your-topic",
        ChannelKind::Email => {
            "an email channel's URL names its SMTP server: smtp://user@smtp.example.com:587 (STARTTLS) or smtps://user@smtp.example.com:465"
        }
    }
}

/// `https://hooks.slack.com/services/…`: scheme, host, first path segment.
pub fn mask_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "(not a URL)".into();
    };
    let first = parsed
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty());
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let host = parsed.host_str().unwrap_or_default();
    match first {
        Some(segment) if parsed.path().len() > segment.len() + 1 || parsed.query().is_some() => {
            format!("{}://{host}{port}/{segment}/…", parsed.scheme())
        }
        Some(_) => format!("{}://{host}{port}/…", parsed.scheme()),
        None => format!("{}://{host}{port}/", parsed.scheme()),
    }
}

/// The key of a `whsec_…` secret (base64 after the prefix).
fn signing_key(secret: &str) -> Result<Vec<u8>, EngineError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            EngineError::invalid(
                "a signing secret is whsec_ followed by base64 (leave --secret out to have one made)",
            )
        })?;
    if key.len() < 16 {
        return Err(EngineError::invalid(
            "the signing secret is too short: give at least 16 bytes (24 is usual)",
        ));
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` (Standard Webhooks).
pub fn sign(key: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Slack mrkdwn text with `&`, `<` and `>` escaped: a customer named `<!channel>` pings
/// nobody, and no text becomes a link.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack's limit on a section's text, shortened with an ellipsis.
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub(super) fn links(notice: &Notice) -> Vec<(&'static str, &str)> {
    let mut links = Vec::new();
    if let Some(url) = &notice.stripe_url {
        links.push(("Open in Stripe", url.as_str()));
    }
    if let Some(url) = &notice.mirror_url {
        links.push(("Open in stripe-mirror", url.as_str()));
    }
    links
}

fn slack(notice: &Notice) -> Value {
    let fields: Vec<Value> = notice
        .facts
        .iter()
        .take(10)
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": cut(&format!("*{}*\n{}", slack_escape(label), slack_escape(value)), 2000)})
        })
        .collect();
    let mut footer: Vec<String> = links(notice)
        .into_iter()
        .map(|(label, url)| format!("<{}|{label}>", url.replace('|', "%7C").replace('>', "%3E")))
        .collect();
    if !notice.event_id.is_empty() {
        footer.push(slack_escape(&notice.event_id));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&notice.title, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&slack_escape(&notice.summary), 3000)}}),
    ];
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !footer.is_empty() {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": footer.join(" · ")}]}));
    }
    json!({
        "text": cut(&slack_escape(&format!("{}: {}", notice.title, notice.summary)), 3000),
        "blocks": blocks,
    })
}

fn discord(notice: &Notice) -> Value {
    let fields: Vec<Value> = notice
        .facts
        .iter()
        .take(25)
        .map(|(label, value)| json!({"name": cut(label, 256), "value": cut(value, 1024), "inline": true}))
        .collect();
    let mut footer = String::from("stripe-mirror");
    if !notice.event_id.is_empty() {
        footer = format!("{} · stripe-mirror", notice.event_id);
    }
    let description = match &notice.mirror_url {
        Some(url) => format!("{}\n[Open in stripe-mirror]({url})", notice.summary),
        None => notice.summary.clone(),
    };
    let mut embed = json!({
        "title": cut(&notice.title, 256),
        "description": cut(&description, 4096),
        "color": notice.tone.rgb(),
        "fields": fields,
        "footer": {"text": footer},
    });
    if let Some(url) = &notice.stripe_url {
        embed["url"] = json!(url);
    }
    if notice.occurred_at > 0 {
        embed["timestamp"] = json!(rfc3339(notice.occurred_at));
    }
    json!({
        "username": "stripe-mirror",
        "embeds": [embed],
        // Customer-supplied text never pings @everyone, a role or a user.
        "allowed_mentions": {"parse": []},
    })
}

fn teams(notice: &Notice) -> Value {
    let facts: Vec<Value> = notice
        .facts
        .iter()
        .map(|(label, value)| json!({"title": label, "value": value}))
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "text": notice.title, "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "TextBlock", "text": notice.summary, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if !notice.event_id.is_empty() {
        body.push(json!({"type": "TextBlock", "text": notice.event_id, "isSubtle": true, "size": "Small"}));
    }
    let actions: Vec<Value> = links(notice)
        .into_iter()
        .map(|(title, url)| json!({"type": "Action.OpenUrl", "title": title, "url": url}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.2",
                "body": body,
                "actions": actions,
            }
        }]
    })
}

fn webhook(notice: &Notice) -> Value {
    json!({
        "type": if notice.event_id.is_empty() { "notification.summary" } else { "notification.event" },
        "title": notice.title,
        "summary": notice.summary,
        "facts": notice.facts.iter().map(|(k, v)| json!({"label": k, "value": v})).collect::<Vec<_>>(),
        "event_id": if notice.event_id.is_empty() { Value::Null } else { json!(notice.event_id) },
        "event_type": notice.event_type,
        "livemode": !notice.test,
        "occurred_at": notice.occurred_at,
        "links": {"stripe": notice.stripe_url, "mirror": notice.mirror_url},
    })
}

fn ntfy(notice: &Notice) -> String {
    let mut text = String::new();
    if ascii_or(&notice.title, "") != notice.title {
        text.push_str(&notice.title);
        text.push('\n');
    }
    text.push_str(&notice.summary);
    for (label, value) in &notice.facts {
        text.push_str(&format!("\n{label}: {value}"));
    }
    if !notice.event_id.is_empty() {
        text.push_str(&format!("\n{}", notice.event_id));
    }
    text
}

fn ascii_or(text: &str, fallback: &str) -> String {
    if text.is_ascii() {
        text.to_owned()
    } else {
        fallback.to_owned()
    }
}

/// `2026-12-06T19:55:43Z`.
fn rfc3339(at: i64) -> String {
    let days = at.div_euclid(86_400);
    let secs = at.rem_euclid(86_400);
    let (y, m, d) = sm_reports::calendar::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::Tone;

    fn notice(name: &str) -> Notice {
        Notice {
            title: "Payment succeeded".into(),
            summary: format!("$49.00 USD · {name}"),
            facts: vec![("Customer".into(), name.into())],
            stripe_url: Some("https://dashboard.stripe.com/acct_1/payments/pi_1".into()),
            mirror_url: None,
            event_id: "evt_1".into(),
            event_type: "charge.succeeded".into(),
            test: false,
            occurred_at: 1_796_686_200,
            tone: Tone::Good,
        }
    }

    #[test]
    fn customer_text_pings_nobody() {
        let body = slack(&notice("<!channel> & <@U123>"));
        let text = body.to_string();
        assert!(!text.contains("<!channel>") && !text.contains("<@U123>"));
        assert!(text.contains("&lt;!channel&gt; &amp; &lt;@U123&gt;"));
        assert!(
            text.contains("<https://dashboard.stripe.com/acct_1/payments/pi_1|Open in Stripe>")
        );
        let discord = discord(&notice("@everyone"));
        assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
        assert_eq!(discord["embeds"][0]["timestamp"], "2026-12-07T23:30:00Z");
    }

    #[test]
    fn urls_are_checked_and_shown_masked() {
        let slack = ChannelSettings::new(
            ChannelKind::Slack,
            "https://hooks.slack.com/services/T0/B0/secret",
            ChannelOptions::default(),
        )
        .unwrap();
        assert_eq!(slack.target_masked(), "https://hooks.slack.com/services/…");
        assert!(
            ChannelSettings::new(
                ChannelKind::Slack,
                "http://example.com/x",
                ChannelOptions::default()
            )
            .is_err()
        );
        assert!(
            ChannelSettings::new(
                ChannelKind::Slack,
                "http://127.0.0.1:9/x",
                ChannelOptions::default()
            )
            .is_ok()
        );
        let hook = ChannelSettings::new(
            ChannelKind::Webhook,
            "https://example.com/in",
            ChannelOptions::default(),
        )
        .unwrap();
        assert!(hook.secret.as_deref().unwrap().starts_with("whsec_"));
        assert!(
            ChannelSettings::new(
                ChannelKind::Webhook,
                "https://e.com/",
                ChannelOptions {
                    secret: Some("whsec_AAAA".into()),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(judge(200, None, "ok"), Answer::Sent);
        assert_eq!(
            judge(429, Some("3"), ""),
            Answer::Retry {
                after: Some(Duration::from_secs(3)),
                reason: "HTTP 429".into()
            }
        );
        assert!(
            matches!(judge(429, None, r#"{"retry_after": 1.5}"#), Answer::Retry { after: Some(d), .. } if d == Duration::from_millis(1500))
        );
        assert!(
            matches!(judge(410, None, "channel_is_archived"), Answer::ChannelGone(r) if r.contains("channel_is_archived"))
        );
        assert!(matches!(
            judge(400, None, "invalid_payload"),
            Answer::Refused(_)
        ));
        assert!(matches!(
            judge(503, None, ""),
            Answer::Retry { after: None, .. }
        ));
    }
}
