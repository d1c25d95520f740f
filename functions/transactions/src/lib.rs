//! The `transactions` function: the fintx HTTP API for accounts (and, as the ledger
//! grows, transfers and payments). Each request goes event → domain command → store →
//! response; this crate only translates.
#![forbid(unsafe_code)]

mod bodies;
mod history;
mod ledger;
mod lifecycle;
pub mod recent;

pub use ledger::{payment_view, sweep, transfer_view};

use std::sync::Arc;

use bodies::AccountBody;
use fintx_adapters::http::{
    json_body, json_response, page_limit, principal, query_param, respond_or_problem, route_path, JsonObject,
};
use fintx_adapters::system;
use fintx_domain::account::{
    Account, AccountName, Balance, NewAccount, OverdraftLimit, StoredHolder, HOLDER_SEAL_FIELD, HOLDER_SEAL_KIND,
    UNLIMITED,
};
use fintx_domain::auth::{Principal, Scope};
use fintx_domain::crypto::{Cipher, SealContext};
use fintx_domain::holder::{Holder, MaskedHolder};
use fintx_domain::ids::AccountId;
use fintx_domain::lifecycle::StatusChange;
use fintx_domain::money::{format_decimal, Currency};
use fintx_domain::payment::ConnectorGrant;
use fintx_domain::ports::{CursorKeySource, LedgerStore, LedgerWrite, Reads};
use fintx_domain::secret::Secret;
use fintx_domain::DomainError;
use lambda_http::{Body, Request, Response};
use recent::RecentTransfers;
use serde_json::{json, Value};

/// Largest request body the API reads. Every valid request is far smaller; anything
/// larger is refused before parsing.
pub const BODY_MAX_BYTES: usize = 64 * 1024;

/// Everything a request needs, built once per cold start.
pub struct App {
    pub store: Arc<dyn LedgerStore>,
    pub cursor_keys: Arc<dyn CursorKeySource>,
    /// Envelope encryption for holder details.
    pub cipher: Arc<dyn Cipher>,
    /// Connectors payments may use, with the tenants each serves.
    pub connectors: Vec<ConnectorGrant>,
    /// Local development only (see `Settings::dev_auth_headers`).
    pub dev_auth_headers: bool,
    /// Transfers this environment saw lately, so their changes can skip a read.
    pub recent: RecentTransfers,
}

/// Handles one API request. Never fails: every error becomes a problem response.
pub async fn handle(app: &App, request: Request) -> Response<Body> {
    respond_or_problem(route(app, &request).await)
}

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    CreateAccount,
    ListAccounts,
    GetAccount,
    UpdateAccount,
    FreezeAccount,
    UnfreezeAccount,
    CloseAccount,
    ListAccountTransfers,
    ListAccountEntries,
    GetBalanceAt,
    CreateTransfer,
    CreateBatch,
    GetTransfer,
    PostTransfer,
    VoidTransfer,
    ReverseTransfer,
    CreatePayment,
    GetPayment,
}

/// One route of the API: method, path (`{id}` matches one segment), the scope a caller
/// needs, and what it does.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub scope: Scope,
    pub handler: Handler,
}

