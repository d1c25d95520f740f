//! Rollups in DynamoDB (analytics table) and in memory.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | rollup row | `ROLL#<tenant>#<A#account or T>#<currency>#<hour or day>` | period start (RFC 3339) |
//! | movement marker | `MOV#<transfer id>` | `MOV` |
//!
//! A batch's movements are written as transactions of markers (`attribute_not_exists`)
//! plus the rows they add to, grouped so that each row is updated once per transaction
//! (`ADD`). A marker that exists means its movement was counted by an earlier delivery:
//! the transaction is refused as a whole, the counted movements are dropped, and the rest
//! is written again. Counting is therefore exact under redelivery, replay and reordering.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use fintx_domain::auth::TenantId;
use fintx_domain::ids::TransferId;
use fintx_domain::money::Currency;
use fintx_domain::ports::RollupStore;
use fintx_domain::rollup::{contributions, Granularity, Movement, RollupKey, Scope, Totals};
use fintx_domain::DomainError;

use crate::schema;

/// DynamoDB allows 100 items per transaction.
const TRANSACTION_ITEMS_MAX: usize = 100;
/// Markers outlive the stream's 24-hour retention, the longest a record can be redelivered.
const MARKER_RETENTION_SECONDS: i64 = 14 * 24 * 60 * 60;

/// Groups movements into chunks whose markers and distinct rows fit one transaction.
type Chunk<'a> = (Vec<&'a Movement>, BTreeMap<RollupKey, Totals>);

fn chunks(movements: &[Movement]) -> Result<Vec<Chunk<'_>>, DomainError> {
    let mut out: Vec<Chunk<'_>> = Vec::new();
    let mut current: Chunk<'_> = (Vec::new(), BTreeMap::new());
    let mut seen = HashSet::new();
    for m in movements {
        // The same movement twice in one batch counts once.
        if !seen.insert(m.transfer_id) {
            continue;
        }
        let rows = contributions(m);
        let new_rows = rows.iter().filter(|(k, _)| !current.1.contains_key(k)).count();
        if current.0.len() + 1 + current.1.len() + new_rows > TRANSACTION_ITEMS_MAX && !current.0.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.0.push(m);
        for (key, totals) in rows {
            current.1.entry(key).or_default().add(&totals)?;
        }
    }
    if !current.0.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn regroup(movements: &[&Movement]) -> Result<BTreeMap<RollupKey, Totals>, DomainError> {
    let mut rows: BTreeMap<RollupKey, Totals> = BTreeMap::new();
    for m in movements {
        for (key, totals) in contributions(m) {
            rows.entry(key).or_default().add(&totals)?;
        }
    }
    Ok(rows)
}

pub struct DynamoRollups {
    client: Client,
    table: String,
}

impl DynamoRollups {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn existing_markers(&self, movements: &[&Movement]) -> Result<HashSet<TransferId>, DomainError> {
        let keys = movements
            .iter()
            .map(|m| schema::movement_marker_key(&m.transfer_id))
            .collect();
        let mut found = HashSet::new();
        for item in crate::dynamo::batch_get_all(&self.client, &self.table, keys).await? {
            if let Some(id) = schema::movement_marker_id(&item) {
                found.insert(id);
            }
        }
        Ok(found)
    }

    /// Writes one chunk. `Ok(false)`: a marker existed and nothing was written.
    async fn write(&self, movements: &[&Movement], rows: &BTreeMap<RollupKey, Totals>) -> Result<bool, DomainError> {
        let now_s = crate::system::now().unix_ms() / 1000;
        let mut items = Vec::with_capacity(movements.len() + rows.len());
        for m in movements {
            let expires_at = now_s.saturating_add(MARKER_RETENTION_SECONDS);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(schema::movement_marker_item(&m.transfer_id, expires_at)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|_| DomainError::Unavailable)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for (key, t) in rows {
            let (expression, values) = schema::rollup_row_add(t);
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(schema::rollup_row_key(key)))
                .update_expression(expression)
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(|_| DomainError::Unavailable)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) => {
                let counted = error.as_service_error().is_some_and(|e| match e {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => c
                        .cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")),
                    _ => false,
                });
                if counted {
                    Ok(false)
                } else {
                    Err(crate::aws::failure("TransactWriteItems rollups", &error))
                }
            }
        }
    }
}

#[async_trait]
impl RollupStore for DynamoRollups {
    async fn apply(&self, movements: &[Movement]) -> Result<usize, DomainError> {
        let mut applied = 0usize;
        for (mut chunk, mut rows) in chunks(movements)? {
            // Bounded: each refusal removes at least one counted movement, or fails.
            while !chunk.is_empty() {
                if self.write(&chunk, &rows).await? {
                    applied = applied.saturating_add(chunk.len());
                    break;
                }
                let counted = self.existing_markers(&chunk).await?;
                let before = chunk.len();
                chunk.retain(|m| !counted.contains(&m.transfer_id));
                if chunk.len() == before {
                    // Refused, yet no marker explains it: never report these as counted.
                    tracing::error!("a rollup write was refused and no movement marker explains it");
                    return Err(DomainError::Unavailable);
                }
                rows = regroup(&chunk)?;
            }
        }
        Ok(applied)
    }

    async fn rows(
        &self,
        tenant: &TenantId,
        scope: &Scope,
        currency: Currency,
        granularity: Granularity,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, Totals)>, DomainError> {
        let mut out = Vec::new();
        let mut start = None;
        // At most 744 rows: a few pages.
        for _ in 0..20 {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
                .expression_attribute_values(
                    ":pk",
                    AttributeValue::S(schema::rollup_row_pk(tenant, scope, currency.code(), granularity)),
                )
                .expression_attribute_values(":first", AttributeValue::S(first.to_owned()))
                .expression_attribute_values(":last", AttributeValue::S(last.to_owned()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(crate::aws::failed("Query rollups"))?;
            for item in page.items.unwrap_or_default() {
                out.push(schema::rollup_row_from_item(&item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
        // More pages than a bounded range can have: refuse rather than answer short.
        tracing::error!("rollup rows span more pages than a range allows");
        Err(DomainError::Unavailable)
    }
}

/// Rollups in memory, with the same exactly-once contract.
#[derive(Default)]
pub struct MemoryRollups {
    state: Mutex<(HashSet<TransferId>, BTreeMap<RollupKey, Totals>)>,
}

impl MemoryRollups {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RollupStore for MemoryRollups {
    async fn apply(&self, movements: &[Movement]) -> Result<usize, DomainError> {
        let mut state = self.state.lock().map_err(|_| DomainError::Unavailable)?;
        let mut applied = 0usize;
        for m in movements {
            if state.0.insert(m.transfer_id) {
                for (key, totals) in contributions(m) {
                    state.1.entry(key).or_default().add(&totals)?;
                }
                applied = applied.saturating_add(1);
            }
        }
        Ok(applied)
    }

    async fn rows(
        &self,
        tenant: &TenantId,
        scope: &Scope,
        currency: Currency,
        granularity: Granularity,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, Totals)>, DomainError> {
        let state = self.state.lock().map_err(|_| DomainError::Unavailable)?;
        Ok(state
            .1
            .iter()
            .filter(|(k, _)| {
                &k.tenant == tenant
                    && &k.scope == scope
                    && k.currency_code == currency.code()
                    && k.granularity == granularity
                    && k.period.as_str() >= first
                    && k.period.as_str() <= last
            })
            .map(|(k, t)| (k.period.clone(), *t))
            .collect())
    }
}
