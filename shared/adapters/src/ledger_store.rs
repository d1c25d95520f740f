//! The DynamoDB ledger: one `TransactGetItems` to read what a request decides on, one
//! `TransactWriteItems` to commit its whole effect with every condition attached.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Get, Put, ReturnValuesOnConditionCheckFailure, TransactGetItem, TransactWriteItem,
    Update,
};
use fintx_domain::account::{Account, AccountKind, AccountStatus, UNLIMITED};
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::ids::{AccountId, TransferId};
use fintx_domain::ports::{CommitError, EventRecord, LedgerStore, LedgerWrite, Page, Reads, Rejection, Snapshot};
use fintx_domain::statement::{Entry, EntryRange, Position};
use fintx_domain::transfer::{
    balance_slot, AccountDelta, Expect, HoldChange, Requires, Transfer, TransferStatus, BALANCE_SLOTS_MAX,
};
use fintx_domain::webhook::Outcome;
use fintx_domain::DomainError;
use futures_util::future::try_join_all;
use rust_decimal::Decimal;

use crate::aws::{failed, failure};
use crate::dynamo::{batch_get_all, DynamoStore};
use crate::schema::{
    account_from_item, account_item, account_key, account_pk, corrupt, customer_slot_item, deposit_reference_item,
    deposit_reference_key, entry_from_item, entry_item, entry_sort_bounds, event_from_item, event_item, event_key,
    event_listing_pk, held_entry_value, idempotency_from_item, idempotency_item, idempotency_key, limit_value, n,
    payment_from_item, payment_item, payment_key, s, slot_key, slot_pk, transfer_from_item, transfer_item,
    transfer_key, Attributes, Item, EXPIRY_INDEX, EXPIRY_PARTITIONS, EXPIRY_PK, EXPIRY_SK, OPENED_ENTRY,
    RESOLVED_ENTRY,
};

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

/// What a balance change `ADD`s (`ADD posted :p, pending_debits :pd, pending_credits
/// :pc, spendable :h, version :one`).
fn added_values(delta: &AccountDelta) -> Result<Attributes, DomainError> {
    Ok(HashMap::from([
        (":p".to_owned(), n(delta.posted)),
        (":pd".to_owned(), n(delta.pending_debits)),
        (":pc".to_owned(), n(delta.pending_credits)),
        (":h".to_owned(), n(delta.headroom_change()?)),
        (":one".to_owned(), AttributeValue::N("1".into())),
    ]))
}

/// The facts a write assumes of an account (tenant, currency, kind), named into `names`
/// and `values` for a condition; returns the condition that they hold.
fn expect_facts(expect: &Expect, names: &mut HashMap<String, String>, values: &mut Attributes) -> &'static str {
    names.insert("#tenant".to_owned(), "tenant_id".to_owned());
    names.insert("#currency".to_owned(), "currency".to_owned());
    names.insert("#kind".to_owned(), "kind".to_owned());
    values.insert(":tenant".to_owned(), s(expect.tenant.as_str()));
    values.insert(":currency".to_owned(), s(expect.currency.code()));
    values.insert(":kind".to_owned(), s(expect.kind.as_str()));
    if expect.kind != AccountKind::Customer {
        return "#tenant = :tenant AND #currency = :currency AND #kind = :kind";
    }
    // A customer account's limit decides where its balance lives and whether a debit
    // needs cover: a write planned on the other belief is refused.
    names.insert("#limit".to_owned(), "overdraft_limit".to_owned());
    if expect.unlimited {
        values.insert(":unlimited".to_owned(), s(UNLIMITED));
        "#tenant = :tenant AND #currency = :currency AND #kind = :kind AND #limit = :unlimited"
    } else {
        values.insert(":number".to_owned(), s("N"));
        "#tenant = :tenant AND #currency = :currency AND #kind = :kind AND attribute_type(#limit, :number)"
    }
}