/// Every route of the transactions API, with the scope it requires (SPEC §4). Checked
/// against `openapi.yaml` and `template.yaml` by the tests.
pub const ROUTES: [Route; 18] = [
    entry("POST", "/v1/accounts", Scope::LedgerWrite, Handler::CreateAccount),
    entry("GET", "/v1/accounts", Scope::LedgerRead, Handler::ListAccounts),
    entry("GET", "/v1/accounts/{id}", Scope::LedgerRead, Handler::GetAccount),
    entry("PATCH", "/v1/accounts/{id}", Scope::LedgerWrite, Handler::UpdateAccount),
    entry(
        "POST",
        "/v1/accounts/{id}/freeze",
        Scope::LedgerWrite,
        Handler::FreezeAccount,
    ),
    entry(
        "POST",
        "/v1/accounts/{id}/unfreeze",
        Scope::LedgerWrite,
        Handler::UnfreezeAccount,
    ),
    entry(
        "POST",
        "/v1/accounts/{id}/close",
        Scope::LedgerWrite,
        Handler::CloseAccount,
    ),
    entry(
        "GET",
        "/v1/accounts/{id}/transfers",
        Scope::LedgerRead,
        Handler::ListAccountTransfers,
    ),
    entry(
        "GET",
        "/v1/accounts/{id}/entries",
        Scope::LedgerRead,
        Handler::ListAccountEntries,
    ),
    entry(
        "GET",
        "/v1/accounts/{id}/balance",
        Scope::LedgerRead,
        Handler::GetBalanceAt,
    ),
    entry("POST", "/v1/transfers", Scope::LedgerWrite, Handler::CreateTransfer),
    entry("POST", "/v1/transfer-batches", Scope::LedgerWrite, Handler::CreateBatch),
    entry("GET", "/v1/transfers/{id}", Scope::LedgerRead, Handler::GetTransfer),
    entry(
        "POST",
        "/v1/transfers/{id}/post",
        Scope::LedgerWrite,
        Handler::PostTransfer,
    ),
    entry(
        "POST",
        "/v1/transfers/{id}/void",
        Scope::LedgerWrite,
        Handler::VoidTransfer,
    ),
    entry(
        "POST",
        "/v1/transfers/{id}/reverse",
        Scope::LedgerWrite,
        Handler::ReverseTransfer,
    ),
    entry("POST", "/v1/payments", Scope::LedgerWrite, Handler::CreatePayment),
    entry("GET", "/v1/payments/{id}", Scope::LedgerRead, Handler::GetPayment),
];

const fn entry(method: &'static str, path: &'static str, scope: Scope, handler: Handler) -> Route {
    Route {
        method,
        path,
        scope,
        handler,
    }
}

/// The route a request's method and path name, with its `{id}` segment if any. Compared
/// as strings around the one `{id}` a pattern may hold, without splitting or allocating:
/// this runs on every request.
pub fn find_route<'a>(method: &str, path: &'a str) -> Option<(&'static Route, Option<&'a str>)> {
    let path = path.trim_end_matches('/');
    ROUTES
        .iter()
        .filter(|r| r.method == method)
        .find_map(|r| route_matches(r.path, path).map(|id| (r, id)))
}

fn route_matches<'a>(pattern: &str, path: &'a str) -> Option<Option<&'a str>> {
    // A byte search for `{`: a substring search would set up a searcher per route.
    let Some(brace) = pattern.find('{') else {
        return (pattern == path).then_some(None);
    };
    let (before, after) = pattern.split_at(brace);
    let after = after.strip_prefix("{id}")?;
    let rest = path.strip_prefix(before)?;
    let (id, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (tail == after).then_some(Some(id))
}

