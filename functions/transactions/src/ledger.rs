//! Money-moving routes: transfers, holds, reversals and payments, with idempotency.
//!
//! Every money-moving request reads what it decides on in one round trip, decides in the
//! domain, and commits its whole effect, idempotency record included, in one DynamoDB
//! transaction whose conditions settle every race. A write refused because a record
//! moved on is decided again from a fresh read, with jittered backoff, within a budget.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fintx_adapters::commit::{commit_resending, jittered_backoff};
use fintx_adapters::http::{canonical_json, json_body, json_response, JsonObject};
use fintx_adapters::system;
use fintx_domain::account::{Account, AccountKind, Metadata};
use fintx_domain::auth::Principal;
use fintx_domain::clock::Timestamp;
use fintx_domain::crypto::SealContext;
use fintx_domain::idempotency::{fingerprint, scope_key, IdempotencyKey, IdempotencyRecord};
use fintx_domain::ids::{AccountId, PaymentId, TransferId};
use fintx_domain::money::{format_decimal, Amount, Currency};
use fintx_domain::payment::{
    parse_reference, ConnectorName, Payment, PaymentStatus, COUNTERPARTY_SEAL_FIELD, COUNTERPARTY_SEAL_KIND,
};
use fintx_domain::ports::{ClearingKey, CommitError, LedgerWrite, Reads, Rejection, Snapshot};
use fintx_domain::transfer::{
    check_api_transition, open_api_transfer, open_transfer, parse_description, post_pending, reverse_posted,
    void_pending, NewTransfer, Transfer, Transition,
};
use fintx_domain::{DomainError, Problem};
use lambda_http::http::header::{HeaderValue, CONTENT_TYPE};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{holder_plaintext, masked_holder_view, parse_holder, App, BODY_MAX_BYTES};

/// Attempts and time a request may spend on writes refused by concurrent writers.
const ATTEMPTS_MAX: u32 = 40;
const BUDGET: Duration = Duration::from_secs(5);

/// The idempotency key of a request, scoped and fingerprinted.
pub(crate) struct Idempotency {
    scope: String,
    fingerprint: String,
}

/// Reads the `Idempotency-Key` header: required on money-moving routes, optional on
/// account creation. Read before the body, so a missing key is the first error reported.
pub(crate) fn idempotency_key(request: &Request, required: bool) -> Result<Option<IdempotencyKey>, DomainError> {
    let Some(header) = request.headers().get("idempotency-key") else {
        return if required {
            Err(DomainError::IdempotencyKeyMissing)
        } else {
            Ok(None)
        };
    };
    let text = header
        .to_str()
        .map_err(|_| DomainError::invalid_request("Idempotency-Key is 1 to 255 printable ASCII characters"))?;
    IdempotencyKey::parse(text).map(Some)
}

impl Idempotency {
    /// The key scoped to tenant and route, with the fingerprint of the request's
    /// canonical body.
    pub(crate) fn new(caller: &Principal, route: &str, key: &IdempotencyKey, canonical_body: &[u8]) -> Self {
        Self {
            scope: scope_key(&caller.tenant, route, key),
            fingerprint: fingerprint(route, canonical_body),
        }
    }
}

/// What a request decided from a snapshot.
pub(crate) enum Decision {
    /// Read these as well, then decide again.
    ReadMore(Reads),
    /// Nothing changes; answer this (status and JSON text).
    Respond(u16, String),
    /// Commit this write, then answer.
    Write(Box<LedgerWrite>, u16, String),
}

/// A response view as the JSON text that is sent and recorded for replays.
pub(crate) fn to_body(view: &impl Serialize) -> Result<String, DomainError> {
    serde_json::to_string(view).map_err(|error| {
        tracing::error!(%error, "response serialisation failed");
        DomainError::Unavailable
    })
}

fn respond(status: u16, body: &str, replayed: bool) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_owned()));
    *response.status_mut() =
        lambda_http::http::StatusCode::from_u16(status).unwrap_or(lambda_http::http::StatusCode::OK);
    let content_type = if status >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn record(idem: &Idempotency, status: u16, body: &str) -> IdempotencyRecord {
    IdempotencyRecord::new(
        idem.scope.clone(),
        idem.fingerprint.clone(),
        status,
        body.to_owned(),
        system::now().unix_ms(),
    )
}

