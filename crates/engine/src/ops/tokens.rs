//! API tokens for the REST API: made once and shown once (`smt_` and 64 hex characters), kept
//! only as their SHA-256, read-only or not, revoked by name. A presented token is checked
//! against every stored hash in constant time.

use sha2::{Digest, Sha256};
use sm_warehouse::TokenRecord;
use zeroize::Zeroizing;

use crate::{Engine, EngineError, ErrorCode, now};

/// A token just made: the only time its secret is known.
pub struct NewToken {
    pub record: TokenRecord,
    pub secret: Zeroizing<String>,
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Makes a token named `name`. Names are short words: letters, digits, `-`, `_`, `.`.
pub async fn create(engine: &Engine, name: &str, read_only: bool) -> Result<NewToken, EngineError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(EngineError::invalid(format!(
            "`{name}` is not a token name: use up to 64 letters, digits, - _ ."
        )));
    }
    let bytes = crate::vault::random_bytes::<32>()?;
    let secret = Zeroizing::new(format!(
        "smt_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let record = TokenRecord {
        name: name.to_owned(),
        hash: digest(&secret),
        read_only,
        created_at: now(),
    };
    let stored = record.clone();
    engine
        .store_call(move |store| store.insert_token(&stored))
        .await
        .map_err(|e| match e.code {
            ErrorCode::Conflict => {
                EngineError::new(ErrorCode::Conflict, format!("a token named {name} exists")).hint(
                    "revoke it first (`stripe-mirror token revoke NAME`) or choose another name",
                )
            }
            _ => e,
        })?;
    Ok(NewToken { record, secret })
}

/// Every token (names and scopes; never a secret).
pub async fn list(engine: &Engine) -> Result<Vec<TokenRecord>, EngineError> {
    engine.store_call(|store| store.tokens()).await
}

/// Revokes the token named `name`.
pub async fn revoke(engine: &Engine, name: &str) -> Result<(), EngineError> {
    let owned = name.to_owned();
    let existed = engine
        .store_call(move |store| store.delete_token(&owned))
        .await?;
    if !existed {
        return Err(
            EngineError::new(ErrorCode::NotFound, format!("no token named {name}"))
                .hint("`stripe-mirror token list` lists them"),
        );
    }
    Ok(())
}

/// How long a token found valid is trusted without reading the tokens again: a revocation
/// (which may come from another process, through the database) takes effect within this.
pub const TRUSTED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Tokens found valid lately, by the hash of their secret: a busy client's requests need not
/// each read the tokens from the database.
#[derive(Default)]
pub struct RecentTokens {
    found:
        parking_lot::Mutex<std::collections::HashMap<Vec<u8>, (TokenRecord, std::time::Instant)>>,
}

impl RecentTokens {
    /// The token named `name`, if it exists (a dashboard session names its token): from the
    /// recently checked ones, else from the database.
    pub async fn by_name(
        &self,
        engine: &Engine,
        name: &str,
    ) -> Result<Option<TokenRecord>, EngineError> {
        if let Some((token, _)) = self
            .found
            .lock()
            .values()
            .find(|(token, at)| token.name == name && at.elapsed() < TRUSTED_FOR)
        {
            return Ok(Some(token.clone()));
        }
        let tokens = engine.store_read(|store| store.tokens()).await?;
        let found = tokens.into_iter().find(|t| t.name == name);
        let mut kept = self.found.lock();
        kept.retain(|_, (_, at)| at.elapsed() < TRUSTED_FOR);
        if let Some(token) = &found {
            kept.insert(
                token.hash.clone(),
                (token.clone(), std::time::Instant::now()),
            );
        }
        Ok(found)
    }
}

/// The token a presented secret is, if any (`None`: unknown or revoked): from the recently
/// checked ones, else from the database (unknown secrets are never kept, so each costs a read).
pub async fn check(
    engine: &Engine,
    recent: &RecentTokens,
    presented: &str,
) -> Result<Option<TokenRecord>, EngineError> {
    let hash = digest(presented);
    if let Some((token, at)) = recent.found.lock().get(&hash)
        && at.elapsed() < TRUSTED_FOR
    {
        return Ok(Some(token.clone()));
    }
    let tokens = engine.store_read(|store| store.tokens()).await?;
    let found = verify(&tokens, presented);
    let mut kept = recent.found.lock();
    kept.retain(|_, (_, at)| at.elapsed() < TRUSTED_FOR);
    match &found {
        Some(token) => {
            kept.insert(hash, (token.clone(), std::time::Instant::now()));
        }
        None => {
            kept.remove(&hash);
        }
    }
    Ok(found)
}

/// The token a presented secret is, if any: compared with every stored hash in constant time.
pub fn verify(tokens: &[TokenRecord], presented: &str) -> Option<TokenRecord> {
    let hash = digest(presented);
    let mut found = None;
    for token in tokens {
        let same = token.hash.len() == hash.len()
            && token
                .hash
                .iter()
                .zip(&hash)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            found = Some(token.clone());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_its_own_hash() {
        let token = |name: &str, secret: &str| TokenRecord {
            name: name.into(),
            hash: digest(secret),
            read_only: false,
            created_at: 0,
        };
        let all = [token("a", "smt_aaa"), token("b", "smt_bbb")];
        assert_eq!(verify(&all, "smt_bbb").map(|t| t.name), Some("b".into()));
        assert!(verify(&all, "smt_ccc").is_none());
        assert!(verify(&all, "").is_none());
    }
}
