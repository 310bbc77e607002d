//! The vault: API keys and webhook secrets are sealed with XChaCha20-Poly1305 before they reach
//! the database, each bound to its row (account, mode and column as associated data), so that a
//! value copied onto another row does not open there. The master key comes from `STRIPE_MIRROR_MASTER_KEY` (64 hex characters) or
//! from a key file (mode 0600) made on first use, by default in the user's configuration
//! directory: one home, whatever the working directory, and never in the database's folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::Digest;
use sm_warehouse::{Connection, SealedField};
use zeroize::{Zeroize, Zeroizing};

/// Why the vault could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "STRIPE_MIRROR_MASTER_KEY must be 64 hexadecimal characters (32 bytes); generate one with `openssl rand -hex 32`"
    )]
    BadEnvKey,
    #[error(
        "the master key file {path} is unreadable or malformed ({detail}); restore it, or remove the accounts and connect them again"
    )]
    BadKeyFile { path: String, detail: String },
    #[error(
        "the master key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyFileTooOpen { path: String, mode: u32 },
    #[error("could not create the master key file {path}: {detail}")]
    CannotCreate { path: String, detail: String },
    #[error(
        "a stored secret cannot be decrypted with the master key from {origin}{made}: it was sealed with another one (another key file, an earlier STRIPE_MIRROR_MASTER_KEY, or a key beside the database from an older version), or for another connection and copied onto this one. Point --master-key-file at the right key, or run `update-key` to store the API key again"
    )]
    WrongMasterKey { origin: String, made: String },
}

/// Seals and opens secrets with the master key.
pub struct Vault {
    cipher: XChaCha20Poly1305,
    /// A key of its own for derived secrets (`derive`), made from the master key, so that no
    /// derived value can be used to open a sealed one.
    derivation: Zeroizing<[u8; 32]>,
    /// Where the master key came from, for messages.
    pub source: String,
    /// When the key file was made (`, made …`), for messages; empty for a key from the
    /// environment.
    made: String,
    /// Whether this process made the key file (not another process racing it, not an earlier
    /// run): only then may a failed first command take it back.
    pub created_key_file: bool,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({})", self.source)
    }
}

const NONCE_LEN: usize = 24;

impl Vault {
    /// The master key from the environment value if given, else from `key_file` (created with
    /// mode 0600 when missing).
    pub fn open(env_key: Option<&str>, key_file: &Path) -> Result<Vault, VaultError> {
        if let Some(hex) = env_key {
            let bytes = Zeroizing::new(
                unhex(hex.trim())
                    .filter(|b| b.len() == 32)
                    .ok_or(VaultError::BadEnvKey)?,
            );
            return Ok(Vault::from_bytes(&bytes, "STRIPE_MIRROR_MASTER_KEY".into()));
        }
        let path = key_file.display().to_string();
        let mut created_key_file = false;
        if !key_file.exists() {
            created_key_file = create_key_file(key_file).map_err(|e| VaultError::CannotCreate {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        }
        {
            check_private(key_file)?;
            let text = Zeroizing::new(std::fs::read_to_string(key_file).map_err(|e| {
                VaultError::BadKeyFile {
                    path: path.clone(),
                    detail: e.to_string(),
                }
            })?);
            let bytes = Zeroizing::new(unhex(text.trim()).filter(|b| b.len() == 32).ok_or_else(
                || VaultError::BadKeyFile {
                    path: path.clone(),
                    detail: "expected 64 hex characters".into(),
                },
            )?);
            let mut vault = Vault::from_bytes(&bytes, path);
            vault.created_key_file = created_key_file;
            if let Some(made) = std::fs::metadata(key_file)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            {
                vault.made = format!(
                    ", made {}",
                    sm_stripe::http_date::format(made.as_secs() as i64)
                );
            }
            Ok(vault)
        }
    }

    fn from_bytes(bytes: &[u8], source: String) -> Vault {
        let mut key = Key::try_from(bytes).expect("master keys are 32 bytes");
        let derivation = Zeroizing::new(
            sha2::Sha256::new()
                .chain_update(b"stripe-mirror derived secrets\0")
                .chain_update(bytes)
                .finalize()
                .into(),
        );
        let cipher = XChaCha20Poly1305::new(&key);
        // The cipher keeps (and zeroizes on drop) a copy of its own; this one goes now.
        key.as_mut_slice().zeroize();
        Vault {
            cipher,
            derivation,
            source,
            made: String::new(),
            created_key_file: false,
        }
    }

    pub(crate) fn wrong_key(&self) -> VaultError {
        VaultError::WrongMasterKey {
            origin: self.source.clone(),
            made: self.made.clone(),
        }
    }

    /// `BOUND ‖ nonce ‖ ciphertext` of `secret`, bound to `connection`'s `field`.
    pub fn seal(&self, secret: &str, connection: &Connection, field: SealedField) -> Vec<u8> {
        let nonce = XNonce::generate();
        let mut sealed = BOUND.to_vec();
        sealed.extend_from_slice(&nonce);
        sealed.extend(
            self.cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: secret.as_bytes(),
                        aad: &binding(connection, field),
                    },
                )
                .expect("encryption of a short secret cannot fail"),
        );
        sealed
    }