/// Answers from a recorded outcome. A record this very request wrote (its commit's
/// answer was lost and the re-sent write found it) is answered as the first attempt
/// would have been; anyone else's is a replay.
fn replay(
    record: &IdempotencyRecord,
    idem: &Idempotency,
    own: Option<&IdempotencyRecord>,
) -> Result<Response<Body>, DomainError> {
    if record.fingerprint != idem.fingerprint {
        return Err(DomainError::IdempotencyKeyReused);
    }
    Ok(respond(record.status, &record.body, own != Some(record)))
}

/// Runs one money-moving request to its recorded outcome.
pub(crate) async fn execute(
    app: &App,
    caller: &Principal,
    idem: Option<Idempotency>,
    mut reads: Reads,
    decide: impl Fn(&Snapshot) -> Result<Decision, DomainError>,
) -> Result<Response<Body>, DomainError> {
    reads.idempotency = idem.as_ref().map(|i| i.scope.clone());
    let started = Instant::now();
    // The idempotency record this request last sent: found back after a lost answer,
    // it is this request's own outcome.
    let mut sent: Option<IdempotencyRecord> = None;
    for attempt in 0..ATTEMPTS_MAX {
        if started.elapsed() > BUDGET {
            break;
        }
        let snapshot = app.store.read(&caller.tenant, &reads).await?;
        if let (Some(idem), Some(recorded)) = (&idem, &snapshot.idempotency) {
            return replay(recorded, idem, sent.as_ref());
        }
        let decision = match decide(&snapshot) {
            Ok(decision) => decision,
            // Malformed and transient outcomes are never recorded (SPEC §5).
            Err(error) if !error.code().is_business_refusal() => return Err(error),
            Err(error) => match record_outcome(app, idem.as_ref(), &error, &mut sent).await? {
                true => return Err(error),
                false => continue,
            },
        };
        let (mut write, status, text) = match decision {
            Decision::ReadMore(more) => {
                reads = Reads {
                    idempotency: reads.idempotency.take(),
                    ..more
                };
                continue;
            }
            Decision::Respond(status, text) => (LedgerWrite::default(), status, text),
            Decision::Write(write, status, text) => (*write, status, text),
        };
        write.idempotency = idem.as_ref().map(|i| record(i, status, &text));
        if write.is_empty() {
            return Ok(respond(status, &text, false));
        }
        sent.clone_from(&write.idempotency);
        match commit_resending(app.store.as_ref(), &write).await {
            Ok(()) => {
                if !write.new_transfers.is_empty() {
                    fintx_adapters::metrics::emit("Transfers", write.new_transfers.len() as f64, "Count", None);
                }
                return Ok(respond(status, &text, false));
            }
            Err(CommitError::Rejected(Rejection::IdempotencyRecorded)) => continue,
            Err(CommitError::Rejected(Rejection::IdempotencyInFlight)) => return Err(DomainError::IdempotencyKeyInUse),
            Err(CommitError::Rejected(Rejection::InsufficientFunds)) => {
                let error = DomainError::InsufficientFunds;
                match record_outcome(app, idem.as_ref(), &error, &mut sent).await? {
                    true => return Err(error),
                    false => continue,
                }
            }
            Err(CommitError::Rejected(Rejection::Stale | Rejection::Contention | Rejection::EventRecorded)) => {
                tracing::debug!(attempt, "write refused by a concurrent change; deciding again");
                tokio::time::sleep(jittered_backoff(attempt)).await;
            }
            Err(CommitError::Failed(error)) => return Err(error),
        }
    }
    tracing::warn!("retry budget exhausted under contention");
    Err(DomainError::Unavailable)
}

