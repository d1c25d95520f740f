//! Every end-to-end flow of fintx in one test binary: one link of the AWS SDK instead of
//! one per file keeps the build small and quick. Each module is one area of the product.

mod accounts;
mod analytics;
mod architecture;
mod batches;
mod clocked;
mod encryption;
mod events;
mod expiry;
mod footprint;
mod history;
mod ledger;
mod ledger_faults;
mod lifecycle;
mod model;
mod no_secrets;
mod rollup_faults;
mod round_trips;
mod side_doors;
mod spread;
mod store_failures;
mod template;
mod template_guards;
mod unlimited;
mod webhook_properties;
mod webhooks;