/// The condition that an account (or a slot's copy of its status) allows a movement.
fn status_check(requires: Requires, names: &mut HashMap<String, String>, values: &mut Attributes) -> &'static str {
    names.insert("#status".to_owned(), "status".to_owned());
    match requires {
        Requires::Open => {
            values.insert(":open".to_owned(), s(AccountStatus::Open.as_str()));
            "#status = :open"
        }
        Requires::NotClosed => {
            values.insert(":closed".to_owned(), s(AccountStatus::Closed.as_str()));
            "#status <> :closed"
        }
    }
}

/// One account's balance change, with the conditions that stand in for a read: the
/// account exists (or the delta opens it), is what the write assumed (tenant, currency,
/// kind), and still covers a debit that needs cover.
fn delta_update(ledger: &str, delta: &AccountDelta) -> Result<TransactWriteItem, DomainError> {
    let mut values = added_values(delta)?;
    let mut names = HashMap::new();
    let mut condition = match &delta.expect {
        None => "attribute_exists(pk)".to_owned(),
        Some(expect) => {
            let facts = expect_facts(expect, &mut names, &mut values);
            if delta.open.is_some() {
                format!("(attribute_not_exists(pk) OR ({facts}))")
            } else {
                format!("attribute_exists(pk) AND {facts}")
            }
        }
    };
    if let Some(requires) = delta.requires {
        // A lifecycle change that lands first refuses the movement (SPEC §6).
        let check = status_check(requires, &mut names, &mut values);
        condition = if delta.open.is_some() {
            // An account this movement opens starts open.
            format!("{condition} AND (attribute_not_exists(pk) OR {check})")
        } else {
            format!("{condition} AND {check}")
        };
    }
    if let Some(cover) = delta.cover {
        condition.push_str(" AND spendable >= :cover");
        values.insert(":cover".to_owned(), n(cover.value()));
    }
    let mut sets = Vec::new();
    if let Some(opening) = &delta.open {
        // The account as its first movement opens it; later movements keep what is set.
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
    }
    // Expiring holds live in the account's `holds` map, keyed by transfer id.
    let mut removes = Vec::new();
    for (i, change) in delta.holds.iter().enumerate() {
        match change {
            HoldChange::Add(entry) => {
                sets.push(format!("holds.#h{i} = :h{i}"));
                names.insert(format!("#h{i}"), entry.transfer_id.to_string());
                values.insert(format!(":h{i}"), held_entry_value(entry));
            }
            HoldChange::Remove(id) => {
                removes.push(format!("holds.#h{i}"));
                names.insert(format!("#h{i}"), id.to_string());
            }
        }
    }
    let mut expression = String::new();
    if !sets.is_empty() {
        expression = format!("SET {} ", sets.join(", "));
    }
    expression.push_str("ADD posted :p, pending_debits :pd, pending_credits :pc, spendable :h, version :one");
    if !removes.is_empty() {
        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
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

/// The change of a spread account, applied to one of its balance slots: no read, no
/// version, no lower bound (SPEC §10). A slot is created by the first movement that picks
/// it, with the account's facts when the write knows them, and must then agree with them.
fn slot_update(ledger: &str, delta: &AccountDelta, slot: u16) -> Result<TransactWriteItem, DomainError> {
    if delta.cover.is_some() || !delta.holds.is_empty() {
        // Only accounts without a lower bound spread, and expiring holds stay on the
        // account's own item.
        tracing::error!("a spread account's change carries a condition it cannot have");
        return Err(DomainError::Unavailable);
    }
    let mut values = added_values(delta)?;
    values.insert(":account".to_owned(), s(delta.account_id.to_string()));
    values.insert(":entity".to_owned(), s("balance_slot"));
    let mut names = HashMap::from([("#entity".to_owned(), "entity".to_owned())]);
    let mut sets = vec![
        "#entity = if_not_exists(#entity, :entity)".to_owned(),
        "account_id = if_not_exists(account_id, :account)".to_owned(),
    ];
    let mut condition = None;
    let customer = delta.requires.is_some() || delta.expect.as_ref().is_some_and(|e| e.kind == AccountKind::Customer);
    if customer {
        // An unlimited customer account (the only spread kind with a lifecycle): its
        // slots exist from the moment it became unlimited and carry its facts, status
        // and limit, changed with them, so the slot alone decides (SPEC §6, §10).
        let mut checks = vec!["attribute_exists(pk)"];
        if let Some(requires) = delta.requires {
            checks.push(status_check(requires, &mut names, &mut values));
        }
        checks.push(match &delta.expect {
            // A customer's expected facts include its limit.
            Some(expect) => expect_facts(expect, &mut names, &mut values),
            None => {
                names.insert("#limit".to_owned(), "overdraft_limit".to_owned());
                values.insert(":unlimited".to_owned(), s(UNLIMITED));
                "#limit = :unlimited"
            }
        });
        condition = Some(checks.join(" AND "));
    } else if let Some(expect) = &delta.expect {
        let facts = expect_facts(expect, &mut names, &mut values);
        for (name, value) in [("#tenant", ":tenant"), ("#currency", ":currency"), ("#kind", ":kind")] {
            sets.push(format!("{name} = if_not_exists({name}, {value})"));
        }
        condition = Some(format!("attribute_not_exists(pk) OR ({facts})"));
    }
    let update = Update::builder()
        .table_name(ledger)
        .set_key(Some(slot_key(&delta.account_id, slot)))
        .update_expression(format!(
            "SET {} ADD posted :p, pending_debits :pd, pending_credits :pc, spendable :h, version :one",
            sets.join(", ")
        ))
        .set_condition_expression(condition)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|_| DomainError::Unavailable)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The slots of an account written whole (SPEC §6 lifecycle, limit): each slot read takes
/// the account's new status and limit, and an unlimited account gets every slot it lacks
/// (a new one all 16) so that movements find them. `gather`: each slot read is also
/// emptied into the account's own item (which the caller writes with the sums) on
/// condition that its version did not move. Otherwise the slots keep their figures, with
/// no condition on them (a movement in flight commits before or after, never across).
fn written_slots(ledger: &str, account: &Account, gather: bool) -> Result<Vec<TransactWriteItem>, DomainError> {
    let read = account.parts.as_ref().map_or(&[][..], |p| p.slots.as_slice());
    let unlimited = account.kind == AccountKind::Customer && account.overdraft_limit.is_unlimited();
    let mut items = Vec::new();
    for slot in 0..BALANCE_SLOTS_MAX {
        let Some(part) = read.iter().find(|p| p.slot == slot) else {
            if unlimited {
                items.push(put(ledger, customer_slot_item(account, slot), NEW, None)?);
            }
            continue;
        };
        let mut values = HashMap::from([
            (":status".to_owned(), s(account.status.as_str())),
            (":limit".to_owned(), limit_value(account.overdraft_limit)),
        ]);
        let names = HashMap::from([
            ("#status".to_owned(), "status".to_owned()),
            ("#limit".to_owned(), "overdraft_limit".to_owned()),
        ]);
        let (expression, condition) = if gather {
            values.insert(":v".to_owned(), AttributeValue::N(part.version.to_string()));
            values.insert(":zero".to_owned(), n(Decimal::ZERO));
            values.insert(":one".to_owned(), AttributeValue::N("1".to_owned()));
            (
                "SET posted = :zero, pending_debits = :zero, pending_credits = :zero, spendable = :zero, \
                 #status = :status, #limit = :limit ADD version :one",
                "version = :v",
            )
        } else {
            ("SET #status = :status, #limit = :limit", "attribute_exists(pk)")
        };
        let update = Update::builder()
            .table_name(ledger)
            .set_key(Some(slot_key(&account.id, slot)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|_| DomainError::Unavailable)?;
        items.push(TransactWriteItem::builder().update(update).build());
    }
    Ok(items)
}

/// A spread account's own item, created as its first movement opens it (its balances
/// stay in the slots): every attribute set only where absent, on condition that an
/// existing item is the same account.
fn open_account(ledger: &str, opening: &Account) -> Result<TransactWriteItem, DomainError> {
    let mut item: Vec<(String, AttributeValue)> = account_item(opening)?.into_iter().collect();
    item.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let facts = expect_facts(&Expect::of(opening), &mut names, &mut values);
    let mut sets = Vec::new();
    for (i, (name, value)) in item.into_iter().enumerate() {
        if name == "pk" || name == "sk" {
            continue;
        }
        sets.push(format!("#o{i} = if_not_exists(#o{i}, :o{i})"));
        names.insert(format!("#o{i}"), name);
        values.insert(format!(":o{i}"), value);
    }
    let update = Update::builder()
        .table_name(ledger)
        .set_key(Some(account_key(&opening.id)))
        .update_expression(format!("SET {}", sets.join(", ")))
        .condition_expression(format!("attribute_not_exists(pk) OR ({facts})"))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|_| DomainError::Unavailable)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// One item of a ledger write's `TransactWriteItems`, with what it is (to read
/// cancellation reasons back).
pub struct WriteItem {
    pub item: TransactWriteItem,
    role: Role,
}

impl DynamoStore {
    /// The items of the one `TransactWriteItems` that commits `write`, every condition
    /// attached (the capacity model in the benchmarks reads them too), and the spread
    /// accounts whose own item it makes sure exists.
    pub fn write_items(&self, write: &LedgerWrite) -> Result<(Vec<WriteItem>, Vec<AccountId>), DomainError> {
        let ledger = self.tables().ledger.as_str();
        let mut items = Vec::new();
        let mut push = |item: TransactWriteItem, role: Role| items.push(WriteItem { item, role });
        // The records that make a write happen once return what they found when they
        // refuse it, so a replay needs no read (SPEC §10).
        if let Some(record) = &write.idempotency {
            push(
                recorded_put(&self.tables().idempotency, idempotency_item(record))?,
                Role::Idempotency,
            );
        }
        if let Some(event) = &write.event {
            push(
                recorded_put(&self.tables().webhook_events, event_item(event))?,
                Role::Event,
            );
        }
        if let Some(reference) = &write.deposit_reference {
            push(
                put(
                    &self.tables().webhook_events,
                    deposit_reference_item(reference),
                    NEW,
                    None,
                )?,
                Role::DepositReference,
            );
        }
        if let Some(reference) = &write.reference_unapplied {
            let check = ConditionCheck::builder()
                .table_name(&self.tables().webhook_events)
                .set_key(Some(deposit_reference_key(reference)))
                .condition_expression(NEW)
                .build()
                .map_err(|_| DomainError::Unavailable)?;
            push(
                TransactWriteItem::builder().condition_check(check).build(),
                Role::DepositReference,
            );
        }
        for account in &write.new_accounts {
            push(put(ledger, account_item(account)?, NEW, None)?, Role::Other);
            for slot in written_slots(ledger, account, true)? {
                push(slot, Role::Other);
            }
        }
        for update in &write.account_updates {
            let (account, expected) = (&update.account, &update.version);
            if let (Some(own), Some(parts)) = (update.keeping_slots()?, account.parts.as_deref()) {
                // Its own item on its own version, its slots taking the new status and
                // limit whatever their figures.
                let values = HashMap::from([(":v".to_owned(), AttributeValue::N(parts.own_version.to_string()))]);
                push(
                    put(ledger, account_item(&own)?, "version = :v", Some(values))?,
                    Role::Other,
                );
                for slot in written_slots(ledger, account, false)? {
                    push(slot, Role::Other);
                }
                continue;
            }
            // The version moves with every balance change, so the whole account as read,
            // with its new settings, replaces the stored one only if nothing moved since.
            // A spread account's slots are gathered into it, each on the same condition.
            let own = account.parts.as_ref().map_or(*expected, |p| p.own_version);
            let values = HashMap::from([(":v".to_owned(), AttributeValue::N(own.to_string()))]);
            push(
                put(ledger, account_item(account)?, "version = :v", Some(values))?,
                Role::Other,
            );
            for slot in written_slots(ledger, account, true)? {
                push(slot, Role::Other);
            }
        }
        // Spread accounts move one balance slot, the same one for every spread account
        // of this write, chosen by its transfer's random bits.
        let slot = write
            .slot_transfer()
            .map_or(0, |t| balance_slot(t, self.balance_slots()));
        let mut spread: Vec<AccountId> = Vec::new();
        let mut opening = Vec::new();
        for delta in &write.deltas {
            if delta.spread {
                spread.push(delta.account_id);
                push(slot_update(ledger, delta, slot)?, Role::Other);
                // Its own item is made sure of until this environment has seen it stored:
                // after that, a movement touches only its slot.
                if let Some(account) = delta.open.as_deref().filter(|a| !self.is_opened(&a.id)) {
                    push(open_account(ledger, account)?, Role::Other);
                    opening.push(account.id);
                }
                continue;
            }
            let role = if delta.cover.is_some() {
                Role::CoveredDebit
            } else {
                Role::Other
            };
            push(delta_update(ledger, delta)?, role);
        }
        let slot_of = |account: &AccountId| spread.contains(account).then_some(slot);
        for transfer in &write.new_transfers {
            push(put(ledger, transfer_item(transfer), NEW, None)?, Role::Other);
            // One entry per side: each account's transfers and history are one Query away
            // (a spread account's in the partition of the slot its change went to).
            for entry in Entry::opened(transfer) {
                let item = entry_item(&entry, &transfer.tenant, slot_of(&entry.account_id));
                push(put(ledger, item, NEW, None)?, Role::Other);
            }
        }
        if !write.entries.is_empty() {
            let tenant = entry_tenant(write).ok_or(DomainError::Unavailable)?;
            for entry in &write.entries {
                let item = entry_item(entry, tenant, slot_of(&entry.account_id));
                push(put(ledger, item, NEW, None)?, Role::Other);
            }
        }
        for (transfer, expected) in &write.transfer_updates {
            let values = HashMap::from([(":v".to_owned(), AttributeValue::N(expected.to_string()))]);
            push(
                put(ledger, transfer_item(transfer), "version = :v", Some(values))?,
                Role::Other,
            );
        }
        for (id, at) in &write.expirations {
            // A hold released by its accounts' entries: still pending, it becomes expired
            // and leaves the expiry index.
            let update = Update::builder()
                .table_name(ledger)
                .set_key(Some(transfer_key(id)))
                .update_expression(format!(
                    "SET #status = :expired, updated_at = :at ADD version :one REMOVE {EXPIRY_PK}, {EXPIRY_SK}"
                ))
                .condition_expression("#status = :pending")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":expired", s(TransferStatus::Expired.as_str()))
                .expression_attribute_values(":pending", s(TransferStatus::Pending.as_str()))
                .expression_attribute_values(":at", s(at.to_string()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .build()
                .map_err(|_| DomainError::Unavailable)?;
            push(TransactWriteItem::builder().update(update).build(), Role::Other);
        }
        for payment in &write.new_payments {
            push(put(ledger, payment_item(payment), NEW, None)?, Role::Other);
        }
        for (payment, expected) in &write.payment_updates {
            let values = HashMap::from([(":v".to_owned(), AttributeValue::N(expected.to_string()))]);
            push(
                put(ledger, payment_item(payment), "version = :v", Some(values))?,
                Role::Other,
            );
        }
        Ok((items, opening))
    }
}

#[async_trait]
impl LedgerStore for DynamoStore {
    async fn read(&self, tenant: &TenantId, reads: &Reads) -> Result<Snapshot, DomainError> {
        let tables = self.tables();
        // Each get is listed with what its answer fills, so requests and answers cannot
        // fall out of step.
        let mut slots: Vec<(Slot, TransactGetItem)> = Vec::new();
        if let Some(scope) = &reads.idempotency {
            slots.push((Slot::Idempotency, get(&tables.idempotency, idempotency_key(scope))?));
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
            .map_err(failed("TransactGetItems"))?;
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
                    let account = match account.filter(|a| visible(&a.tenant)) {
                        // A spread account's balances are in its slots: read them with
                        // its item again, so the figures are exact (a rare read: writes
                        // through a spread account are planned, and no decision on a
                        // clearing account depends on its balance).
                        Some(a) if a.parts.is_some() => Some(self.with_slots(a).await?),
                        other => other,
                    };
                    snapshot.accounts.push(account);
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
        let (items, opening) = self.write_items(write)?;
        let (items, roles): (Vec<TransactWriteItem>, Vec<Role>) = items.into_iter().map(|i| (i.item, i.role)).unzip();
        let result = self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let error = match result {
            Ok(_) => {
                self.remember_opened(opening);
                return Ok(());
            }
            Err(error) => error,
        };
        let reasons = match error.as_service_error() {
            Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e)) => {
                e.cancellation_reasons().to_vec()
            }
            Some(e) if e.meta().code() == Some("TransactionConflictException") => {
                return Err(CommitError::Rejected(Rejection::Contention))
            }
            _ => return Err(CommitError::Failed(failure("TransactWriteItems", &error))),
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

    async fn expired_holds(&self, now: Timestamp, limit: usize) -> Result<Vec<Transfer>, DomainError> {
        self.expired_holds_from_index(now, limit).await
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
        let output = query.send().await.map_err(failed("Query webhook events"))?;
        let items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(event_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.id.to_string()))
    }

    async fn account_entries(
        &self,
        tenant: &TenantId,
        account: &Account,
        range: &EntryRange,
        limit: Option<usize>,
    ) -> Result<Page<Entry, Position>, DomainError> {
        // New transfers' entries and later changes' live under two prefixes, each in
        // order, in the account's partition and (spread accounts) its slots': read each
        // newest first, all at once, and merge.
        let queries = partitions(account).into_iter().flat_map(|pk| {
            [OPENED_ENTRY, RESOLVED_ENTRY].map(|prefix| {
                let pk = pk.clone();
                async move { self.entries_under(prefix, tenant, &pk, range, limit).await }
            })
        });
        let mut entries: Vec<Entry> = try_join_all(queries).await?.into_iter().flatten().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.position()));
        Ok(match limit {
            Some(limit) => Page::from_overfetch(entries, limit, Entry::position),
            None => Page {
                items: entries,
                next: None,
            },
        })
    }

    async fn list_account_transfers(
        &self,
        tenant: &TenantId,
        account: &Account,
        limit: usize,
        before: Option<TransferId>,
    ) -> Result<Page<Transfer, TransferId>, DomainError> {
        let ledger = &self.tables().ledger;
        let upper = match before {
            Some(b) => format!("{OPENED_ENTRY}{b}"),
            // Every transfer id sorts below this bound.
            None => format!("{OPENED_ENTRY}~"),
        };
        // A spread account's transfers are listed in each of its partitions, queried all
        // at once: merge them.
        let queries = partitions(account).into_iter().map(|pk| {
            self.client()
                .query()
                .table_name(ledger)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":lo", s(OPENED_ENTRY))
                .expression_attribute_values(":hi", s(upper.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(i32::try_from(limit + 2).unwrap_or(i32::MAX))
                .send()
        });
        let outputs = try_join_all(queries).await.map_err(failed("Query account transfers"))?;
        let mut ids = Vec::new();
        for output in outputs {
            for item in output.items.unwrap_or_default() {
                let entry = Item(&item);
                if entry.s("sk")? == upper || entry.s("tenant_id")? != tenant.as_str() {
                    continue;
                }
                ids.push(TransferId::parse(entry.s("transfer_id")?).ok_or_else(|| corrupt("transfer_id"))?);
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let ids = Page::from_overfetch(ids, limit, |id| *id);
        let transfers = self.batch_get_transfers(&ids.items).await?;
        Ok(Page {
            items: transfers,
            next: ids.next,
        })
    }
}

/// The partitions an account's entries live in: its own, and a spread account's slots'.
fn partitions(account: &Account) -> Vec<String> {
    let mut pks = vec![account_pk(&account.id)];
    if account.parts.is_some() || account.kind.spreads() {
        pks.extend((0..BALANCE_SLOTS_MAX).map(|slot| slot_pk(&account.id, slot)));
    }
    pks
}

/// The tenant an explicit entry of `write` is kept under: every write moves one
/// tenant's money, named by the records it changes (a hold's release moves the same
/// tenant's accounts as the write that releases it).
fn entry_tenant(write: &LedgerWrite) -> Option<&TenantId> {
    write
        .transfer_updates
        .iter()
        .map(|(t, _)| &t.tenant)
        .chain(write.new_transfers.iter().map(|t| &t.tenant))
        .chain(write.account_updates.iter().map(|u| &u.account.tenant))
        .next()
}

impl DynamoStore {
    /// The entries of an account under one sort-key prefix within `range`, newest first:
    /// `limit + 1` of them at most (enough to merge a page), or all.
    async fn entries_under(
        &self,
        prefix: &str,
        tenant: &TenantId,
        pk: &str,
        range: &EntryRange,
        limit: Option<usize>,
    ) -> Result<Vec<Entry>, DomainError> {
        let low = match range.from {
            Some(from) => entry_sort_bounds(prefix, from.at_ms).0,
            None => prefix.to_owned(),
        };
        let high = match range.below {
            Some(below) => entry_sort_bounds(prefix, below.at_ms).1,
            None => format!("{prefix}~"),
        };
        let want = limit.map(|l| l.saturating_add(1));
        let page_size = want.unwrap_or(500).clamp(10, 1000);
        let mut found = Vec::new();
        let mut start: Option<Attributes> = None;
        loop {
            let output = self
                .client()
                .query()
                .table_name(&self.tables().ledger)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":lo", s(low.clone()))
                .expression_attribute_values(":hi", s(high.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(i32::try_from(page_size).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(failed("Query account entries"))?;
            for item in output.items.unwrap_or_default() {
                if Item(&item).s("tenant_id")? != tenant.as_str() {
                    continue;
                }
                let entry = entry_from_item(&item)?;
                if range.contains(&entry) {
                    found.push(entry);
                }
            }
            if want.is_some_and(|w| found.len() >= w) {
                break;
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Pending holds whose `expires_at` is at or before `now`, at most `limit`, from the
    /// sparse expiry index (eventually consistent: each is read back from the table, and
    /// one resolved meanwhile is left out).
    async fn expired_holds_from_index(&self, now: Timestamp, limit: usize) -> Result<Vec<Transfer>, DomainError> {
        let ledger = &self.tables().ledger;
        let mut ids = Vec::new();
        for partition in 0..EXPIRY_PARTITIONS {
            if ids.len() >= limit {
                break;
            }
            let output = self
                .client()
                .query()
                .table_name(ledger)
                .index_name(EXPIRY_INDEX)
                .key_condition_expression("#pk = :pk AND #sk <= :now")
                .expression_attribute_names("#pk", EXPIRY_PK)
                .expression_attribute_names("#sk", EXPIRY_SK)
                .expression_attribute_values(":pk", s(format!("EXP#{partition}")))
                .expression_attribute_values(":now", s(format!("{:015}#~", now.unix_ms())))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(failed("Query expiry index"))?;
            for item in output.items.unwrap_or_default() {
                let sk = Item(&item).s(EXPIRY_SK)?.to_owned();
                let id = sk
                    .rsplit('#')
                    .next()
                    .and_then(TransferId::parse)
                    .ok_or_else(|| corrupt(EXPIRY_SK))?;
                ids.push(id);
            }
        }
        ids.truncate(limit);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ids.iter().map(transfer_key).collect();
        let mut expired = Vec::new();
        for item in batch_get_all(self.client(), ledger, keys).await? {
            let t = transfer_from_item(&item)?;
            if t.status == TransferStatus::Pending && t.expires_at.is_some_and(|at| at <= now) {
                expired.push(t);
            }
        }
        Ok(expired)
    }

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
