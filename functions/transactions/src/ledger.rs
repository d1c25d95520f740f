//! Money-moving routes: transfers, holds, reversals and payments, with idempotency.
//!
//! Each route turns its request into a command for the write engine
//! ([`fintx_adapters::engine`]): the domain decides, and the whole effect commits with
//! the idempotency record in one DynamoDB transaction whose conditions settle every race.
//! Transfers and payments plan their write without reading first, so their common path
//! is that one transaction.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use fintx_adapters::engine::{self, Command};
use fintx_adapters::http::{canonical_json, json_body, json_response, JsonObject};
use fintx_adapters::system;
use fintx_domain::account::Account;
use fintx_domain::auth::Principal;
use fintx_domain::batch::{
    batch_accounts, batch_actions, combine, open_batch, plan_batch, BatchWrite, TRANSACTION_ACTIONS_MAX,
};
use fintx_domain::clock::Timestamp;
use fintx_domain::crypto::SealContext;
use fintx_domain::idempotency::{fingerprint, scope_key, IdempotencyKey, IdempotencyRecord};
use fintx_domain::ids::{AccountId, BatchId, PaymentId, TransferId};
use fintx_domain::money::{format_decimal, Amount};
use fintx_domain::payment::{
    open_payment, ConnectorName, NewPayment, Payment, COUNTERPARTY_SEAL_FIELD, COUNTERPARTY_SEAL_KIND,
};
use fintx_domain::ports::{LedgerStore, LedgerWrite, Reads, Snapshot};
use fintx_domain::statement::Entry;
use fintx_domain::transfer::{
    check_api_transition, open_api_transfer, plan_api_transfer, plan_reversal, post_pending, release_expired,
    reverse_posted, spread_resolution, void_pending, Expect, NewTransfer, Transfer, Transition, RELEASES_MAX,
    RELEASE_ACTIONS,
};
use fintx_domain::{DomainError, Problem};
use lambda_http::http::header::{HeaderValue, CONTENT_TYPE};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{json, Value};

use crate::bodies::{BatchBody, ChangeBody, PaymentBody, PaymentRequest, TransferBody};
use crate::recent::RecentTransfers;
use crate::{holder_plaintext, masked_holder_view, App, BODY_MAX_BYTES};

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

/// What a route decided from a snapshot (or planned without one).
pub(crate) enum Decision {
    /// Nothing changes; answer this (status and JSON text).
    Respond(u16, String),
    /// Commit this write, then answer.
    Write(Box<LedgerWrite>, u16, String),
    /// Commit this write, whose conditions stand in for what was not read; when they
    /// refuse, read these and decide again.
    Attempt(Box<LedgerWrite>, u16, String, Reads),
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

/// How a money-moving API request ends.
enum Answer {
    /// Status and JSON text, sent now or recorded before (`replayed`).
    Reply { status: u16, body: String, replayed: bool },
    /// A business refusal, recorded under the key so a retry replays it.
    Refused(DomainError),
}

/// A money-moving API route as a command of the write engine.
struct ApiCommand<'a, P, D> {
    idem: Option<Idempotency>,
    reads: Reads,
    plan: Option<P>,
    decide: D,
    /// The idempotency record this request last sent: found back after a lost answer,
    /// it is this request's own outcome, not a replay.
    sent: Option<IdempotencyRecord>,
    /// Where the transfers this request reads and writes are remembered for later
    /// requests (see [`crate::recent`]).
    recent: &'a RecentTransfers,
}

/// Malformed and transient outcomes are never recorded (SPEC §5); business refusals are.
fn refusal(error: DomainError) -> Result<engine::Decision<Answer>, DomainError> {
    if error.code().is_business_refusal() {
        Ok(engine::Decision::Commit(Box::default(), Answer::Refused(error)))
    } else {
        Err(error)
    }
}

fn engine_decision(decided: Result<Decision, DomainError>) -> Result<engine::Decision<Answer>, DomainError> {
    let reply = |status, body| Answer::Reply {
        status,
        body,
        replayed: false,
    };
    match decided {
        Err(error) => refusal(error),
        Ok(Decision::Respond(status, body)) => Ok(engine::Decision::Commit(Box::default(), reply(status, body))),
        Ok(Decision::Write(write, status, body)) => Ok(engine::Decision::Commit(write, reply(status, body))),
        Ok(Decision::Attempt(write, status, body, explain)) => {
            Ok(engine::Decision::Attempt(write, reply(status, body), explain))
        }
    }
}

