//! Talking to Stripe: API keys, error bodies, the HTTP client and webhook signatures.
//!
//! Everything here follows `shared/stripe/API.md`; the emulator uses the signing half of
//! [`webhook`] so that its deliveries are byte-for-byte what Stripe sends.

pub mod webhook;
