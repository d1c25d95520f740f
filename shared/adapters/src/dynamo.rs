//! The DynamoDB store.
//!
//! Ledger table layout (single table, `pk`/`sk`, one GSI `gsi1`):
//!
//! | record  | pk             | sk     | gsi1pk                  | gsi1sk   |
//! |---------|----------------|--------|-------------------------|----------|
//! | account | `ACCT#<id>`    | `ACCT` | `TENANT#<t>#ACCTS`      | `<id>`   |
//! | account's transfer | `ACCT#<id>` | `TR#<transfer id>` | | |
//! | transfer | `TR#<id>`     | `TR`   | | |
//! | payment | `PAY#<id>`     | `PAY`  | | |
//! | clearing account | `ACCT#<id from its key>` | `ACCT` | as an account | |
//!
//! Idempotency records live in their own table, keyed by scope, with a TTL.
//!
//! Accounts are keyed by their own id so that balance updates spread over partitions;
//! the tenant's listing is served by `gsi1`, newest first because ids are ULIDs.
//! Amounts are DynamoDB numbers (exact decimals, never floats).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use fintx_domain::account::{Account, AccountKind, AccountName, Balance, Metadata, StoredHolder};
use fintx_domain::auth::TenantId;
use fintx_domain::clock::Timestamp;
use fintx_domain::crypto::Sealed;
use fintx_domain::holder::MaskedHolder;
use fintx_domain::ids::AccountId;
use fintx_domain::money::{Amount, Currency};
use fintx_domain::ports::{AccountStore, Page};
use fintx_domain::DomainError;
use rust_decimal::Decimal;

use crate::settings::Tables;

pub struct DynamoStore {
    client: Client,
    tables: Tables,
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

/// Tries a `BatchGetItem` makes for the keys DynamoDB leaves unprocessed (throttling).
const BATCH_GET_TRIES_MAX: u32 = 8;

/// Reads every item of `keys` (at most 100 at a time) from one table, asking again with
/// jittered backoff for the keys DynamoDB leaves unprocessed. Keys still unprocessed
/// after the last try are an error, never a silently shorter answer: a caller that
/// counted on them would undercount.
pub async fn batch_get_all(
    client: &Client,
    table: &str,
    keys: Vec<HashMap<String, AttributeValue>>,
) -> Result<Vec<HashMap<String, AttributeValue>>, DomainError> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(chunk.to_vec()))
            .consistent_read(true)
            .build()
            .map_err(|_| DomainError::Unavailable)?;
        let mut pending = Some(HashMap::from([(table.to_owned(), request)]));
        for attempt in 0..BATCH_GET_TRIES_MAX {
            let Some(items) = pending.take() else { break };
            if attempt > 0 {
                tokio::time::sleep(crate::commit::jittered_backoff(attempt)).await;
            }
            let output = client
                .batch_get_item()
                .set_request_items(Some(items))
                .send()
                .await
                .map_err(unavailable("BatchGetItem"))?;
            found.extend(output.responses.unwrap_or_default().remove(table).unwrap_or_default());
            pending = output.unprocessed_keys.filter(|u| !u.is_empty());
        }
        if pending.is_some() {
            tracing::error!(table, "BatchGetItem left keys unprocessed after every try");
            return Err(DomainError::Unavailable);
        }
    }
    Ok(found)
}

/// Logs an SDK failure with its whole cause chain and turns it into the opaque
/// `unavailable` outcome: the client learns nothing internal.
fn unavailable<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> DomainError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |error| {
        tracing::error!(operation, error = %DisplayErrorContext(&error), "DynamoDB call failed");
        DomainError::Unavailable
    }
}

pub(crate) fn corrupt(what: &str) -> DomainError {
    tracing::error!(attribute = what, "a stored record does not parse");
    DomainError::Unavailable
}

fn account_pk(id: &AccountId) -> String {
    format!("ACCT#{id}")
}

fn tenant_accounts_pk(tenant: &TenantId) -> String {
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
pub(crate) fn account_item(account: &Account) -> Result<HashMap<String, AttributeValue>, DomainError> {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(account_pk(&account.id))),
        ("sk".to_owned(), s("ACCT")),
        ("gsi1pk".to_owned(), s(tenant_accounts_pk(&account.tenant))),
        ("gsi1sk".to_owned(), s(account.id.to_string())),
        ("entity".to_owned(), s("account")),
        ("id".to_owned(), s(account.id.to_string())),
        ("tenant_id".to_owned(), s(account.tenant.as_str())),
        ("currency".to_owned(), s(account.currency.code())),
        ("overdraft_limit".to_owned(), n(account.overdraft_limit.value())),
        ("posted".to_owned(), n(account.balance.posted)),
        ("pending_debits".to_owned(), n(account.balance.pending_debits)),
        ("pending_credits".to_owned(), n(account.balance.pending_credits)),
        ("spendable".to_owned(), n(account.headroom()?)),
        ("kind".to_owned(), s(account.kind.as_str())),
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
        overdraft_limit: Amount::from_decimal(item.decimal("overdraft_limit")?, currency)
            .map_err(|_| corrupt("overdraft_limit"))?,
        balance: Balance {
            posted: item.decimal("posted")?,
            pending_debits: item.decimal("pending_debits")?,
            pending_credits: item.decimal("pending_credits")?,
        },
        metadata: Metadata::parse(item.string_map("metadata")?).map_err(|_| corrupt("metadata"))?,
        kind: AccountKind::parse(item.s("kind")?).ok_or_else(|| corrupt("kind"))?,
        created_at: Timestamp::parse_rfc3339(item.s("created_at")?).ok_or_else(|| corrupt("created_at"))?,
        version: item.u64("version")?,
    })
}

fn holder_from_item(item: &Item<'_>) -> Result<Option<StoredHolder>, DomainError> {
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

#[async_trait]
impl AccountStore for DynamoStore {
    async fn insert_account(&self, account: &Account) -> Result<(), DomainError> {
        self.client
            .put_item()
            .table_name(&self.tables.ledger)
            .set_item(Some(account_item(account)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable("PutItem account"))?;
        Ok(())
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Option<Account>, DomainError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.ledger)
            .key("pk", s(account_pk(id)))
            .key("sk", s("ACCT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable("GetItem account"))?;
        let Some(item) = output.item else { return Ok(None) };
        let account = account_from_item(&item)?;
        // Another tenant's account answers exactly like a missing one.
        Ok((&account.tenant == tenant).then_some(account))
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        limit: usize,
        before: Option<AccountId>,
    ) -> Result<Page<Account, AccountId>, DomainError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.tables.ledger)
            .index_name("gsi1")
            .scan_index_forward(false)
            // One extra item tells whether another page exists without a second query.
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .expression_attribute_values(":pk", s(tenant_accounts_pk(tenant)));
        query = match before {
            Some(before) => query
                .key_condition_expression("gsi1pk = :pk AND gsi1sk < :before")
                .expression_attribute_values(":before", s(before.to_string())),
            None => query.key_condition_expression("gsi1pk = :pk"),
        };
        let output = query.send().await.map_err(unavailable("Query accounts"))?;
        let items = output
            .items
            .unwrap_or_default()
            .iter()
            .map(account_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, limit, |a| a.id))
    }
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
                overdraft_limit: Amount::parse("100.50", usd).unwrap(),
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
        let back = account_from_item(&account_item(&account).unwrap()).unwrap();
        assert_eq!(back, account);
    }
}