#[async_trait]
impl<P, D> Command for ApiCommand<'_, P, D>
where
    P: FnOnce() -> Option<Decision> + Send,
    D: Fn(&Snapshot) -> Result<Decision, DomainError> + Send,
{
    type Answer = Answer;

    fn reads(&self) -> Reads {
        Reads {
            idempotency: self.idem.as_ref().map(|i| i.scope.clone()),
            ..self.reads.clone()
        }
    }

    fn plan(&mut self) -> Result<Option<engine::Decision<Answer>>, DomainError> {
        match self.plan.take().and_then(|plan| plan()) {
            None => Ok(None),
            Some(decision) => engine_decision(Ok(decision)).map(Some),
        }
    }

    fn decide(&mut self, snapshot: &Snapshot) -> Result<engine::Decision<Answer>, DomainError> {
        if let Some(transfer) = &snapshot.transfer {
            self.recent.remember(transfer);
        }
        for account in snapshot.accounts.iter().flatten() {
            self.recent.remember_account(account);
        }
        engine_decision((self.decide)(snapshot))
    }

    fn recorded(&self, snapshot: &Snapshot) -> Option<Result<Answer, DomainError>> {
        let (idem, record) = (self.idem.as_ref()?, snapshot.idempotency.as_ref()?);
        if record.fingerprint != idem.fingerprint {
            return Some(Err(DomainError::IdempotencyKeyReused));
        }
        Some(Ok(Answer::Reply {
            status: record.status,
            body: record.body.clone(),
            replayed: self.sent.as_ref() != Some(record),
        }))
    }

    async fn record(&mut self, write: &mut LedgerWrite, answer: &Answer) -> Result<(), DomainError> {
        let Some(idem) = &self.idem else { return Ok(()) };
        let (status, body) = match answer {
            Answer::Reply { status, body, .. } => (*status, body.clone()),
            Answer::Refused(error) => {
                let problem = Problem::from(error);
                let body = serde_json::to_string(&problem).map_err(|_| DomainError::Unavailable)?;
                (problem.status, body)
            }
        };
        let record = IdempotencyRecord::new(
            idem.scope.clone(),
            idem.fingerprint.clone(),
            status,
            body,
            system::now().unix_ms(),
        );
        self.sent = Some(record.clone());
        write.idempotency = Some(record);
        Ok(())
    }

    fn committed(&mut self, write: &LedgerWrite) {
        for update in &write.account_updates {
            self.recent.remember_account(&update.account);
        }
        let updated = write.transfer_updates.iter().map(|(t, _)| t);
        write
            .new_transfers
            .iter()
            .chain(updated)
            .for_each(|t| self.recent.remember(t));
    }
}

/// Runs one money-moving request to its recorded outcome. `plan` decides the write
/// without a read when the route can (see [`engine::Command::plan`]).
pub(crate) async fn execute(
    app: &App,
    caller: &Principal,
    idem: Option<Idempotency>,
    reads: Reads,
    plan: impl FnOnce() -> Option<Decision> + Send,
    decide: impl Fn(&Snapshot) -> Result<Decision, DomainError> + Send,
) -> Result<Response<Body>, DomainError> {
    let mut command = ApiCommand {
        idem,
        reads,
        plan: Some(plan),
        decide,
        sent: None,
        recent: &app.recent,
    };
    match engine::run(app.store.as_ref(), &caller.tenant, &mut command).await? {
        Answer::Reply { status, body, replayed } => Ok(respond(status, &body, replayed)),
        Answer::Refused(error) => Err(error),
    }
}

/// Adds to `write` the release of the holds past their `expires_at` that the accounts it
/// debits (`debited`, as read) still count, before the write's own changes and combined
/// with them: the decision saw those holds as released, and the store's cover condition
/// must see the same (SPEC §6). At most `budget` holds are released.
pub(crate) fn release_for(
    write: &mut LedgerWrite,
    debited: &[&Account],
    now: Timestamp,
    budget: usize,
) -> Result<(), DomainError> {
    let mut deltas = Vec::new();
    let mut left = budget;
    for account in debited {
        let mut release = release_expired(account, now, true);
        release.truncate(left);
        left = left.saturating_sub(release.expired.len());
        write
            .expirations
            .extend(release.expired.into_iter().map(|id| (id, now)));
        write.entries.extend(release.entries);
        deltas.extend(release.own);
        deltas.extend(release.others);
    }
    if deltas.is_empty() {
        return Ok(());
    }
    deltas.append(&mut write.deltas);
    write.deltas = combine(deltas).ok_or(DomainError::Unavailable)?;
    Ok(())
}

