//! Stripe's error answers, classified: every `{"error":{…}}` body of API.md §2 plus the HTTP status
//! and `Request-Id`, turned into an [`ErrorKind`] that the engine can act on (missing permission,
//! expired key, object of the other mode, rate limit …), and the retry rule of API.md §4.
#![warn(missing_docs)]

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::key::redact;

/// How many characters of an unparseable body an error keeps.
pub const SNIPPET_CHARS: usize = 80;

/// Why Stripe refused the key itself (HTTP 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No key was sent at all.
    NoKey,
    /// The key is unknown, deleted or revoked (also any other 401 that says nothing more).
    InvalidKey,
    /// The key was rolled and its grace period is over (`code: api_key_expired`).
    ExpiredKey,
    /// A publishable key was used for a server call.
    PublishableKey,
}

/// Why a body could not be read as a Stripe error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyProblem {
    /// Not JSON at all (an HTML page from a proxy, plain text, nothing).
    NotJson,
    /// JSON that stops early (a truncated body).
    TruncatedJson,
    /// Valid JSON without an `error` object.
    NoErrorObject,
}

impl fmt::Display for BodyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyProblem::NotJson => "not JSON",
            BodyProblem::TruncatedJson => "truncated JSON",
            BodyProblem::NoErrorObject => "JSON without an error object",
        })
    }
}

/// What an error answer means, decided from the status first and the body's `type`/`code`/message
/// second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 401: the key itself was refused.
    Authentication(AuthFailure),
    /// 403: the key may not do this (a restricted key lacking a permission, mostly).
    PermissionDenied {
        /// The permission that would allow the request, always in `rak_…` form.
        permission: Option<String>,
        /// The account named in the message (`acct_…`): how a restricted key learns its account id.
        account: Option<String>,
        /// No restricted key may call this endpoint ("not available for use by restricted keys").
        restricted_key_unsupported: bool,
        /// A restricted key without Connect permissions was sent with `Stripe-Account`.
        connect_not_permitted: bool,
    },
    /// 403 `account_invalid`: the `Stripe-Account` account is unknown or no longer reachable.
    AccountInvalid {
        /// The account named in the message, when it names one.
        account: Option<String>,
    },
    /// 404 (`resource_missing`): no such object.
    NotFound {
        /// The message says a similar object exists in the other mode (live vs test).
        other_mode: bool,
    },
    /// 404 "Unrecognized request URL": the path itself is unknown (wrong base URL or API version).
    UnknownEndpoint,
    /// 429: too many requests.
    RateLimited {
        /// `code: lock_timeout`: the object is locked by a concurrent request, not a rate limit.
        lock_timeout: bool,
    },
    /// 400 `type: idempotency_error`: an `Idempotency-Key` was reused with other parameters.
    Idempotency,
    /// Any other 400 (or an `invalid_request_error` of an unusual status).
    InvalidRequest,
    /// 402 or `type: card_error`.
    Card,
    /// 409: a conflicting concurrent request (retried).
    Conflict,
    /// 5xx or `type: api_error`: Stripe's side failed.
    Api,
    /// The body is not a Stripe error body (HTML, truncated JSON, …).
    Unparseable {
        /// What is wrong with it.
        problem: BodyProblem,
        /// Its first [`SNIPPET_CHARS`] characters, one line, with any key masked.
        snippet: String,
    },
    /// Anything else.
    Other,
}

/// One error answer from Stripe (or from anything standing at the API's address).
///
/// The message and snippet pass through [`redact`], so no key reaches a log in clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The classification.
    pub kind: ErrorKind,
    /// `error.message`, keys masked.
    pub message: Option<String>,
    /// `error.type` (`invalid_request_error`, `api_error`, `card_error`, `idempotency_error`).
    pub error_type: Option<String>,
    /// `error.code` (`resource_missing`, `api_key_expired`, `rate_limit`, `lock_timeout`, …).
    pub code: Option<String>,
    /// `error.param`: the parameter at fault.
    pub param: Option<String>,
    /// `error.doc_url`.
    pub doc_url: Option<String>,
    /// `error.decline_code` (card errors).
    pub decline_code: Option<String>,
    /// The `Request-Id` header (`req_…`), for Stripe support and the dashboard's logs.
    pub request_id: Option<String>,
    /// The `Stripe-Should-Retry` header, when present: authoritative for retries.
    pub stripe_should_retry: Option<bool>,
    /// The `Retry-After` header in seconds, when present.
    pub retry_after: Option<Duration>,
    /// The `Stripe-Rate-Limited-Reason` header (`global-rate`, `endpoint-rate`, …), when present.
    pub rate_limited_reason: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Option<Body>,
}

