//! The `bank-webhooks` function: receives bank-connector callbacks (SPEC §7).
//!
//! Order of work, so that nothing is read or written for an unauthenticated request:
//! size limit → known connector → signature and timestamp → parse → dedup → apply. The
//! event's effect on the ledger and its archive record (which is also its dedup record)
//! commit in one DynamoDB transaction.
#![forbid(unsafe_code)]

use std::sync::Arc;

use async_trait::async_trait;
use fintx_adapters::engine::{self, Command};
use fintx_adapters::http::{
    body_bytes, json_response, principal, query_param, respond_or_problem, route_path, JsonObject,
};
use fintx_adapters::recent::Recent;
use fintx_adapters::system;
use fintx_domain::account::AccountKind;
use fintx_domain::auth::{Principal, Scope, TenantId};
use fintx_domain::crypto::{Cipher, SealContext};
use fintx_domain::ids::{AccountId, EventId, PaymentId, TransferId};
use fintx_domain::money::{Amount, Currency};
use fintx_domain::payment::{
    apply_outcome, payment_transfer_id, plan_deposit, receive_deposit, Deposit, PaymentStatus,
};
use fintx_domain::ports::{ClearingKey, CursorKeySource, EventRecord, LedgerStore, LedgerWrite, Reads, Snapshot};
use fintx_domain::webhook::{Connector, Connectors, Outcome, BODY_MAX_BYTES};
use fintx_domain::DomainError;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

pub struct App {
    pub store: Arc<dyn LedgerStore>,
    pub cipher: Arc<dyn Cipher>,
    pub connectors: Connectors,
    pub cursor_keys: Arc<dyn CursorKeySource>,
    /// Local development only (see `Settings::dev_auth_headers`).
    pub dev_auth_headers: bool,
    /// Which tenant holds the accounts deposits went to lately.
    pub accounts: AccountTenants,
}

/// The tenant of each account this environment saw a deposit to lately (an account
/// never changes tenant), and whether it was unlimited (its balance then spreads), so
/// the next deposit to it plans its write without a read.
pub struct AccountTenants(Recent<AccountId, (TenantId, bool)>);

/// Accounts remembered per environment.
pub const ACCOUNTS_REMEMBERED: usize = 8192;

impl Default for AccountTenants {
    fn default() -> Self {
        Self(Recent::new(ACCOUNTS_REMEMBERED))
    }
}

impl AccountTenants {
    /// The account's tenant and whether it was unlimited, as last read here.
    pub fn get(&self, account: AccountId) -> Option<(TenantId, bool)> {
        self.0.get(&account)
    }

    pub fn remember(&self, account: &fintx_domain::account::Account) {
        let known = (account.tenant.clone(), account.overdraft_limit.is_unlimited());
        self.0.remember(account.id, known, |_| false);
    }
}

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    respond_or_problem(route(app, &request).await)
}

/// Handles a request once the function's state (its decrypted connector configuration)
/// has loaded into `state`, loading it first if no earlier call has. Until it loads,
/// nothing is read or written: the request answers 503 `unavailable` and the next one
/// tries again, so a failed load never lets a webhook through unverified (fail closed).
pub async fn handle_loaded<F, Fut>(state: &tokio::sync::OnceCell<App>, load: F, request: Request) -> Response<Body>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<App, String>>,
{
    match state.get_or_try_init(load).await {
        Ok(app) => handle(app, request).await,
        Err(error) => {
            tracing::error!(%error, "the connector configuration did not load; webhook refused");
            respond_or_problem(Err(DomainError::Unavailable))
        }
    }
}

async fn route(app: &App, request: &Request) -> Result<Response<Body>, DomainError> {
    let path = route_path(request).trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (request.method(), segments.as_slice()) {
        (&Method::POST, ["v1", "webhooks", connector]) => receive(app, connector, request).await,
        (&Method::GET, ["v1", "webhook-events"]) => {
            let caller = principal(request, app.dev_auth_headers)?;
            list_events(app, &caller, request).await
        }
        _ => Err(DomainError::NotFound),
    }
}

/// What a verified event asks for.
enum Event {
    Payment {
        payment_id: Option<PaymentId>,
        to: PaymentStatus,
    },
    Deposit {
        account_id: Option<AccountId>,
        amount: String,
        currency: String,
        bank_reference: String,
    },
    Other,
    /// A correctly signed body that is not a valid event: archived as rejected.
    Malformed(DomainError),
}

