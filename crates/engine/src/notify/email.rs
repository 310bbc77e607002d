//! The email channel: a message over SMTP with TLS — `smtps://` (TLS from the first byte, port
//! 465) or `smtp://` (STARTTLS required, port 587; only to this machine may it go without) —
//! as plain text with an HTML alternative. A server's 5xx is a permanent refusal (the channel
//! is marked failing); 4xx and broken connections are tried again.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::channel::{Answer, ChannelSettings, links};
use super::message::Notice;
use crate::error::EngineError;

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

/// Checks an email channel's server URL, recipients, sender and CA certificates.
pub(super) fn check(
    url: &reqwest::Url,
    to: &[String],
    from: Option<&str>,
    ca_pem: Option<&str>,
) -> Result<(), EngineError> {
    if !matches!(url.scheme(), "smtp" | "smtps") {
        return Err(EngineError::invalid(
            "an email channel's URL begins with smtps:// (TLS, port 465) or smtp:// (STARTTLS, port 587)",
        )
        .hint("for example smtp://alerts%40example.com@smtp.example.com:587 with the password from --url-stdin"));
    }
    if url.host_str().unwrap_or_default().is_empty() {
        return Err(EngineError::invalid("the SMTP URL names no server"));
    }
    if to.is_empty() {
        return Err(EngineError::invalid(
            "an email channel needs at least one recipient: --to ops@example.com",
        ));
    }
    for address in to.iter().map(String::as_str).chain(from) {
        address
            .parse::<Mailbox>()
            .map_err(|_| EngineError::invalid(format!("`{address}` is not an email address")))?;
    }
    if from.is_none() {
        return Err(EngineError::invalid(
            "an email channel needs a sender the server accepts: --from alerts@example.com",
        ));
    }
    if let Some(pem) = ca_pem {
        Certificate::from_pem(pem.as_bytes()).map_err(|e| {
            EngineError::invalid(format!("the CA file is not a PEM certificate: {e}"))
        })?;
    }
    Ok(())
}

/// `smtps://alerts@smtp.example.com:465 → ops@example.com`: no password.
pub(super) fn masked(url: &str, to: &[String]) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "(not a URL)".into();
    };
    let user = if parsed.username().is_empty() {
        String::new()
    } else {
        format!("{}@", percent_decode(parsed.username()))
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{user}{}{port} → {}",
        parsed.scheme(),
        parsed.host_str().unwrap_or_default(),
        to.join(", ")
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The message: the notice as text and as a small HTML page.
fn message(
    settings: &ChannelSettings,
    notice: &Notice,
    message_id: &str,
) -> Result<Message, String> {
    let mut text = format!("{}\n\n{}\n", notice.title, notice.summary);
    let mut rows = String::new();
    for (label, value) in &notice.facts {
        text.push_str(&format!("\n{label}: {value}"));
        rows.push_str(&format!(
            "<tr><th align=\"left\" style=\"padding-right:12px\">{}</th><td>{}</td></tr>",
            html_escape(label),
            html_escape(value)
        ));
    }
    let mut anchors = Vec::new();
    for (label, url) in links(notice) {
        text.push_str(&format!("\n{label}: {url}"));
        anchors.push(format!(
            "<a href=\"{}\">{}</a>",
            html_escape(url),
            html_escape(label)
        ));
    }
    if !notice.event_id.is_empty() {
        text.push_str(&format!("\n\n{}", notice.event_id));
    }
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><p>{}</p><table>{rows}</table><p>{}</p><p style=\"color:#666;font-size:small\">{} · stripe-mirror</p></body></html>",
        html_escape(&notice.title),
        html_escape(&notice.summary),
        anchors.join(" · "),
        html_escape(&notice.event_id),
    );
    let from: Mailbox = settings
        .from
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("the sender: {e}"))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(notice.title.clone())
        // The same on every try, so that a repeat after a crash can be recognised.
        .message_id(Some(format!("<{message_id}@stripe-mirror>")));
    for to in &settings.to {
        builder = builder.to(to.parse().map_err(|e| format!("a recipient: {e}"))?);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| e.to_string())
}

/// Sends `notice` by mail; the server's answer judged.
pub(super) async fn send(
    settings: &ChannelSettings,
    notice: &Notice,
    message_id: &str,
    timeout: Duration,
) -> Answer {
    let email = match message(settings, notice, message_id) {
        Ok(email) => email,
        Err(reason) => return Answer::Refused(reason),
    };
    let transport = match transport(settings, timeout) {
        Ok(transport) => transport,
        Err(reason) => return Answer::ChannelGone(reason),
    };
    match transport.send(email).await {
        Ok(_) => Answer::Sent,
        Err(error) => {
            let reason = format!("SMTP: {error}");
            if error.is_permanent() {
                Answer::ChannelGone(reason)
            } else {
                Answer::Retry {
                    after: None,
                    reason,
                }
            }
        }
    }
}

fn transport(
    settings: &ChannelSettings,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let url = reqwest::Url::parse(&settings.url).map_err(|e| e.to_string())?;
    let host = url.host_str().unwrap_or_default().to_owned();
    let mut tls = TlsParameters::builder(host.trim_matches(['[', ']']).to_owned());
    if let Some(pem) = &settings.ca_pem {
        tls = tls.add_root_certificate(
            Certificate::from_pem(pem.as_bytes()).map_err(|e| e.to_string())?,
        );
    }
    let tls = tls.build_rustls().map_err(|e| format!("TLS: {e}"))?;
    let (mode, port) = match url.scheme() {
        "smtps" => (Tls::Wrapper(tls), 465),
        _ if is_loopback(&host) => (Tls::Opportunistic(tls), 587),
        _ => (Tls::Required(tls), 587),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(url.port().unwrap_or(port))
        .tls(mode)
        .timeout(Some(timeout));
    if !url.username().is_empty() {
        builder = builder.credentials(Credentials::new(
            percent_decode(url.username()),
            percent_decode(url.password().unwrap_or_default()),
        ));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_addresses_are_checked_and_shown_without_password() {
        let url = reqwest::Url::parse("smtps://alerts%40acme.com:pa55@smtp.acme.com:465").unwrap();
        let to = vec!["ops@acme.com".to_owned()];
        assert!(check(&url, &to, Some("alerts@acme.com"), None).is_ok());
        assert!(check(&url, &[], Some("alerts@acme.com"), None).is_err());
        assert!(check(&url, &["not an address".into()], Some("a@b.c"), None).is_err());
        let https = reqwest::Url::parse("https://smtp.acme.com").unwrap();
        assert!(check(&https, &to, Some("a@b.c"), None).is_err());
        assert_eq!(
            masked("smtps://alerts%40acme.com:pa55@smtp.acme.com:465", &to),
            "smtps://alerts@acme.com@smtp.acme.com:465 → ops@acme.com"
        );
    }
}
