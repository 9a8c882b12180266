//! Secrets: generated passwords, the user's age identity, and age encryption of
//! connection-file fields (ASCII-armored, see <https://age-encryption.org/v1>).
//!
//! Plaintext secrets live only in memory ([`SecretString`]), in process stdin/env of the
//! engine clients dbctl runs, and in 0600 files under the state directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};

/// Length of generated passwords (alphanumeric, ~190 bits).
pub const PASSWORD_LEN: usize = 32;

/// Environment variable naming the identity file, like `--identity`.
pub const IDENTITY_ENV: &str = "DBCTL_IDENTITY";

/// Errors of secret handling.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The identity file could not be read or written.
    #[error("cannot use age identity file `{path}`")]
    Identity {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The identity file holds no usable X25519 identity.
    #[error(
        "`{0}` holds no age identity (`AGE-SECRET-KEY-1…` line); create one with `dbctl init` or `age-keygen`"
    )]
    NoIdentity(PathBuf),
    /// No recipients are configured, so a secret would be stored in plaintext.
    #[error(
        "no age recipients in `etc/dbctl.yml` `secrets.recipients`; refusing to write a plaintext secret (run `dbctl init` or add an `age1…` recipient)"
    )]
    NoRecipients,
    /// A recipient string is not an age recipient.
    #[error("`{0}` is not an age X25519 recipient (`age1…`)")]
    BadRecipient(String),
    /// Encryption failed.
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    /// Decryption failed (wrong identity or damaged text).
    #[error("cannot decrypt `{field}` with identity `{identity}`: {reason}")]
    Decrypt {
        /// The field being decrypted.
        field: String,
        /// The identity file used.
        identity: PathBuf,
        /// age's reason.
        reason: String,
    },
}

/// A fresh random password of [`PASSWORD_LEN`] alphanumeric characters.
pub fn generate_password() -> SecretString {
    SecretString::from(Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN))
}

