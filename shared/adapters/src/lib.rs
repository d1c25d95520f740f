//! fintx adapters: the DynamoDB store, KMS wiring, typed settings, the HTTP plumbing the
//! functions share, and in-memory stand-ins for unit tests and benchmarks.
#![forbid(unsafe_code)]

pub mod audit;
pub mod aws;
pub mod commit;
pub mod dynamo;
pub mod engine;
pub mod envelope;
pub mod http;
pub mod kms;
pub mod ledger_store;
pub mod memory;
pub mod metrics;
pub mod recent;
pub mod rollup_store;
pub mod schema;
pub mod settings;
pub mod system;
