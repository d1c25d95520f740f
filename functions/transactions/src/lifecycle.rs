//! Account settings and lifecycle (SPEC §6): `PATCH /v1/accounts/{id}` under the
//! account's version, and freeze, unfreeze and close. Each reads the account, decides in
//! the domain, and writes the whole account back on condition that its version has not
//! moved, so a balance change or another update in between makes it decide again.

use std::sync::Mutex;

use fintx_adapters::http::{canonical_json, json_body, JsonObject};
use fintx_adapters::system;
use fintx_domain::account::Account;
use fintx_domain::auth::Principal;
use fintx_domain::clock::Timestamp;
use fintx_domain::ids::AccountId;
use fintx_domain::lifecycle::{apply_patch, change_status, AccountChange, StatusChange};
use fintx_domain::ports::{AccountUpdate, LedgerWrite, Reads, Snapshot};
use fintx_domain::DomainError;
use lambda_http::{Body, Request, Response};

use crate::bodies::AccountPatchBody;
use crate::ledger::{execute, idempotency_key, to_body, Decision, Idempotency};
use crate::{account_view, App, BODY_MAX_BYTES};

fn the_account(snapshot: &Snapshot) -> Result<&Account, DomainError> {
    snapshot
        .accounts
        .first()
        .and_then(Option::as_ref)
        .ok_or(DomainError::AccountNotFound)
}

/// The account as changed (`Some`) or as it stands (`None`), answered with 200. A change
/// writes the whole account back, and releases the holds it stored past their
/// `expires_at` (their transfers and other sides) in the same write.
fn decision(account: &Account, changed: Option<AccountChange>, now: Timestamp) -> Result<Decision, DomainError> {
    Ok(match changed {
        None => Decision::Respond(200, to_body(&account_view(account, now))?),
        Some(change) => {
            let view = to_body(&account_view(&change.account, now))?;
            let write = LedgerWrite {
                account_updates: vec![AccountUpdate {
                    account: change.account,
                    version: account.version,
                    change: change.released,
                }],
                expirations: change.expired,
                entries: change.entries,
                deltas: change.others,
                ..LedgerWrite::default()
            };
            Decision::Write(Box::new(write), 200, view)
        }
    })
}

pub(crate) async fn update_account(
    app: &App,
    caller: &Principal,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, DomainError> {
    let body = json_body(request, BODY_MAX_BYTES)?;
    let patch = AccountPatchBody::try_from(JsonObject::parse(body)?)?;
    let now = system::now();
    let id = AccountId::parse(id).ok_or(DomainError::AccountNotFound)?;
    let reads = Reads {
        accounts: vec![id],
        ..Reads::default()
    };
    // No idempotency key: the version makes a repeated PATCH a conflict, never a
    // second change. The account this request last sent is kept: found stored after a
    // write whose answer was lost, it is this request's own outcome, not a conflict.
    let sent: Mutex<Option<Account>> = Mutex::new(None);
    execute(
        app,
        caller,
        None,
        reads,
        || None,
        |snapshot| {
            let account = the_account(snapshot)?;
            let mut sent = sent.lock().map_err(|_| DomainError::Unavailable)?;
            // Compared as the client sees it: how a store keeps an account's balance
            // slots (its parts as read) is not part of what was sent.
            let unparted = |a: &Account| Account {
                parts: None,
                ..a.clone()
            };
            if sent.as_ref().map(unparted) == Some(unparted(account)) {
                return decision(account, None, now);
            }
            let patch = patch.clone().patch(account.currency)?;
            let changed = apply_patch(account, &patch, now)?;
            *sent = changed.as_ref().map(|c| c.account.clone());
            decision(account, changed, now)
        },
    )
    .await
}

pub(crate) async fn change_account_status(
    app: &App,
    caller: &Principal,
    request: &Request,
    id: &str,
    change: StatusChange,
) -> Result<Response<Body>, DomainError> {
    let body = json_body(request, BODY_MAX_BYTES)?;
    let route = format!("POST /v1/accounts/{id}/{}", change.as_str());
    let key = idempotency_key(request, true)?;
    // The body is empty or `{}`: these changes take no fields.
    JsonObject::parse_optional(body)?.finish()?;
    let idem = key.map(|key| Idempotency::new(caller, &route, &key, &canonical_json(body)));
    let now = system::now();
    let id = AccountId::parse(id).ok_or(DomainError::AccountNotFound)?;
    let reads = Reads {
        accounts: vec![id],
        ..Reads::default()
    };
    execute(
        app,
        caller,
        idem,
        reads,
        || None,
        |snapshot| {
            let account = the_account(snapshot)?;
            decision(account, change_status(account, change, now)?, now)
        },
    )
    .await
}
