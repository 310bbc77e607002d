//! `stripe-mirror.toml`: the configuration file. Precedence is flags, then `STRIPE_MIRROR_…`
//! environment variables, then the file, then defaults. The file is read before the command line
//! is parsed, and each setting it holds becomes the environment variable of that setting unless
//! the environment has it already — so every command sees one precedence, in one place.
//!
//! The file is `--config PATH`, else `STRIPE_MIRROR_CONFIG`, else `stripe-mirror.toml` in the
//! working directory when it exists. Keys and secrets are never read from it (the environment,
//! a key file or a prompt hold them); an unknown setting is an error naming it.

use std::path::PathBuf;

/// One setting: its name in the file, its environment variable, its default, and what it is.
pub struct Setting {
    pub name: &'static str,
    pub env: &'static str,
    pub default: &'static str,
    pub about: &'static str,
}

/// Every setting the file may hold (the README's configuration table).
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "database",
        env: "STRIPE_MIRROR_DATABASE_URL",
        default: "stripe-mirror.db",
        about: "where the mirror lives",
    },
    Setting {
        name: "api_base",
        env: "STRIPE_MIRROR_API_BASE",
        default: "https://api.stripe.com",
        about: "the Stripe API's base URL",
    },
    Setting {
        name: "master_key_file",
        env: "STRIPE_MIRROR_MASTER_KEY_FILE",
        default: "~/.config/stripe-mirror/master.key",
        about: "the master key's file",
    },
    Setting {
        name: "budget_share",
        env: "STRIPE_MIRROR_BUDGET_SHARE",
        default: "0.5",
        about: "share of Stripe's rate limit used",
    },
    Setting {
        name: "no_pacing",
        env: "STRIPE_MIRROR_NO_PACING",
        default: "false",
        about: "pacing off (local emulator only)",
    },
    Setting {
        name: "max_retries",
        env: "STRIPE_MIRROR_MAX_RETRIES",
        default: "5",
        about: "retries of a failed request",
    },
    Setting {
        name: "log",
        env: "STRIPE_MIRROR_LOG",
        default: "warn",
        about: "log filter (e.g. debug)",
    },
    Setting {
        name: "sync_only",
        env: "STRIPE_MIRROR_SYNC_ONLY",
        default: "(every table)",
        about: "tables `sync` keeps",
    },
    Setting {
        name: "sync_skip",
        env: "STRIPE_MIRROR_SYNC_SKIP",
        default: "(none)",
        about: "tables `sync` leaves out",
    },
    Setting {
        name: "listen",
        env: "STRIPE_MIRROR_LISTEN",
        default: "127.0.0.1:8787",
        about: "serve's address",
    },
    Setting {
        name: "public_url",
        env: "STRIPE_MIRROR_PUBLIC_URL",
        default: "(none: polling only)",
        about: "serve's public URL for webhooks",
    },
    Setting {
        name: "sync_interval",
        env: "STRIPE_MIRROR_SYNC_INTERVAL",
        default: "300",
        about: "serve's sync interval, seconds",
    },
    Setting {
        name: "emulator_listen",
        env: "STRIPE_MIRROR_EMULATOR_LISTEN",
        default: "127.0.0.1:12111",
        about: "the emulator's address",
    },
];

/// Where each setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    File,
}

/// The file read, and the settings it provided (those the environment did not already hold).
#[derive(Debug, Default)]
pub struct Loaded {
    pub path: Option<PathBuf>,
    pub provided: Vec<(&'static str, Source)>,
}

/// The configuration file named on the command line or in the environment, or the default one
/// when it exists.
fn locate(args: &[String]) -> Option<(PathBuf, bool)> {
    let mut named = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            named = iter.next().cloned();
        } else if let Some(value) = arg.strip_prefix("--config=") {
            named = Some(value.to_owned());
        }
    }
    let named = named.or_else(|| std::env::var("STRIPE_MIRROR_CONFIG").ok());
    match named {
        Some(path) => Some((PathBuf::from(path), true)),
        None => {
            let default = PathBuf::from("stripe-mirror.toml");
            default.exists().then_some((default, false))
        }
    }
}

/// Reads the configuration file, if any, into the environment (below what the environment
/// already says). Call before the command line is parsed and before any thread starts.
pub fn load(args: &[String]) -> Result<Loaded, String> {
    let mut loaded = Loaded::default();
    for setting in SETTINGS {
        if std::env::var_os(setting.env).is_some() {
            loaded.provided.push((setting.name, Source::Environment));
        }
    }
    let Some((path, named)) = locate(args) else {
        return Ok(loaded);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => return Ok(loaded),
        Err(e) => {
            return Err(format!(
                "could not read the configuration file {}: {e}",
                path.display()
            ));
        }
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        format!("{} is not valid TOML: {}", path.display(), e.message())
    })?;
    let mut assignments = Vec::new();
    for (key, value) in &table {
        let Some(setting) = SETTINGS.iter().find(|s| s.name == key) else {
            let secret = ["key", "secret", "master_key", "api_key"].contains(&key.as_str());
            return Err(if secret {
                format!(
                    "{}: `{key}` cannot be set in the configuration file: keys and secrets come from the environment, a key file or a prompt",
                    path.display()
                )
            } else {
                format!(
                    "{}: unknown setting `{key}`; the settings are: {}",
                    path.display(),
                    SETTINGS
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or(()))
                .collect::<Result<Vec<_>, ()>>()
                .map_err(|()| format!("{}: `{key}` must be a list of strings", path.display()))?
                .join(","),
            _ => {
                return Err(format!(
                    "{}: `{key}` has a value of the wrong kind",
                    path.display()
                ));
            }
        };
        // A file found by being in the working directory (a cloned repository, say) must not
        // send the stored keys elsewhere: the API base comes from a file only when it is named.
        if setting.name == "api_base" && !named {
            return Err(format!(
                "{}: `api_base` is only read from a configuration file named with --config or STRIPE_MIRROR_CONFIG (a file found in the working directory could send your keys elsewhere)",
                path.display()
            ));
        }
        if std::env::var_os(setting.env).is_none() {
            assignments.push((setting, text));
        }
    }
    for (setting, text) in assignments {
        // SAFETY: called from `main` before the runtime or any other thread starts.
        unsafe { std::env::set_var(setting.env, text) };
        loaded.provided.push((setting.name, Source::File));
    }
    loaded.path = Some(path);
    Ok(loaded)
}

/// A value safe to print: a URL's password masked, in its user part or as `password=`.
pub fn masked(value: &str) -> String {
    let value = match value.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=****")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => value.to_owned(),
    };
    let value = value.as_str();
    match (value.find("://"), value.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &value[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &value[..scheme + 3], &value[at..]),
                None => value.to_owned(),
            }
        }
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            masked("postgres://me:s3cret@db/mirror"),
            "postgres://me:****@db/mirror"
        );
        assert_eq!(masked("stripe-mirror.db"), "stripe-mirror.db");
        assert_eq!(
            masked("postgres://me@db/x?password=s3cret&schema=s"),
            "postgres://me@db/x?password=****&schema=s"
        );
    }
}
