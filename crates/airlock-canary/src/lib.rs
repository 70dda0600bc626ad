//! airlock canaries: fake credentials planted in a sandbox, and the scanner
//! that finds them again.
//!
//! This crate owns three things:
//!
//! - **Minting.** [`mint`] makes a fresh [`CanarySet`] for one run from a
//!   [`CanaryConfig`]: an AWS key pair, an OpenSSH ed25519 key, a GitHub
//!   token, a database URL in the workspace `.env` and a kubeconfig token,
//!   each shaped like the real thing, plus any extras the profile asks for.
//!   Every value comes from getrandom(2), so each run's canaries are new.
//!   [`mint_with_seed`] is the deterministic twin, for tests and evaluations
//!   only.
//! - **What to plant.** The set lists the [`PlantedFile`]s (path under the
//!   home or the workspace, contents, mode, which canaries they hold) and the
//!   environment variables. Writing them, and watching the files, is the
//!   runtime's and the jail's job.
//! - **Detection.** A [`Scanner`] finds any canary's needles in bytes, raw or
//!   encoded (hex, base64, base64url, base32, double base64), also when
//!   line-wrapped, percent-encoded or JSON-escaped; [`Scanner::scan_dns_name`]
//!   finds them spread over DNS labels in any case; a [`StreamScanner`]
//!   follows a stream across writes.
//!
//! It is a bottom crate: it knows no other airlock crate, does no I/O except
//! reading randomness, and has no async. `docs/canaries.md` describes what
//! is planted, what the scanner covers and what it does not.
//!
//! ```
//! use airlock_canary::{mint, CanaryConfig, Encoding};
//!
//! let set = mint(&CanaryConfig::default())?;
//! let scanner = set.scanner();
//! let secret = set.get("aws-secret").unwrap().value();
//! let body = format!("key={}", data_encoding::BASE64.encode(secret.as_bytes()));
//! let hits = scanner.scan_str(&body);
//! assert_eq!(hits[0].canary_id, "aws-secret");
//! assert_eq!(hits[0].encoding, Encoding::Base64);
//! assert!(scanner.scan_str("nothing to see here").is_empty());
//! # Ok::<(), airlock_canary::CanaryError>(())
//! ```

mod builtin;
mod canary;
mod config;
mod decode;
mod encode;
mod rng;
mod scan;
mod ssh;
#[cfg(test)]
mod tests;

pub use canary::{
    mint, mint_with_seed, Canary, CanaryError, CanaryKind, CanarySet, PlantedFile, MIN_NEEDLE_LEN,
};
pub use config::{
    CanaryConfig, ConfigError, ConfigErrorKind, ExtraCanary, Location, LocationError,
    DEFAULT_EXTRA_LENGTH, MAX_EXTRAS, MAX_EXTRA_LENGTH, MIN_EXTRA_LENGTH,
};
pub use scan::{Encoding, Hit, Scanner, StreamScanner, Wrapping};
