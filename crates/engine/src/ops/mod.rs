//! The operations every surface calls: the CLI today, and the REST API, the dashboard and agent
//! tools as they come. A surface parses its input, calls one function here, and presents the
//! answer; it never writes an account record or derives a status itself. Errors are
//! [`crate::EngineError`], whose code maps to an exit code or an HTTP status in one table.
//!
//! - [`connections`]: connect, list with summaries and status in words, permissions, key-link,
//!   update key, rename, start date, API version, webhook secret, remove
//! - [`syncs`]: sync now, runs, interruption
//! - [`events`]: the events kept in the mirror
//! - [`objects`]: mirrored objects, paged as Stripe lists them, or one by id; customers found by
//!   text; one customer with their subscriptions, invoices and payments
//! - [`live`]: reads from Stripe now (the balance)
//! - [`query`]: read-only SQL
//! - [`tokens`]: API tokens (made, listed, revoked, verified)
//! - [`notify`]: notification channels, rules and the log of what was sent
//! - [`writes`]: writes through Stripe (the agent tools'), permission-checked, mirrored at once

pub mod connections;
pub mod events;
pub mod live;
pub mod notify;
pub mod objects;
pub mod query;
pub mod reports;
pub mod syncs;
pub mod tokens;
pub mod writes;
