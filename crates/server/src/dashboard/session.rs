//! Dashboard sessions: signing in with an API token gives a cookie that names the token and
//! when the session ends, signed with a key derived from the master key (so every process of
//! one mirror accepts it and nothing is stored). Each request checks the token still exists
//! (revoking it ends its sessions within a second). Forms carry a CSRF value derived from the
//! cookie, and POSTs must come from this origin.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sm_engine::ops::tokens;
use sm_warehouse::TokenRecord;

use crate::AppState;

pub const COOKIE: &str = "sm_session";
/// How long a session lasts.
pub const LIFETIME_SECS: i64 = 12 * 3600;

/// A signed-in person: the token they signed in with, and the CSRF value for their forms.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: TokenRecord,
    pub csrf: String,
}

impl Session {
    pub fn read_only(&self) -> bool {
        self.token.read_only
    }
}

fn mac(state: &AppState, parts: &[&[u8]]) -> Vec<u8> {
    let key = state.engine.vault.derive("dashboard sessions");
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
        mac.update(b"\0");
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs `presented` in: the cookie's value when it is a valid token, else `None`.
pub async fn sign_in(state: &AppState, presented: &str) -> Option<String> {
    let token = tokens::check(&state.engine, &state.recent_tokens, presented.trim())
        .await
        .ok()??;
    let expires = sm_engine::now() + LIFETIME_SECS;
    // The token's creation time too: a token revoked and made again under its name does not
    // revive the old sessions.
    let payload = format!("{}.{}.{expires}", token.name, token.created_at);
    let signature = mac(state, &[b"session", payload.as_bytes()]);
    Some(format!("{payload}.{}", hex(&signature)))
}

/// The session a cookie value stands for, if it is signed, unexpired and its token exists.
pub async fn check(state: &AppState, cookie: &str) -> Option<Session> {
    let (payload, signature) = cookie.rsplit_once('.')?;
    if !same(
        hex(&mac(state, &[b"session", payload.as_bytes()])).as_bytes(),
        signature.as_bytes(),
    ) {
        return None;
    }
    let mut parts = payload.rsplitn(3, '.');
    let expires: i64 = parts.next()?.parse().ok()?;
    let created_at: i64 = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    if expires < sm_engine::now() {
        return None;
    }
    let token = state
        .recent_tokens
        .by_name(&state.engine, name)
        .await
        .ok()??;
    if token.created_at != created_at {
        return None;
    }
    Some(Session {
        token,
        csrf: hex(&mac(state, &[b"csrf", cookie.as_bytes()])[..16]),
    })
}

/// Whether a form's CSRF value is this session's.
pub fn csrf_ok(session: &Session, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| same(p.as_bytes(), session.csrf.as_bytes()))
}

/// The `Set-Cookie` value for a session (`Secure` when the public URL is https).
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECS}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session cookie's value among a request's cookies.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}
