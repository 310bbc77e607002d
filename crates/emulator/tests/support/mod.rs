//! Shared helpers for the emulator's integration tests (include with `mod support;`).

pub mod harness;
pub mod openapi;
