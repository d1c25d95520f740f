//! The DynamoDB ledger: one `TransactGetItems` to read what a request decides on, one
//! `TransactWriteItems` to commit its whole effect with every condition attached.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Get, Put, ReturnValuesOnConditionCheckFailure, TransactGetItem, TransactWriteItem, Update,
};
use fintx_domain::account::Metadata;
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::crypto::Sealed;
use fintx_domain::holder::MaskedHolder;
use fintx_domain::idempotency::IdempotencyRecord;
use fintx_domain::ids::{AccountId, EventId, PaymentId, TransferId};
use fintx_domain::money::{Amount, Currency};
use fintx_domain::payment::{ConnectorName, Payment, PaymentStatus};
use fintx_domain::ports::{CommitError, EventRecord, LedgerStore, LedgerWrite, Page, Reads, Rejection, Snapshot};
use fintx_domain::transfer::{AccountDelta, Transfer, TransferStatus};
use fintx_domain::webhook::Outcome;
use fintx_domain::DomainError;

use crate::dynamo::{account_from_item, account_item, batch_get_all, corrupt, n, s, DynamoStore, Item};

type Attributes = HashMap<String, AttributeValue>;

fn key(pk: String, sk: &str) -> Attributes {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn transfer_key(id: &TransferId) -> Attributes {
    key(format!("TR#{id}"), "TR")
}

fn payment_key(id: &PaymentId) -> Attributes {
    key(format!("PAY#{id}"), "PAY")
}

fn account_key(id: &AccountId) -> Attributes {
    key(format!("ACCT#{id}"), "ACCT")
}

fn metadata_value(metadata: &Metadata) -> AttributeValue {
    AttributeValue::M(
        metadata
            .pairs()
            .iter()
            .map(|(k, v)| (k.clone(), s(v.as_str())))
            .collect(),
    )
}

/// A transfer as stored in the ledger table (and so as its stream images carry it).
pub fn transfer_item(t: &Transfer) -> Attributes {
    let mut item = transfer_key(&t.id);
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_owned(), v);
    };
    put("entity", s("transfer"));
    put("id", s(t.id.to_string()));
    put("tenant_id", s(t.tenant.as_str()));
    put("debit_account_id", s(t.debit_account_id.to_string()));
    put("credit_account_id", s(t.credit_account_id.to_string()));
    put("amount", n(t.amount.value()));
    put("currency", s(t.currency.code()));
    put("status", s(t.status.as_str()));
    put("posted_amount", n(t.posted_amount.value()));
    put("reversed_amount", n(t.reversed_amount.value()));
    if let Some(r) = t.reverses {
        put("reverses", s(r.to_string()));
    }
    if let Some(p) = t.payment_id {
        put("payment_id", s(p.to_string()));
    }
    if t.through_clearing {
        put("through_clearing", AttributeValue::Bool(true));
    }
    if let Some(d) = &t.description {
        put("description", s(d.as_str()));
    }
    put("metadata", metadata_value(&t.metadata));
    put("created_at", s(t.created_at.to_string()));
    put("updated_at", s(t.updated_at.to_string()));
    if let Some(at) = t.posted_at {
        put("posted_at", s(at.to_string()));
    }
    put("version", AttributeValue::N(t.version.to_string()));
    item
}

fn amount(item: &Item<'_>, name: &str, currency: Currency) -> Result<Amount, DomainError> {
    Amount::from_decimal(item.decimal(name)?, currency).map_err(|_| corrupt(name))
}

fn timestamp(item: &Item<'_>, name: &str) -> Result<Timestamp, DomainError> {
    Timestamp::parse_rfc3339(item.s(name)?).ok_or_else(|| corrupt(name))
}