/// The event type a body names, if it names one; a placeholder for bodies that don't.
fn stated_type(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
        .filter(|t| !t.is_empty() && t.len() <= 100 && !t.chars().any(char::is_control))
        .unwrap_or_else(|| "-".to_owned())
}

fn parse_event(body: &[u8]) -> Result<(String, Event), DomainError> {
    let mut o = JsonObject::parse(body)?;
    let _id = o.string("id")?;
    let event_type = o.required_string("type")?;
    let data = o.object("data")?;
    let event = match event_type.as_str() {
        "payment.settled" | "payment.failed" | "payment.returned" => {
            let mut data = data.ok_or_else(|| DomainError::invalid_request("`data` is required"))?;
            let payment_id = data.required_string("payment_id")?;
            let to = match event_type.as_str() {
                "payment.settled" => PaymentStatus::Settled,
                "payment.failed" => PaymentStatus::Failed,
                _ => PaymentStatus::Returned,
            };
            Event::Payment {
                payment_id: PaymentId::parse(&payment_id),
                to,
            }
        }
        "deposit.received" => {
            let mut data = data.ok_or_else(|| DomainError::invalid_request("`data` is required"))?;
            let account_id = data.required_string("account_id")?;
            let amount = data
                .amount("amount")?
                .ok_or_else(|| DomainError::invalid_request("`data.amount` is required"))?;
            let currency = data.required_string("currency")?;
            let bank_reference = data.required_string("bank_reference")?;
            if bank_reference.is_empty() || bank_reference.len() > 140 {
                return Err(DomainError::invalid_request(
                    "`data.bank_reference` is 1 to 140 characters",
                ));
            }
            Event::Deposit {
                account_id: AccountId::parse(&account_id),
                amount,
                currency,
                bank_reference,
            }
        }
        _ => Event::Other,
    };
    Ok((event_type, event))
}

/// A decision for one event: its outcome, the tenant it resolved to, and the write.
struct Decision {
    outcome: Outcome,
    code: Option<&'static str>,
    tenant: Option<TenantId>,
    write: LedgerWrite,
}

fn rejected(error: DomainError, tenant: Option<TenantId>) -> Result<Decision, DomainError> {
    if error.code().is_transient() {
        return Err(error);
    }
    Ok(Decision {
        outcome: Outcome::Rejected,
        code: Some(error.code().as_str()),
        tenant,
        write: LedgerWrite::default(),
    })
}

enum Step {
    ReadMore(Reads),
    Decided(Box<Decision>),
}

