//! The storage schema: every table's keys and every record's item codec, in one place.
//!
//! Ledger table (single table, `pk`/`sk`, one GSI `gsi1`):
//!
//! | record  | pk             | sk     | gsi1pk                  | gsi1sk   |
//! |---------|----------------|--------|-------------------------|----------|
//! | account (clearing accounts too, ids derived from their key) | `ACCT#<id>` | `ACCT` | `TENANT#<t>#ACCTS` | `<id>` |
//! | account's entry of a new transfer (its transfer listing, too) | `ACCT#<id>` | `TR#<transfer id>` | | |
//! | account's entry of a post, void or expiry | `ACCT#<id>` | `TC#<ms, 15 digits>#<transfer id>` | | |
//! | balance slot of a spread account (SPEC §10) | `ACCT#<id>#<slot>` | `ACCT` | | |
//! | a spread account's entries | `ACCT#<id>#<slot>` | as above | | |
//! | transfer | `TR#<id>`     | `TR`   | | |
//! | payment | `PAY#<id>`     | `PAY`  | | |
//!
//! Idempotency table: `pk` = the scoped key, TTL `expires_at`. Webhook-events table:
//! archived events `EVT#<connector>#<event id>` (listed by `gsi1pk` =
//! `EVENTS#<tenant or ->#<outcome>`), deposit references `DEP#<connector>#<reference>`.
//!
//! Analytics table: rollup rows `ROLL#<tenant>#<A#account or T>#<currency>#<hour or day>`
//! / period start (RFC 3339), movement markers `MOV#<transfer id>` / `MOV` with a TTL.
//!
//! Accounts are keyed by their own id so that balance updates spread over partitions;
//! the tenant's listing is served by `gsi1`, newest first because ids are ULIDs.
//! Amounts are DynamoDB numbers (exact decimals, never floats). The ledger table's
//! stream carries these same items; [`transfer_from_stream_image`] reads them there.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use fintx_domain::account::{
    Account, AccountKind, AccountName, AccountStatus, Balance, Metadata, OverdraftLimit, SlotPart, StoredHolder,
    StoredParts, UNLIMITED,
};
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::crypto::Sealed;
use fintx_domain::holder::MaskedHolder;
use fintx_domain::idempotency::IdempotencyRecord;
use fintx_domain::ids::{AccountId, BatchId, EventId, PaymentId, TransferId};
use fintx_domain::money::{Amount, Currency};
use fintx_domain::payment::{ConnectorName, Payment, PaymentStatus};
use fintx_domain::ports::EventRecord;
use fintx_domain::rollup::{Granularity, RollupKey, Scope, Totals};
use fintx_domain::statement::{Entry, Phase, Position};
use fintx_domain::transfer::{HeldEntry, Transfer, TransferStatus};
use fintx_domain::webhook::Outcome;
use fintx_domain::DomainError;
use rust_decimal::Decimal;

pub(crate) fn corrupt(what: &str) -> DomainError {
    tracing::error!(attribute = what, "a stored record does not parse");
    DomainError::Unavailable
}

pub(crate) fn account_pk(id: &AccountId) -> String {
    format!("ACCT#{id}")
}

/// The partition of one balance slot of a spread account, and of the entries written
/// with it: spread accounts keep their balance and history in several partitions, so
/// concurrent movements through one of them rarely meet (SPEC §10).
pub(crate) fn slot_pk(id: &AccountId, slot: u16) -> String {
    format!("ACCT#{id}#{slot}")
}

pub(crate) fn slot_key(id: &AccountId, slot: u16) -> Attributes {
    key(slot_pk(id, slot), "ACCT")
}

/// A balance slot's figures: what it adds to its account's balances and version.
pub(crate) fn slot_from_item(raw: &Attributes, slot: u16) -> Result<SlotPart, DomainError> {
    let item = Item(raw);
    Ok(SlotPart {
        slot,
        balance: Balance {
            posted: item.decimal("posted")?,
            pending_debits: item.decimal("pending_debits")?,
            pending_credits: item.decimal("pending_credits")?,
        },
        version: item.u64("version")?,
    })
}

/// A new, empty balance slot of an unlimited customer account, carrying the account's
/// facts, status and limit: a movement to a slot is conditioned on them there, since
/// reading the account's own item would make it hot again (SPEC §10).
pub(crate) fn customer_slot_item(account: &Account, slot: u16) -> Attributes {
    let zero = n(Decimal::ZERO);
    HashMap::from([
        ("pk".to_owned(), s(slot_pk(&account.id, slot))),
        ("sk".to_owned(), s("ACCT")),
        ("entity".to_owned(), s("balance_slot")),
        ("account_id".to_owned(), s(account.id.to_string())),
        ("tenant_id".to_owned(), s(account.tenant.as_str())),
        ("currency".to_owned(), s(account.currency.code())),
        ("kind".to_owned(), s(account.kind.as_str())),
        ("status".to_owned(), s(account.status.as_str())),
        ("overdraft_limit".to_owned(), limit_value(account.overdraft_limit)),
        ("posted".to_owned(), zero.clone()),
        ("pending_debits".to_owned(), zero.clone()),
        ("pending_credits".to_owned(), zero.clone()),
        ("spendable".to_owned(), zero),
        ("version".to_owned(), AttributeValue::N("0".to_owned())),
    ])
}