#[derive(Deserialize, Default)]
struct Body {
    message: Option<String>,
    #[serde(rename = "type")]
    error_type: Option<String>,
    code: Option<String>,
    param: Option<String>,
    doc_url: Option<String>,
    decline_code: Option<String>,
}

impl ApiError {
    /// Reads an error answer: its status, `Request-Id` header and raw body. Never fails: a body that
    /// is not a Stripe error becomes [`ErrorKind::Unparseable`] with a short, key-masked snippet.
    pub fn from_response(status: u16, request_id: Option<&str>, body: &[u8]) -> ApiError {
        let parsed = match serde_json::from_slice::<Envelope>(body) {
            _ if body.trim_ascii().is_empty() => Err(BodyProblem::NotJson),
            Ok(Envelope { error: Some(error) }) => Ok(error),
            Ok(Envelope { error: None }) => Err(BodyProblem::NoErrorObject),
            Err(e) if e.is_eof() => Err(BodyProblem::TruncatedJson),
            Err(e) if e.is_data() => Err(BodyProblem::NoErrorObject),
            Err(_) => Err(BodyProblem::NotJson),
        };
        let (body_fields, kind) = match parsed {
            Ok(mut b) => {
                b.message = b.message.map(|m| redact(&m));
                let kind = classify(status, &b);
                (b, kind)
            }
            Err(problem) => (
                Body::default(),
                ErrorKind::Unparseable {
                    problem,
                    snippet: snippet(body),
                },
            ),
        };
        ApiError {
            status,
            kind,
            message: body_fields.message,
            error_type: body_fields.error_type,
            code: body_fields.code,
            param: body_fields.param,
            doc_url: body_fields.doc_url,
            decline_code: body_fields.decline_code,
            request_id: request_id.map(str::to_owned),
            stripe_should_retry: None,
            retry_after: None,
            rate_limited_reason: None,
        }
    }

    /// The retry rule of API.md §4: a `Stripe-Should-Retry` header decides when present; otherwise
    /// retry 409, 429 and 5xx, never 400, 401, 402, 403, 404 (nor any other status). Network errors,
    /// which have no status, are always retried by the client.
    pub fn should_retry(status: u16, stripe_should_retry: Option<bool>) -> bool {
        if let Some(decided) = stripe_should_retry {
            return decided;
        }
        matches!(status, 409 | 429 | 500..=599)
    }

    /// [`ApiError::should_retry`] applied to this answer.
    pub fn is_retryable(&self) -> bool {
        ApiError::should_retry(self.status, self.stripe_should_retry)
    }