fn decide(
    connector: &Connector,
    event: &Event,
    snapshot: &Snapshot,
    reads: &Reads,
    transfer_id: TransferId,
) -> Result<Step, DomainError> {
    let now = system::now();
    match event {
        Event::Other => Ok(Step::Decided(Box::new(Decision {
            outcome: Outcome::Ignored,
            code: None,
            tenant: None,
            write: LedgerWrite::default(),
        }))),
        Event::Malformed(error) => rejected(error.clone(), None).map(|d| Step::Decided(Box::new(d))),
        Event::Payment { payment_id, to } => {
            let Some(payment) = payment_id.and(snapshot.payment.as_ref()) else {
                return rejected(DomainError::NotFound, None).map(|d| Step::Decided(Box::new(d)));
            };
            // A connector may only touch its own payments of tenants it serves; anything
            // else looks missing.
            if payment.connector != connector.name || !connector.serves(&payment.tenant) {
                return rejected(DomainError::NotFound, None).map(|d| Step::Decided(Box::new(d)));
            }
            // The payment's transfer is read with the payment when it carries the
            // payment's ULID (every payment opened since ids were shared).
            let Some(transfer) = snapshot.transfer.as_ref().filter(|t| t.id == payment.transfer_id) else {
                return Ok(Step::ReadMore(Reads {
                    transfer: Some(payment.transfer_id),
                    ..reads.clone()
                }));
            };
            // Its credit side is the connector's clearing account, named by its key; only
            // an account opened under an older, random id is read.
            let key = ClearingKey {
                tenant: payment.tenant.clone(),
                connector: payment.connector.clone(),
                currency: payment.currency,
            };
            let opening = key.opening(now);
            let clearing = if transfer.credit_account_id == opening.id {
                &opening
            } else {
                match snapshot.accounts.first() {
                    Some(Some(clearing)) => clearing,
                    _ => {
                        return Ok(Step::ReadMore(Reads {
                            transfer: Some(payment.transfer_id),
                            accounts: vec![transfer.credit_account_id],
                            ..reads.clone()
                        }))
                    }
                }
            };
            let tenant = Some(payment.tenant.clone());
            match apply_outcome(payment, transfer, *to, clearing, transfer_id, now) {
                Err(error) => rejected(error, tenant).map(|d| Step::Decided(Box::new(d))),
                Ok(None) => Ok(Step::Decided(Box::new(Decision {
                    outcome: Outcome::Duplicate,
                    code: None,
                    tenant,
                    write: LedgerWrite::default(),
                }))),
                Ok(Some(change)) => {
                    let write = LedgerWrite {
                        deltas: change.deltas.to_vec(),
                        entries: change.entries,
                        transfer_updates: vec![change.transfer_update],
                        new_transfers: change.reversal.into_iter().collect(),
                        payment_updates: vec![(change.payment, payment.version)],
                        ..LedgerWrite::default()
                    };
                    Ok(Step::Decided(Box::new(Decision {
                        outcome: Outcome::Applied,
                        code: None,
                        tenant,
                        write,
                    })))
                }
            }
        }
        Event::Deposit {
            account_id,
            amount,
            currency,
            bank_reference,
        } => {
            let Some(account) = account_id.and(snapshot.accounts.first().and_then(Option::as_ref)) else {
                return rejected(DomainError::AccountNotFound, None).map(|d| Step::Decided(Box::new(d)));
            };
            // Deposits go to customer accounts of tenants the connector serves; a clearing
            // account (this connector's or another's) is never a deposit's target.
            if !connector.serves(&account.tenant) || account.kind == AccountKind::Clearing {
                return rejected(DomainError::NotFound, None).map(|d| Step::Decided(Box::new(d)));
            }
            let tenant = Some(account.tenant.clone());
            let deposit = match deposit_of(connector, transfer_id, account.id, amount, currency, bank_reference) {
                Ok(deposit) => deposit,
                Err(e) => return rejected(e, tenant).map(|d| Step::Decided(Box::new(d))),
            };
            let (transfer, deltas) = match receive_deposit(&deposit, account, now) {
                Ok(opened) => opened,
                // Refused by its account: unless its bank reference was applied already
                // (then it is a duplicate, as a planned write would find).
                Err(e) => {
                    return rejected(e, tenant).map(|mut d| {
                        d.write.reference_unapplied = Some(format!("{}#{bank_reference}", connector.name.as_str()));
                        Step::Decided(Box::new(d))
                    })
                }
            };
            let write = LedgerWrite {
                deltas: deltas.to_vec(),
                new_transfers: vec![transfer],
                deposit_reference: Some(format!("{}#{bank_reference}", connector.name.as_str())),
                ..LedgerWrite::default()
            };
            Ok(Step::Decided(Box::new(Decision {
                outcome: Outcome::Applied,
                code: None,
                tenant,
                write,
            })))
        }
    }
}

/// A deposit event's figures, parsed.
fn deposit_of<'a>(
    connector: &'a Connector,
    transfer_id: TransferId,
    account_id: AccountId,
    amount: &str,
    currency: &str,
    bank_reference: &'a str,
) -> Result<Deposit<'a>, DomainError> {
    let currency = Currency::parse(currency)?;
    Ok(Deposit {
        transfer_id,
        connector: &connector.name,
        account_id,
        amount: Amount::parse_positive(amount, currency)?,
        currency,
        bank_reference,
    })
}

/// A deposit's write decided without a read, when this environment knows which tenant
/// holds the account: the connector serves only one, or the account was seen before (an
/// account never changes tenant). The write's conditions check it (SPEC §10).
fn plan_deposit_write(
    connector: &Connector,
    event: &Event,
    transfer_id: TransferId,
    known: &AccountTenants,
) -> Option<Decision> {
    let Event::Deposit {
        account_id: Some(account_id),
        amount,
        currency,
        bank_reference,
    } = event
    else {
        return None;
    };
    let remembered = known.get(*account_id);
    let tenant = connector
        .sole_tenant()
        .or_else(|| remembered.as_ref().map(|(tenant, _)| tenant.clone()))?;
    if !connector.serves(&tenant) {
        return None;
    }
    // Believed bounded unless read otherwise; the write's conditions check the belief.
    let unlimited = remembered.is_some_and(|(owner, unlimited)| owner == tenant && unlimited);
    let deposit = deposit_of(connector, transfer_id, *account_id, amount, currency, bank_reference).ok()?;
    let (transfer, deltas) = plan_deposit(&deposit, &tenant, system::now(), unlimited)?;
    Some(Decision {
        outcome: Outcome::Applied,
        code: None,
        tenant: Some(tenant),
        write: LedgerWrite {
            deltas: deltas.to_vec(),
            new_transfers: vec![transfer],
            deposit_reference: Some(format!("{}#{bank_reference}", connector.name.as_str())),
            ..LedgerWrite::default()
        },
    })
}