pub fn transfer_from_item(raw: &Attributes) -> Result<Transfer, DomainError> {
    let item = Item(raw);
    let currency = Currency::parse(item.s("currency")?).map_err(|_| corrupt("currency"))?;
    let account = |name: &str| AccountId::parse(item.s(name)?).ok_or_else(|| corrupt(name));
    Ok(Transfer {
        id: TransferId::parse(item.s("id")?).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(item.s("tenant_id")?).map_err(|_| corrupt("tenant_id"))?,
        debit_account_id: account("debit_account_id")?,
        credit_account_id: account("credit_account_id")?,
        amount: amount(&item, "amount", currency)?,
        currency,
        status: TransferStatus::parse(item.s("status")?).ok_or_else(|| corrupt("status"))?,
        posted_amount: amount(&item, "posted_amount", currency)?,
        reversed_amount: amount(&item, "reversed_amount", currency)?,
        reverses: item
            .opt_s("reverses")?
            .map(|r| TransferId::parse(r).ok_or_else(|| corrupt("reverses")))
            .transpose()?,
        payment_id: item
            .opt_s("payment_id")?
            .map(|p| PaymentId::parse(p).ok_or_else(|| corrupt("payment_id")))
            .transpose()?,
        through_clearing: matches!(raw.get("through_clearing"), Some(AttributeValue::Bool(true))),
        description: item.opt_s("description")?.map(str::to_owned),
        metadata: Metadata::parse(item.string_map("metadata")?).map_err(|_| corrupt("metadata"))?,
        created_at: timestamp(&item, "created_at")?,
        updated_at: timestamp(&item, "updated_at")?,
        posted_at: item
            .opt_s("posted_at")?
            .map(|t| Timestamp::parse_rfc3339(t).ok_or_else(|| corrupt("posted_at")))
            .transpose()?,
        version: item.u64("version")?,
    })
}

fn masked_value(mask: &MaskedHolder) -> AttributeValue {
    let mut map = HashMap::from([("name_initials".to_owned(), s(mask.name_initials.as_str()))]);
    if let Some(v) = &mask.account_number_last4 {
        map.insert("account_number_last4".to_owned(), s(v.as_str()));
    }
    if let Some(v) = &mask.iban_last4 {
        map.insert("iban_last4".to_owned(), s(v.as_str()));
    }
    AttributeValue::M(map)
}

pub(crate) fn masked_from(item: &Item<'_>, name: &str) -> Result<MaskedHolder, DomainError> {
    let mask = item.string_map(name)?;
    Ok(MaskedHolder {
        name_initials: mask.get("name_initials").cloned().ok_or_else(|| corrupt(name))?,
        account_number_last4: mask.get("account_number_last4").cloned(),
        iban_last4: mask.get("iban_last4").cloned(),
    })
}

pub(crate) fn payment_item(p: &Payment) -> Attributes {
    let mut item = payment_key(&p.id);
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_owned(), v);
    };
    put("entity", s("payment"));
    put("id", s(p.id.to_string()));
    put("tenant_id", s(p.tenant.as_str()));
    put("account_id", s(p.account_id.to_string()));
    put("transfer_id", s(p.transfer_id.to_string()));
    put("connector", s(p.connector.as_str()));
    put(
        "counterparty_sealed",
        AttributeValue::B(Blob::new(p.counterparty.as_bytes())),
    );
    put("counterparty_masked", masked_value(&p.counterparty_masked));
    put("amount", n(p.amount.value()));
    put("currency", s(p.currency.code()));
    if let Some(r) = &p.reference {
        put("reference", s(r.as_str()));
    }
    put("status", s(p.status.as_str()));
    put("created_at", s(p.created_at.to_string()));
    put("updated_at", s(p.updated_at.to_string()));
    put("version", AttributeValue::N(p.version.to_string()));
    item
}

pub(crate) fn payment_from_item(raw: &Attributes) -> Result<Payment, DomainError> {
    let item = Item(raw);
    let currency = Currency::parse(item.s("currency")?).map_err(|_| corrupt("currency"))?;
    Ok(Payment {
        id: PaymentId::parse(item.s("id")?).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(item.s("tenant_id")?).map_err(|_| corrupt("tenant_id"))?,
        account_id: AccountId::parse(item.s("account_id")?).ok_or_else(|| corrupt("account_id"))?,
        transfer_id: TransferId::parse(item.s("transfer_id")?).ok_or_else(|| corrupt("transfer_id"))?,
        connector: ConnectorName::parse(item.s("connector")?).ok_or_else(|| corrupt("connector"))?,
        counterparty: Sealed::from_bytes(
            item.opt_bytes("counterparty_sealed")?
                .ok_or_else(|| corrupt("counterparty_sealed"))?
                .to_vec(),
        ),
        counterparty_masked: masked_from(&item, "counterparty_masked")?,
        amount: amount(&item, "amount", currency)?,
        currency,
        reference: item.opt_s("reference")?.map(str::to_owned),
        status: PaymentStatus::parse(item.s("status")?).ok_or_else(|| corrupt("status"))?,
        created_at: timestamp(&item, "created_at")?,
        updated_at: timestamp(&item, "updated_at")?,
        version: item.u64("version")?,
    })
}