    /// `BOUND ‖ nonce ‖ ciphertext` of a secret that belongs to no connection (a notification
    /// channel's settings), bound to `label` (its kind and id), so that it opens only there.
    pub fn seal_labeled(&self, secret: &str, label: &str) -> Vec<u8> {
        let nonce = XNonce::generate();
        let mut sealed = BOUND.to_vec();
        sealed.extend_from_slice(&nonce);
        sealed.extend(
            self.cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: secret.as_bytes(),
                        aad: &labeled_binding(label),
                    },
                )
                .expect("encryption of a short secret cannot fail"),
        );
        sealed
    }

    /// The secret [`Vault::seal_labeled`] sealed for `label`.
    pub fn open_labeled(
        &self,
        sealed: &[u8],
        label: &str,
    ) -> Result<Zeroizing<String>, VaultError> {
        let rest = sealed.strip_prefix(BOUND).ok_or_else(|| self.wrong_key())?;
        self.decrypt(rest, &labeled_binding(label))
    }

    /// A secret derived from the master key for `purpose` (hex): the same in every process that
    /// holds the key, so it needs storing nowhere (the Postgres SQL reader's password).
    pub fn derive(&self, purpose: &str) -> Zeroizing<String> {
        let digest = sha2::Sha256::new()
            .chain_update(&self.derivation[..])
            .chain_update(purpose.as_bytes())
            .finalize();
        Zeroizing::new(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The secret sealed in `sealed` for `connection`'s `field`; refused when it was sealed
    /// for another row or with another master key.
    pub fn open_secret(
        &self,
        sealed: &[u8],
        connection: &Connection,
        field: SealedField,
    ) -> Result<Zeroizing<String>, VaultError> {
        let rest = sealed.strip_prefix(BOUND).ok_or_else(|| self.wrong_key())?;
        self.decrypt(rest, &binding(connection, field))
    }

    /// The form a stored value takes once bound to its row: a value sealed before values were
    /// bound (no `BOUND` mark) is opened and sealed again for `connection`'s `field`; a bound one
    /// is kept as it is. `None` when an unbound value does not open with this master key.
    pub fn bind(
        &self,
        sealed: &[u8],
        connection: &Connection,
        field: SealedField,
    ) -> Option<Vec<u8>> {
        if sealed.starts_with(BOUND) {
            return Some(sealed.to_vec());
        }
        let secret = self.decrypt(sealed, &[]).ok()?;
        Some(self.seal(&secret, connection, field))
    }

    fn decrypt(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<String>, VaultError> {
        if sealed.len() <= NONCE_LEN {
            return Err(self.wrong_key());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| self.wrong_key())?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .map_err(|_| self.wrong_key())?,
        );
        std::str::from_utf8(&plain)
            .map(|text| Zeroizing::new(text.to_owned()))
            .map_err(|_| self.wrong_key())
    }
}

/// The mark that begins every value sealed bound to its row. Values from before carry none
/// (they begin with their random nonce; one beginning with these 8 bytes by chance: 1 in 2^64).
const BOUND: &[u8; 8] = b"smseal2\0";

/// What a sealed value is bound to: its account, mode and column.
fn binding(connection: &Connection, field: SealedField) -> Vec<u8> {
    format!(
        "stripe-mirror sealed value\0{}\0{}\0{}",
        connection.account_id,
        if connection.livemode { "live" } else { "test" },
        field.column()
    )
    .into_bytes()
}

/// What a value sealed by [`Vault::seal_labeled`] is bound to (never equal to a connection's
/// binding: the label takes the place of the account and mode).
fn labeled_binding(label: &str) -> Vec<u8> {
    format!("stripe-mirror sealed value\0label\0{label}").into_bytes()
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], crate::EngineError> {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // A fresh 32-byte key each round, from the OS (the same source as the master key's).
        let mut key = Key::try_generate().map_err(|e| {
            crate::EngineError::new(crate::ErrorCode::Internal, format!("no random source: {e}"))
        })?;
        let take = (N - filled).min(key.len());
        out[filled..filled + take].copy_from_slice(&key[..take]);
        key.as_mut_slice().zeroize();
        filled += take;
    }
    Ok(out)
}

/// Where the master key is read from when no file is named.
#[derive(Debug, Clone)]
pub struct KeyLocation {
    pub path: PathBuf,
    /// Set when the key is an older version's, kept beside the database: how to move it.
    pub warning: Option<String>,
}