// --------------------------------------------------------------------------- views

/// A transfer as the API shows it (SPEC §6), serialised straight from the record.
/// Fields are in name order, the order of the JSON objects it replaced, so the text of
/// a response is the same as the one recorded for its replay before.
#[derive(Serialize)]
pub struct TransferView<'a> {
    amount: String,
    batch_id: Option<BatchId>,
    created_at: Timestamp,
    credit_account_id: AccountId,
    currency: &'static str,
    debit_account_id: AccountId,
    description: Option<&'a str>,
    expires_at: Option<Timestamp>,
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

/// The transfer as it stands at `now`: a hold past its `expires_at` reads as expired.
pub fn transfer_view(t: &Transfer, now: Timestamp) -> TransferView<'_> {
    let c = t.currency;
    TransferView {
        amount: format_decimal(t.amount.value(), c),
        batch_id: t.batch_id,
        created_at: t.created_at,
        credit_account_id: t.credit_account_id,
        currency: c.code(),
        debit_account_id: t.debit_account_id,
        description: t.description.as_deref(),
        expires_at: t.expires_at,
        id: t.id,
        metadata: t.metadata.pairs(),
        payment_id: t.payment_id,
        posted_amount: format_decimal(t.posted_amount.value(), c),
        reversed_amount: format_decimal(t.reversed_amount.value(), c),
        reverses: t.reverses,
        status: t.status_at(now).as_str(),
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

// --------------------------------------------------------------------------- routes

/// A money-moving POST's JSON object and its idempotency key (required), fingerprinted for
/// `route`. Errors come in SPEC order: the body's type and size, the missing key, the JSON.
fn keyed_object(
    request: &Request,
    caller: &Principal,
    route: &str,
) -> Result<(JsonObject, Option<Idempotency>), DomainError> {
    let body = json_body(request, BODY_MAX_BYTES)?;
    let key = idempotency_key(request, true)?;
    let object = JsonObject::parse(body)?;
    let idem = key.map(|key| Idempotency::new(caller, route, &key, &object.canonical()));
    Ok((object, idem))
}

pub(crate) async fn create_transfer(
    app: &App,
    caller: &Principal,
    request: &Request,
) -> Result<Response<Body>, DomainError> {
    let (object, idem) = keyed_object(request, caller, "POST /v1/transfers")?;
    let command = NewTransfer::try_from(TransferBody::try_from(object)?)?;
    let now = system::now();
    let id = TransferId::from_ulid(system::new_ulid(now));
    let reads = Reads {
        accounts: vec![command.debit_account_id, command.credit_account_id],
        ..Reads::default()
    };
    let write = |transfer: Transfer, deltas: [fintx_domain::transfer::AccountDelta; 2], debit: Option<&Account>| {
        let view = to_body(&transfer_view(&transfer, now))?;
        let mut write = LedgerWrite {
            deltas: deltas.to_vec(),
            new_transfers: vec![transfer],
            ..LedgerWrite::default()
        };
        if let Some(debit) = debit {
            release_for(&mut write, &[debit], now, RELEASES_MAX)?;
        }
        Ok(Decision::Write(Box::new(write), 201, view))
    };
    let plan = || {
        let unlimited = |account| app.recent.is_unlimited(&caller.tenant, account);
        let (transfer, deltas) = plan_api_transfer(id, &caller.tenant, command.clone(), now, &unlimited)?;
        write(transfer, deltas, None).ok()
    };
    execute(app, caller, idem, reads, plan, |snapshot| {
        let (Some(Some(debit)), Some(Some(credit))) = (snapshot.accounts.first(), snapshot.accounts.get(1)) else {
            return Err(DomainError::AccountNotFound);
        };
        // Decided on the accounts as they stand now; the debit's expired holds are
        // released by the same write.
        let (transfer, deltas) = open_api_transfer(
            id,
            &caller.tenant,
            command.clone(),
            &debit.at(now),
            &credit.at(now),
            now,
        )?;
        write(transfer, deltas, Some(debit))
    })
    .await
}

/// A batch as the API answers it.
#[derive(Serialize)]
struct BatchView<'a> {
    id: BatchId,
    transfers: Vec<TransferView<'a>>,
}