fn idempotency_item(r: &IdempotencyRecord) -> Attributes {
    HashMap::from([
        ("pk".to_owned(), s(r.scope_key.as_str())),
        ("fingerprint".to_owned(), s(r.fingerprint.as_str())),
        ("status".to_owned(), AttributeValue::N(r.status.to_string())),
        ("body".to_owned(), s(r.body.as_str())),
        (
            "created_at_ms".to_owned(),
            AttributeValue::N(r.created_at_ms.to_string()),
        ),
        ("expires_at".to_owned(), AttributeValue::N(r.expires_at.to_string())),
    ])
}

fn idempotency_from_item(raw: &Attributes) -> Result<IdempotencyRecord, DomainError> {
    let item = Item(raw);
    Ok(IdempotencyRecord {
        scope_key: item.s("pk")?.to_owned(),
        fingerprint: item.s("fingerprint")?.to_owned(),
        status: u16::try_from(item.u64("status")?).map_err(|_| corrupt("status"))?,
        body: item.s("body")?.to_owned(),
        created_at_ms: i64::try_from(item.u64("created_at_ms")?).map_err(|_| corrupt("created_at_ms"))?,
        expires_at: i64::try_from(item.u64("expires_at")?).map_err(|_| corrupt("expires_at"))?,
    })
}

fn event_key(key_text: &str) -> Attributes {
    key(format!("EVT#{key_text}"), "EVT")
}

fn event_listing_pk(tenant: Option<&TenantId>, outcome: Outcome) -> String {
    format!("EVENTS#{}#{}", tenant.map_or("-", TenantId::as_str), outcome.as_str())
}

/// How long archived events (and so their dedup keys) are kept: well past the 7 days
/// over which banks retry.
const EVENT_RETENTION_SECONDS: i64 = 90 * 24 * 60 * 60;

fn event_item(e: &EventRecord) -> Attributes {
    let mut item = event_key(&e.key);
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_owned(), v);
    };
    put("entity", s("webhook_event"));
    put("id", s(e.id.to_string()));
    put("connector", s(e.connector.as_str()));
    put("event_id", s(e.event_id.as_str()));
    put("event_type", s(e.event_type.as_str()));
    if let Some(t) = &e.tenant {
        put("tenant_id", s(t.as_str()));
    }
    put("outcome", s(e.outcome.as_str()));
    if let Some(code) = e.code {
        put("code", s(code));
    }
    put("raw_body_sealed", AttributeValue::B(Blob::new(e.raw_body.as_bytes())));
    put("received_at", s(e.received_at.to_string()));
    put("gsi1pk", s(event_listing_pk(e.tenant.as_ref(), e.outcome)));
    put("gsi1sk", s(e.id.to_string()));
    put(
        "expires_at",
        AttributeValue::N((e.received_at.unix_ms() / 1000 + EVENT_RETENTION_SECONDS).to_string()),
    );
    item
}

fn event_from_item(raw: &Attributes) -> Result<EventRecord, DomainError> {
    let item = Item(raw);
    let connector = ConnectorName::parse(item.s("connector")?).ok_or_else(|| corrupt("connector"))?;
    let event_id = item.s("event_id")?.to_owned();
    Ok(EventRecord {
        id: EventId::parse(item.s("id")?).ok_or_else(|| corrupt("id"))?,
        key: format!("{}#{event_id}", connector.as_str()),
        connector,
        event_id,
        event_type: item.s("event_type")?.to_owned(),
        tenant: item
            .opt_s("tenant_id")?
            .map(TenantId::parse)
            .transpose()
            .map_err(|_| corrupt("tenant_id"))?,
        outcome: Outcome::parse(item.s("outcome")?).ok_or_else(|| corrupt("outcome"))?,
        code: item.opt_s("code")?.and_then(code_name),
        raw_body: Sealed::from_bytes(
            item.opt_bytes("raw_body_sealed")?
                .ok_or_else(|| corrupt("raw_body_sealed"))?
                .to_vec(),
        ),
        received_at: timestamp(&item, "received_at")?,
    })
}

