//! Stripe's error answers, byte-shape for byte-shape (API.md §2): every way a request fails in the
//! emulator becomes one of these, with the status and body Stripe sends.

use serde_json::{Map, Value, json};

/// An error answer: HTTP status, Stripe's `{"error":{…}}` body, and extra headers.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

fn error(status: u16, fields: Value) -> Failure {
    Failure {
        status,
        body: json!({ "error": fields }),
        headers: Vec::new(),
    }
}

/// `sk_test_****…WXYZ`: the prefix, one star per hidden character, and the last `shown` characters.
pub fn mask_key(key: &str, shown: usize) -> String {
    let prefix_len = if key.len() > 8 && key.as_bytes()[2] == b'_' && key.as_bytes()[7] == b'_' {
        8
    } else {
        3.min(key.len())
    };
    let shown = shown.min(key.len().saturating_sub(prefix_len));
    let hidden = key.len() - prefix_len - shown;
    format!(
        "{}{}{}",
        &key[..prefix_len],
        "*".repeat(hidden),
        &key[key.len() - shown..]
    )
}

impl Failure {
    pub fn no_key() -> Self {
        error(
            401,
            json!({
                "message": "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn invalid_key(key: &str) -> Self {
        error(
            401,
            json!({
                "message": format!("Invalid API Key provided: {}", mask_key(key, 4)),
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn expired_key(key: &str) -> Self {
        error(
            401,
            json!({
                "code": "api_key_expired",
                "doc_url": "https://stripe.com/docs/error-codes/api-key-expired",
                "message": format!("Expired API Key provided: {}", mask_key(key, 4)),
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn publishable_key() -> Self {
        error(
            401,
            json!({
                "message": "This API call cannot be made with a publishable API key. Please use a secret API key. You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.",
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn missing_permission(key: &str, account: &str, permission: &str) -> Self {
        error(
            403,
            json!({
                "message": format!(
                    "The provided key '{}' does not have the required permissions for this endpoint on account '{account}'. Having the 'rak_{permission}' permission would allow this request to continue.",
                    mask_key(key, 6)
                ),
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn restricted_keys_unsupported() -> Self {
        error(
            403,
            json!({
                "message": "This is a restricted API key, but the required permissions are not available for use by restricted keys.",
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn account_invalid(key: &str, account: &str) -> Self {
        error(
            403,
            json!({
                "code": "account_invalid",
                "doc_url": "https://stripe.com/docs/error-codes/account-invalid",
                "message": format!(
                    "The provided key '{}' does not have access to account '{account}' (or that account does not exist). Application access may have been revoked.",
                    mask_key(key, 4)
                ),
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn no_such(object: &str, id: &str) -> Self {
        error(
            404,
            json!({
                "code": "resource_missing",
                "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                "message": format!("No such {}: '{id}'", object.replace(['.', '_'], " ")),
                "param": "id",
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn other_mode(object: &str, id: &str, exists_in_live: bool) -> Self {
        let (exists, used) = if exists_in_live {
            ("live", "test")
        } else {
            ("test", "live")
        };
        error(
            404,
            json!({
                "code": "resource_missing",
                "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                "message": format!(
                    "No such {}: '{id}'; a similar object exists in {exists} mode, but a {used} mode key was used to make this request.",
                    object.replace(['.', '_'], " ")
                ),
                "param": "id",
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        error(
            404,
            json!({
                "message": format!("Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."),
                "type": "invalid_request_error"
            }),
        )
    }

    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut fields = Map::new();
        fields.insert("message".into(), Value::String(message.into()));
        if let Some(param) = param {
            fields.insert("param".into(), Value::String(param.into()));
        }
        fields.insert("type".into(), Value::String("invalid_request_error".into()));
        error(400, Value::Object(fields))
    }

    pub fn missing_param(param: &str) -> Self {
        let mut failure =
            Failure::invalid(format!("Missing required param: {param}."), Some(param));
        failure.body["error"]["code"] = json!("parameter_missing");
        failure
    }

    pub fn unknown_param(param: &str) -> Self {
        let mut failure =
            Failure::invalid(format!("Received unknown parameter: {param}"), Some(param));
        failure.body["error"]["code"] = json!("parameter_unknown");
        failure
    }

    pub fn idempotency_mismatch(key: &str) -> Self {
        error(
            400,
            json!({
                "message": format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."),
                "type": "idempotency_error"
            }),
        )
    }

    pub fn rate_limited(livemode: bool, reason: &'static str) -> Self {
        let message = if livemode {
            "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits."
        } else {
            "Testmode request rate limit exceeded, the rate limits in testmode are lower than livemode. You can learn more about rate limits here https://stripe.com/docs/rate-limits."
        };
        let mut failure = error(
            429,
            json!({
                "code": "rate_limit",
                "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
                "message": message,
                "type": "invalid_request_error"
            }),
        );
        failure
            .headers
            .push(("Stripe-Rate-Limited-Reason", reason.into()));
        failure.headers.push(("Stripe-Should-Retry", "true".into()));
        failure
    }

    pub fn lock_timeout() -> Self {
        let mut failure = error(
            429,
            json!({
                "code": "lock_timeout",
                "doc_url": "https://stripe.com/docs/error-codes/lock-timeout",
                "message": "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are making multiple concurrent requests to a single object, make your requests serially or at a lower rate. See https://stripe.com/docs/rate-limits for more details.",
                "type": "invalid_request_error"
            }),
        );
        failure.headers.push(("Stripe-Should-Retry", "true".into()));
        failure
    }

    pub fn api_error(status: u16) -> Self {
        error(
            status,
            json!({
                "message": "An unknown error occurred",
                "type": "api_error"
            }),
        )
    }

    /// A 400 for an operation the object's state does not allow.
    pub fn state(message: impl Into<String>) -> Self {
        let mut failure = Failure::invalid(message, None);
        failure.body["error"]["code"] = json!("resource_invalid_state");
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_prefix_and_tail_only() {
        assert_eq!(mask_key("sk_test_abcdefghS8wL", 4), "sk_test_********S8wL");
        assert_eq!(mask_key("rk_live_abcdefghijkl", 6), "rk_live_******ghijkl");
    }
}