async fn route(app: &App, request: &Request) -> Result<Response<Body>, DomainError> {
    let caller = principal(request, app.dev_auth_headers)?;
    let path = route_path(request).to_owned();
    let (route, id) = find_route(request.method().as_str(), &path).ok_or(DomainError::NotFound)?;
    caller.require(route.scope)?;
    let id = id.unwrap_or_default();
    match route.handler {
        Handler::CreateAccount => create_account(app, &caller, request).await,
        Handler::ListAccounts => list_accounts(app, &caller, request).await,
        Handler::GetAccount => get_account(app, &caller, id, request).await,
        Handler::UpdateAccount => lifecycle::update_account(app, &caller, request, id).await,
        Handler::FreezeAccount => {
            lifecycle::change_account_status(app, &caller, request, id, StatusChange::Freeze).await
        }
        Handler::UnfreezeAccount => {
            lifecycle::change_account_status(app, &caller, request, id, StatusChange::Unfreeze).await
        }
        Handler::CloseAccount => lifecycle::change_account_status(app, &caller, request, id, StatusChange::Close).await,
        Handler::ListAccountTransfers => ledger::list_account_transfers(app, &caller, request, id).await,
        Handler::ListAccountEntries => history::list_entries(app, &caller, request, id).await,
        Handler::GetBalanceAt => history::balance_at(app, &caller, request, id).await,
        Handler::CreateTransfer => ledger::create_transfer(app, &caller, request).await,
        Handler::CreateBatch => ledger::create_batch(app, &caller, request).await,
        Handler::GetTransfer => ledger::get_transfer(app, &caller, id).await,
        Handler::PostTransfer => ledger::transition(app, &caller, request, id, ledger::Action::Post).await,
        Handler::VoidTransfer => ledger::transition(app, &caller, request, id, ledger::Action::Void).await,
        Handler::ReverseTransfer => ledger::transition(app, &caller, request, id, ledger::Action::Reverse).await,
        Handler::CreatePayment => ledger::create_payment(app, &caller, request).await,
        Handler::GetPayment => ledger::get_payment(app, &caller, id).await,
    }
}

async fn create_account(app: &App, caller: &Principal, request: &Request) -> Result<Response<Body>, DomainError> {
    let body = json_body(request, BODY_MAX_BYTES)?;
    let key = ledger::idempotency_key(request, false)?;
    let object = JsonObject::parse(body)?;
    let idem = key.map(|key| ledger::Idempotency::new(caller, "POST /v1/accounts", &key, &object.canonical()));
    let mut command = NewAccount::try_from(AccountBody::try_from(object)?)?;
    let now = system::now();
    let id = AccountId::from_ulid(system::new_ulid(now));
    // Seal before anything is written: if KMS is unavailable the request fails with
    // `encryption_unavailable` and the ledger is untouched.
    let holder = match command.holder.take() {
        None => None,
        Some(holder) => {
            let context = SealContext::new(&caller.tenant, HOLDER_SEAL_KIND, id, HOLDER_SEAL_FIELD);
            let sealed = app.cipher.seal(holder_plaintext(&holder).expose(), &context).await?;
            Some(StoredHolder {
                sealed,
                masked: holder.masked(),
            })
        }
    };
    let account = Account::open(id, caller.tenant.clone(), command, holder, now);
    let view = account_view(&account, now);
    app.recent.remember_account(&account);
    // An unlimited account is written with its balance slots, in one transaction.
    if idem.is_none() && !account.spreads() {
        app.store.insert_account(&account).await?;
        tracing::info!(account_id = %account.id, "account opened");
        return Ok(json_response(201, &view));
    }
    // With a key, the account and its idempotency record commit together, in one
    // round trip: nothing needs reading before a new account is written.
    let open = || -> Result<ledger::Decision, DomainError> {
        let write = LedgerWrite {
            new_accounts: vec![account.clone()],
            ..LedgerWrite::default()
        };
        Ok(ledger::Decision::Write(Box::new(write), 201, ledger::to_body(&view)?))
    };
    ledger::execute(app, caller, idem, Reads::default(), || open().ok(), |_| open()).await
}

/// The bytes that get sealed: the holder as JSON, zeroized when dropped.
pub(crate) fn holder_plaintext(holder: &Holder) -> Secret<Vec<u8>> {
    let value = json!({
        "name": holder.name.expose(),
        "account_number": holder.account_number.as_ref().map(Secret::expose),
        "routing_number": holder.routing_number.as_ref().map(Secret::expose),
        "iban": holder.iban.as_ref().map(Secret::expose),
    });
    Secret::new(serde_json::to_vec(&value).unwrap_or_default())
}