/// Stored codes map back to the static names of the error table.
fn code_name(text: &str) -> Option<&'static str> {
    fintx_domain::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .find(|c| *c == text)
}

fn get(table: &str, key: Attributes) -> Result<TransactGetItem, DomainError> {
    let get = Get::builder()
        .table_name(table)
        .set_key(Some(key))
        .build()
        .map_err(|_| DomainError::Unavailable)?;
    Ok(TransactGetItem::builder().get(get).build())
}

/// What each get of a read fills in the snapshot.
#[derive(Clone, Copy)]
enum Slot {
    Idempotency,
    Event,
    Account,
    Transfer,
    Payment,
}

/// What each item of a write is, to read DynamoDB's cancellation reasons back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Idempotency,
    Event,
    DepositReference,
    CoveredDebit,
    Other,
}

fn put(
    table: &str,
    item: Attributes,
    condition: &str,
    values: Option<Attributes>,
) -> Result<TransactWriteItem, DomainError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_values(values)
        .build()
        .map_err(|_| DomainError::Unavailable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

const NEW: &str = "attribute_not_exists(pk)";

/// A record that must be new, returning the record it found when it is not.
fn recorded_put(table: &str, item: Attributes) -> Result<TransactWriteItem, DomainError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(NEW)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|_| DomainError::Unavailable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Balance attributes a delta adds to; every other attribute of an account is set once.
const BALANCE_ATTRIBUTES: [&str; 5] = ["posted", "pending_debits", "pending_credits", "spendable", "version"];

/// One account's balance change, with the conditions that stand in for a read: the
/// account exists (or the delta opens it), is what the write assumed (tenant, currency,
/// kind), and still covers a debit that needs cover.
fn delta_update(ledger: &str, delta: &AccountDelta) -> Result<TransactWriteItem, DomainError> {
    let headroom = delta.headroom_change()?;
    let mut values = HashMap::from([
        (":p".to_owned(), n(delta.posted)),
        (":pd".to_owned(), n(delta.pending_debits)),
        (":pc".to_owned(), n(delta.pending_credits)),
        (":h".to_owned(), n(headroom)),
        (":one".to_owned(), AttributeValue::N("1".into())),
    ]);
    let mut names = HashMap::new();
    let mut condition = match &delta.expect {
        None => "attribute_exists(pk)".to_owned(),
        Some(expect) => {
            names.insert("#tenant".to_owned(), "tenant_id".to_owned());
            names.insert("#currency".to_owned(), "currency".to_owned());
            names.insert("#kind".to_owned(), "kind".to_owned());
            values.insert(":tenant".to_owned(), s(expect.tenant.as_str()));
            values.insert(":currency".to_owned(), s(expect.currency.code()));
            values.insert(":kind".to_owned(), s(expect.kind.as_str()));
            let facts = "#tenant = :tenant AND #currency = :currency AND #kind = :kind";
            if delta.open.is_some() {
                format!("(attribute_not_exists(pk) OR ({facts}))")
            } else {
                format!("attribute_exists(pk) AND {facts}")
            }
        }
    };
    if let Some(cover) = delta.cover {
        condition.push_str(" AND spendable >= :cover");
        values.insert(":cover".to_owned(), n(cover.value()));
    }
    let mut expression = String::new();
    if let Some(opening) = &delta.open {
        // The account as its first movement opens it; later movements keep what is set.
        let mut sets = Vec::new();
        let mut item: Vec<(String, AttributeValue)> = account_item(opening)?.into_iter().collect();
        item.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (name, value)) in item.into_iter().enumerate() {
            if name == "pk" || name == "sk" || BALANCE_ATTRIBUTES.contains(&name.as_str()) {
                continue;
            }
            sets.push(format!("#o{i} = if_not_exists(#o{i}, :o{i})"));
            names.insert(format!("#o{i}"), name);
            values.insert(format!(":o{i}"), value);
        }
        expression = format!("SET {} ", sets.join(", "));
    }
    expression.push_str("ADD posted :p, pending_debits :pd, pending_credits :pc, spendable :h, version :one");
    let update = Update::builder()
        .table_name(ledger)
        .set_key(Some(account_key(&delta.account_id)))
        .update_expression(expression)
        .condition_expression(condition)
        .set_expression_attribute_names((!names.is_empty()).then_some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|_| DomainError::Unavailable)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

#[async_trait]
impl LedgerStore for DynamoStore {
    async fn read(&self, tenant: &TenantId, reads: &Reads) -> Result<Snapshot, DomainError> {
        let tables = self.tables();
        // Each get is listed with what its answer fills, so requests and answers cannot
        // fall out of step.
        let mut slots: Vec<(Slot, TransactGetItem)> = Vec::new();
        if let Some(scope) = &reads.idempotency {
            let key = HashMap::from([("pk".to_owned(), s(scope.as_str()))]);
            slots.push((Slot::Idempotency, get(&tables.idempotency, key)?));
        }
        if let Some(event) = &reads.event {
            slots.push((Slot::Event, get(&tables.webhook_events, event_key(event))?));
        }
        for id in &reads.accounts {
            slots.push((Slot::Account, get(&tables.ledger, account_key(id))?));
        }
        if let Some(id) = &reads.transfer {
            slots.push((Slot::Transfer, get(&tables.ledger, transfer_key(id))?));
        }
        if let Some(id) = &reads.payment {
            slots.push((Slot::Payment, get(&tables.ledger, payment_key(id))?));
        }
        if slots.is_empty() {
            return Ok(Snapshot::default());
        }
        let (kinds, gets): (Vec<Slot>, Vec<TransactGetItem>) = slots.into_iter().unzip();
        let output = self
            .client()
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send()
            .await
            .map_err(|e| {
                tracing::error!(error = %DisplayErrorContext(&e), "TransactGetItems failed");
                DomainError::Unavailable
            })?;
        let responses = output.responses.unwrap_or_default();
        if responses.len() != kinds.len() {
            tracing::error!(
                asked = kinds.len(),
                answered = responses.len(),
                "TransactGetItems answered a different count"
            );
            return Err(DomainError::Unavailable);
        }
        let visible = |owner: &TenantId| reads.any_tenant || owner == tenant;
        let mut snapshot = Snapshot::default();
        for (kind, response) in kinds.into_iter().zip(responses) {
            let item = response.item;
            match kind {
                Slot::Idempotency => snapshot.idempotency = item.map(|i| idempotency_from_item(&i)).transpose()?,
                Slot::Event => snapshot.event = item.map(|i| event_from_item(&i)).transpose()?,
                Slot::Account => {
                    let account = item.map(|i| account_from_item(&i)).transpose()?;
                    snapshot.accounts.push(account.filter(|a| visible(&a.tenant)));
                }
                Slot::Transfer => {
                    let transfer = item.map(|i| transfer_from_item(&i)).transpose()?;
                    snapshot.transfer = transfer.filter(|t| visible(&t.tenant));
                }
                Slot::Payment => {
                    let payment = item.map(|i| payment_from_item(&i)).transpose()?;
                    snapshot.payment = payment.filter(|p| visible(&p.tenant));
                }
            }
        }
        Ok(snapshot)
    }

    async fn commit(&self, write: &LedgerWrite) -> Result<(), CommitError> {
        if let Err(error) = write.check_balanced() {
            tracing::error!(%error, "refusing a ledger write that does not balance");
            return Err(CommitError::Failed(error));
        }
        let ledger = self.tables().ledger.as_str();
        let mut items = Vec::new();
        let mut roles = Vec::new();
        // The records that make a write happen once return what they found when they
        // refuse it, so a replay needs no read (SPEC §10).
        if let Some(record) = &write.idempotency {
            items.push(recorded_put(&self.tables().idempotency, idempotency_item(record))?);
            roles.push(Role::Idempotency);
        }
        if let Some(event) = &write.event {
            items.push(recorded_put(&self.tables().webhook_events, event_item(event))?);
            roles.push(Role::Event);
        }
        if let Some(reference) = &write.deposit_reference {
            let mut item = key(format!("DEP#{reference}"), "DEP");
            item.insert("entity".to_owned(), s("deposit_reference"));
            items.push(put(&self.tables().webhook_events, item, NEW, None)?);
            roles.push(Role::DepositReference);
        }
        for account in &write.new_accounts {
            items.push(put(ledger, account_item(account)?, NEW, None)?);
            roles.push(Role::Other);
        }
        for delta in &write.deltas {
            items.push(delta_update(ledger, delta)?);
            roles.push(if delta.cover.is_some() {
                Role::CoveredDebit
            } else {
                Role::Other
            });
        }
        for transfer in &write.new_transfers {
            items.push(put(ledger, transfer_item(transfer), NEW, None)?);
            roles.push(Role::Other);
            // One listing entry per side, so each account's transfers are one Query away.
            for account in [transfer.debit_account_id, transfer.credit_account_id] {
                let mut entry = key(format!("ACCT#{account}"), &format!("TR#{}", transfer.id));
                entry.insert("entity".to_owned(), s("account_transfer"));
                entry.insert("transfer_id".to_owned(), s(transfer.id.to_string()));
                entry.insert("tenant_id".to_owned(), s(transfer.tenant.as_str()));
                items.push(put(ledger, entry, NEW, None)?);
                roles.push(Role::Other);
            }
        }
        for (transfer, expected) in &write.transfer_updates {
            let values = HashMap::from([(":v".to_owned(), AttributeValue::N(expected.to_string()))]);
            items.push(put(ledger, transfer_item(transfer), "version = :v", Some(values))?);
            roles.push(Role::Other);
        }
        for payment in &write.new_payments {
            items.push(put(ledger, payment_item(payment), NEW, None)?);
            roles.push(Role::Other);
        }
        for (payment, expected) in &write.payment_updates {
            let values = HashMap::from([(":v".to_owned(), AttributeValue::N(expected.to_string()))]);
            items.push(put(ledger, payment_item(payment), "version = :v", Some(values))?);
            roles.push(Role::Other);
        }
        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let reasons = match error.as_service_error() {
            Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e)) => {
                e.cancellation_reasons().to_vec()
            }
            Some(e) if e.meta().code() == Some("TransactionConflictException") => {
                return Err(CommitError::Rejected(Rejection::Contention))
            }
            _ => {
                tracing::error!(error = %DisplayErrorContext(&error), "TransactWriteItems failed");
                return Err(CommitError::Failed(DomainError::Unavailable));
            }
        };
        // A refusing record that returned its image answers the request as it stands.
        for (reason, role) in reasons.iter().zip(&roles) {
            let (Some("ConditionalCheckFailed"), Some(image)) = (reason.code(), reason.item()) else {
                continue;
            };
            let snapshot = match role {
                Role::Idempotency => Snapshot {
                    idempotency: Some(idempotency_from_item(image)?),
                    ..Snapshot::default()
                },
                Role::Event => Snapshot {
                    event: Some(event_from_item(image)?),
                    ..Snapshot::default()
                },
                _ => continue,
            };
            return Err(CommitError::Recorded(Box::new(snapshot)));
        }
        let mut rejection: Option<Rejection> = None;
        let rank = |r: Rejection| match r {
            Rejection::IdempotencyRecorded | Rejection::EventRecorded => 0,
            Rejection::IdempotencyInFlight => 1,
            Rejection::Contention => 2,
            Rejection::Stale => 3,
            Rejection::InsufficientFunds => 4,
        };
        for (reason, role) in reasons.iter().zip(&roles) {
            let found = match (reason.code(), role) {
                (Some("ConditionalCheckFailed"), Role::Idempotency) => Rejection::IdempotencyRecorded,
                (Some("ConditionalCheckFailed"), Role::Event | Role::DepositReference) => Rejection::EventRecorded,
                (Some("ConditionalCheckFailed"), Role::CoveredDebit) => Rejection::InsufficientFunds,
                (Some("ConditionalCheckFailed"), Role::Other) => Rejection::Stale,
                (Some("TransactionConflict"), Role::Idempotency) => Rejection::IdempotencyInFlight,
                (Some("TransactionConflict"), _) => Rejection::Contention,
                _ => continue,
            };
            if rejection.is_none_or(|r| rank(found) < rank(r)) {
                rejection = Some(found);
            }
        }
        match rejection {
            Some(r) => Err(CommitError::Rejected(r)),
            None => {
                tracing::error!(error = %DisplayErrorContext(&error), "transaction cancelled without a reason");
                Err(CommitError::Failed(DomainError::Unavailable))
            }
        }
    }

    async fn list_events(
        &self,
        tenant: Option<&TenantId>,
        outcome: Outcome,
        limit: usize,
        before: Option<String>,
    ) -> Result<Page<EventRecord, String>, DomainError> {
        let mut query = self
            .client()
            .query()
            .table_name(&self.tables().webhook_events)
            .index_name("gsi1")
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .expression_attribute_values(":pk", s(event_listing_pk(tenant, outcome)));
        query = match before {
            Some(b) => query
                .key_condition_expression("gsi1pk = :pk AND gsi1sk < :before")
                .expression_attribute_values(":before", s(b)),
            None => query.key_condition_expression("gsi1pk = :pk"),
        };
        let output = query.send().await.map_err(|e| {
            tracing::error!(error = %DisplayErrorContext(&e), "Query webhook events failed");
            DomainError::Unavailable
        })?;
        let items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(event_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
    }

    async fn list_account_transfers(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        before: Option<TransferId>,
    ) -> Result<Page<Transfer, TransferId>, DomainError> {
        let ledger = &self.tables().ledger;
        let upper = match before {
            Some(b) => format!("TR#{b}"),
            // Every transfer id sorts below this bound.
            None => "TR#~".to_owned(),
        };
        let output = self
            .client()
            .query()
            .table_name(ledger)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(format!("ACCT#{account}")))
            .expression_attribute_values(":lo", s("TR#"))
            .expression_attribute_values(":hi", s(upper.clone()))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit + 2).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| {
                tracing::error!(error = %DisplayErrorContext(&e), "Query account transfers failed");
                DomainError::Unavailable
            })?;
        let mut ids = Vec::new();
        for item in output.items.unwrap_or_default() {
            let entry = Item(&item);
            if entry.s("sk")? == upper || entry.s("tenant_id")? != tenant.as_str() {
                continue;
            }
            ids.push(TransferId::parse(entry.s("transfer_id")?).ok_or_else(|| corrupt("transfer_id"))?);
        }
        let ids = Page::from_overfetch(ids, limit, |id| *id);
        let transfers = self.batch_get_transfers(&ids.items).await?;
        Ok(Page {
            items: transfers,
            next: ids.next,
        })
    }
}