fn outcome_response(outcome: Outcome, code: Option<&str>) -> Response<Body> {
    fintx_adapters::metrics::count("WebhookOutcomes", Some(("Outcome", outcome.as_str())));
    let mut body = json!({ "outcome": outcome.as_str() });
    if let Some(code) = code {
        body["code"] = Value::String(code.to_owned());
    }
    json_response(200, &body)
}

async fn receive(app: &App, connector: &str, request: &Request) -> Result<Response<Body>, DomainError> {
    let body = body_bytes(request, BODY_MAX_BYTES)?;
    let connector = app.connectors.get(connector).ok_or(DomainError::UnknownConnector)?;
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let event_id = connector.verify(&header, body, system::now().unix_ms() / 1000)?;
    // Verified: from here on the body is the connector's, and whatever it says is
    // archived with its outcome, a body that is no valid event included.
    let (event_type, event) = match parse_event(body) {
        Ok(parsed) => parsed,
        Err(error) => (stated_type(body), Event::Malformed(error)),
    };
    let key = format!("{}#{event_id}", connector.name.as_str());
    let now = system::now();
    let mut command = Receive {
        cipher: app.cipher.as_ref(),
        connector,
        body,
        event,
        event_type,
        event_id,
        record_id: EventId::from_ulid(system::new_ulid(now)),
        transfer_id: TransferId::from_ulid(system::new_ulid(now)),
        key,
        received_at: now,
        reference_applied: false,
        accounts: &app.accounts,
    };
    // Reads never filter by tenant here; the placeholder is not used for authorisation.
    let nobody = TenantId::parse("-").unwrap_or_else(|_| unreachable!());
    let answer = engine::run(app.store.as_ref(), &nobody, &mut command).await?;
    Ok(outcome_response(answer.outcome, answer.code))
}

/// What an event came to.
struct Answer {
    outcome: Outcome,
    code: Option<&'static str>,
    tenant: Option<TenantId>,
}

/// One verified delivery as a command of the write engine: its archive record (keyed by
/// connector and event id) dedups it and commits with its effect.
struct Receive<'a> {
    cipher: &'a dyn Cipher,
    connector: &'a Connector,
    body: &'a [u8],
    event: Event,
    event_type: String,
    event_id: String,
    record_id: EventId,
    transfer_id: TransferId,
    key: String,
    received_at: fintx_domain::clock::Timestamp,
    /// Set once a deposit's bank reference turned out to be applied under another id.
    reference_applied: bool,
    accounts: &'a AccountTenants,
}

