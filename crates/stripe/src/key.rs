//! Stripe API keys as pasted by a person: shape and mode checks before any request, masked display.
//!
//! [`ApiKey::parse`] refuses anything that cannot work (empty, whitespace, a webhook secret, a
//! publishable key, a masked or cut-off key) with an error that says what is wrong and what to do.
//! A parsed key shows itself only masked (`rk_live_…a1b2`) through `Display` and `Debug`; the clear
//! text is reachable only through [`ApiKey::expose_secret`], and it is wiped from memory on drop.
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

/// The fewest characters accepted after the mode prefix (`rk_live_`). Real keys have 30 or more;
/// this bound is lenient on purpose and only catches keys cut off while copying.
pub const MIN_BODY_LEN: usize = 8;

/// What a key may do, from its prefix (API.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `sk_…`: full access to the account.
    Secret,
    /// `rk_…`: per-resource none / read / write permissions.
    Restricted,
    /// `pk_…`: browser-only; every server endpoint refuses it, so [`ApiKey::parse`] does too.
    Publishable,
}

impl KeyKind {
    /// The two-letter prefix without its underscore: `sk`, `rk` or `pk`.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Secret => "sk",
            KeyKind::Restricted => "rk",
            KeyKind::Publishable => "pk",
        }
    }

    fn from_prefix(prefix: &str) -> Option<KeyKind> {
        match prefix {
            "sk" => Some(KeyKind::Secret),
            "rk" => Some(KeyKind::Restricted),
            "pk" => Some(KeyKind::Publishable),
            _ => None,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Secret => "secret key",
            KeyKind::Restricted => "restricted key",
            KeyKind::Publishable => "publishable key",
        })
    }
}

/// Live or test mode: the key alone decides which data it sees (API.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// `…_test_…`: test-mode data, lower rate limits.
    Test,
    /// `…_live_…`: real data.
    Live,
}

impl Mode {
    /// `"test"` or `"live"`, as written inside a key.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed secret (`sk_`) or restricted (`rk_`) API key.
///
/// `Display` and `Debug` show only [`ApiKey::masked`]; the clear text is wiped from memory on drop.
#[derive(Clone)]
pub struct ApiKey {
    secret: Zeroizing<String>,
    kind: KeyKind,
    mode: Mode,
}

impl ApiKey {
    /// Checks a pasted key's shape and learns its kind and mode, without any request.
    ///
    /// Nothing is trimmed silently: stray whitespace is an error that says where it is.
    pub fn parse(text: &str) -> Result<ApiKey, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if text.chars().all(char::is_whitespace) {
            return Err(KeyError::OnlyWhitespace);
        }
        check_whitespace(text)?;
        if text.starts_with(['"', '\'', '`']) || text.ends_with(['"', '\'', '`']) {
            return Err(KeyError::Quoted);
        }
        if text.starts_with("whsec_") {
            return Err(KeyError::WebhookSecret);
        }
        let Some((prefix, rest)) = text.split_once('_') else {
            return Err(KeyError::UnknownPrefix { found: None });
        };
        let Some(kind) = KeyKind::from_prefix(prefix) else {
            let shown = (prefix.len() <= 6 && prefix.chars().all(|c| c.is_ascii_alphanumeric()))
                .then(|| format!("{prefix}_"));
            return Err(KeyError::UnknownPrefix { found: shown });
        };
        let (mode, body) = if let Some(body) = rest.strip_prefix("live_") {
            (Mode::Live, body)
        } else if let Some(body) = rest.strip_prefix("test_") {
            (Mode::Test, body)
        } else {
            return Err(KeyError::MissingMode { kind });
        };
        if kind == KeyKind::Publishable {
            return Err(KeyError::Publishable { mode });
        }
        if body.contains(['*', '…']) || body.contains("...") {
            return Err(KeyError::Masked);
        }
        if let Some((index, ch)) = body.chars().enumerate().find(|(_, c)| !is_key_char(*c)) {
            return Err(KeyError::IllegalCharacter {
                ch,
                position: prefix.len() + 1 + mode.as_str().len() + 1 + index + 1,
            });
        }
        let len = body.chars().count();
        if len < MIN_BODY_LEN {
            return Err(KeyError::TooShort { kind, mode, len });
        }
        Ok(ApiKey {
            secret: Zeroizing::new(text.to_owned()),
            kind,
            mode,
        })
    }