/// Records a business refusal under the key so a retry replays it. Returns false when the
/// key was recorded meanwhile (the caller replays that instead).
async fn record_outcome(
    app: &App,
    idem: Option<&Idempotency>,
    error: &DomainError,
    sent: &mut Option<IdempotencyRecord>,
) -> Result<bool, DomainError> {
    let Some(idem) = idem else { return Ok(true) };
    let problem = Problem::from(error);
    let body = serde_json::to_string(&problem).map_err(|_| DomainError::Unavailable)?;
    let write = LedgerWrite {
        idempotency: Some(record(idem, problem.status, &body)),
        ..LedgerWrite::default()
    };
    sent.clone_from(&write.idempotency);
    match commit_resending(app.store.as_ref(), &write).await {
        Ok(()) => Ok(true),
        // Recorded meanwhile (by another request, or by this one's lost answer): replay.
        Err(CommitError::Rejected(Rejection::IdempotencyRecorded)) => Ok(false),
        Err(CommitError::Rejected(Rejection::IdempotencyInFlight)) => Err(DomainError::IdempotencyKeyInUse),
        // Refused by a concurrent transaction: decide again rather than answer a
        // refusal that a replay would not find.
        Err(CommitError::Rejected(_)) => {
            tokio::time::sleep(jittered_backoff(0)).await;
            Ok(false)
        }
        Err(CommitError::Failed(e)) => Err(e),
    }
}

// --------------------------------------------------------------------------- views

/// A transfer as the API shows it (SPEC §6), serialised straight from the record.
/// Fields are in name order, the order of the JSON objects it replaced, so the text of
/// a response is the same as the one recorded for its replay before.
#[derive(Serialize)]
pub struct TransferView<'a> {
    amount: String,
    created_at: Timestamp,
    credit_account_id: AccountId,
    currency: &'static str,
    debit_account_id: AccountId,
    description: Option<&'a str>,
    id: TransferId,
    metadata: &'a BTreeMap<String, String>,
    payment_id: Option<PaymentId>,
    posted_amount: String,
    reversed_amount: String,
    reverses: Option<TransferId>,
    status: &'static str,
    updated_at: Timestamp,
    version: u64,
}

pub fn transfer_view(t: &Transfer) -> TransferView<'_> {
    let c = t.currency;
    TransferView {
        amount: format_decimal(t.amount.value(), c),
        created_at: t.created_at,
        credit_account_id: t.credit_account_id,
        currency: c.code(),
        debit_account_id: t.debit_account_id,
        description: t.description.as_deref(),
        id: t.id,
        metadata: t.metadata.pairs(),
        payment_id: t.payment_id,
        posted_amount: format_decimal(t.posted_amount.value(), c),
        reversed_amount: format_decimal(t.reversed_amount.value(), c),
        reverses: t.reverses,
        status: t.status.as_str(),
        updated_at: t.updated_at,
        version: t.version,
    }
}

pub fn payment_view(p: &Payment) -> Value {
    json!({
        "id": p.id,
        "account_id": p.account_id,
        "transfer_id": p.transfer_id,
        "status": p.status.as_str(),
        "connector": p.connector.as_str(),
        "counterparty": masked_holder_view(&p.counterparty_masked),
        "amount": format_decimal(p.amount.value(), p.currency),
        "currency": p.currency.code(),
        "reference": p.reference,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "version": p.version,
    })
}

// --------------------------------------------------------------------------- parsing

fn account_id_field(object: &mut JsonObject, field: &str) -> Result<AccountId, DomainError> {
    let text = object.required_string(field)?;
    // An id that cannot exist cannot be the tenant's account.
    AccountId::parse(&text).ok_or(DomainError::AccountNotFound)
}

fn required_amount(object: &mut JsonObject, field: &str) -> Result<String, DomainError> {
    object
        .amount(field)?
        .ok_or_else(|| DomainError::invalid_request(format!("`{field}` is required")))
}

/// `POST /v1/transfers` body, parsed once → command.
fn new_transfer(mut o: JsonObject) -> Result<NewTransfer, DomainError> {
    let debit = o.required_string("debit_account_id")?;
    let credit = o.required_string("credit_account_id")?;
    let amount = required_amount(&mut o, "amount")?;
    let currency = o.required_string("currency")?;
    let pending = o.boolean("pending")?.unwrap_or(false);
    let description = parse_description(o.string("description")?)?;
    let metadata = Metadata::parse(o.string_map("metadata")?.unwrap_or_default())?;
    o.finish()?;
    let currency = Currency::parse(&currency)?;
    Ok(NewTransfer {
        debit_account_id: AccountId::parse(&debit).ok_or(DomainError::AccountNotFound)?,
        credit_account_id: AccountId::parse(&credit).ok_or(DomainError::AccountNotFound)?,
        amount: Amount::parse_positive(&amount, currency)?,
        currency,
        pending,
        description,
        metadata,
    })
}