#[async_trait]
impl Command for Receive<'_> {
    type Answer = Answer;

    fn reads(&self) -> Reads {
        let mut reads = Reads {
            any_tenant: true,
            event: Some(self.key.clone()),
            ..Reads::default()
        };
        match &self.event {
            Event::Payment { payment_id, .. } => {
                reads.payment = *payment_id;
                reads.transfer = payment_id.map(payment_transfer_id);
            }
            Event::Deposit { account_id, .. } => reads.accounts = account_id.iter().copied().collect(),
            Event::Other | Event::Malformed(_) => {}
        }
        reads
    }

    fn plan(&mut self) -> Result<Option<engine::Decision<Answer>>, DomainError> {
        let Some(decision) = plan_deposit_write(self.connector, &self.event, self.transfer_id, self.accounts) else {
            return Ok(None);
        };
        let answer = Answer {
            outcome: decision.outcome,
            code: decision.code,
            tenant: decision.tenant,
        };
        Ok(Some(engine::Decision::Commit(Box::new(decision.write), answer)))
    }

    fn decide(&mut self, snapshot: &Snapshot) -> Result<engine::Decision<Answer>, DomainError> {
        if let (Event::Deposit { .. }, Some(Some(account))) = (&self.event, snapshot.accounts.first()) {
            if account.kind == AccountKind::Customer {
                self.accounts.remember(account);
            }
        }
        let reads = self.reads();
        let decision = match decide(self.connector, &self.event, snapshot, &reads, self.transfer_id)? {
            Step::ReadMore(more) => return Ok(engine::Decision::ReadMore(more)),
            Step::Decided(decision) => *decision,
        };
        let answer = Answer {
            outcome: decision.outcome,
            code: decision.code,
            tenant: decision.tenant,
        };
        if self.reference_applied {
            let duplicate = Answer {
                outcome: Outcome::Duplicate,
                code: None,
                ..answer
            };
            return Ok(engine::Decision::Commit(Box::default(), duplicate));
        }
        Ok(engine::Decision::Commit(Box::new(decision.write), answer))
    }

    fn recorded(&self, snapshot: &Snapshot) -> Option<Result<Answer, DomainError>> {
        let archived = snapshot.event.as_ref()?;
        // This request's own record (its commit's answer was lost) answers as it was
        // recorded; anyone else's makes this delivery a duplicate.
        Some(Ok(if archived.id == self.record_id {
            Answer {
                outcome: archived.outcome,
                code: archived.code,
                tenant: archived.tenant.clone(),
            }
        } else {
            Answer {
                outcome: Outcome::Duplicate,
                code: None,
                tenant: archived.tenant.clone(),
            }
        }))
    }

    async fn record(&mut self, write: &mut LedgerWrite, answer: &Answer) -> Result<(), DomainError> {
        let context = match &answer.tenant {
            Some(tenant) => SealContext::new(tenant, "webhook_event", &self.key, "raw_body"),
            None => SealContext::system("webhook_event", &self.key, "raw_body"),
        };
        let raw_body = self.cipher.seal(self.body, &context).await?;
        write.event = Some(EventRecord {
            id: self.record_id,
            key: self.key.clone(),
            connector: self.connector.name.clone(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            tenant: answer.tenant.clone(),
            outcome: answer.outcome,
            code: answer.code,
            raw_body,
            received_at: self.received_at,
        });
        tracing::info!(
            connector = self.connector.name.as_str(),
            outcome = answer.outcome.as_str(),
            code = answer.code,
            "webhook decided"
        );
        Ok(())
    }

    fn found_elsewhere(&mut self) {
        // The event key answers through `recorded`; what else refuses is the deposit's
        // bank reference, applied under another event id.
        if matches!(self.event, Event::Deposit { .. }) {
            self.reference_applied = true;
        }
    }
}

async fn list_events(app: &App, caller: &Principal, request: &Request) -> Result<Response<Body>, DomainError> {
    caller.require(Scope::LedgerRead)?;
    let outcome = match query_param(request, "outcome") {
        None => Outcome::Rejected,
        Some(text) => Outcome::parse(&text)
            .ok_or_else(|| DomainError::invalid_request("outcome is applied, duplicate, ignored or rejected"))?,
    };
    // Events that resolved to no tenant are for operators only.
    let unresolved = match query_param(request, "unresolved").as_deref() {
        None | Some("false") => false,
        Some("true") => {
            caller.require(Scope::OpsRead)?;
            true
        }
        Some(_) => return Err(DomainError::invalid_request("unresolved is true or false")),
    };
    let limit = fintx_adapters::http::page_limit(request)?;
    let listing = format!("webhook-events:{}:{}", outcome.as_str(), unresolved);
    let before = match query_param(request, "cursor") {
        None => None,
        Some(cursor) => Some(
            app.cursor_keys
                .cursor_key()
                .await?
                .open(&caller.tenant, &listing, &cursor)?,
        ),
    };
    let tenant = (!unresolved).then_some(&caller.tenant);
    let page = app.store.list_events(tenant, outcome, limit, before).await?;
    let next_cursor = match page.next {
        None => None,
        Some(last) => Some(
            app.cursor_keys
                .cursor_key()
                .await?
                .seal(&caller.tenant, &listing, &last),
        ),
    };
    let data: Vec<Value> = page
        .items
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "connector": e.connector.as_str(),
                "event_id": e.event_id,
                "type": e.event_type,
                "outcome": e.outcome.as_str(),
                "code": e.code,
                "received_at": e.received_at,
            })
        })
        .collect();
    Ok(json_response(200, &json!({ "data": data, "next_cursor": next_cursor })))
}