/// PostgreSQL's stored form of `password` for SCRAM-SHA-256
/// (`SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>`, base64), computed here so
/// the plain password never reaches the server, and so never its logs whatever their
/// settings. RFC 5802 section 3 and RFC 7677; PostgreSQL's `pg_fe_scram_build_secret`.
/// Passwords dbctl generates are ASCII letters and digits, which SASLprep leaves as
/// they are.
///
/// # Panics
/// Never: HMAC-SHA-256 takes keys of any length.
pub fn scram_sha256_verifier(password: &SecretString) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    use sha2::Digest;
    const ITERATIONS: u32 = 4096;
    let salt: [u8; 16] = rand::random();
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
        password.expose_secret().as_bytes(),
        &salt,
        ITERATIONS,
        &mut salted,
    );
    let hmac = |label: &[u8]| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&salted)
            .expect("HMAC takes keys of any length");
        mac.update(label);
        mac.finalize().into_bytes()
    };
    let stored_key = sha2::Sha256::digest(hmac(b"Client Key"));
    let server_key = hmac(b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

/// MariaDB's stored form of `password` for `mysql_native_password`
/// (`*` and the upper-case hex of SHA1(SHA1(password))), for `IDENTIFIED BY PASSWORD`,
/// so the plain password never reaches the server (MariaDB "Authentication Plugin -
/// `mysql_native_password`").
pub fn mysql_native_hash(password: &SecretString) -> String {
    use sha1::Digest;
    let inner = sha1::Sha1::digest(password.expose_secret().as_bytes());
    format!("*{}", hex::encode_upper(sha1::Sha1::digest(inner)))
}

/// The identity file to use: `explicit` (from `--identity`), else `$DBCTL_IDENTITY`,
/// else `<config dir>/dbctl/identity.txt` (`~/.config/dbctl/identity.txt` on Linux).
pub fn identity_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os(IDENTITY_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    directories::ProjectDirs::from("", "", "dbctl").map_or_else(
        || PathBuf::from(".dbctl-identity.txt"),
        |dirs| dirs.config_dir().join("identity.txt"),
    )
}

/// Reads the identity at `path` and returns its recipient (`age1…`), creating the file
/// (mode 0600, parent 0700) with a new X25519 identity when it does not exist. The
/// boolean is true when it was created.
///
/// # Errors
/// [`SecretError::Identity`] on I/O failure, [`SecretError::NoIdentity`] when an existing
/// file holds no X25519 identity.
pub fn ensure_identity(path: &Path) -> Result<(String, bool), SecretError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let io = |source| SecretError::Identity {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        let identity = read_identity(path)?;
        return Ok((identity.to_public().to_string(), false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let body = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        jiff::Timestamp::now(),
        identity.to_string().expose_secret()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(body.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok((recipient, true))
}

/// The X25519 identity in the file at `path` (for decrypting backups).
///
/// # Errors
/// As [`ensure_identity`] for an existing file.
pub fn load_identity(path: &Path) -> Result<age::x25519::Identity, SecretError> {
    read_identity(path)
}

/// Parses `age1…` recipients.
///
/// # Errors
/// [`SecretError::NoRecipients`] for an empty list, [`SecretError::BadRecipient`].
pub fn parse_recipients(recipients: &[String]) -> Result<Vec<age::x25519::Recipient>, SecretError> {
    if recipients.is_empty() {
        return Err(SecretError::NoRecipients);
    }
    recipients
        .iter()
        .map(|r| {
            r.parse::<age::x25519::Recipient>()
                .map_err(|_| SecretError::BadRecipient(r.clone()))
        })
        .collect()
}

fn read_identity(path: &Path) -> Result<age::x25519::Identity, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Identity {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .and_then(|l| l.parse::<age::x25519::Identity>().ok())
        .ok_or_else(|| SecretError::NoIdentity(path.to_path_buf()))
}

/// Encrypts `secret` to every recipient, ASCII-armored (`-----BEGIN AGE ENCRYPTED FILE-----`).
///
/// # Errors
/// [`SecretError::NoRecipients`] for an empty list, [`SecretError::BadRecipient`],
/// [`SecretError::Encrypt`].
pub fn encrypt(secret: &SecretString, recipients: &[String]) -> Result<String, SecretError> {
    let parsed = parse_recipients(recipients)?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SecretError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let result = (|| -> std::io::Result<()> {
        let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)?;
        let mut writer = encryptor.wrap_output(armor)?;
        writer.write_all(secret.expose_secret().as_bytes())?;
        writer.finish()?.finish()?;
        Ok(())
    })();
    result.map_err(|e| SecretError::Encrypt(e.to_string()))?;
    String::from_utf8(out).map_err(|e| SecretError::Encrypt(e.to_string()))
}

/// Decrypts an armored age text with the identity file at `identity`; `field` names what
/// is being decrypted, for messages.
///
/// # Errors
/// [`SecretError::Identity`]/[`SecretError::NoIdentity`] for the identity file,
/// [`SecretError::Decrypt`] when it cannot decrypt the text.
pub fn decrypt(armored: &str, identity: &Path, field: &str) -> Result<SecretString, SecretError> {
    let key = read_identity(identity)?;
    let fail = |reason: String| SecretError::Decrypt {
        field: field.to_owned(),
        identity: identity.to_path_buf(),
        reason,
    };
    let decryptor = age::Decryptor::new(ArmoredReader::new(armored.as_bytes()))
        .map_err(|e| fail(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(&key as &dyn age::Identity))
        .map_err(|e| fail(e.to_string()))?;
    let mut plain = String::new();
    reader
        .read_to_string(&mut plain)
        .map_err(|e| fail(e.to_string()))?;
    Ok(SecretString::from(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_armored_age() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("sub/identity.txt");
        let (recipient, created) = ensure_identity(&id).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&id).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = ensure_identity(&id).unwrap();
        assert_eq!(again, recipient);
        assert!(!created);
        let secret = generate_password();
        let armored = encrypt(&secret, &[recipient]).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains(secret.expose_secret()));
        let plain = decrypt(&armored, &id, "password").unwrap();
        assert_eq!(plain.expose_secret(), secret.expose_secret());

        let other = dir.path().join("other.txt");
        ensure_identity(&other).unwrap();
        assert!(matches!(
            decrypt(&armored, &other, "password"),
            Err(SecretError::Decrypt { .. })
        ));
        assert!(matches!(
            encrypt(&secret, &[]),
            Err(SecretError::NoRecipients)
        ));
    }
}