// --------------------------------------------------------------------------- routes

pub(crate) async fn create_transfer(
    app: &App,
    caller: &Principal,
    request: &Request,
) -> Result<Response<Body>, DomainError> {
    let body = json_body(request, BODY_MAX_BYTES)?;
    let key = idempotency_key(request, true)?;
    let object = JsonObject::parse(body)?;
    let idem = key.map(|key| Idempotency::new(caller, "POST /v1/transfers", &key, &object.canonical()));
    let command = new_transfer(object)?;
    let now = system::now();
    let id = TransferId::from_ulid(system::new_ulid(now));
    let reads = Reads {
        accounts: vec![command.debit_account_id, command.credit_account_id],
        ..Reads::default()
    };
    execute(app, caller, idem, reads, |snapshot| {
        let (Some(Some(debit)), Some(Some(credit))) = (snapshot.accounts.first(), snapshot.accounts.get(1)) else {
            return Err(DomainError::AccountNotFound);
        };
        let (transfer, deltas) = open_api_transfer(id, &caller.tenant, command.clone(), debit, credit, now)?;
        let view = to_body(&transfer_view(&transfer))?;
        let write = LedgerWrite {
            deltas: deltas.to_vec(),
            new_transfers: vec![transfer],
            ..LedgerWrite::default()
        };
        Ok(Decision::Write(Box::new(write), 201, view))
    })
    .await
}

#[derive(Clone, Copy)]
pub(crate) enum Action {
    Post,
    Void,
    Reverse,
}

pub(crate) async fn transition(
    app: &App,
    caller: &Principal,
    request: &Request,
    id: &str,
    action: Action,
) -> Result<Response<Body>, DomainError> {
    let body = json_body(request, BODY_MAX_BYTES)?;
    let route = match action {
        Action::Post => format!("POST /v1/transfers/{id}/post"),
        Action::Void => format!("POST /v1/transfers/{id}/void"),
        Action::Reverse => format!("POST /v1/transfers/{id}/reverse"),
    };
    let key = idempotency_key(request, true)?;
    let mut o = JsonObject::parse_optional(body)?;
    // A blank body and `{}` fingerprint differently (as their text), so an empty object
    // takes the body's canonical form; any other object is fingerprinted as parsed.
    let canonical = if o.is_empty() {
        canonical_json(body)
    } else {
        o.canonical()
    };
    let idem = key.map(|key| Idempotency::new(caller, &route, &key, &canonical));
    let amount = match action {
        Action::Void => None,
        Action::Post | Action::Reverse => o.amount("amount")?,
    };
    let description = match action {
        Action::Reverse => parse_description(o.string("description")?)?,
        _ => None,
    };
    o.finish()?;
    let id = TransferId::parse(id).ok_or(DomainError::NotFound)?;
    let now = system::now();
    let reversal_id = TransferId::from_ulid(system::new_ulid(now));
    let reads = Reads {
        transfer: Some(id),
        ..Reads::default()
    };
    execute(app, caller, idem, reads, |snapshot| {
        let transfer = snapshot.transfer.as_ref().ok_or(DomainError::NotFound)?;
        let amount = amount
            .as_deref()
            .map(|a| Amount::parse_positive(a, transfer.currency))
            .transpose()?;
        check_api_transition(transfer)?;
        let transition = match action {
            Action::Post => post_pending(transfer, amount, now)?,
            Action::Void => void_pending(transfer, now)?,
            Action::Reverse => {
                // The reversal debits the original credit account: read it with the
                // transfer, then decide.
                let Some(Some(credit)) = snapshot.accounts.first() else {
                    return Ok(Decision::ReadMore(Reads {
                        transfer: Some(id),
                        accounts: vec![transfer.credit_account_id],
                        ..Reads::default()
                    }));
                };
                let r = reverse_posted(transfer, reversal_id, amount, description.clone(), credit, now)?;
                let view = to_body(&transfer_view(&r.reversal))?;
                let write = LedgerWrite {
                    deltas: r.deltas.to_vec(),
                    new_transfers: vec![r.reversal],
                    transfer_updates: vec![(r.original, transfer.version)],
                    ..LedgerWrite::default()
                };
                return Ok(Decision::Write(Box::new(write), 201, view));
            }
        };
        Ok(match transition {
            Transition::Unchanged => Decision::Respond(200, to_body(&transfer_view(transfer))?),
            Transition::Apply(next, deltas) => {
                let view = to_body(&transfer_view(&next))?;
                let write = LedgerWrite {
                    deltas: deltas.to_vec(),
                    transfer_updates: vec![(*next, transfer.version)],
                    ..LedgerWrite::default()
                };
                Decision::Write(Box::new(write), 200, view)
            }
        })
    })
    .await
}

