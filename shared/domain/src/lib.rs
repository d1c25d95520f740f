//! The fintx domain: money, identifiers, accounts, errors and the ports adapters
//! implement. Pure: no AWS, no I/O, no floating point.
#![forbid(unsafe_code)]
// Unit tests compute their expectations with plain arithmetic on fixed values.
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

pub mod account;
pub mod auth;
pub mod batch;
pub mod clock;
pub mod crypto;
pub mod cursor;
pub mod error;
pub mod holder;
pub mod idempotency;
pub mod ids;
pub mod lifecycle;
pub mod money;
pub mod payment;
pub mod ports;
pub mod rollup;
pub mod secret;
pub mod statement;
pub mod transfer;
pub mod webhook;

pub use error::{Cause, DomainError, ErrorCode, Problem};