pub(crate) async fn create_batch(
    app: &App,
    caller: &Principal,
    request: &Request,
) -> Result<Response<Body>, DomainError> {
    let (object, idem) = keyed_object(request, caller, "POST /v1/transfer-batches")?;
    let requests = Vec::<NewTransfer>::try_from(BatchBody::try_from(object)?)?;
    let now = system::now();
    let batch_id = BatchId::from_ulid(system::new_ulid(now));
    let ids: Vec<TransferId> = requests
        .iter()
        .map(|_| TransferId::from_ulid(system::new_ulid(now)))
        .collect();
    let accounts = batch_accounts(&requests);
    let reads = Reads {
        accounts: accounts.clone(),
        ..Reads::default()
    };
    let write = |batch: BatchWrite, read: &[&Account]| {
        let view = to_body(&BatchView {
            id: batch_id,
            transfers: batch.transfers.iter().map(|t| transfer_view(t, now)).collect(),
        })?;
        let mut write = LedgerWrite {
            deltas: batch.deltas,
            new_transfers: batch.transfers,
            ..LedgerWrite::default()
        };
        // Releases of expired holds take what the transaction has left.
        let debited: Vec<&Account> = read
            .iter()
            .copied()
            .filter(|a| write.deltas.iter().any(|d| d.account_id == a.id && d.cover.is_some()))
            .collect();
        let spare = TRANSACTION_ACTIONS_MAX.saturating_sub(batch_actions(requests.len(), accounts.len()));
        release_for(&mut write, &debited, now, spare / RELEASE_ACTIONS)?;
        Ok(Decision::Write(Box::new(write), 201, view))
    };
    let unlimited = |account| app.recent.is_unlimited(&caller.tenant, account);
    let plan = || {
        write(
            plan_batch(batch_id, &ids, &caller.tenant, &requests, now, &unlimited)?,
            &[],
        )
        .ok()
    };
    execute(app, caller, idem, reads, plan, |snapshot| {
        let stored: Vec<&Account> = snapshot.accounts.iter().flatten().collect();
        let current: HashMap<AccountId, Account> = stored.iter().map(|a| (a.id, a.at(now))).collect();
        write(
            open_batch(batch_id, &ids, &caller.tenant, &requests, &current, now)?,
            &stored,
        )
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
    let o = JsonObject::parse_optional(body)?;
    // A blank body and `{}` fingerprint differently (as their text), so an empty object
    // takes the body's canonical form; any other object is fingerprinted as parsed.
    let canonical = if o.is_empty() {
        canonical_json(body)
    } else {
        o.canonical()
    };
    let idem = key.map(|key| Idempotency::new(caller, &route, &key, &canonical));
    let ChangeBody { amount, description } = ChangeBody::read(
        o,
        matches!(action, Action::Post | Action::Reverse),
        matches!(action, Action::Reverse),
    )?;
    let id = TransferId::parse(id).ok_or(DomainError::NotFound)?;
    let now = system::now();
    let change = Change {
        action,
        amount,
        description,
        reversal_id: TransferId::from_ulid(system::new_ulid(now)),
        now,
        recent: &app.recent,
    };
    let reads = Reads {
        transfer: Some(id),
        ..Reads::default()
    };
    // A transfer this environment knows plans the write from what it remembers; a
    // refusal of anything but the write's conditions is left to a read to decide.
    let known = app.recent.get(&caller.tenant, id);
    let plan = || match change.decide(&known?, None) {
        Ok(decision @ (Decision::Write(..) | Decision::Attempt(..))) => Some(decision),
        _ => None,
    };
    execute(app, caller, idem, reads, plan, |snapshot| {
        let transfer = snapshot.transfer.as_ref().ok_or(DomainError::NotFound)?;
        let sides = match snapshot.accounts.as_slice() {
            [Some(debit), Some(credit)] => Some(Sides { debit, credit }),
            _ => None,
        };
        change.decide(transfer, sides)
    })
    .await
}

/// A transfer's two accounts as read.
#[derive(Clone, Copy)]
struct Sides<'a> {
    debit: &'a Account,
    credit: &'a Account,
}

/// A post, void or reversal as requested, decided against a transfer.
struct Change<'a> {
    action: Action,
    amount: Option<String>,
    description: Option<String>,
    reversal_id: TransferId,
    now: Timestamp,
    /// Which accounts this environment believes unlimited.
    recent: &'a RecentTransfers,
}