impl DynamoStore {
    async fn batch_get_transfers(&self, ids: &[TransferId]) -> Result<Vec<Transfer>, DomainError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ids.iter().map(transfer_key).collect();
        let mut found: HashMap<TransferId, Transfer> = HashMap::new();
        for item in batch_get_all(self.client(), &self.tables().ledger, keys).await? {
            let t = transfer_from_item(&item)?;
            found.insert(t.id, t);
        }
        ids.iter()
            .map(|id| found.remove(id).ok_or(DomainError::Unavailable))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_survive_the_item_mapping_exactly() {
        let usd = Currency::parse("USD").unwrap();
        let t = Transfer {
            id: TransferId::from_ulid(ulid::Ulid::from_parts(1, 2)),
            tenant: TenantId::parse("t1").unwrap(),
            debit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 3)),
            credit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 4)),
            amount: Amount::parse("12.34", usd).unwrap(),
            currency: usd,
            status: TransferStatus::Posted,
            posted_amount: Amount::parse("10", usd).unwrap(),
            reversed_amount: Amount::parse("2.5", usd).unwrap(),
            reverses: Some(TransferId::from_ulid(ulid::Ulid::from_parts(1, 5))),
            payment_id: Some(PaymentId::from_ulid(ulid::Ulid::from_parts(1, 6))),
            through_clearing: true,
            description: Some("x".into()),
            metadata: Metadata::default(),
            created_at: Timestamp::from_unix_ms(5).unwrap(),
            updated_at: Timestamp::from_unix_ms(6).unwrap(),
            posted_at: Some(Timestamp::from_unix_ms(6).unwrap()),
            version: 3,
        };
        assert_eq!(transfer_from_item(&transfer_item(&t)).unwrap(), t);
    }
}