pub(crate) async fn get_transfer(app: &App, caller: &Principal, id: &str) -> Result<Response<Body>, DomainError> {
    let id = TransferId::parse(id).ok_or(DomainError::NotFound)?;
    let snapshot = app
        .store
        .read(
            &caller.tenant,
            &Reads {
                transfer: Some(id),
                ..Reads::default()
            },
        )
        .await?;
    let transfer = snapshot.transfer.ok_or(DomainError::NotFound)?;
    Ok(json_response(200, &transfer_view(&transfer)))
}

pub(crate) async fn list_account_transfers(
    app: &App,
    caller: &Principal,
    request: &Request,
    id: &str,
) -> Result<Response<Body>, DomainError> {
    let limit = fintx_adapters::http::page_limit(request)?;
    let id = AccountId::parse(id).ok_or(DomainError::AccountNotFound)?;
    let listing = format!("transfers:{id}");
    let before = match fintx_adapters::http::query_param(request, "cursor") {
        None => None,
        Some(cursor) => {
            let key = app.cursor_keys.cursor_key().await?;
            let position = key.open(&caller.tenant, &listing, &cursor)?;
            Some(TransferId::parse(&position).ok_or(DomainError::InvalidCursor)?)
        }
    };
    app.store
        .get_account(&caller.tenant, &id)
        .await?
        .ok_or(DomainError::AccountNotFound)?;
    let page = app
        .store
        .list_account_transfers(&caller.tenant, &id, limit, before)
        .await?;
    let next_cursor = match page.next {
        None => None,
        Some(last) => Some(
            app.cursor_keys
                .cursor_key()
                .await?
                .seal(&caller.tenant, &listing, &last.to_string()),
        ),
    };
    let data: Vec<TransferView> = page.items.iter().map(transfer_view).collect();
    Ok(json_response(200, &json!({ "data": data, "next_cursor": next_cursor })))
}