impl Change<'_> {
    /// `sides` are the transfer's accounts when they were read. Without them, what they
    /// must be (a reversal's cover, the lifecycle status a post or reversal needs) is
    /// left to the write's conditions, with a read of them to name the rule if those
    /// refuse.
    fn decide(&self, transfer: &Transfer, sides: Option<Sides<'_>>) -> Result<Decision, DomainError> {
        let amount = self
            .amount
            .as_deref()
            .map(|a| Amount::parse_positive(a, transfer.currency))
            .transpose()?;
        check_api_transition(transfer)?;
        let explain = || Reads {
            transfer: Some(transfer.id),
            accounts: vec![transfer.debit_account_id, transfer.credit_account_id],
            ..Reads::default()
        };
        let mut believed = false;
        let (write, status, view) = match self.action {
            Action::Post | Action::Void => {
                let transition = match self.action {
                    Action::Post => post_pending(transfer, amount, self.now)?,
                    _ => void_pending(transfer, self.now)?,
                };
                let (next, mut deltas) = match transition {
                    Transition::Unchanged => {
                        return Ok(Decision::Respond(200, to_body(&transfer_view(transfer, self.now))?))
                    }
                    Transition::Apply(next, deltas) => (next, deltas),
                };
                if let (Action::Post, Some(sides)) = (self.action, sides) {
                    // A frozen account's holds do not post (SPEC §6).
                    sides.debit.check_debitable()?;
                }
                // Unlimited accounts' changes go to their balance slots: as read, or as
                // this environment believes.
                let unlimited = |account: AccountId| match sides {
                    Some(sides) => [sides.debit, sides.credit]
                        .iter()
                        .any(|a| a.id == account && a.overdraft_limit.is_unlimited()),
                    None => self.recent.is_unlimited(&transfer.tenant, account),
                };
                spread_resolution(transfer, &mut deltas, &unlimited);
                believed = sides.is_none() && deltas.iter().any(|d| d.spread);
                let view = to_body(&transfer_view(&next, self.now))?;
                let write = LedgerWrite {
                    entries: Entry::resolving(transfer.id, self.now, &deltas).to_vec(),
                    deltas: deltas.to_vec(),
                    transfer_updates: vec![(*next, transfer.version)],
                    ..LedgerWrite::default()
                };
                (write, 200, view)
            }
            Action::Reverse => {
                let description = self.description.clone();
                let r = match sides {
                    Some(sides) => reverse_posted(
                        transfer,
                        self.reversal_id,
                        amount,
                        description,
                        &sides.credit.at(self.now),
                        Some(&sides.debit.at(self.now)),
                        self.now,
                    )?,
                    // Never a clearing account: those transfers change only by webhook.
                    None => plan_reversal(
                        transfer,
                        self.reversal_id,
                        amount,
                        description,
                        &Expect::customer(
                            &transfer.tenant,
                            transfer.currency,
                            self.recent.is_unlimited(&transfer.tenant, transfer.credit_account_id),
                        ),
                        self.now,
                    )?,
                };
                let view = to_body(&transfer_view(&r.reversal, self.now))?;
                let mut write = LedgerWrite {
                    deltas: r.deltas.to_vec(),
                    new_transfers: vec![r.reversal],
                    transfer_updates: vec![(r.original, transfer.version)],
                    ..LedgerWrite::default()
                };
                // The reversal debits the original credit account.
                if let Some(sides) = sides {
                    release_for(&mut write, &[sides.credit], self.now, RELEASES_MAX)?;
                }
                (write, 201, view)
            }
        };
        let write = Box::new(write);
        // A void moves no money out and needs no status, so its version condition is
        // all it assumes, unless it moves the slots of an account believed unlimited; a
        // post or reversal assumes its accounts' status (and a reversal its cover) when
        // they were not read. What a write assumes, a refusal reads (a belief is never
        // retried as it is).
        Ok(match (self.action, sides) {
            (Action::Void, _) if !believed => Decision::Write(write, status, view),
            (_, Some(_)) => Decision::Write(write, status, view),
            (_, None) => Decision::Attempt(write, status, view, explain()),
        })
    }
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
    app.recent.remember(&transfer);
    Ok(json_response(200, &transfer_view(&transfer, system::now())))
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
    let account = app
        .store
        .get_account(&caller.tenant, &id)
        .await?
        .ok_or(DomainError::AccountNotFound)?;
    let page = app
        .store
        .list_account_transfers(&caller.tenant, &account, limit, before)
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
    let now = system::now();
    let data: Vec<TransferView> = page.items.iter().map(|t| transfer_view(t, now)).collect();
    Ok(json_response(200, &json!({ "data": data, "next_cursor": next_cursor })))
}

