//! The DynamoDB store: accounts here, the ledger's reads and writes in `ledger_store`;
//! keys and item codecs in `schema`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use fintx_domain::account::Account;
use fintx_domain::auth::TenantId;
use fintx_domain::ids::AccountId;
use fintx_domain::ports::{AccountStore, Page};
use fintx_domain::DomainError;

use crate::aws::failed;
use crate::schema::{account_from_item, account_item, account_key, s, slot_from_item, slot_key, tenant_accounts_pk};
use crate::settings::Tables;
use fintx_domain::transfer::BALANCE_SLOTS_MAX;

pub struct DynamoStore {
    client: Client,
    tables: Tables,
    /// How many balance slots a movement through a spread account picks from.
    balance_slots: u16,
    /// Spread accounts this environment saw stored: a movement through one of them need
    /// not make sure its account item exists, and so does not touch it (SPEC §10).
    /// Account items are never deleted, so what is remembered stays true.
    opened: std::sync::Mutex<std::collections::HashSet<AccountId>>,
}

/// Spread accounts an environment remembers as stored before it forgets them all.
const OPENED_REMEMBERED_MAX: usize = 10_000;

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            balance_slots: crate::settings::BALANCE_SLOTS_DEFAULT,
            opened: Default::default(),
        }
    }

    /// Movements through spread accounts pick one of `slots` balance items (1 to
    /// [`BALANCE_SLOTS_MAX`]); reads always sum every slot, so this may change at any time.
    pub fn with_balance_slots(mut self, slots: u16) -> Self {
        self.balance_slots = slots.clamp(1, BALANCE_SLOTS_MAX);
        self
    }

    pub fn balance_slots(&self) -> u16 {
        self.balance_slots
    }

    pub(crate) fn is_opened(&self, id: &AccountId) -> bool {
        self.opened.lock().is_ok_and(|known| known.contains(id))
    }

    pub fn remember_opened(&self, ids: impl IntoIterator<Item = AccountId>) {
        if let Ok(mut known) = self.opened.lock() {
            if known.len() >= OPENED_REMEMBERED_MAX {
                known.clear();
            }
            known.extend(ids);
        }
    }

    /// A spread account with its balances and version summed over its item and every
    /// balance slot, read together in one `TransactGetItems` so the sum is never torn.
    /// Other accounts are returned as they are.
    pub(crate) async fn with_slots(&self, account: Account) -> Result<Account, DomainError> {
        if account.parts.is_none() {
            return Ok(account);
        }
        let mut gets = vec![account_key(&account.id)];
        gets.extend((0..BALANCE_SLOTS_MAX).map(|slot| slot_key(&account.id, slot)));
        let gets = gets
            .into_iter()
            .map(|key| {
                let get = aws_sdk_dynamodb::types::Get::builder()
                    .table_name(&self.tables.ledger)
                    .set_key(Some(key))
                    .build()
                    .map_err(|_| DomainError::Unavailable)?;
                Ok(aws_sdk_dynamodb::types::TransactGetItem::builder().get(get).build())
            })
            .collect::<Result<Vec<_>, DomainError>>()?;
        let output = self
            .client
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send()
            .await
            .map_err(failed("TransactGetItems balance slots"))?;
        let mut responses = output.responses.unwrap_or_default().into_iter();
        let main = responses.next().and_then(|r| r.item).ok_or(DomainError::Unavailable)?;
        let mut summed = account_from_item(&main)?;
        self.remember_opened([summed.id]);
        let mut parts = summed.parts.take().unwrap_or_default();
        for (slot, response) in (0..BALANCE_SLOTS_MAX).zip(responses) {
            let Some(item) = response.item else { continue };
            let part = slot_from_item(&item, slot)?;
            summed.balance = summed.balance.plus(&part.balance)?;
            summed.version = summed.version.checked_add(part.version).ok_or(DomainError::Overflow)?;
            parts.slots.push(part);
        }
        summed.parts = Some(parts);
        Ok(summed)
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
                .map_err(failed("BatchGetItem"))?;
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
            .map_err(failed("PutItem account"))?;
        Ok(())
    }

    async fn get_account(&self, tenant: &TenantId, id: &AccountId) -> Result<Option<Account>, DomainError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.ledger)
            .set_key(Some(account_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(failed("GetItem account"))?;
        let Some(item) = output.item else { return Ok(None) };
        let account = account_from_item(&item)?;
        // Another tenant's account answers exactly like a missing one.
        if &account.tenant != tenant {
            return Ok(None);
        }
        self.with_slots(account).await.map(Some)
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
        let output = query.send().await.map_err(failed("Query accounts"))?;
        let mut items = Vec::new();
        for item in output.items.unwrap_or_default() {
            items.push(self.with_slots(account_from_item(&item)?).await?);
        }
        Ok(Page::from_overfetch(items, limit, |a| a.id))
    }
}