async fn get_account(
    app: &App,
    caller: &Principal,
    id: &str,
    request: &Request,
) -> Result<Response<Body>, DomainError> {
    let reveal = match query_param(request, "reveal").as_deref() {
        None => false,
        Some("holder") => {
            caller.require(Scope::PiiRead)?;
            true
        }
        Some(_) => return Err(DomainError::invalid_request("reveal may only be `holder`")),
    };
    let id = AccountId::parse(id).ok_or(DomainError::AccountNotFound)?;
    let account = app
        .store
        .get_account(&caller.tenant, &id)
        .await?
        .ok_or(DomainError::AccountNotFound)?;
    let mut view = account_view(&account, system::now());
    if let (true, Some(holder)) = (reveal, &account.holder) {
        let context = SealContext::new(&caller.tenant, HOLDER_SEAL_KIND, account.id, HOLDER_SEAL_FIELD);
        let plaintext = app.cipher.open(&holder.sealed, &context).await?;
        let revealed: Value = serde_json::from_slice(plaintext.expose()).map_err(|_| DomainError::Unavailable)?;
        // The audit trail of who saw which record's PII; never the data itself.
        fintx_adapters::audit::pii_reveal(
            caller.tenant.as_str(),
            caller.subject.as_deref().unwrap_or("unknown"),
            &account.id.to_string(),
            HOLDER_SEAL_FIELD,
        );
        view["holder"] = revealed;
    }
    Ok(json_response(200, &view))
}

pub(crate) fn masked_holder_view(mask: &MaskedHolder) -> Value {
    json!({
        "name_initials": mask.name_initials,
        "account_number_last4": mask.account_number_last4,
        "iban_last4": mask.iban_last4,
    })
}

const ACCOUNTS_LISTING: &str = "accounts";

async fn list_accounts(app: &App, caller: &Principal, request: &Request) -> Result<Response<Body>, DomainError> {
    let limit = page_limit(request)?;
    let before = match query_param(request, "cursor") {
        None => None,
        Some(cursor) => {
            let key = app.cursor_keys.cursor_key().await?;
            let position = key.open(&caller.tenant, ACCOUNTS_LISTING, &cursor)?;
            Some(AccountId::parse(&position).ok_or(DomainError::InvalidCursor)?)
        }
    };
    let page = app.store.list_accounts(&caller.tenant, limit, before).await?;
    let next_cursor = match page.next {
        None => None,
        Some(last) => {
            let key = app.cursor_keys.cursor_key().await?;
            Some(key.seal(&caller.tenant, ACCOUNTS_LISTING, &last.to_string()))
        }
    };
    let now = system::now();
    let data: Vec<Value> = page.items.iter().map(|a| account_view(a, now)).collect();
    Ok(json_response(200, &json!({ "data": data, "next_cursor": next_cursor })))
}

/// The account as the API shows it at `now` (SPEC §6): holds past their `expires_at` no
/// longer count, whether or not storage has released them.
/// An account's `balance` object (SPEC §6).
pub fn balance_view(balance: &Balance, c: Currency) -> Value {
    let available = balance.available().map(|a| format_decimal(a, c)).unwrap_or_default();
    json!({
        "posted": format_decimal(balance.posted, c),
        "pending_debits": format_decimal(balance.pending_debits, c),
        "pending_credits": format_decimal(balance.pending_credits, c),
        "available": available,
    })
}

pub fn account_view(stored: &Account, now: fintx_domain::clock::Timestamp) -> Value {
    let account = &stored.at(now);
    let c = account.currency;
    json!({
        "id": account.id,
        "currency": c.code(),
        "name": account.name.as_ref().map(AccountName::as_str),
        "holder": account.holder.as_ref().map(|h| masked_holder_view(&h.masked)),
        "overdraft_limit": match account.overdraft_limit {
            OverdraftLimit::Bounded(limit) => format_decimal(limit.value(), c),
            OverdraftLimit::Unlimited => UNLIMITED.to_owned(),
        },
        "balance": balance_view(&account.balance, c),
        "metadata": account.metadata.pairs(),
        "kind": account.kind.as_str(),
        "status": account.status.as_str(),
        "created_at": account.created_at,
        "version": account.version,
    })
}
