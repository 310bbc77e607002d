//! Talking to Stripe: API keys, error bodies, the HTTP client and webhook signatures.
//!
//! Everything here follows `shared/stripe/API.md`; the emulator uses the signing half of
//! [`webhook`] so that its deliveries are byte-for-byte what Stripe sends.

pub mod client;
pub mod error;
pub mod form;
pub mod http_date;
pub mod key;
pub mod pacer;
pub mod webhook;

/// The Stripe API version every request pins (`Stripe-Version`): the version of the OpenAPI spec
/// the mirror's object shapes are checked against.
pub const API_VERSION: &str = "2023-08-16";

pub use client::{Client, ClientConfig, ClientError, ListCursor, Page, RawPage};
pub use error::{ApiError, AuthFailure, ErrorKind};
pub use key::{ApiKey, KeyError, KeyKind, Mode};
pub use pacer::{Pacer, PacerRegistry};
