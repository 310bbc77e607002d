//! Webhook signatures as Stripe makes them (API.md §7).
//!
//! Header: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`; each `v1` is
//! hex(HMAC-SHA256(key = the whole `whsec_…` string, message = "{t}.{raw body}")).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signature's timestamp may be from now before it is refused (Stripe's default).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Hex HMAC-SHA256 of `"{timestamp}.{payload}"` under `secret`.
pub fn signature_hex(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex(&mac.finalize().into_bytes())
}

/// The full `Stripe-Signature` header value, with one `v1` per secret (several while a secret rolls).
pub fn signature_header(secrets: &[&str], timestamp: i64, payload: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&signature_hex(secret, timestamp, payload));
    }
    header
}

/// Why a delivery's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp (t=…) or no v1 signature")]
    Malformed,
    #[error(
        "the signature timestamp is {age_secs} s away from now, beyond the {tolerance_secs} s tolerance"
    )]
    OutsideTolerance { age_secs: i64, tolerance_secs: i64 },
    #[error("no v1 signature matches the endpoint's signing secret")]
    NoMatch,
}

/// The timestamp and `v1` signatures of a `Stripe-Signature` header (`v0` and unknown schemes
/// are ignored).
fn parse_header(header: Option<&str>) -> Result<(i64, Vec<&str>), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((scheme, value)) = part.trim().split_once('=') else {
            continue;
        };
        match scheme {
            "t" => timestamp = value.parse::<i64>().ok(),
            "v1" => candidates.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    Ok((timestamp, candidates))
}

/// What can be judged of a delivery without its secret: a header with a timestamp and a `v1`
/// signature, the timestamp within `tolerance_secs` of `now` (at least 1 s: a tolerance of 0 or
/// less never turns the check off). Returns the signed timestamp.
pub fn check_header(
    header: Option<&str>,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let (timestamp, _) = parse_header(header)?;
    // The difference cannot overflow whatever the timestamp says.
    let age = now.abs_diff(timestamp);
    let tolerance = tolerance_secs.max(1).unsigned_abs();
    if age > tolerance {
        return Err(SignatureError::OutsideTolerance {
            age_secs: i64::try_from(age).unwrap_or(i64::MAX),
            tolerance_secs: tolerance_secs.max(1),
        });
    }
    Ok(timestamp)
}

/// Checks a delivery: any `v1` may match (secret roll), `v0` and unknown schemes are ignored, the
/// comparison is constant-time, and the timestamp must be within `tolerance_secs` of `now`
/// ([`check_header`]). Returns the signed timestamp.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<i64, SignatureError> {
    let timestamp = check_header(header, now, tolerance_secs)?;
    let (_, candidates) = parse_header(header)?;
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    for candidate in candidates {
        if let Some(bytes) = unhex(candidate)
            && mac.clone().verify_slice(&bytes).is_ok()
        {
            return Ok(timestamp);
        }
    }
    Err(SignatureError::NoMatch)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_with_any_v1_during_a_roll() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(&["whsec_old", "whsec_new"], 1_700_000_000, body);
        assert_eq!(
            verify(Some(&header), body, "whsec_new", 1_700_000_010, 300),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify(Some(&header), body, "whsec_old", 1_700_000_010, 300),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify(Some(&header), body, "whsec_other", 1_700_000_010, 300),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn refuses_tampered_stale_and_malformed_headers() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(&["whsec_a"], 1_700_000_000, body);
        assert_eq!(
            verify(Some(&header), b"{}", "whsec_a", 1_700_000_000, 300),
            Err(SignatureError::NoMatch)
        );
        assert!(matches!(
            verify(Some(&header), body, "whsec_a", 1_700_000_301, 300),
            Err(SignatureError::OutsideTolerance { .. })
        ));
        assert_eq!(
            verify(None, body, "whsec_a", 0, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("v1=abc"), body, "whsec_a", 0, 300),
            Err(SignatureError::Malformed)
        );
        let v0_only = format!(
            "t=1700000000,v0={}",
            signature_hex("whsec_a", 1_700_000_000, body)
        );
        assert_eq!(
            verify(Some(&v0_only), body, "whsec_a", 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }
}