    /// Secret or restricted (a parsed key is never publishable).
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Live or test mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `sk_test_` or `rk_live_` and so on: the kind and mode prefix, underscores included.
    pub fn prefix(&self) -> String {
        format!("{}_{}_", self.kind.prefix(), self.mode)
    }

    /// The only form fit for logs, errors and screens: prefix, `…`, last four characters
    /// (`rk_live_…a1b2`).
    pub fn masked(&self) -> String {
        let tail: String = {
            let chars: Vec<char> = self.secret.chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        format!("{}…{}", self.prefix(), tail)
    }

    /// The key in clear, for the `Authorization` header and the encrypted vault only.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }
}

impl FromStr for ApiKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApiKey::parse(s)
    }
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.secret.as_bytes(), other.secret.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for ApiKey {}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.masked())
    }
}

/// Where stray whitespace sits in a pasted key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhitespacePlace {
    /// Before the key.
    Leading,
    /// After the key (typically the newline of a file or `echo`).
    Trailing,
    /// Inside the key, at this 1-based character position.
    Inside {
        /// 1-based position of the first whitespace character inside the key.
        position: usize,
    },
}

impl fmt::Display for WhitespacePlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WhitespacePlace::Leading => f.write_str("before the key"),
            WhitespacePlace::Trailing => f.write_str("after the key"),
            WhitespacePlace::Inside { position } => {
                write!(f, "inside the key at character {position}")
            }
        }
    }
}

/// Why a pasted string is not a usable API key; each message says what to do.
///
/// No variant carries key material beyond a short non-secret prefix or a single offending character.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing was given.
    #[error(
        "the API key is empty: paste a restricted key (rk_live_…/rk_test_…) or a secret key (sk_…)"
    )]
    Empty,
    /// Only whitespace was given.
    #[error(
        "the API key is only whitespace: paste a restricted key (rk_live_…/rk_test_…) or a secret key (sk_…)"
    )]
    OnlyWhitespace,
    /// Whitespace (often a newline from a file or `echo`) around or inside the key; never trimmed
    /// silently.
    #[error(
        "the API key has {what} {place}: API keys never contain whitespace, so remove it \
         (a file or `echo` often adds a trailing newline; use `echo -n` or `printf %s`)"
    )]
    Whitespace {
        /// A plain name of the character: "a newline", "a space", "a tab", ….
        what: &'static str,
        /// Where it is.
        place: WhitespacePlace,
    },
    /// The key is wrapped in quotes.
    #[error("the API key is wrapped in quotes: remove the quotes")]
    Quoted,
    /// A `whsec_` webhook signing secret was pasted instead of an API key.
    #[error(
        "this is a webhook signing secret (whsec_…), not an API key: it only verifies webhook deliveries \
         and cannot call the API; paste a restricted key (rk_live_…/rk_test_…) or a secret key (sk_…)"
    )]
    WebhookSecret,
    /// A publishable key, which every server endpoint refuses.
    #[error(
        "this is a publishable key (pk_{mode}_…): publishable keys cannot read data; \
         use a restricted key rk_{mode}_… or secret key sk_{mode}_…"
    )]
    Publishable {
        /// The mode the publishable key was for.
        mode: Mode,
    },
    /// The prefix is none of `sk_`, `rk_`, `pk_`.
    #[error(
        "the API key {}: Stripe API keys start with rk_live_, rk_test_, sk_live_ or sk_test_",
        match found { Some(p) => format!("starts with '{p}'"), None => "has no recognisable prefix".to_owned() }
    )]
    UnknownPrefix {
        /// The prefix found (up to its first underscore), when short and harmless to show.
        found: Option<String>,
    },
    /// `sk_`/`rk_` not followed by `live_` or `test_`.
    #[error(
        "the API key starts with {p}_ but not {p}_live_ or {p}_test_: copy the whole key again",
        p = kind.prefix()
    )]
    MissingMode {
        /// The kind the prefix claims.
        kind: KeyKind,
    },
    /// A masked key (`rk_live_…a1b2`, `sk_test_****S8wL`) as shown by a dashboard or a log.
    #[error(
        "this is a masked key (it contains '…' or '*'): the dashboard shows a key in full only when it is \
         created or revealed; reveal it or create a new one and paste the full key"
    )]
    Masked,
    /// A character outside `[A-Za-z0-9_]`.
    #[error(
        "the API key contains {ch:?} at character {position}: Stripe keys contain only letters, digits \
         and underscores; copy the key again"
    )]
    IllegalCharacter {
        /// The offending character (never a letter or digit, so not key material).
        ch: char,
        /// Its 1-based character position in the pasted text.
        position: usize,
    },
    /// Too few characters after the mode prefix: most likely cut off while copying.
    #[error(
        "the API key is too short: {len} characters after {p}_{mode}_ where real keys have 30 or more; \
         it was probably cut off while copying, so copy the whole key again",
        p = kind.prefix()
    )]
    TooShort {
        /// The kind the prefix claims.
        kind: KeyKind,
        /// The mode the prefix claims.
        mode: Mode,
        /// Characters found after the mode prefix.
        len: usize,
    },
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn whitespace_name(c: char) -> &'static str {
    match c {
        '\n' => "a newline",
        '\r' => "a carriage return",
        '\t' => "a tab",
        ' ' => "a space",
        '\u{a0}' => "a non-breaking space",
        _ => "a whitespace character",
    }
}