/// An overdraft limit as stored: a number, or the string `unlimited`.
pub(crate) fn limit_value(limit: OverdraftLimit) -> AttributeValue {
    match limit {
        OverdraftLimit::Bounded(amount) => n(amount.value()),
        OverdraftLimit::Unlimited => s(UNLIMITED),
    }
}

pub(crate) fn tenant_accounts_pk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}#ACCTS")
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: Decimal) -> AttributeValue {
    AttributeValue::N(value.normalize().to_string())
}

pub(crate) struct Item<'a>(pub(crate) &'a HashMap<String, AttributeValue>);

impl Item<'_> {
    pub(crate) fn s(&self, name: &str) -> Result<&str, DomainError> {
        match self.0.get(name) {
            Some(AttributeValue::S(value)) => Ok(value),
            _ => Err(corrupt(name)),
        }
    }

    pub(crate) fn opt_s(&self, name: &str) -> Result<Option<&str>, DomainError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value)),
            _ => Err(corrupt(name)),
        }
    }

    pub(crate) fn decimal(&self, name: &str) -> Result<Decimal, DomainError> {
        match self.0.get(name) {
            Some(AttributeValue::N(value)) => Decimal::from_str(value).map_err(|_| corrupt(name)),
            _ => Err(corrupt(name)),
        }
    }

    /// A number attribute as a signed integer.
    pub(crate) fn s_number(&self, name: &str) -> Result<i64, DomainError> {
        match self.0.get(name) {
            Some(AttributeValue::N(value)) => value.parse().map_err(|_| corrupt(name)),
            _ => Err(corrupt(name)),
        }
    }

    pub(crate) fn u64(&self, name: &str) -> Result<u64, DomainError> {
        match self.0.get(name) {
            Some(AttributeValue::N(value)) => value.parse().map_err(|_| corrupt(name)),
            _ => Err(corrupt(name)),
        }
    }

    pub(crate) fn opt_bytes(&self, name: &str) -> Result<Option<&[u8]>, DomainError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(AttributeValue::B(blob)) => Ok(Some(blob.as_ref())),
            _ => Err(corrupt(name)),
        }
    }

    pub(crate) fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, DomainError> {
        match self.0.get(name) {
            None => Ok(BTreeMap::new()),
            Some(AttributeValue::M(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    AttributeValue::S(v) => Ok((k.clone(), v.clone())),
                    _ => Err(corrupt(name)),
                })
                .collect(),
            _ => Err(corrupt(name)),
        }
    }
}

/// An account as stored. `spendable` (`available + overdraft_limit`, see
/// [`Account::headroom`]) is what a debit's cover condition compares against, kept in
/// step with the balances by every update so DynamoDB itself decides whether a debit is
/// covered at the moment it commits.
pub fn account_item(account: &Account) -> Result<HashMap<String, AttributeValue>, DomainError> {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(account_pk(&account.id))),
        ("sk".to_owned(), s("ACCT")),
        ("gsi1pk".to_owned(), s(tenant_accounts_pk(&account.tenant))),
        ("gsi1sk".to_owned(), s(account.id.to_string())),
        ("entity".to_owned(), s("account")),
        ("id".to_owned(), s(account.id.to_string())),
        ("tenant_id".to_owned(), s(account.tenant.as_str())),
        ("currency".to_owned(), s(account.currency.code())),
        ("overdraft_limit".to_owned(), limit_value(account.overdraft_limit)),
        ("posted".to_owned(), n(account.balance.posted)),
        ("pending_debits".to_owned(), n(account.balance.pending_debits)),
        ("pending_credits".to_owned(), n(account.balance.pending_credits)),
        ("spendable".to_owned(), n(account.headroom()?)),
        ("kind".to_owned(), s(account.kind.as_str())),
        ("status".to_owned(), s(account.status.as_str())),
        (
            "holds".to_owned(),
            AttributeValue::M(
                account
                    .holds
                    .iter()
                    .map(|h| (h.transfer_id.to_string(), held_entry_value(h)))
                    .collect(),
            ),
        ),
        ("created_at".to_owned(), s(account.created_at.to_string())),
        ("version".to_owned(), AttributeValue::N(account.version.to_string())),
    ]);
    if let Some(name) = &account.name {
        item.insert("name".to_owned(), s(name.as_str()));
    }
    if let Some(holder) = &account.holder {
        // Only the sealed details and their mask are stored; the plaintext never is.
        item.insert(
            "holder_sealed".to_owned(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(holder.sealed.as_bytes())),
        );
        let mask = &holder.masked;
        let mut map = HashMap::from([("name_initials".to_owned(), s(mask.name_initials.as_str()))]);
        if let Some(last4) = &mask.account_number_last4 {
            map.insert("account_number_last4".to_owned(), s(last4.as_str()));
        }
        if let Some(last4) = &mask.iban_last4 {
            map.insert("iban_last4".to_owned(), s(last4.as_str()));
        }
        item.insert("holder_masked".to_owned(), AttributeValue::M(map));
    }
    if account.parts.is_some() || account.spreads() {
        // Its reads sum its balance slots from now on, whatever its limit becomes.
        item.insert("slotted".to_owned(), AttributeValue::Bool(true));
    }
    if !account.metadata.pairs().is_empty() {
        let map = account
            .metadata
            .pairs()
            .iter()
            .map(|(k, v)| (k.clone(), s(v.as_str())))
            .collect();
        item.insert("metadata".to_owned(), AttributeValue::M(map));
    }
    Ok(item)
}