/// The master key's home: `$XDG_CONFIG_HOME/stripe-mirror/master.key`, else
/// `$HOME/.config/stripe-mirror/master.key` — the same from any working directory, and apart
/// from the database (a copy of the database's folder does not carry both). A key an older
/// version left beside the database is still used while the home has none, with a warning
/// that says how to move it. Without a home directory, the older place is used.
pub fn default_key_location(database: &str) -> KeyLocation {
    let legacy = legacy_key_file(database);
    let home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .map(|config| config.join("stripe-mirror").join("master.key"));
    // A key beside this database sealed its secrets: it is used, even when the home has a key
    // of its own (made by the demo or another mirror).
    match home {
        Some(home) if legacy.exists() => KeyLocation {
            warning: Some(format!(
                "the master key is {} beside the database, where a copy of the folder carries it with the data; move it to its home: mkdir -p -m 700 {} && mv {} {}",
                legacy.display(),
                home.parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                legacy.display(),
                home.display()
            )),
            path: legacy,
        },
        Some(home) => KeyLocation {
            path: home,
            warning: None,
        },
        None => KeyLocation {
            path: legacy,
            warning: None,
        },
    }
}

/// Where versions before the key's home kept it: beside the SQLite database, or in the working
/// directory for Postgres.
fn legacy_key_file(database: &str) -> PathBuf {
    if database.starts_with("postgres") {
        return PathBuf::from("stripe-mirror.key");
    }
    let db = Path::new(database);
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join("stripe-mirror.key"))
        .unwrap_or_else(|| PathBuf::from("stripe-mirror.key"))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| VaultError::BadKeyFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::KeyFileTooOpen {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), VaultError> {
    Ok(())
}

/// Makes a new master key file (its folder 0700 when made here, the file 0600). The key is
/// written whole to a file of its own first and then linked into place, so that two processes
/// starting at once end with one key, never a half-written one. `true` when this call's key is
/// the one in place, `false` when another process's got there first.
fn create_key_file(path: &Path) -> std::io::Result<bool> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(parent)?;
    }
    let mut key =
        Key::try_generate().map_err(|e| std::io::Error::other(format!("no random source: {e}")))?;
    let text = Zeroizing::new(hex(&key));
    key.as_mut_slice().zeroize();
    let draft = path.with_extension(format!("new-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&draft).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&draft, path));
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    fn seals_opens_and_refuses_another_master_key() {
        let dir = std::env::temp_dir().join(format!("sm-vault-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("master.key");
        let vault = Vault::open(None, &file).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let here = Connection::new("acct_1Here", false);
        let key = SealedField::ApiKey;
        let sealed = vault.seal("rk_test_secret", &here, key);
        assert!(!String::from_utf8_lossy(&sealed).contains("rk_test_secret"));
        assert_eq!(
            &*vault.open_secret(&sealed, &here, key).unwrap(),
            "rk_test_secret"
        );
        // Bound to its row: another account, the other mode or the other column refuse it.
        for (connection, field) in [
            (Connection::new("acct_1Else", false), key),
            (Connection::new("acct_1Here", true), key),
            (here.clone(), SealedField::WebhookSecrets),
        ] {
            assert!(vault.open_secret(&sealed, &connection, field).is_err());
        }
        assert_eq!(
            &*Vault::open(None, &file)
                .unwrap()
                .open_secret(&sealed, &here, key)
                .unwrap(),
            "rk_test_secret",
            "the key file is reused"
        );
        let other = Vault::open(Some(&"ab".repeat(32)), &file).unwrap();
        let elsewhere = Vault::open(None, &dir.join("other.key")).unwrap();
        let error = elsewhere
            .open_secret(&sealed, &here, key)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("other.key, made ") && error.contains("--master-key-file"),
            "{error}"
        );
        let error = other.open_secret(&sealed, &here, key).unwrap_err();
        assert!(
            error.to_string().contains("STRIPE_MIRROR_MASTER_KEY"),
            "{error}"
        );
        // A value sealed before binding is bound by `bind`, and only then opens.
        let unbound = {
            let nonce = XNonce::generate();
            let mut out = nonce.to_vec();
            out.extend(vault.cipher.encrypt(&nonce, &b"whsec_old"[..]).unwrap());
            out
        };
        let webhook = SealedField::WebhookSecrets;
        assert!(vault.open_secret(&unbound, &here, webhook).is_err());
        let bound = vault.bind(&unbound, &here, webhook).unwrap();
        assert_eq!(
            &*vault.open_secret(&bound, &here, webhook).unwrap(),
            "whsec_old"
        );
        assert_eq!(vault.bind(&bound, &here, webhook).unwrap(), bound);
        assert!(elsewhere.bind(&unbound, &here, webhook).is_none());
        assert!(matches!(
            Vault::open(Some("short"), &file),
            Err(VaultError::BadEnvKey)
        ));
    }
}