fn check_whitespace(text: &str) -> Result<(), KeyError> {
    if let Some(c) = text.chars().next().filter(|c| c.is_whitespace()) {
        return Err(KeyError::Whitespace {
            what: whitespace_name(c),
            place: WhitespacePlace::Leading,
        });
    }
    if let Some(c) = text.chars().next_back().filter(|c| c.is_whitespace()) {
        return Err(KeyError::Whitespace {
            what: whitespace_name(c),
            place: WhitespacePlace::Trailing,
        });
    }
    if let Some((i, c)) = text.chars().enumerate().find(|(_, c)| c.is_whitespace()) {
        return Err(KeyError::Whitespace {
            what: whitespace_name(c),
            place: WhitespacePlace::Inside { position: i + 1 },
        });
    }
    Ok(())
}

/// Replaces every full-looking key or webhook secret in `text` (`sk_live_…`, `rk_test_…`,
/// `pk_…`, `whsec_…` followed by key characters) by its masked form, prefix + `…` + last 4.
///
/// Stripe's own masked forms (`sk_test_****S8wL`) are left as they are. Use it on any text that
/// came from outside (error bodies, HTML pages) before it reaches a log or a screen.
pub fn redact(text: &str) -> String {
    const PREFIXES: [&str; 7] = [
        "sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_", "whsec_",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for prefix in PREFIXES {
            if let Some(after) = rest.strip_prefix(prefix) {
                let run = after.find(|c: char| !is_key_char(c)).unwrap_or(after.len());
                if run > 0 {
                    let body = &after[..run];
                    out.push_str(prefix);
                    out.push('…');
                    if run >= MIN_BODY_LEN {
                        out.push_str(&body[run - 4..]);
                    }
                    rest = &after[run..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        out.extend(chars.next());
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RK_LIVE: &str = "rk_live_51Habc0123456789DEFghijKLmnopQRstuvWXyz0a1b2";

    #[test]
    fn parses_secret_and_restricted_keys_of_both_modes() {
        let k = ApiKey::parse(RK_LIVE).unwrap();
        assert_eq!((k.kind(), k.mode()), (KeyKind::Restricted, Mode::Live));
        assert_eq!(k.masked(), "rk_live_…a1b2");
        assert_eq!(k.expose_secret(), RK_LIVE);
        let k: ApiKey = "sk_test_4eC39HqLyjWDarjtT1zdp7dc".parse().unwrap();
        assert_eq!((k.kind(), k.mode()), (KeyKind::Secret, Mode::Test));
        assert_eq!(k.prefix(), "sk_test_");
        assert_eq!(k.masked(), "sk_test_…p7dc");
        // Lenient: 8 characters after the mode prefix are enough; underscores are allowed.
        assert!(ApiKey::parse("rk_test_abc_1234").is_ok());
    }

    #[test]
    fn display_and_debug_show_only_the_masked_form() {
        let k = ApiKey::parse(RK_LIVE).unwrap();
        assert_eq!(k.to_string(), "rk_live_…a1b2");
        let debug = format!("{k:?} {k:#?}");
        assert!(!debug.contains("51Habc"), "{debug}");
        assert!(debug.contains("rk_live_…a1b2"));
        assert_eq!(k.clone(), k);
        assert_ne!(
            k,
            ApiKey::parse("rk_live_51Habc0123456789DEFghijKLmnopQRstuvWXyz0a1b3").unwrap()
        );
    }

    #[test]
    fn refuses_empty_and_whitespace_without_trimming() {
        assert_eq!(ApiKey::parse(""), Err(KeyError::Empty));
        assert_eq!(ApiKey::parse(" \n"), Err(KeyError::OnlyWhitespace));
        let e = ApiKey::parse(&format!("{RK_LIVE}\n")).unwrap_err();
        assert_eq!(
            e,
            KeyError::Whitespace {
                what: "a newline",
                place: WhitespacePlace::Trailing
            }
        );
        assert!(e.to_string().contains("a newline after the key"), "{e}");
        let e = ApiKey::parse(&format!(" {RK_LIVE}")).unwrap_err();
        assert_eq!(
            e,
            KeyError::Whitespace {
                what: "a space",
                place: WhitespacePlace::Leading
            }
        );
        let e = ApiKey::parse("rk_live_51Habc012\r\n3456789").unwrap_err();
        assert_eq!(
            e,
            KeyError::Whitespace {
                what: "a carriage return",
                place: WhitespacePlace::Inside { position: 18 }
            }
        );
        assert!(
            e.to_string().contains("inside the key at character 18"),
            "{e}"
        );
    }

    #[test]
    fn refuses_webhook_secrets_publishable_and_unknown_prefixes() {
        let e = ApiKey::parse("whsec_abcdefghijklmnopqrstuvwxyz012345").unwrap_err();
        assert_eq!(e, KeyError::WebhookSecret);
        assert!(e.to_string().contains("webhook signing secret"));
        let e = ApiKey::parse("pk_live_abcdefghijklmnopqrstuvwxyz012345").unwrap_err();
        assert_eq!(e, KeyError::Publishable { mode: Mode::Live });
        assert!(
            e.to_string()
                .contains("publishable keys cannot read data; use a restricted key rk_live_…")
        );
        assert_eq!(
            ApiKey::parse("ak_live_abcdefghijklmnop"),
            Err(KeyError::UnknownPrefix {
                found: Some("ak_".into())
            })
        );
        assert_eq!(
            ApiKey::parse("sk-live-abcdefghijklmnop"),
            Err(KeyError::UnknownPrefix { found: None })
        );
        assert_eq!(
            ApiKey::parse("sk_prod_abcdefghijklmnop"),
            Err(KeyError::MissingMode {
                kind: KeyKind::Secret
            })
        );
        assert_eq!(
            ApiKey::parse("\"sk_test_abcdefghijklmnop\""),
            Err(KeyError::Quoted)
        );
    }

    #[test]
    fn refuses_masked_cut_off_and_illegal_characters() {
        assert_eq!(ApiKey::parse("rk_live_…a1b2"), Err(KeyError::Masked));
        assert_eq!(
            ApiKey::parse("sk_test_************S8wL"),
            Err(KeyError::Masked)
        );
        assert_eq!(
            ApiKey::parse("rk_test_abc"),
            Err(KeyError::TooShort {
                kind: KeyKind::Restricted,
                mode: Mode::Test,
                len: 3
            })
        );
        assert_eq!(
            ApiKey::parse("rk_test_"),
            Err(KeyError::TooShort {
                kind: KeyKind::Restricted,
                mode: Mode::Test,
                len: 0
            })
        );
        let e = ApiKey::parse("sk_test_abcd-efghijkl").unwrap_err();
        assert_eq!(
            e,
            KeyError::IllegalCharacter {
                ch: '-',
                position: 13
            }
        );
        assert!(ApiKey::parse("sk_test_abcdefgh\u{200b}ijkl").is_err());
    }

    #[test]
    fn errors_never_echo_the_key() {
        let secret_part = "51HabcSECRETxyz0123456789";
        for text in [
            format!("rk_live_{secret_part}\n"),
            format!("pk_live_{secret_part}"),
            format!("whsec_{secret_part}"),
            format!("rk_live_{secret_part}-x"),
            format!("zz_live_{secret_part}"),
        ] {
            let e = ApiKey::parse(&text).unwrap_err();
            assert!(!e.to_string().contains("SECRET"), "{e}");
            assert!(!format!("{e:?}").contains("SECRET"), "{e:?}");
        }
    }

    #[test]
    fn redact_masks_full_keys_and_keeps_stripe_masks() {
        let text = format!(
            "key={RK_LIVE}; whsec_abcdefghijkl9876 and sk_test_************S8wL, rk_test_short"
        );
        let out = redact(&text);
        assert_eq!(
            out,
            "key=rk_live_…a1b2; whsec_…9876 and sk_test_************S8wL, rk_test_…"
        );
        assert_eq!(
            redact("apikey:sk_live_abcdefgh1234"),
            "apikey:sk_live_…1234"
        );
        assert_eq!(redact("héllo sk_live_abcdefgh1234"), "héllo sk_live_…1234");
    }
}