    /// The missing permission (`rak_…`) when this is a permission error that names one.
    pub fn missing_permission(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::PermissionDenied { permission, .. } => permission.as_deref(),
            _ => None,
        }
    }

    /// The account id (`acct_…`) named in a permission or account error.
    pub fn account(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::PermissionDenied { account, .. } | ErrorKind::AccountInvalid { account } => {
                account.as_deref()
            }
            _ => None,
        }
    }

    fn stripe_said(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(message) = &self.message {
            write!(f, ": Stripe said \"{message}\"")?;
        }
        if let Some(param) = &self.param {
            write!(f, " (param: {param})")?;
        }
        Ok(())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status;
        match &self.kind {
            ErrorKind::Authentication(AuthFailure::NoKey) => write!(
                f,
                "Stripe received no API key (HTTP {status}): the Authorization header was missing or empty"
            )?,
            ErrorKind::Authentication(AuthFailure::InvalidKey) => {
                write!(
                    f,
                    "Stripe does not accept this API key (HTTP {status}: unknown, deleted or revoked); \
                     paste a current key from the dashboard"
                )?;
                self.stripe_said(f)?;
            }
            ErrorKind::Authentication(AuthFailure::ExpiredKey) => write!(
                f,
                "this API key has expired (HTTP {status}; it was rolled): paste the new key from the dashboard"
            )?,
            ErrorKind::Authentication(AuthFailure::PublishableKey) => write!(
                f,
                "Stripe refused a publishable key (HTTP {status}): publishable keys cannot read data; \
                 use a restricted key rk_… or secret key"
            )?,
            ErrorKind::PermissionDenied {
                permission,
                account,
                restricted_key_unsupported,
                connect_not_permitted,
            } => {
                if *restricted_key_unsupported {
                    write!(
                        f,
                        "no restricted key may call this endpoint (HTTP {status}): use a secret key for it, \
                         or do without it"
                    )?;
                } else if *connect_not_permitted {
                    write!(
                        f,
                        "the restricted key has no Connect permissions, so it cannot act on a connected \
                         account through Stripe-Account (HTTP {status}): grant Connect permissions or drop \
                         the account"
                    )?;
                } else if let Some(permission) = permission {
                    write!(f, "the API key lacks the '{permission}' permission")?;
                    if let Some(account) = account {
                        write!(f, " on account {account}")?;
                    }
                    write!(
                        f,
                        " (HTTP {status}): edit the restricted key in the dashboard to grant it"
                    )?;
                } else {
                    write!(f, "the API key may not make this request (HTTP {status})")?;
                    self.stripe_said(f)?;
                }
            }
            ErrorKind::AccountInvalid { account } => {
                write!(f, "the key has no access to the account")?;
                if let Some(account) = account {
                    write!(f, " {account}")?;
                }
                write!(
                    f,
                    " named in Stripe-Account, or that account does not exist (HTTP {status}); \
                     application access may have been revoked"
                )?;
            }
            ErrorKind::NotFound { other_mode: true } => {
                write!(
                    f,
                    "the object exists only in the other mode (HTTP {status}): use a key of the object's mode \
                     (live vs test)"
                )?;
                self.stripe_said(f)?;
            }
            ErrorKind::NotFound { other_mode: false } => {
                write!(f, "no such object (HTTP {status})")?;
                self.stripe_said(f)?;
            }
            ErrorKind::UnknownEndpoint => {
                write!(
                    f,
                    "the API does not know this URL (HTTP {status}); check --api-base"
                )?;
                self.stripe_said(f)?;
            }
            ErrorKind::RateLimited { lock_timeout: true } => write!(
                f,
                "the object is locked by another request in progress (HTTP {status} lock_timeout); retry later"
            )?,
            ErrorKind::RateLimited {
                lock_timeout: false,
            } => {
                write!(f, "Stripe's rate limit was exceeded (HTTP {status})")?;
                if let Some(reason) = &self.rate_limited_reason {
                    write!(f, " [{reason}]")?;
                }
                write!(f, "; lower the budget share or run fewer syncs at once")?;
            }
            ErrorKind::Idempotency => {
                write!(
                    f,
                    "an idempotency key was reused with other parameters (HTTP {status})"
                )?;
                self.stripe_said(f)?;
            }
            ErrorKind::InvalidRequest => {
                write!(f, "Stripe refused the request (HTTP {status})")?;
                self.stripe_said(f)?;
            }
            ErrorKind::Card => {
                write!(f, "card error (HTTP {status})")?;
                if let Some(decline) = &self.decline_code {
                    write!(f, " [{decline}]")?;
                }
                self.stripe_said(f)?;
            }
            ErrorKind::Conflict => {
                write!(f, "a concurrent request conflicted (HTTP {status})")?;
                self.stripe_said(f)?;
            }
            ErrorKind::Api => {
                write!(f, "Stripe failed on its side (HTTP {status})")?;
                self.stripe_said(f)?;
            }
            ErrorKind::Unparseable { problem, snippet } => write!(
                f,
                "the server answered HTTP {status} with a body that is {problem}, not a Stripe error: \
                 \"{snippet}\" — is --api-base the Stripe API?"
            )?,
            ErrorKind::Other => {
                write!(f, "Stripe answered HTTP {status}")?;
                self.stripe_said(f)?;
            }
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

fn classify(status: u16, body: &Body) -> ErrorKind {
    let message = body.message.as_deref().unwrap_or("");
    let code = body.code.as_deref().unwrap_or("");
    let error_type = body.error_type.as_deref().unwrap_or("");
    match status {
        401 => ErrorKind::Authentication(if code == "api_key_expired" {
            AuthFailure::ExpiredKey
        } else if message.contains("did not provide an API key") {
            AuthFailure::NoKey
        } else if message.contains("publishable API key") {
            AuthFailure::PublishableKey
        } else {
            AuthFailure::InvalidKey
        }),
        403 if code == "account_invalid" => ErrorKind::AccountInvalid {
            account: account_in(message),
        },
        403 => parse_permission(message),
        404 if code != "resource_missing" && message.starts_with("Unrecognized request URL") => {
            ErrorKind::UnknownEndpoint
        }
        404 => ErrorKind::NotFound {
            other_mode: message.contains("a similar object exists in"),
        },
        429 => ErrorKind::RateLimited {
            lock_timeout: code == "lock_timeout",
        },
        400 if error_type == "idempotency_error" => ErrorKind::Idempotency,
        400 => ErrorKind::InvalidRequest,
        402 => ErrorKind::Card,
        409 => ErrorKind::Conflict,
        500..=599 => ErrorKind::Api,
        _ => match error_type {
            "api_error" => ErrorKind::Api,
            "card_error" => ErrorKind::Card,
            "idempotency_error" => ErrorKind::Idempotency,
            "invalid_request_error" => ErrorKind::InvalidRequest,
            _ => ErrorKind::Other,
        },
    }
}

/// Reads the four permission-message variants of API.md §2.
fn parse_permission(message: &str) -> ErrorKind {
    let restricted_key_unsupported = message.contains("not available for use by restricted keys");
    let connect_not_permitted = message.contains("Stripe-Account header")
        && message.contains("does not have any Connect permissions");
    let quoted = quoted_names(message);
    let permission = quoted
        .iter()
        .find(|name| name.starts_with("rak_"))
        .or_else(|| quoted.iter().find(|name| !name.starts_with("acct_")))
        .map(|name| {
            if name.starts_with("rak_") {
                name.to_string()
            } else {
                format!("rak_{name}")
            }
        });
    ErrorKind::PermissionDenied {
        permission,
        account: account_in(message),
        restricted_key_unsupported,
        connect_not_permitted,
    }
}

/// Single-quoted lowercase names (`'rak_customer_read'`, `'plan_read'`), skipping apostrophes.
fn quoted_names(message: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for (i, _) in message.match_indices('\'') {
        let rest = &message[i + 1..];
        let run = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if run > 0 && rest[run..].starts_with('\'') && rest.as_bytes()[0].is_ascii_lowercase() {
            names.push(&rest[..run]);
        }
    }
    names
}

/// The first `acct_…` id in a message, if it is not abridged to nothing.
fn account_in(message: &str) -> Option<String> {
    message.match_indices("acct_").find_map(|(i, _)| {
        let rest = &message[i + 5..];
        let run = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        (run > 0).then(|| format!("acct_{}", &rest[..run]))
    })
}

/// The first [`SNIPPET_CHARS`] characters of a body, on one line, keys masked.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let redacted = redact(&one_line);
    let mut out: String = redacted.chars().take(SNIPPET_CHARS).collect();
    if redacted.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> ApiError {
        ApiError::from_response(status, Some("req_123"), body.as_bytes())
    }

    #[test]
    fn no_key() {
        let e = parse(
            401,
            r#"{"error":{"message":"You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). …","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication(AuthFailure::NoKey));
        assert_eq!(e.error_type.as_deref(), Some("invalid_request_error"));
        assert_eq!(e.request_id.as_deref(), Some("req_123"));
        assert!(e.to_string().contains("(request req_123)"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn invalid_key() {
        let e = parse(
            401,
            r#"{"error":{"message":"Invalid API Key provided: sk_test_************S8wL","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication(AuthFailure::InvalidKey));
        assert_eq!(
            e.message.as_deref(),
            Some("Invalid API Key provided: sk_test_************S8wL")
        );
        assert!(e.to_string().contains("sk_test_************S8wL"));
    }

    #[test]
    fn expired_key() {
        let e = parse(
            401,
            r#"{"error":{"code":"api_key_expired","doc_url":"https://stripe.com/docs/error-codes/api-key-expired","message":"Expired API Key provided: rk_test_***123","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication(AuthFailure::ExpiredKey));
        assert_eq!(e.code.as_deref(), Some("api_key_expired"));
        assert_eq!(
            e.doc_url.as_deref(),
            Some("https://stripe.com/docs/error-codes/api-key-expired")
        );
        assert!(e.to_string().contains("expired"));
    }

    #[test]
    fn publishable_key() {
        let e = parse(
            401,
            r#"{"error":{"message":"This API call cannot be made with a publishable API key. Please use a secret API key. You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::Authentication(AuthFailure::PublishableKey)
        );
        assert!(e.to_string().contains("publishable keys cannot read data"));
    }

    #[test]
    fn missing_permission_variant_1() {
        let e = parse(
            403,
            r#"{"error":{"message":"The provided key 'rk_test_*****…qs8Kgd' does not have the required permissions for this endpoint on account 'acct_1PJBLEBBLEfV'. Having the 'rak_subscription_read' permission would allow this request to continue.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::PermissionDenied {
                permission: Some("rak_subscription_read".into()),
                account: Some("acct_1PJBLEBBLEfV".into()),
                restricted_key_unsupported: false,
                connect_not_permitted: false,
            }
        );
        assert_eq!(e.missing_permission(), Some("rak_subscription_read"));
        assert_eq!(e.account(), Some("acct_1PJBLEBBLEfV"));
        let text = e.to_string();
        assert!(
            text.contains(
                "lacks the 'rak_subscription_read' permission on account acct_1PJBLEBBLEfV"
            ),
            "{text}"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn missing_permission_variant_2_is_normalised_to_rak() {
        let e = parse(
            403,
            r#"{"error":{"message":"The provided key 'rk_live_*****…a1b2' does not have the required permissions for this endpoint on account 'acct_1PJBLEBBLEfV'. Enabling \"Prices Read\" ('plan_read') permissions on this key would allow this request to continue.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.missing_permission(), Some("rak_plan_read"));
        assert_eq!(e.account(), Some("acct_1PJBLEBBLEfV"));
        // The sentence alone, as API.md quotes it.
        let alone = parse(
            403,
            r#"{"error":{"message":"Enabling \"Prices Read\" ('plan_read') permissions on this key would allow this request to continue.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(alone.missing_permission(), Some("rak_plan_read"));
        assert_eq!(alone.account(), None);
    }

    #[test]
    fn restricted_keys_unsupported_variant_3() {
        let e = parse(
            403,
            r#"{"error":{"message":"This is a restricted API key, but the required permissions are not available for use by restricted keys.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::PermissionDenied {
                permission: None,
                account: None,
                restricted_key_unsupported: true,
                connect_not_permitted: false,
            }
        );
        assert!(
            e.to_string()
                .contains("no restricted key may call this endpoint")
        );
    }

    #[test]
    fn connect_not_permitted_variant_4() {
        let e = parse(
            403,
            r#"{"error":{"message":"You passed a restricted API key with the Stripe-Account header, but the restricted API key does not have any Connect permissions.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::PermissionDenied {
                permission: None,
                account: None,
                restricted_key_unsupported: false,
                connect_not_permitted: true,
            }
        );
    }

    #[test]
    fn object_of_the_other_mode() {
        let e = parse(
            404,
            r#"{"error":{"code":"resource_missing","message":"No such customer: 'cus_…'; a similar object exists in live mode, but a test mode key was used to make this request.","param":"id","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound { other_mode: true });
        assert_eq!(e.param.as_deref(), Some("id"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn unknown_object() {
        let e = parse(
            404,
            r#"{"error":{"code":"resource_missing","message":"No such customer: 'cus_x'","param":"id","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound { other_mode: false });
        assert!(e.to_string().contains("No such customer: 'cus_x'"));
    }

    #[test]
    fn unknown_url() {
        let e = parse(
            404,
            r#"{"error":{"message":"Unrecognized request URL (GET: /v1/customerz). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::UnknownEndpoint);
    }

    #[test]
    fn bad_stripe_account() {
        let e = parse(
            403,
            r#"{"error":{"code":"account_invalid","message":"The provided key 'rk_live_*****…a1b2' does not have access to account 'acct_1Nv0FGQ9RKHgCVdK' (or that account does not exist). Application access may have been revoked.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::AccountInvalid {
                account: Some("acct_1Nv0FGQ9RKHgCVdK".into())
            }
        );
        assert_eq!(e.account(), Some("acct_1Nv0FGQ9RKHgCVdK"));
        let abridged = parse(
            403,
            r#"{"error":{"code":"account_invalid","message":"The provided key '…' does not have access to account 'acct_…' (or that account does not exist). Application access may have been revoked.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(abridged.kind, ErrorKind::AccountInvalid { account: None });
    }

    #[test]
    fn rate_limited_live_and_test() {
        let e = parse(
            429,
            r#"{"error":{"code":"rate_limit","doc_url":"https://stripe.com/docs/error-codes/rate-limit","message":"Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::RateLimited {
                lock_timeout: false
            }
        );
        assert!(e.is_retryable());
        let e = parse(
            429,
            r#"{"error":{"code":"rate_limit","doc_url":"https://stripe.com/docs/error-codes/rate-limit","message":"Testmode request rate limit exceeded, the rate limits in testmode are lower than livemode. …","type":"invalid_request_error"}}"#,
        );
        assert_eq!(
            e.kind,
            ErrorKind::RateLimited {
                lock_timeout: false
            }
        );
    }

    #[test]
    fn lock_timeout() {
        let mut e = parse(
            429,
            r#"{"error":{"code":"lock_timeout","message":"This object cannot be accessed right now because another API request or Stripe process is currently accessing it.","type":"invalid_request_error"}}"#,
        );
        e.stripe_should_retry = Some(true);
        assert_eq!(e.kind, ErrorKind::RateLimited { lock_timeout: true });
        assert!(e.is_retryable());
    }

    #[test]
    fn idempotency_error() {
        let e = parse(
            400,
            r#"{"error":{"message":"Keys for idempotent requests can only be used with the same parameters they were first used with.","type":"idempotency_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Idempotency);
        let e = parse(
            400,
            r#"{"error":{"message":"Invalid integer: abc","param":"limit","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.to_string().contains("(param: limit)"));
    }

    #[test]
    fn card_conflict_and_server_errors() {
        let e = parse(
            402,
            r#"{"error":{"code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds.","type":"card_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Card);
        assert_eq!(e.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(
            parse(
                409,
                r#"{"error":{"type":"idempotency_error","message":"in progress"}}"#
            )
            .kind,
            ErrorKind::Conflict
        );
        let e = parse(
            500,
            r#"{"error":{"message":"An unknown error occurred","type":"api_error"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Api);
        assert!(e.is_retryable());
    }

    #[test]
    fn bodies_that_are_not_stripe_errors() {
        let html = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx says no to sk_live_abcdefghijklmnop1234 and more text that goes on and on</body></html>";
        let e = ApiError::from_response(502, None, html.as_bytes());
        let ErrorKind::Unparseable { problem, snippet } = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(*problem, BodyProblem::NotJson);
        assert!(
            snippet.starts_with("<html> <head><title>502 Bad Gateway"),
            "{snippet}"
        );
        assert!(snippet.chars().count() <= SNIPPET_CHARS + 1);
        let text = e.to_string();
        assert!(
            text.contains("HTTP 502") && text.contains("not JSON"),
            "{text}"
        );
        assert!(!text.contains("abcdefghijklmnop"), "{text}");
        assert!(e.is_retryable());

        let e = ApiError::from_response(500, None, br#"{"error":{"message":"An unkn"#);
        assert!(
            matches!(
                e.kind,
                ErrorKind::Unparseable {
                    problem: BodyProblem::TruncatedJson,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = ApiError::from_response(400, None, br#"{"ok":false}"#);
        assert!(
            matches!(
                e.kind,
                ErrorKind::Unparseable {
                    problem: BodyProblem::NoErrorObject,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = ApiError::from_response(400, None, br#"[1,2]"#);
        assert!(
            matches!(
                e.kind,
                ErrorKind::Unparseable {
                    problem: BodyProblem::NoErrorObject,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = ApiError::from_response(503, None, b"");
        assert!(
            matches!(
                e.kind,
                ErrorKind::Unparseable {
                    problem: BodyProblem::NotJson,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn keys_in_messages_are_masked() {
        let e = parse(
            400,
            r#"{"error":{"message":"bad key sk_live_abcdefghijklmnopqrstuvwxyz9876","type":"invalid_request_error"}}"#,
        );
        assert_eq!(e.message.as_deref(), Some("bad key sk_live_…9876"));
    }

    #[test]
    fn retry_rule_of_api_md_section_4() {
        for status in [409, 429, 500, 502, 503, 504] {
            assert!(ApiError::should_retry(status, None), "{status}");
            assert!(!ApiError::should_retry(status, Some(false)), "{status}");
        }
        for status in [400, 401, 402, 403, 404] {
            assert!(!ApiError::should_retry(status, None), "{status}");
            assert!(ApiError::should_retry(status, Some(true)), "{status}");
        }
        assert!(!ApiError::should_retry(301, None));
    }
}