pub(crate) fn account_from_item(raw: &HashMap<String, AttributeValue>) -> Result<Account, DomainError> {
    let item = Item(raw);
    let currency = Currency::parse(item.s("currency")?).map_err(|_| corrupt("currency"))?;
    Ok(Account {
        id: AccountId::parse(item.s("id")?).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(item.s("tenant_id")?).map_err(|_| corrupt("tenant_id"))?,
        currency,
        name: item
            .opt_s("name")?
            .map(AccountName::parse)
            .transpose()
            .map_err(|_| corrupt("name"))?,
        holder: holder_from_item(&item)?,
        overdraft_limit: match raw.get("overdraft_limit") {
            Some(AttributeValue::S(text)) if text == UNLIMITED => OverdraftLimit::Unlimited,
            _ => OverdraftLimit::Bounded(
                Amount::from_decimal(item.decimal("overdraft_limit")?, currency)
                    .map_err(|_| corrupt("overdraft_limit"))?,
            ),
        },
        balance: Balance {
            posted: item.decimal("posted")?,
            pending_debits: item.decimal("pending_debits")?,
            pending_credits: item.decimal("pending_credits")?,
        },
        metadata: Metadata::parse(item.string_map("metadata")?).map_err(|_| corrupt("metadata"))?,
        kind: AccountKind::parse(item.s("kind")?).ok_or_else(|| corrupt("kind"))?,
        status: AccountStatus::parse(item.s("status")?).ok_or_else(|| corrupt("status"))?,
        holds: match raw.get("holds") {
            Some(AttributeValue::M(map)) => {
                let mut holds = map
                    .iter()
                    .map(|(id, v)| held_from(id, v))
                    .collect::<Result<Vec<_>, _>>()?;
                holds.sort_by_key(|h| (h.expires_at, h.transfer_id));
                holds
            }
            _ => return Err(corrupt("holds")),
        },
        created_at: Timestamp::parse_rfc3339(item.s("created_at")?).ok_or_else(|| corrupt("created_at"))?,
        version: item.u64("version")?,
        // Its balance slots are read and summed in by the store (every clearing account
        // has them, whenever it was opened).
        parts: match (raw.get("slotted"), raw.get("kind")) {
            (Some(AttributeValue::Bool(true)), _) => Some(()),
            (_, Some(AttributeValue::S(kind))) if kind == AccountKind::Clearing.as_str() => Some(()),
            _ => None,
        }
        .map(|()| {
            Ok::<_, DomainError>(Box::new(StoredParts {
                own_version: item.u64("version")?,
                slots: Vec::new(),
            }))
        })
        .transpose()?,
    })
}

pub(crate) fn holder_from_item(item: &Item<'_>) -> Result<Option<StoredHolder>, DomainError> {
    let Some(sealed) = item.opt_bytes("holder_sealed")? else {
        return Ok(None);
    };
    let mask = item.string_map("holder_masked")?;
    Ok(Some(StoredHolder {
        sealed: Sealed::from_bytes(sealed.to_vec()),
        masked: MaskedHolder {
            name_initials: mask
                .get("name_initials")
                .cloned()
                .ok_or_else(|| corrupt("holder_masked"))?,
            account_number_last4: mask.get("account_number_last4").cloned(),
            iban_last4: mask.get("iban_last4").cloned(),
        },
    }))
}

pub type Attributes = HashMap<String, AttributeValue>;

