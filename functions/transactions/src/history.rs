//! An account's history (SPEC §6): its statement (`GET /v1/accounts/{id}/entries`) and
//! its balance at an instant (`GET /v1/accounts/{id}/balance?at=`). Both are read back
//! from the account's balances as they stand, through the entries after the instant
//! asked for; the account is read before and after them, and the reads are repeated
//! until it did not move in between, so a figure never mixes two states.

use std::str::FromStr;

use fintx_adapters::http::{json_response, page_limit, query_param};
use fintx_adapters::system;
use fintx_domain::account::Account;
use fintx_domain::auth::Principal;
use fintx_domain::clock::Timestamp;
use fintx_domain::ids::AccountId;
use fintx_domain::money::format_decimal;
use fintx_domain::statement::{balance_at as balance_then, lines, posted_before, EntryRange, Position};
use fintx_domain::DomainError;
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use serde_json::json;

use crate::{balance_view, App};

/// How often the reads are repeated while the account keeps moving under them.
const CONSISTENT_ATTEMPTS: usize = 8;

/// An RFC 3339 query parameter, if given.
fn instant(request: &Request, name: &str) -> Result<Option<Timestamp>, DomainError> {
    query_param(request, name)
        .map(|text| {
            Timestamp::parse_rfc3339(&text)
                .ok_or_else(|| DomainError::invalid_request(format!("{name} must be an RFC 3339 timestamp")))
        })
        .transpose()
}

/// The account as read, and whether it is still at that version.
async fn account(app: &App, caller: &Principal, id: &AccountId) -> Result<Account, DomainError> {
    app.store
        .get_account(&caller.tenant, id)
        .await?
        .ok_or(DomainError::AccountNotFound)
}

async fn unchanged(app: &App, caller: &Principal, read: &Account) -> Result<bool, DomainError> {
    Ok(account(app, caller, &read.id).await?.version == read.version)
}

pub(crate) async fn balance_at(
    app: &App,
    caller: &Principal,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, DomainError> {
    let at = instant(request, "at")?.ok_or_else(|| DomainError::invalid_request("at is required"))?;
    let id = AccountId::parse(id).ok_or(DomainError::AccountNotFound)?;
    if at > system::now() {
        return Err(DomainError::invalid_request("at must not be in the future"));
    }
    let later = EntryRange {
        from: Some(Position::after(at)),
        ..EntryRange::default()
    };
    for _ in 0..CONSISTENT_ATTEMPTS {
        let stored = account(app, caller, &id).await?;
        // Before the account existed, there was no account.
        if at < stored.created_at {
            return Err(DomainError::AccountNotFound);
        }
        let entries = app.store.account_entries(&caller.tenant, &stored, &later, None).await?;
        if !unchanged(app, caller, &stored).await? {
            continue;
        }
        let balance = balance_then(&stored, &entries.items, at)?;
        return Ok(json_response(200, &balance_view(&balance, stored.currency)));
    }
    tracing::warn!("an account kept moving under a balance-at read");
    Err(DomainError::Unavailable)
}

/// Where a statement page starts: below `position`, whose posted balance was `posted`.
struct Resume {
    position: Position,
    posted: Decimal,
}

impl Resume {
    fn seal_text(&self) -> String {
        format!("{}|{}", self.position.encode(), self.posted)
    }

    fn open_text(text: &str) -> Option<Self> {
        let (position, posted) = text.split_once('|')?;
        Some(Resume {
            position: Position::decode(position)?,
            posted: Decimal::from_str(posted).ok()?,
        })
    }
}

pub(crate) async fn list_entries(
    app: &App,
    caller: &Principal,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, DomainError> {
    let limit = page_limit(request)?;
    let from = instant(request, "from")?;
    let to = instant(request, "to")?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(DomainError::invalid_request("from must not be after to"));
        }
    }
    let id = AccountId::parse(id).ok_or(DomainError::AccountNotFound)?;
    let listing = format!("entries:{id}");
    let resume = match query_param(request, "cursor") {
        None => None,
        Some(cursor) => {
            let key = app.cursor_keys.cursor_key().await?;
            let text = key.open(&caller.tenant, &listing, &cursor)?;
            Some(Resume::open_text(&text).ok_or(DomainError::InvalidCursor)?)
        }
    };
    for _ in 0..CONSISTENT_ATTEMPTS {
        let stored = account(app, caller, &id).await?;
        // The top of the page and the posted balance just after it: where the cursor
        // left off, or the account as it stands now.
        let (mut below, mut posted) = match &resume {
            Some(r) => (Some(r.position), r.posted),
            None => (None, stored.balance.posted),
        };
        if let Some(top) = to.map(Position::after) {
            if below.is_none_or(|b| top < b) {
                // Entries after `to` are not listed, but the balance walks back past them.
                let skipped = EntryRange {
                    from: Some(top),
                    below,
                    posted_only: true,
                };
                let skipped = app
                    .store
                    .account_entries(&caller.tenant, &stored, &skipped, None)
                    .await?;
                posted = posted_before(posted, &skipped.items)?;
                below = Some(top);
            }
        }
        let range = EntryRange {
            from: from.map(|f| Position::start_of(f.unix_ms())),
            below,
            posted_only: true,
        };
        let page = app
            .store
            .account_entries(&caller.tenant, &stored, &range, Some(limit))
            .await?;
        if resume.is_none() && !unchanged(app, caller, &stored).await? {
            continue;
        }
        let (lines, rest) = lines(page.items, posted)?;
        let c = stored.currency;
        let data: Vec<_> = lines
            .iter()
            .map(|line| {
                let e = &line.entry;
                json!({
                    "transfer_id": e.transfer_id,
                    "direction": if e.posted.is_sign_negative() { "debit" } else { "credit" },
                    "amount": format_decimal(e.posted.abs(), c),
                    "posted_after": format_decimal(line.posted_after, c),
                    "created_at": e.at,
                })
            })
            .collect();
        let next_cursor = match page.next {
            None => None,
            Some(position) => {
                let resume = Resume { position, posted: rest };
                Some(
                    app.cursor_keys
                        .cursor_key()
                        .await?
                        .seal(&caller.tenant, &listing, &resume.seal_text()),
                )
            }
        };
        return Ok(json_response(200, &json!({ "data": data, "next_cursor": next_cursor })));
    }
    tracing::warn!("an account kept moving under a statement read");
    Err(DomainError::Unavailable)
}