pub(crate) async fn create_payment(
    app: &App,
    caller: &Principal,
    request: &Request,
) -> Result<Response<Body>, DomainError> {
    let (o, idem) = keyed_object(request, caller, "POST /v1/payments")?;
    let PaymentRequest {
        account_id,
        amount,
        currency,
        connector,
        counterparty,
        reference,
    } = PaymentRequest::try_from(PaymentBody::try_from(o)?)?;
    let connector: ConnectorName = connector
        // A connector that does not serve this tenant is unknown to it (SPEC §7).
        .filter(|c| app.connectors.iter().any(|g| g.name == *c && g.serves(&caller.tenant)))
        .ok_or(DomainError::UnknownConnector)?;

    let now = system::now();
    let payment_id = PaymentId::from_ulid(system::new_ulid(now));
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
    let request = NewPayment {
        account_id,
        amount,
        currency,
        connector,
        counterparty: sealed,
        counterparty_masked: counterparty.masked(),
        reference,
    };
    drop(counterparty);
    let reads = Reads {
        accounts: vec![account_id],
        ..Reads::default()
    };
    // The payment's complete write, from its account as read, or planned without a read
    // (the write's conditions then stand in for it).
    let write = |account: Option<&fintx_domain::account::Account>| {
        let current = account.map(|a| a.at(now));
        let unlimited = |account| app.recent.is_unlimited(&caller.tenant, account);
        let opened = open_payment(
            payment_id,
            &caller.tenant,
            request.clone(),
            current.as_ref(),
            now,
            &unlimited,
        )?;
        let view = to_body(&payment_view(&opened.payment))?;
        let mut write = LedgerWrite {
            deltas: opened.deltas.to_vec(),
            new_transfers: vec![opened.transfer],
            new_payments: vec![opened.payment],
            ..LedgerWrite::default()
        };
        if let Some(account) = account {
            release_for(&mut write, &[account], now, RELEASES_MAX)?;
        }
        Ok(Decision::Write(Box::new(write), 201, view))
    };
    execute(
        app,
        caller,
        idem,
        reads,
        || write(None).ok(),
        |snapshot| match snapshot.accounts.first() {
            Some(Some(account)) => write(Some(account)),
            _ => Err(DomainError::AccountNotFound),
        },
    )
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

/// Holds one sweep reads at a time.
const SWEEP_PAGE: usize = 100;

/// Releases in storage every hold past its `expires_at` (SPEC §6), exactly once: each
/// release is conditioned on the transfer's version, so one that a post, a void or
/// another sweep resolved meanwhile is refused and skipped. Returns how many this call
/// released. Reads already treat such holds as expired; this catches storage up.
pub async fn sweep(store: &dyn LedgerStore, now: Timestamp) -> Result<usize, DomainError> {
    let started = std::time::Instant::now();
    let mut released = 0;
    loop {
        let expired = store.expired_holds(now, SWEEP_PAGE).await?;
        let page = expired.len();
        let mut progressed = false;
        for transfer in expired {
            let Some((next, deltas)) = fintx_domain::transfer::expire_hold(&transfer, now)? else {
                continue;
            };
            // Released as of its `expires_at`, however late the sweep runs.
            let expired_at = transfer.expires_at.unwrap_or(now);
            let write = LedgerWrite {
                entries: Entry::resolving(transfer.id, expired_at, &deltas).to_vec(),
                deltas: deltas.to_vec(),
                transfer_updates: vec![(next, transfer.version)],
                ..LedgerWrite::default()
            };
            match fintx_adapters::commit::commit_resending(store, &write).await {
                Ok(()) => {
                    released += 1;
                    progressed = true;
                }
                // Resolved meanwhile, or busy: the next sweep sees it again if it is
                // still pending.
                Err(fintx_domain::ports::CommitError::Rejected(_)) => {}
                Err(fintx_domain::ports::CommitError::Recorded(_)) => {}
                Err(fintx_domain::ports::CommitError::Failed(error)) => return Err(error),
            }
        }
        if page < SWEEP_PAGE || !progressed || started.elapsed() > engine::BUDGET {
            break;
        }
    }
    if released > 0 {
        fintx_adapters::metrics::emit("HoldsReleased", released as f64, "Count", None);
    }
    Ok(released)
}