pub(crate) async fn create_payment(
    app: &App,
    caller: &Principal,
    request: &Request,
) -> Result<Response<Body>, DomainError> {
    let body = json_body(request, BODY_MAX_BYTES)?;
    let key = idempotency_key(request, true)?;
    let mut o = JsonObject::parse(body)?;
    let idem = key.map(|key| Idempotency::new(caller, "POST /v1/payments", &key, &o.canonical()));
    let account_id = account_id_field(&mut o, "account_id");
    let amount = required_amount(&mut o, "amount")?;
    let currency = o.required_string("currency")?;
    let connector = o.required_string("connector")?;
    let counterparty = o
        .object("counterparty")?
        .ok_or_else(|| DomainError::invalid_request("`counterparty` is required"))?;
    let counterparty = parse_holder(counterparty)?;
    let reference = parse_reference(o.string("reference")?)?;
    o.finish()?;
    let currency = Currency::parse(&currency)?;
    let amount = Amount::parse_positive(&amount, currency)?;
    let account_id = account_id?;
    let connector = ConnectorName::parse(&connector)
        // A connector that does not serve this tenant is unknown to it (SPEC §7).
        .filter(|c| app.connectors.iter().any(|g| g.name == *c && g.serves(&caller.tenant)))
        .ok_or(DomainError::UnknownConnector)?;

    let now = system::now();
    let payment_id = PaymentId::from_ulid(system::new_ulid(now));
    let transfer_id = TransferId::from_ulid(system::new_ulid(now));
    let new_clearing_id = AccountId::from_ulid(system::new_ulid(now));
    // Sealed once, before any write: KMS unavailable means nothing is written.
    let context = SealContext::new(
        &caller.tenant,
        COUNTERPARTY_SEAL_KIND,
        payment_id,
        COUNTERPARTY_SEAL_FIELD,
    );
    let sealed = app
        .cipher
        .seal(holder_plaintext(&counterparty).expose(), &context)
        .await?;
    let masked = counterparty.masked();
    drop(counterparty);

    let clearing = ClearingKey {
        tenant: caller.tenant.clone(),
        connector: connector.clone(),
        currency,
    };
    let reads = Reads {
        accounts: vec![account_id],
        clearing: Some(clearing.clone()),
        ..Reads::default()
    };
    execute(app, caller, idem, reads, |snapshot| {
        let Some(Some(account)) = snapshot.accounts.first() else {
            return Err(DomainError::AccountNotFound);
        };
        // A payment out of a clearing account would move it through a side door.
        if account.kind == AccountKind::Clearing {
            return Err(DomainError::ClearingAccount);
        }
        let mut write = LedgerWrite::default();
        let clearing_account = match (snapshot.clearing, snapshot.accounts.get(1)) {
            (Some(_), Some(Some(existing))) => existing.clone(),
            (Some(existing), _) => {
                return Ok(Decision::ReadMore(Reads {
                    accounts: vec![account_id, existing],
                    clearing: Some(clearing.clone()),
                    ..Reads::default()
                }))
            }
            (None, _) => {
                // First payment of this tenant, connector and currency: the clearing
                // account is created in the same transaction, exactly once.
                let created = Account::clearing(
                    new_clearing_id,
                    caller.tenant.clone(),
                    currency,
                    connector.as_str(),
                    now,
                );
                write.new_accounts.push(created.clone());
                write.new_clearing = Some((clearing.clone(), created.id));
                created
            }
        };
        let command = NewTransfer {
            debit_account_id: account.id,
            credit_account_id: clearing_account.id,
            amount,
            currency,
            pending: true,
            description: Some(format!("payment {payment_id}")),
            metadata: Metadata::default(),
        };
        let (mut transfer, deltas) =
            open_transfer(transfer_id, &caller.tenant, command, account, &clearing_account, now)?;
        transfer.payment_id = Some(payment_id);
        // A clearing account created in this write has no row yet to apply a delta to:
        // its opening state already is the pending credit.
        let mut deltas = deltas.to_vec();
        if let Some(created) = write.new_accounts.first_mut() {
            created.balance.pending_credits = amount.value();
            deltas.retain(|d| d.account_id != created.id);
        }
        let payment = Payment {
            id: payment_id,
            tenant: caller.tenant.clone(),
            account_id: account.id,
            transfer_id,
            connector: connector.clone(),
            counterparty: sealed.clone(),
            counterparty_masked: masked.clone(),
            amount,
            currency,
            reference: reference.clone(),
            status: PaymentStatus::Pending,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let view = to_body(&payment_view(&payment))?;
        write.deltas = deltas;
        write.new_transfers.push(transfer);
        write.new_payments.push(payment);
        Ok(Decision::Write(Box::new(write), 201, view))
    })
    .await
}

pub(crate) async fn get_payment(app: &App, caller: &Principal, id: &str) -> Result<Response<Body>, DomainError> {
    let id = PaymentId::parse(id).ok_or(DomainError::NotFound)?;
    let snapshot = app
        .store
        .read(
            &caller.tenant,
            &Reads {
                payment: Some(id),
                ..Reads::default()
            },
        )
        .await?;
    let payment = snapshot.payment.ok_or(DomainError::NotFound)?;
    Ok(json_response(200, &payment_view(&payment)))
}