pub(crate) fn key(pk: String, sk: &str) -> Attributes {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(crate) fn transfer_key(id: &TransferId) -> Attributes {
    key(format!("TR#{id}"), "TR")
}

pub(crate) fn payment_key(id: &PaymentId) -> Attributes {
    key(format!("PAY#{id}"), "PAY")
}

pub(crate) fn account_key(id: &AccountId) -> Attributes {
    key(format!("ACCT#{id}"), "ACCT")
}

pub(crate) fn metadata_value(metadata: &Metadata) -> AttributeValue {
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
    if let Some(b) = t.batch_id {
        put("batch_id", s(b.to_string()));
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
    if let Some(at) = t.expires_at {
        put("expires_at", s(at.to_string()));
        // While it may expire, the hold is in the sparse expiry index the sweep reads.
        if t.status == TransferStatus::Pending {
            put(EXPIRY_PK, s(expiry_partition(&t.id)));
            put(EXPIRY_SK, s(expiry_sort_key(at, &t.id)));
        }
    }
    put("version", AttributeValue::N(t.version.to_string()));
    item
}

/// The expiry index (`expiry` on the ledger table): pending holds that may expire, spread
/// over [`EXPIRY_PARTITIONS`] partitions by transfer id, sorted by `expires_at`.
pub(crate) const EXPIRY_INDEX: &str = "expiry";
pub(crate) const EXPIRY_PK: &str = "exp_pk";
pub(crate) const EXPIRY_SK: &str = "exp_sk";
pub(crate) const EXPIRY_PARTITIONS: u32 = 8;

pub(crate) fn expiry_partition(id: &TransferId) -> String {
    let spread = id
        .to_string()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("EXP#{}", spread % EXPIRY_PARTITIONS)
}

/// Sorts by instant: milliseconds since the epoch, zero-padded, then the id.
pub(crate) fn expiry_sort_key(at: Timestamp, id: &TransferId) -> String {
    format!("{:015}#{id}", at.unix_ms())
}

/// A hold entry of an account item's `holds` map (see [`HeldEntry`]).
pub(crate) fn held_entry_value(entry: &HeldEntry) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("a".to_owned(), n(entry.amount)),
        (
            "x".to_owned(),
            AttributeValue::N(entry.expires_at.unix_ms().to_string()),
        ),
        ("d".to_owned(), AttributeValue::Bool(entry.debit)),
        ("o".to_owned(), s(entry.other.to_string())),
    ]))
}

fn held_from(id: &str, value: &AttributeValue) -> Result<HeldEntry, DomainError> {
    let AttributeValue::M(map) = value else {
        return Err(corrupt("holds"));
    };
    let item = Item(map);
    Ok(HeldEntry {
        transfer_id: TransferId::parse(id).ok_or_else(|| corrupt("holds"))?,
        amount: item.decimal("a")?,
        expires_at: i64::try_from(item.u64("x")?)
            .ok()
            .and_then(Timestamp::from_unix_ms)
            .ok_or_else(|| corrupt("holds"))?,
        debit: matches!(map.get("d"), Some(AttributeValue::Bool(true))),
        other: AccountId::parse(item.s("o")?).ok_or_else(|| corrupt("holds"))?,
    })
}

pub(crate) fn amount(item: &Item<'_>, name: &str, currency: Currency) -> Result<Amount, DomainError> {
    Amount::from_decimal(item.decimal(name)?, currency).map_err(|_| corrupt(name))
}

pub(crate) fn timestamp(item: &Item<'_>, name: &str) -> Result<Timestamp, DomainError> {
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
        batch_id: item
            .opt_s("batch_id")?
            .map(|b| BatchId::parse(b).ok_or_else(|| corrupt("batch_id")))
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
        expires_at: item
            .opt_s("expires_at")?
            .map(|t| Timestamp::parse_rfc3339(t).ok_or_else(|| corrupt("expires_at")))
            .transpose()?,
        posted_at: item
            .opt_s("posted_at")?
            .map(|t| Timestamp::parse_rfc3339(t).ok_or_else(|| corrupt("posted_at")))
            .transpose()?,
        version: item.u64("version")?,
    })
}

pub(crate) fn masked_value(mask: &MaskedHolder) -> AttributeValue {
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

pub(crate) fn idempotency_item(r: &IdempotencyRecord) -> Attributes {
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

pub(crate) fn idempotency_from_item(raw: &Attributes) -> Result<IdempotencyRecord, DomainError> {
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

pub(crate) fn event_key(key_text: &str) -> Attributes {
    key(format!("EVT#{key_text}"), "EVT")
}

pub(crate) fn event_listing_pk(tenant: Option<&TenantId>, outcome: Outcome) -> String {
    format!("EVENTS#{}#{}", tenant.map_or("-", TenantId::as_str), outcome.as_str())
}

/// How long archived events (and so their dedup keys) are kept: well past the 7 days
/// over which banks retry.
pub(crate) const EVENT_RETENTION_SECONDS: i64 = 90 * 24 * 60 * 60;

pub(crate) fn event_item(e: &EventRecord) -> Attributes {
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

pub(crate) fn event_from_item(raw: &Attributes) -> Result<EventRecord, DomainError> {
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
pub(crate) fn code_name(text: &str) -> Option<&'static str> {
    fintx_domain::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .find(|c| *c == text)
}

/// The idempotency table's key of a scoped idempotency key.
pub(crate) fn idempotency_key(scope: &str) -> Attributes {
    HashMap::from([("pk".to_owned(), s(scope))])
}

/// The entry under an account that lists one of its transfers.
/// Sort-key prefixes of an account's entries: a new transfer's (which also list the
/// account's transfers) and a later change's.
pub(crate) const OPENED_ENTRY: &str = "TR#";
pub(crate) const RESOLVED_ENTRY: &str = "TC#";

/// Where an entry sorts among its account's items: a new transfer's entry by its id
/// (which starts with its creation time), a later change's by its instant, then id.
pub(crate) fn entry_sort_key(position: &Position) -> String {
    match position.phase {
        Phase::Opened => format!("{OPENED_ENTRY}{}", position.transfer_id),
        Phase::Resolved => format!("{RESOLVED_ENTRY}{:015}#{}", position.at_ms, position.transfer_id),
    }
}

/// The smallest and largest sort key of `prefix` that an entry at millisecond `ms` can
/// have, for a range's bounds (exact positions are checked on the items read).
pub(crate) fn entry_sort_bounds(prefix: &str, ms: i64) -> (String, String) {
    if prefix == OPENED_ENTRY {
        // A new transfer's id carries its creation millisecond in its first 48 bits.
        let ms = u64::try_from(ms.clamp(0, (1 << 48) - 1)).unwrap_or(0);
        let first = TransferId::from_ulid(ulid::Ulid::from_parts(ms, 0));
        let last = TransferId::from_ulid(ulid::Ulid::from_parts(ms, u128::MAX));
        (format!("{OPENED_ENTRY}{first}"), format!("{OPENED_ENTRY}{last}"))
    } else {
        let ms = ms.clamp(0, 999_999_999_999_999);
        (
            format!("{RESOLVED_ENTRY}{ms:015}#"),
            format!("{RESOLVED_ENTRY}{ms:015}#~"),
        )
    }
}

/// An account's entry: one change of its balances by one transfer (SPEC §6), in the
/// account's partition or (spread accounts) in the slot's its change went to.
pub(crate) fn entry_item(entry: &Entry, tenant: &TenantId, slot: Option<u16>) -> Attributes {
    let position = entry.position();
    let pk = match slot {
        Some(slot) => slot_pk(&entry.account_id, slot),
        None => account_pk(&entry.account_id),
    };
    let mut item = key(pk, &entry_sort_key(&position));
    let entity = match entry.phase {
        Phase::Opened => "account_transfer",
        Phase::Resolved => "account_entry",
    };
    item.insert("entity".to_owned(), s(entity));
    item.insert("transfer_id".to_owned(), s(entry.transfer_id.to_string()));
    item.insert("tenant_id".to_owned(), s(tenant.as_str()));
    item.insert("at_ms".to_owned(), AttributeValue::N(position.at_ms.to_string()));
    item.insert("e_posted".to_owned(), n(entry.posted));
    item.insert("e_pending_debits".to_owned(), n(entry.pending_debits));
    item.insert("e_pending_credits".to_owned(), n(entry.pending_credits));
    item
}

pub(crate) fn entry_from_item(raw: &Attributes) -> Result<Entry, DomainError> {
    let item = Item(raw);
    let account_id = item
        .s("pk")?
        .strip_prefix("ACCT#")
        .map(|rest| rest.split_once('#').map_or(rest, |(id, _slot)| id))
        .and_then(AccountId::parse)
        .ok_or_else(|| corrupt("pk"))?;
    let sk = item.s("sk")?;
    let phase = if sk.starts_with(OPENED_ENTRY) {
        Phase::Opened
    } else if sk.starts_with(RESOLVED_ENTRY) {
        Phase::Resolved
    } else {
        return Err(corrupt("sk"));
    };
    let at_ms: i64 = item.s_number("at_ms")?;
    Ok(Entry {
        account_id,
        transfer_id: TransferId::parse(item.s("transfer_id")?).ok_or_else(|| corrupt("transfer_id"))?,
        at: Timestamp::from_unix_ms(at_ms).ok_or_else(|| corrupt("at_ms"))?,
        phase,
        posted: item.decimal("e_posted")?,
        pending_debits: item.decimal("e_pending_debits")?,
        pending_credits: item.decimal("e_pending_credits")?,
    })
}

/// The record that makes a deposit's `<connector>#<bank reference>` apply once.
pub(crate) fn deposit_reference_key(reference: &str) -> Attributes {
    key(format!("DEP#{reference}"), "DEP")
}

pub(crate) fn deposit_reference_item(reference: &str) -> Attributes {
    let mut item = deposit_reference_key(reference);
    item.insert("entity".to_owned(), s("deposit_reference"));
    item
}

/// A ledger item as a DynamoDB Stream record carries it (the Lambda event's attribute
/// values) in the SDK's form, so one codec reads the table and the stream.
pub fn from_stream_image(image: &serde_dynamo::Item) -> Attributes {
    image.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect()
}

/// The transfer in a ledger stream image; `Ok(None)` for images of other records (and
/// for the empty image of an insert's old side).
pub fn transfer_from_stream_image(image: &serde_dynamo::Item) -> Result<Option<Transfer>, DomainError> {
    if !matches!(image.get("entity"), Some(serde_dynamo::AttributeValue::S(e)) if e == "transfer") {
        return Ok(None);
    }
    transfer_from_item(&from_stream_image(image)).map(Some)
}

/// The partition of one scope's rollup rows in a currency and granularity.
pub(crate) fn rollup_row_pk(tenant: &TenantId, scope: &Scope, currency: &str, granularity: Granularity) -> String {
    let scope = match scope {
        Scope::Account(id) => format!("A#{id}"),
        Scope::Tenant => "T".to_owned(),
    };
    format!("ROLL#{tenant}#{scope}#{currency}#{}", granularity.as_str())
}

pub(crate) fn rollup_row_key(key: &RollupKey) -> Attributes {
    HashMap::from([
        (
            "pk".to_owned(),
            s(rollup_row_pk(
                &key.tenant,
                &key.scope,
                key.currency_code,
                key.granularity,
            )),
        ),
        ("sk".to_owned(), s(key.period.as_str())),
    ])
}

/// How a batch adds its totals to a rollup row (the row is created by its first `ADD`).
pub(crate) fn rollup_row_add(t: &Totals) -> (&'static str, Attributes) {
    let values = HashMap::from([
        (":dc".to_owned(), AttributeValue::N(t.debit_count.to_string())),
        (":da".to_owned(), n(t.debit_amount)),
        (":cc".to_owned(), AttributeValue::N(t.credit_count.to_string())),
        (":ca".to_owned(), n(t.credit_amount)),
    ]);
    (
        "ADD debit_count :dc, debit_amount :da, credit_count :cc, credit_amount :ca",
        values,
    )
}

/// A rollup row as read: its period and totals (absent figures are zero).
pub(crate) fn rollup_row_from_item(raw: &Attributes) -> Result<(String, Totals), DomainError> {
    let item = Item(raw);
    let figure = |name: &str| match raw.get(name) {
        None => Ok(Decimal::ZERO),
        Some(_) => item.decimal(name),
    };
    let count = |name: &str| figure(name).and_then(|d| u64::try_from(d).map_err(|_| corrupt(name)));
    Ok((
        item.s("sk")?.to_owned(),
        Totals {
            debit_count: count("debit_count")?,
            debit_amount: figure("debit_amount")?,
            credit_count: count("credit_count")?,
            credit_amount: figure("credit_amount")?,
        },
    ))
}

pub(crate) fn movement_marker_key(id: &TransferId) -> Attributes {
    key(format!("MOV#{id}"), "MOV")
}

/// The marker that makes one movement count once, kept past the stream's retention.
pub(crate) fn movement_marker_item(id: &TransferId, expires_at_s: i64) -> Attributes {
    let mut item = movement_marker_key(id);
    item.insert("expires_at".to_owned(), AttributeValue::N(expires_at_s.to_string()));
    item
}

pub(crate) fn movement_marker_id(raw: &Attributes) -> Option<TransferId> {
    Item(raw).s("pk").ok()?.strip_prefix("MOV#").and_then(TransferId::parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fintx_domain::account::NewAccount;

    #[test]
    fn accounts_survive_the_item_mapping_exactly() {
        let usd = Currency::parse("USD").unwrap();
        let mut account = Account::open(
            AccountId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_000, 9)),
            TenantId::parse("t1").unwrap(),
            NewAccount {
                currency: usd,
                holder: None,
                name: Some(AccountName::parse("Operating").unwrap()),
                overdraft_limit: OverdraftLimit::parse("100.50", usd).unwrap(),
                metadata: Metadata::parse(BTreeMap::from([("k".into(), "v".into())])).unwrap(),
            },
            Some(StoredHolder {
                sealed: Sealed::from_bytes(vec![1, 2, 3]),
                masked: MaskedHolder {
                    name_initials: "A.L.".into(),
                    account_number_last4: Some("6789".into()),
                    iban_last4: None,
                },
            }),
            Timestamp::from_unix_ms(1_700_000_000_000).unwrap(),
        );
        account.balance.posted = Decimal::new(-1234, 2);
        account.balance.pending_debits = Decimal::new(550, 2);
        account.holds = vec![HeldEntry {
            transfer_id: TransferId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_001, 1)),
            amount: Decimal::new(550, 2),
            expires_at: Timestamp::from_unix_ms(1_700_000_060_000).unwrap(),
            debit: true,
            other: AccountId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_000, 10)),
        }];
        for status in [AccountStatus::Open, AccountStatus::Frozen, AccountStatus::Closed] {
            account.status = status;
            let back = account_from_item(&account_item(&account).unwrap()).unwrap();
            assert_eq!(back, account);
        }
        // An unlimited account is stored with its limit as a string and marked as having
        // balance slots; it reads back with its parts to be summed, from then on even
        // when its limit is bounded again.
        account.overdraft_limit = OverdraftLimit::Unlimited;
        let item = account_item(&account).unwrap();
        assert_eq!(item["overdraft_limit"], s("unlimited"));
        assert_eq!(item["spendable"], n(fintx_domain::account::unlimited_headroom()));
        let back = account_from_item(&item).unwrap();
        assert_eq!(back.overdraft_limit, OverdraftLimit::Unlimited);
        let parts = StoredParts {
            own_version: account.version,
            slots: Vec::new(),
        };
        assert_eq!(back.parts.as_deref(), Some(&parts));
        let mut bounded = back;
        bounded.overdraft_limit = OverdraftLimit::parse("5", usd).unwrap();
        let again = account_from_item(&account_item(&bounded).unwrap()).unwrap();
        assert_eq!(again, bounded);
        // Its slots carry its facts, status and limit, and start empty.
        let slot = customer_slot_item(&account, 3);
        assert_eq!(slot["pk"], s(format!("ACCT#{}#3", account.id)));
        assert_eq!(slot["overdraft_limit"], s("unlimited"));
        assert_eq!(slot["status"], s(account.status.as_str()));
        let part = slot_from_item(&slot, 3).unwrap();
        assert_eq!((part.balance, part.version), (Balance::ZERO, 0));
    }

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
            batch_id: None,
            through_clearing: true,
            description: Some("x".into()),
            metadata: Metadata::default(),
            created_at: Timestamp::from_unix_ms(5).unwrap(),
            updated_at: Timestamp::from_unix_ms(6).unwrap(),
            posted_at: Some(Timestamp::from_unix_ms(6).unwrap()),
            expires_at: None,
            version: 3,
        };
        assert_eq!(transfer_from_item(&transfer_item(&t)).unwrap(), t);
    }

    fn sample_transfer() -> Transfer {
        let usd = Currency::parse("USD").unwrap();
        Transfer {
            id: TransferId::from_ulid(ulid::Ulid::from_parts(7, 2)),
            tenant: TenantId::parse("t1").unwrap(),
            debit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(7, 3)),
            credit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(7, 4)),
            amount: Amount::parse("0.01", usd).unwrap(),
            currency: usd,
            status: TransferStatus::Pending,
            posted_amount: Amount::ZERO,
            reversed_amount: Amount::ZERO,
            reverses: None,
            payment_id: None,
            batch_id: Some(BatchId::from_ulid(ulid::Ulid::from_parts(1, 7))),
            through_clearing: false,
            description: None,
            metadata: Metadata::parse(BTreeMap::from([("order".into(), "42".into())])).unwrap(),
            created_at: Timestamp::from_unix_ms(1_700_000_000_123).unwrap(),
            updated_at: Timestamp::from_unix_ms(1_700_000_000_123).unwrap(),
            posted_at: None,
            expires_at: Some(Timestamp::from_unix_ms(1_700_000_060_000).unwrap()),
            version: 1,
        }
    }

    #[test]
    fn payments_survive_the_item_mapping_exactly() {
        let jpy = Currency::parse("JPY").unwrap();
        let p = Payment {
            id: PaymentId::from_ulid(ulid::Ulid::from_parts(3, 1)),
            tenant: TenantId::parse("t9").unwrap(),
            account_id: AccountId::from_ulid(ulid::Ulid::from_parts(3, 2)),
            transfer_id: TransferId::from_ulid(ulid::Ulid::from_parts(3, 1)),
            connector: ConnectorName::parse("demo-bank").unwrap(),
            counterparty: Sealed::from_bytes(vec![9, 8, 7, 0]),
            counterparty_masked: MaskedHolder {
                name_initials: "G.H.".into(),
                account_number_last4: None,
                iban_last4: Some("5432".into()),
            },
            amount: Amount::parse("1500", jpy).unwrap(),
            currency: jpy,
            reference: Some("invoice 7".into()),
            status: PaymentStatus::Returned,
            created_at: Timestamp::from_unix_ms(10).unwrap(),
            updated_at: Timestamp::from_unix_ms(20).unwrap(),
            version: 4,
        };
        assert_eq!(payment_from_item(&payment_item(&p)).unwrap(), p);
    }

    #[test]
    fn idempotency_records_survive_the_item_mapping_exactly() {
        let r = IdempotencyRecord::new(
            "IDEM#t1#POST /v1/transfers#abc".into(),
            "f00d".into(),
            422,
            r#"{"code":"insufficient_funds"}"#.into(),
            1_700_000_000_000,
        );
        let item = idempotency_item(&r);
        assert_eq!(item.get("pk"), idempotency_key(&r.scope_key).get("pk"));
        assert_eq!(idempotency_from_item(&item).unwrap(), r);
    }

    #[test]
    fn webhook_events_survive_the_item_mapping_exactly() {
        for (tenant, code) in [(Some(TenantId::parse("t1").unwrap()), None), (None, Some("not_found"))] {
            let e = EventRecord {
                id: EventId::from_ulid(ulid::Ulid::from_parts(5, 5)),
                key: "demo-bank#msg_1".into(),
                connector: ConnectorName::parse("demo-bank").unwrap(),
                event_id: "msg_1".into(),
                event_type: "payment.settled".into(),
                tenant,
                outcome: Outcome::Rejected,
                code,
                raw_body: Sealed::from_bytes(vec![1; 40]),
                received_at: Timestamp::from_unix_ms(1_700_000_000_000).unwrap(),
            };
            let item = event_item(&e);
            assert_eq!(item.get("pk"), event_key(&e.key).get("pk"));
            assert_eq!(event_from_item(&item).unwrap(), e);
        }
    }

    #[test]
    fn rollup_rows_and_markers_survive_their_mapping() {
        let key = RollupKey {
            tenant: TenantId::parse("t1").unwrap(),
            scope: Scope::Account(AccountId::from_ulid(ulid::Ulid::from_parts(1, 1))),
            currency_code: "USD",
            granularity: Granularity::Hour,
            period: "2026-11-25T21:00:00Z".into(),
        };
        let totals = Totals {
            debit_count: 3,
            debit_amount: Decimal::new(12_345, 2),
            credit_count: 1,
            credit_amount: Decimal::new(5, 2),
        };
        // A row as its first `ADD` creates it: the key and each named figure.
        let (expression, values) = rollup_row_add(&totals);
        let mut row = rollup_row_key(&key);
        for (name, value) in expression.trim_start_matches("ADD ").split(", ").map(|pair| {
            let (name, placeholder) = pair.split_once(' ').unwrap();
            (name.to_owned(), values[placeholder].clone())
        }) {
            row.insert(name, value);
        }
        assert_eq!(rollup_row_from_item(&row).unwrap(), (key.period.clone(), totals));
        let id = TransferId::from_ulid(ulid::Ulid::from_parts(2, 2));
        let marker = movement_marker_item(&id, 99);
        assert_eq!(movement_marker_id(&marker), Some(id));
        assert_eq!(marker.get("pk"), movement_marker_key(&id).get("pk"));
    }

    #[test]
    fn a_stream_image_reads_as_the_item_it_carries() {
        let t = sample_transfer();
        // The Lambda event's form of the item: DynamoDB JSON, as the stream sends it.
        let json = serde_json::to_value(
            transfer_item(&t)
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        AttributeValue::S(s) => serde_json::json!({ "S": s }),
                        AttributeValue::N(n) => serde_json::json!({ "N": n }),
                        AttributeValue::Bool(b) => serde_json::json!({ "BOOL": b }),
                        AttributeValue::M(m) => serde_json::json!({ "M": m
                            .into_iter()
                            .map(|(k, v)| (k, serde_json::json!({ "S": v.as_s().unwrap() })))
                            .collect::<serde_json::Map<_, _>>() }),
                        other => panic!("unexpected attribute {other:?}"),
                    };
                    (k, v)
                })
                .collect::<serde_json::Map<_, _>>(),
        )
        .unwrap();
        let image: serde_dynamo::Item = serde_json::from_value(json).unwrap();
        assert_eq!(transfer_from_stream_image(&image).unwrap(), Some(t));
        let account: serde_dynamo::Item =
            serde_json::from_value(serde_json::json!({"entity": {"S": "account"}})).unwrap();
        assert_eq!(transfer_from_stream_image(&account).unwrap(), None);
        assert_eq!(
            transfer_from_stream_image(&serde_dynamo::Item::from(
                HashMap::<String, serde_dynamo::AttributeValue>::new()
            ))
            .unwrap(),
            None
        );
    }

    #[test]
    fn entries_round_trip_and_sort_keys_order_as_positions() {
        let account = AccountId::from_ulid(ulid::Ulid::from_parts(1_700_000_000_000, 9));
        let tenant = TenantId::parse("t1").unwrap();
        let entry = |ms: u64, n: u128, phase: Phase, at_ms: i64| Entry {
            account_id: account,
            transfer_id: TransferId::from_ulid(ulid::Ulid::from_parts(ms, n)),
            at: Timestamp::from_unix_ms(at_ms).unwrap(),
            phase,
            posted: Decimal::new(-1250, 2),
            pending_debits: Decimal::new(-3, 0),
            pending_credits: Decimal::ZERO,
        };
        let entries = [
            entry(1_700_000_000_000, 5, Phase::Opened, 1_700_000_000_000),
            entry(1_700_000_000_000, 6, Phase::Opened, 1_700_000_000_000),
            entry(1_700_000_000_000, 5, Phase::Resolved, 1_700_000_000_000),
            entry(1_600_000_000_000, 1, Phase::Resolved, 1_700_000_000_001),
            entry(1_700_000_000_002, 0, Phase::Opened, 1_700_000_000_002),
        ];
        for e in &entries {
            assert_eq!(&entry_from_item(&entry_item(e, &tenant, None)).unwrap(), e);
            let spread = entry_item(e, &tenant, Some(7));
            assert_eq!(spread["pk"], s(format!("ACCT#{account}#7")));
            assert_eq!(&entry_from_item(&spread).unwrap(), e);
        }
        // Within each prefix, sort keys order as positions do, and the bounds of an
        // entry's millisecond enclose its key.
        for prefix in [OPENED_ENTRY, RESOLVED_ENTRY] {
            let mut of_prefix: Vec<&Entry> = entries
                .iter()
                .filter(|e| entry_sort_key(&e.position()).starts_with(prefix))
                .collect();
            of_prefix.sort_by_key(|e| entry_sort_key(&e.position()));
            assert!(of_prefix.windows(2).all(|w| w[0].position() < w[1].position()));
            for e in of_prefix {
                let (lo, hi) = entry_sort_bounds(prefix, e.at.unix_ms());
                let key = entry_sort_key(&e.position());
                assert!(lo <= key && key <= hi, "{lo} {key} {hi}");
                let (_, before) = entry_sort_bounds(prefix, e.at.unix_ms() - 1);
                let (after, _) = entry_sort_bounds(prefix, e.at.unix_ms() + 1);
                assert!(before < key && key < after);
            }
        }
    }
}
