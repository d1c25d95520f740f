//! The model test and the deterministic simulation: random operation sequences, hostile
//! ones included, sent through the handlers' public events (API Gateway v2 requests,
//! signed webhooks, DynamoDB stream batches) and through the reference model of
//! [`crate::model`], with every answer compared and the ledger's invariants checked
//! after every step. With faults on, the ports conflict, throttle, time out before and
//! after committing, re-send committed writes, lose KMS and kill the process between
//! calls; streams are redelivered, re-cut and reordered. Everything is drawn from one
//! seed under a virtual clock, so a run repeats exactly and a violation comes with the
//! seed and a shortened sequence that reproduces it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use base64::Engine as _;
use fintx_adapters::envelope::local::LocalDataKeys;
use fintx_adapters::envelope::{CacheLimits, EnvelopeCipher};
use fintx_adapters::kms::StaticCursorKey;
use fintx_adapters::memory::MemoryStore;
use fintx_adapters::rollup_store::MemoryRollups;
use fintx_adapters::system::simulated;
use fintx_domain::account::AccountKind;
use fintx_domain::auth::TenantId;
use fintx_domain::ids::AccountId;
use fintx_domain::money::Currency;
use fintx_domain::payment::{ConnectorGrant, ConnectorName, PaymentStatus as RealPaymentStatus};
use fintx_domain::ports::{LedgerStore, RollupStore};
use fintx_domain::rollup::{Granularity, Scope};
use fintx_domain::secret::Secret;
use fintx_domain::transfer::TransferStatus;
use fintx_domain::webhook::{Connector, Connectors, Scheme};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::faults::{FaultRates, FaultyCipher, FaultyRollups, FaultyStore, Rng};
use crate::model::{self, Expect, Kind, Lifecycle, Minor, Model, PaymentStatus, Status};
use crate::{api_event, claims, reply, request, Reply};

const TENANTS: [&str; 3] = ["t1", "t2", "t3"];
/// Connectors, their secrets and the tenants each serves.
const CONNECTORS: [(&str, &str); 2] = [("bank-a", "t1|t2"), ("bank-b", "t2|t3")];
const START_MS: i64 = 1_795_478_400_000;

fn secret_bytes(connector: &str) -> Vec<u8> {
    format!("{connector}-webhook-secret-0123456789").into_bytes()
}

/// A position in a list that may still be empty: taken modulo the length when used.
pub type Pick = u32;

/// An amount as a client writes it.
#[derive(Clone, Copy, Debug)]
pub enum AmountText {
    /// This many minor units, written with all the currency's decimals.
    Minor(u32),
    /// The same, written with fewer decimals where it can (`12.5`).
    Short(u32),
    /// The largest amount there is (15 integer digits).
    Max,
    /// One of a few malformed amounts.
    Invalid(u8),
    /// An overdraft limit of `"unlimited"`.
    Unlimited,
}

/// One transfer of a batch.
#[derive(Clone, Debug)]
pub struct Leg {
    pub debit: Pick,
    pub credit: Pick,
    pub amount: AmountText,
    pub pending: bool,
    pub other_currency: bool,
}

/// One step of a sequence.
#[derive(Clone, Debug)]
pub enum Op {
    Open {
        tenant: u8,
        currency: u8,
        limit: Option<AmountText>,
    },
    Transfer {
        tenant: u8,
        debit: Pick,
        credit: Pick,
        amount: AmountText,
        other_currency: bool,
        pending: bool,
        /// Seconds until the hold expires, as sent (some out of range).
        expires_in: Option<u32>,
    },
    Post {
        tenant: u8,
        transfer: Pick,
        amount: Option<AmountText>,
        /// Send it malformed first, then corrected under the same key.
        malformed_first: bool,
    },
    Void {
        tenant: u8,
        transfer: Pick,
    },
    Reverse {
        tenant: u8,
        transfer: Pick,
        amount: Option<AmountText>,
    },
    Payment {
        tenant: u8,
        account: Pick,
        amount: AmountText,
        connector: u8,
    },
    Outcome {
        connector: u8,
        payment: Pick,
        to: u8,
        repeat_event: Option<Pick>,
    },
    Deposit {
        connector: u8,
        account: Pick,
        amount: AmountText,
        reference: u8,
        repeat_event: Option<Pick>,
    },
    /// A correctly signed body that is not a valid event.
    Malformed {
        connector: u8,
        body: u8,
    },
    /// A body changed after signing.
    Tampered {
        connector: u8,
    },
    Replay {
        request: Pick,
    },
    ReuseKey {
        request: Pick,
    },
    Hostile {
        tenant: u8,
        kind: u8,
    },
    Get {
        tenant: u8,
        account: Pick,
    },
    /// Linked transfers, all or nothing.
    Batch {
        tenant: u8,
        legs: Vec<Leg>,
    },
    /// Freeze (0), unfreeze (1) or close (2) an account.
    Lifecycle {
        tenant: u8,
        account: Pick,
        change: u8,
    },
    /// `PATCH` an account's limit, under the version a read shows or (`stale`) a newer
    /// one that it does not have.
    Patch {
        tenant: u8,
        account: Pick,
        limit: Option<AmountText>,
        stale: bool,
    },
    Pump {
        batch: u8,
    },
    /// The scheduled sweep releasing expired holds in storage.
    Sweep,
    /// An account's balance at an instant of its history, and its statement (within
    /// bounds taken from its history, in pages of `limit % 4 + 1`).
    History {
        tenant: u8,
        account: Pick,
        at: Pick,
        bounds: Pick,
        limit: u8,
    },
}

/// Draws a random operation.
pub fn random_op(rng: &mut Rng) -> Op {
    let tenant = rng.below(3) as u8;
    let pick = |rng: &mut Rng| rng.next_u64() as u32;
    let amount = |rng: &mut Rng| match rng.below(40) {
        0 => AmountText::Max,
        1 | 2 => AmountText::Invalid(rng.below(6) as u8),
        3..=8 => AmountText::Short(rng.below(20_000) as u32 + 1),
        _ => AmountText::Minor(rng.below(20_000) as u32 + 1),
    };
    match rng.below(116) {
        0..=3 => Op::Open {
            tenant,
            currency: rng.below(4) as u8,
            limit: match rng.below(5) {
                0 => None,
                1 => Some(AmountText::Max),
                2 => Some(AmountText::Unlimited),
                _ => Some(AmountText::Minor(rng.below(10_000) as u32)),
            },
        },
        4..=32 => {
            let pending = rng.chance(400);
            Op::Transfer {
                tenant,
                debit: pick(rng),
                credit: pick(rng),
                amount: amount(rng),
                other_currency: rng.chance(50),
                pending,
                // Half the holds may expire; now and then a value out of range, or one
                // on a transfer that is not a hold.
                expires_in: match rng.below(40) {
                    _ if !pending => rng.chance(10).then_some(120),
                    0..=18 => None,
                    19..=37 => Some(60 + rng.below(1_800) as u32),
                    _ => Some([0, 59, 2_592_001, 2_592_000][rng.below(4) as usize]),
                },
            }
        }
        33..=40 => Op::Post {
            tenant,
            transfer: pick(rng),
            amount: rng.chance(400).then(|| amount(rng)),
            malformed_first: rng.chance(100),
        },
        41..=45 => Op::Void {
            tenant,
            transfer: pick(rng),
        },
        46..=52 => Op::Reverse {
            tenant,
            transfer: pick(rng),
            amount: rng.chance(500).then(|| amount(rng)),
        },
        53..=59 => Op::Payment {
            tenant,
            account: pick(rng),
            amount: amount(rng),
            connector: rng.below(3) as u8,
        },
        60..=68 => Op::Outcome {
            connector: rng.below(2) as u8,
            payment: pick(rng),
            to: rng.below(3) as u8,
            repeat_event: rng.chance(100).then(|| pick(rng)),
        },
        69..=75 => Op::Deposit {
            connector: rng.below(2) as u8,
            account: pick(rng),
            amount: amount(rng),
            reference: rng.below(40) as u8,
            repeat_event: rng.chance(60).then(|| pick(rng)),
        },
        76 => Op::Malformed {
            connector: rng.below(2) as u8,
            body: rng.below(4) as u8,
        },
        77 => Op::Tampered {
            connector: rng.below(2) as u8,
        },
        78..=83 => Op::Replay { request: pick(rng) },
        84..=85 => Op::ReuseKey { request: pick(rng) },
        86..=89 => Op::Hostile {
            tenant,
            kind: rng.below(9) as u8,
        },
        90..=95 => Op::Get {
            tenant,
            account: pick(rng),
        },
        96..=99 => Op::Pump {
            batch: rng.below(8) as u8 + 1,
        },
        100..=102 => Op::Lifecycle {
            tenant,
            account: pick(rng),
            change: rng.below(3) as u8,
        },
        110..=111 => Op::Sweep,
        106..=109 => Op::Batch {
            tenant,
            legs: (0..if rng.chance(20) { 20 } else { rng.below(4) + 1 })
                .map(|_| Leg {
                    debit: pick(rng),
                    credit: pick(rng),
                    // Mostly amounts accounts can cover, so batches commit as well as refuse.
                    amount: if rng.chance(150) {
                        amount(rng)
                    } else {
                        AmountText::Minor(rng.below(1_500) as u32 + 1)
                    },
                    pending: rng.chance(300),
                    other_currency: rng.chance(40),
                })
                .collect(),
        },
        112..=115 => Op::History {
            tenant,
            account: pick(rng),
            at: pick(rng),
            bounds: pick(rng),
            limit: rng.below(256) as u8,
        },
        _ => Op::Patch {
            tenant,
            account: pick(rng),
            limit: (!rng.chance(8)).then(|| {
                if rng.chance(250) {
                    AmountText::Unlimited
                } else {
                    AmountText::Minor(rng.below(10_000) as u32)
                }
            }),
            stale: rng.chance(100),
        },
    }
}

/// An overdraft limit as the model keeps it (`None`: unlimited), from its wire text;
/// `None` for a malformed one.
fn parse_limit(text: &str, exponent: u32) -> Option<Option<Minor>> {
    if text == "unlimited" {
        return Some(None);
    }
    model::parse_amount(text, exponent, true).map(Some)
}

fn amount_text(amount: AmountText, exponent: u32) -> String {
    match amount {
        AmountText::Minor(m) => model::format_minor(Minor::from(m), exponent),
        AmountText::Short(m) => {
            let text = model::format_minor(Minor::from(m), exponent);
            if text.contains('.') {
                let trimmed = text.trim_end_matches('0');
                trimmed.strip_suffix('.').unwrap_or(trimmed).to_owned()
            } else {
                text
            }
        }
        AmountText::Max => model::format_minor(model::amount_max(exponent), exponent),
        AmountText::Unlimited => "unlimited".to_owned(),
        AmountText::Invalid(kind) => match kind % 6 {
            // One decimal more than the currency has.
            0 => format!("1.{}", "5".repeat(exponent as usize + 1)),
            1 => "-5".to_owned(),
            2 => "0".to_owned(),
            3 => "1000000000000000".to_owned(),
            4 => "12a".to_owned(),
            _ => "1e3".to_owned(),
        },
    }
}

/// A request as sent, kept for replays.
#[derive(Clone, Debug)]
struct Sent {
    tenant: String,
    route: String,
    key: String,
    method: &'static str,
    path: String,
    body: Value,
    /// The first answer's status and text.
    first: Option<(u16, Value)>,
}

/// What one operation is sent as.
enum Call {
    Api {
        tenant: String,
        method: &'static str,
        path: String,
        body: Option<String>,
        key: Option<String>,
        scopes: &'static str,
        content_type: &'static str,
        claims: bool,
    },
    Webhook {
        connector: String,
        body: String,
        event_id: String,
        tamper: bool,
    },
}

/// What the model applies once the real answer (and its ids) are known.
#[derive(Clone, Debug)]
enum Effect {
    None,
    Open {
        tenant: String,
        currency: &'static str,
        limit: Option<Minor>,
    },
    Transfer {
        debit: usize,
        credit: usize,
        amount: Minor,
        pending: bool,
        expires_in: Option<u32>,
    },
    Post {
        transfer: usize,
        amount: Minor,
    },
    Void {
        transfer: usize,
    },
    Reverse {
        transfer: usize,
        amount: Minor,
    },
    Payment {
        account: usize,
        amount: Minor,
        connector: String,
    },
    Outcome {
        payment: usize,
        to: PaymentStatus,
    },
    Deposit {
        account: usize,
        amount: Minor,
        connector: String,
        reference: String,
    },
    Status {
        account: usize,
        to: Lifecycle,
    },
    Batch {
        legs: Vec<(usize, usize, Minor, bool)>,
    },
}

/// A disagreement or a broken invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    pub step: usize,
    pub what: String,
}

/// One world: fresh stores and functions, a model, and what was sent.
pub struct World {
    pub model: Model,
    store: Option<Arc<MemoryStore>>,
    faulty: Arc<FaultyStore>,
    cipher: Arc<FaultyCipher>,
    rollups: Arc<FaultyRollups>,
    memory_rollups: Arc<MemoryRollups>,
    /// Two execution environments of the transactions function, each with its own
    /// memory of recent transfers: requests alternate between them in runs, so a change
    /// planned from a stale memory meets the store's conditions.
    transactions: [transactions::App; 2],
    webhooks: bank_webhooks::App,
    analytics: analytics_rollups::App,
    sent: Vec<Sent>,
    events: Vec<(String, String)>,
    stream: Vec<Value>,
    stream_sequence: u64,
    faults: bool,
    rng: Rng,
    now_ms: i64,
    next_key: u64,
    pub violations: Vec<Violation>,
    /// Answers by operation and outcome (`Transfer 201`, `Post 409 managed_by_payment`).
    pub tally: BTreeMap<String, u64>,
}

fn webhook_connectors() -> Connectors {
    Connectors::new(
        CONNECTORS
            .iter()
            .map(|(name, tenants)| {
                let secret = format!(
                    "whsec_{}",
                    base64::engine::general_purpose::STANDARD.encode(secret_bytes(name))
                );
                Connector::new(
                    ConnectorName::parse(name).unwrap(),
                    Scheme::StandardWebhooks,
                    &[Secret::new(secret)],
                    tenants.split('|').map(str::to_owned).collect(),
                )
                .unwrap()
            })
            .collect(),
    )
}

impl World {
    /// A world over the in-memory store, with faults when `faults` is set.
    pub fn in_memory(seed: u64, faults: bool) -> World {
        let memory = Arc::new(MemoryStore::with_change_log());
        let mut world = World::over(memory.clone(), seed, faults);
        world.store = Some(memory);
        world
    }

    /// A world over any ledger store (the DynamoDB adapter on the emulator, say). The
    /// stream and its analytics are checked only over the in-memory store.
    pub fn over(store: Arc<dyn LedgerStore>, seed: u64, faults: bool) -> World {
        let faulty = Arc::new(FaultyStore::new(store));
        let cipher = Arc::new(FaultyCipher::new(Arc::new(EnvelopeCipher::new(
            LocalDataKeys::new([4; 32]),
            CacheLimits::default(),
        ))));
        let memory_rollups = Arc::new(MemoryRollups::new());
        let rollups = Arc::new(FaultyRollups::new(memory_rollups.clone()));
        let cursor = Arc::new(StaticCursorKey([3; 32]));
        let grants: Vec<String> = CONNECTORS.iter().map(|(n, t)| format!("{n}={t}")).collect();
        let transactions = [(); 2].map(|()| transactions::App {
            store: faulty.clone(),
            cursor_keys: cursor.clone(),
            cipher: cipher.clone(),
            connectors: ConnectorGrant::parse_list(&grants.join(",")).unwrap(),
            dev_auth_headers: false,
            recent: Default::default(),
        });
        let webhooks = bank_webhooks::App {
            store: faulty.clone(),
            cipher: cipher.clone(),
            connectors: webhook_connectors(),
            cursor_keys: cursor,
            dev_auth_headers: false,
            accounts: Default::default(),
        };
        let analytics = analytics_rollups::App {
            store: faulty.clone(),
            rollups: rollups.clone(),
            dev_auth_headers: false,
        };
        let mut model = Model::default();
        for (name, tenants) in CONNECTORS {
            model
                .connectors
                .insert(name.to_owned(), tenants.split('|').map(str::to_owned).collect());
        }
        World {
            model,
            store: None,
            faulty,
            cipher,
            rollups,
            memory_rollups,
            transactions,
            webhooks,
            analytics,
            sent: Vec::new(),
            events: Vec::new(),
            stream: Vec::new(),
            stream_sequence: 0,
            faults,
            rng: Rng::new(seed),
            now_ms: START_MS,
            next_key: 0,
            violations: Vec::new(),
            tally: BTreeMap::new(),
        }
    }

    fn violation(&mut self, step: usize, what: String) {
        self.violations.push(Violation { step, what });
    }

    fn key(&mut self) -> String {
        self.next_key += 1;
        format!("k-{}", self.next_key)
    }

    /// Sets the faults of the next step from its own seed, so removing other steps
    /// leaves this one's faults as they were.
    fn seed_step(&mut self, step_seed: u64) {
        if !self.faults {
            return;
        }
        let rates = FaultRates::simulation();
        self.faulty.randomly(Rng::new(step_seed), rates);
        self.cipher.randomly(Rng::new(step_seed ^ 0xc1), rates.kms_outage);
        self.rollups.randomly(
            Rng::new(step_seed ^ 0x2011),
            rates.rollup_fail_before,
            rates.rollup_fail_after,
        );
    }

    /// Turns faults off (the last tries of a retried request, and the final drain).
    fn calm(&mut self) {
        self.faulty.randomly(Rng::new(0), FaultRates::default());
        self.cipher.randomly(Rng::new(0), 0);
        self.rollups.randomly(Rng::new(0), 0, 0);
    }

    // ------------------------------------------------------------------ rendering

    /// An account for `tenant`: nine times in ten one of its own customer accounts (in
    /// `currency` when given and possible), else any account at all (another tenant's, a
    /// clearing account) to try the side doors.
    fn pick_account_for(&self, tenant: &str, pick: Pick, currency: Option<&str>) -> Option<usize> {
        let all = &self.model.accounts;
        if all.is_empty() {
            return None;
        }
        if pick % 10 == 0 {
            return Some((pick / 10) as usize % all.len());
        }
        let own: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].tenant == tenant && all[i].kind == Kind::Customer)
            .collect();
        let same: Vec<usize> = own
            .iter()
            .copied()
            .filter(|&i| currency.is_none_or(|c| all[i].currency == c))
            .collect();
        let from = if same.is_empty() { &own } else { &same };
        if from.is_empty() {
            return Some((pick / 10) as usize % all.len());
        }
        Some(from[(pick / 10) as usize % from.len()])
    }

    fn pick_account(&self, pick: Pick) -> Option<usize> {
        (!self.model.accounts.is_empty()).then(|| pick as usize % self.model.accounts.len())
    }

    /// A transfer for `tenant`: nine times in ten one of its own, else any.
    fn pick_transfer_for(&self, tenant: &str, pick: Pick) -> Option<usize> {
        let all = &self.model.transfers;
        if all.is_empty() {
            return None;
        }
        let own: Vec<usize> = (0..all.len()).filter(|&i| all[i].tenant == tenant).collect();
        if pick % 10 == 0 || own.is_empty() {
            return Some((pick / 10) as usize % all.len());
        }
        // Recent transfers are the ones still open to change.
        let recent = &own[own.len().saturating_sub(12)..];
        Some(recent[(pick / 10) as usize % recent.len()])
    }

    fn recorded(&self, tenant: &str, route: &str, key: &str) -> Option<&model::Recorded> {
        self.model
            .idempotency
            .get(&(tenant.to_owned(), route.to_owned(), key.to_owned()))
    }

    fn api(&mut self, tenant: &str, method: &'static str, path: String, body: Option<Value>) -> Call {
        let key = (method == "POST").then(|| self.key());
        Call::Api {
            tenant: tenant.to_owned(),
            method,
            path,
            body: body.map(|b| b.to_string()),
            key,
            scopes: "ledger:read ledger:write",
            content_type: "application/json",
            claims: true,
        }
    }

    /// Renders an operation into a call, the model's expectation and its effect.
    fn render(&mut self, op: &Op) -> Option<(Call, Expect, Effect)> {
        let m = &self.model;
        match op {
            Op::Open {
                tenant,
                currency,
                limit,
            } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let (code, e) = model::CURRENCIES[*currency as usize % 4];
                let mut body = json!({ "currency": code });
                let mut limit_minor = Some(0);
                if let Some(limit) = limit {
                    let text = amount_text(*limit, e);
                    limit_minor = parse_limit(&text, e)?;
                    body["overdraft_limit"] = Value::String(text);
                }
                let call = self.api(tenant, "POST", "/v1/accounts".into(), Some(body));
                Some((
                    call,
                    Expect::ok(201),
                    Effect::Open {
                        tenant: tenant.to_owned(),
                        currency: code,
                        limit: limit_minor,
                    },
                ))
            }
            Op::Transfer {
                tenant,
                debit,
                credit,
                amount,
                other_currency,
                pending,
                expires_in,
            } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let d = self.pick_account_for(tenant, *debit, None)?;
                let mut c = self.pick_account_for(tenant, *credit, Some(m.accounts[d].currency))?;
                // Mostly another account: the same one on both sides is a rare mistake.
                for shift in 1..4u32 {
                    if c != d || *credit % 7 == 0 {
                        break;
                    }
                    c = self.pick_account_for(tenant, credit.wrapping_add(10 * shift), Some(m.accounts[d].currency))?;
                }
                let mut currency = m.accounts[d].currency;
                if *other_currency {
                    currency = model::CURRENCIES[(*debit as usize / 7) % 4].0;
                }
                let e = model::exponent(currency)?;
                let text = amount_text(*amount, e);
                let mut body = json!({
                    "debit_account_id": m.accounts[d].id,
                    "credit_account_id": m.accounts[c].id,
                    "amount": text,
                    "currency": currency,
                    "pending": pending,
                });
                if let Some(seconds) = expires_in {
                    body["expires_in"] = json!(seconds);
                }
                let (a, cr) = (&m.accounts[d], &m.accounts[c]);
                let parsed = model::parse_amount(&text, e, false);
                // `expires_in` is for holds, 60 s to 30 days; checked with the body's shape.
                let bad_expiry = expires_in.is_some_and(|s| !*pending || !(60..=2_592_000).contains(&s));
                let (expect, effect) = match parsed {
                    _ if bad_expiry => (Expect::problem(400, "invalid_request"), Effect::None),
                    None => (Expect::problem(400, "invalid_amount"), Effect::None),
                    Some(_) if a.tenant != tenant || cr.tenant != tenant => {
                        (Expect::problem(404, "account_not_found"), Effect::None)
                    }
                    Some(_) if a.kind == Kind::Clearing || cr.kind == Kind::Clearing => {
                        (Expect::problem(422, "clearing_account"), Effect::None)
                    }
                    Some(_) if m.lifecycle_refusal(d, c).is_some() => (
                        Expect::problem(422, m.lifecycle_refusal(d, c).unwrap_or_default()),
                        Effect::None,
                    ),
                    Some(_) if a.currency != currency || cr.currency != currency => {
                        (Expect::problem(422, "currency_mismatch"), Effect::None)
                    }
                    Some(_) if d == c => (Expect::problem(422, "same_account"), Effect::None),
                    Some(x) if !m.covered(d, x) => (Expect::problem(422, "insufficient_funds"), Effect::None),
                    Some(x) => (
                        Expect::ok(201),
                        Effect::Transfer {
                            debit: d,
                            credit: c,
                            amount: x,
                            pending: *pending,
                            expires_in: *expires_in,
                        },
                    ),
                };
                let call = self.api(tenant, "POST", "/v1/transfers".into(), Some(body));
                Some((call, expect, effect))
            }
            Op::Post {
                tenant,
                transfer,
                amount,
                ..
            } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let t = self.pick_transfer_for(tenant, *transfer)?;
                let tr = &m.transfers[t];
                let e = model::exponent(tr.currency)?;
                let text = amount.map(|a| amount_text(a, e));
                let body = text.as_ref().map(|t| json!({ "amount": t }));
                let requested = match &text {
                    None => Some(tr.amount),
                    Some(t) => model::parse_amount(t, e, false),
                };
                let (expect, effect) = if tr.tenant != tenant {
                    (Expect::problem(404, "not_found"), Effect::None)
                } else {
                    match requested {
                        None => (Expect::problem(400, "invalid_amount"), Effect::None),
                        Some(_) if tr.payment.is_some() => (Expect::problem(409, "managed_by_payment"), Effect::None),
                        Some(_) if tr.through_clearing => (Expect::problem(422, "clearing_account"), Effect::None),
                        Some(x) => match tr.status {
                            Status::Posted if x == tr.posted_amount => (Expect::ok(200), Effect::None),
                            Status::Posted | Status::Voided => {
                                (Expect::problem(409, "invalid_transition"), Effect::None)
                            }
                            Status::Expired => (Expect::problem(409, "hold_expired"), Effect::None),
                            Status::Pending if x > tr.amount => (Expect::problem(400, "invalid_amount"), Effect::None),
                            // A frozen account's holds do not post.
                            Status::Pending if m.accounts[tr.debit].status != Lifecycle::Open => {
                                let code = match m.accounts[tr.debit].status {
                                    Lifecycle::Closed => "account_closed",
                                    _ => "account_frozen",
                                };
                                (Expect::problem(422, code), Effect::None)
                            }
                            Status::Pending => (Expect::ok(200), Effect::Post { transfer: t, amount: x }),
                        },
                    }
                };
                let path = format!("/v1/transfers/{}/post", tr.id);
                let call = self.api(tenant, "POST", path, body);
                Some((call, expect, effect))
            }
            Op::Void { tenant, transfer } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let t = self.pick_transfer_for(tenant, *transfer)?;
                let tr = &m.transfers[t];
                let (expect, effect) = if tr.tenant != tenant {
                    (Expect::problem(404, "not_found"), Effect::None)
                } else if tr.payment.is_some() {
                    (Expect::problem(409, "managed_by_payment"), Effect::None)
                } else if tr.through_clearing {
                    (Expect::problem(422, "clearing_account"), Effect::None)
                } else {
                    match tr.status {
                        Status::Voided | Status::Expired => (Expect::ok(200), Effect::None),
                        Status::Posted => (Expect::problem(409, "invalid_transition"), Effect::None),
                        Status::Pending => (Expect::ok(200), Effect::Void { transfer: t }),
                    }
                };
                let path = format!("/v1/transfers/{}/void", tr.id);
                let call = self.api(tenant, "POST", path, None);
                Some((call, expect, effect))
            }
            Op::Reverse {
                tenant,
                transfer,
                amount,
            } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let t = self.pick_transfer_for(tenant, *transfer)?;
                let tr = &m.transfers[t];
                let e = model::exponent(tr.currency)?;
                let text = amount.map(|a| amount_text(a, e));
                let body = text.as_ref().map(|t| json!({ "amount": t }));
                let remaining = tr.posted_amount - tr.reversed_amount;
                let requested = match &text {
                    None => Some(remaining),
                    Some(t) => model::parse_amount(t, e, false),
                };
                let (expect, effect) = if tr.tenant != tenant {
                    (Expect::problem(404, "not_found"), Effect::None)
                } else {
                    match requested {
                        None => (Expect::problem(400, "invalid_amount"), Effect::None),
                        Some(_) if tr.payment.is_some() => (Expect::problem(409, "managed_by_payment"), Effect::None),
                        Some(_) if tr.through_clearing => (Expect::problem(422, "clearing_account"), Effect::None),
                        Some(_) if tr.status != Status::Posted => {
                            (Expect::problem(409, "invalid_transition"), Effect::None)
                        }
                        Some(0) => (Expect::problem(422, "reversal_exceeds_amount"), Effect::None),
                        Some(x) if x > remaining => (Expect::problem(422, "reversal_exceeds_amount"), Effect::None),
                        // The reversal debits the original credit account.
                        Some(_) if m.lifecycle_refusal(tr.credit, tr.debit).is_some() => (
                            Expect::problem(422, m.lifecycle_refusal(tr.credit, tr.debit).unwrap_or_default()),
                            Effect::None,
                        ),
                        Some(x) if !m.covered(tr.credit, x) => {
                            (Expect::problem(422, "insufficient_funds"), Effect::None)
                        }
                        Some(x) => (Expect::ok(201), Effect::Reverse { transfer: t, amount: x }),
                    }
                };
                let path = format!("/v1/transfers/{}/reverse", tr.id);
                let call = self.api(tenant, "POST", path, body);
                Some((call, expect, effect))
            }
            Op::Payment {
                tenant,
                account,
                amount,
                connector,
            } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let a = self.pick_account_for(tenant, *account, None)?;
                let acc = &m.accounts[a];
                let e = acc.exponent();
                let text = amount_text(*amount, e);
                let connector = match connector % 3 {
                    0 => "bank-a",
                    1 => "bank-b",
                    _ => "bank-z",
                };
                let body = json!({
                    "account_id": acc.id,
                    "amount": text,
                    "currency": acc.currency,
                    "connector": connector,
                    "counterparty": {"name": "Ada Lovelace", "iban": "GB82WEST12345698765432"},
                });
                let (expect, effect) = match model::parse_amount(&text, e, false) {
                    None => (Expect::problem(400, "invalid_amount"), Effect::None),
                    Some(_) if !m.serves(connector, tenant) => {
                        (Expect::problem(404, "unknown_connector"), Effect::None)
                    }
                    Some(_) if acc.tenant != tenant => (Expect::problem(404, "account_not_found"), Effect::None),
                    Some(_) if acc.kind == Kind::Clearing => (Expect::problem(422, "clearing_account"), Effect::None),
                    Some(_) if acc.status == Lifecycle::Closed => {
                        (Expect::problem(422, "account_closed"), Effect::None)
                    }
                    Some(_) if acc.status == Lifecycle::Frozen => {
                        (Expect::problem(422, "account_frozen"), Effect::None)
                    }
                    Some(x) if !m.covered(a, x) => (Expect::problem(422, "insufficient_funds"), Effect::None),
                    Some(x) => (
                        Expect::ok(201),
                        Effect::Payment {
                            account: a,
                            amount: x,
                            connector: connector.to_owned(),
                        },
                    ),
                };
                let call = self.api(tenant, "POST", "/v1/payments".into(), Some(body));
                Some((call, expect, effect))
            }
            Op::Outcome {
                connector,
                payment,
                to,
                repeat_event,
            } => {
                if self.model.payments.is_empty() {
                    return None;
                }
                let p = *payment as usize % self.model.payments.len();
                // Mostly the payment's own connector; now and then another one.
                let connector = if *connector == 0 && payment % 4 == 0 {
                    CONNECTORS
                        .iter()
                        .map(|c| c.0)
                        .find(|c| *c != self.model.payments[p].connector)
                        .unwrap_or("bank-a")
                } else {
                    CONNECTORS
                        .iter()
                        .map(|c| c.0)
                        .find(|c| *c == self.model.payments[p].connector)
                        .unwrap_or("bank-a")
                };
                let (event_id, repeated) = self.event_id(connector, *repeat_event);
                let m = &self.model;
                let pay = &m.payments[p];
                let (kind, to) = match to % 3 {
                    0 => ("payment.settled", PaymentStatus::Settled),
                    1 => ("payment.failed", PaymentStatus::Failed),
                    _ => ("payment.returned", PaymentStatus::Returned),
                };
                let mut data = json!({ "payment_id": pay.id });
                if to != PaymentStatus::Settled {
                    data["reason"] = json!("account_closed");
                }
                let body = json!({ "id": event_id, "type": kind, "data": data }).to_string();
                let (expect, effect) = if repeated {
                    (Expect::webhook("duplicate", None), Effect::None)
                } else if pay.connector != connector || !m.serves(connector, &pay.tenant) {
                    (Expect::webhook("rejected", Some("not_found")), Effect::None)
                } else if pay.status == to {
                    (Expect::webhook("duplicate", None), Effect::None)
                } else {
                    match (pay.status, to) {
                        (PaymentStatus::Pending, PaymentStatus::Settled | PaymentStatus::Failed)
                        | (PaymentStatus::Settled, PaymentStatus::Returned) => {
                            (Expect::webhook("applied", None), Effect::Outcome { payment: p, to })
                        }
                        _ => (Expect::webhook("rejected", Some("invalid_transition")), Effect::None),
                    }
                };
                let call = Call::Webhook {
                    connector: connector.to_owned(),
                    body,
                    event_id,
                    tamper: false,
                };
                Some((call, expect, effect))
            }
            Op::Deposit {
                connector,
                account,
                amount,
                reference,
                repeat_event,
            } => {
                let connector = CONNECTORS[*connector as usize % 2].0;
                // Mostly a customer account of a tenant the connector serves.
                let served: Vec<usize> = (0..self.model.accounts.len())
                    .filter(|&i| {
                        let a = &self.model.accounts[i];
                        a.kind == Kind::Customer && self.model.serves(connector, &a.tenant)
                    })
                    .collect();
                let a = if account % 8 == 0 || served.is_empty() {
                    self.pick_account(*account / 8)?
                } else {
                    served[(*account / 8) as usize % served.len()]
                };
                let (event_id, repeated) = self.event_id(connector, *repeat_event);
                let m = &self.model;
                let acc = &m.accounts[a];
                let e = acc.exponent();
                let text = amount_text(*amount, e);
                let reference = format!("ref-{reference}");
                let body = json!({
                    "id": event_id,
                    "type": "deposit.received",
                    "data": {"account_id": acc.id, "amount": text, "currency": acc.currency, "bank_reference": reference},
                })
                .to_string();
                let (expect, effect) = if repeated {
                    (Expect::webhook("duplicate", None), Effect::None)
                } else if !m.serves(connector, &acc.tenant) || acc.kind == Kind::Clearing {
                    (Expect::webhook("rejected", Some("not_found")), Effect::None)
                } else {
                    match model::parse_amount(&text, e, false) {
                        None => (Expect::webhook("rejected", Some("invalid_amount")), Effect::None),
                        Some(_)
                            if m.deposit_references
                                .contains(&(connector.to_owned(), reference.clone())) =>
                        {
                            (Expect::webhook("duplicate", None), Effect::None)
                        }
                        // A closed account takes no new deposit; a frozen one does.
                        Some(_) if acc.status == Lifecycle::Closed => {
                            (Expect::webhook("rejected", Some("account_closed")), Effect::None)
                        }
                        Some(x) => (
                            Expect::webhook("applied", None),
                            Effect::Deposit {
                                account: a,
                                amount: x,
                                connector: connector.to_owned(),
                                reference,
                            },
                        ),
                    }
                };
                let call = Call::Webhook {
                    connector: connector.to_owned(),
                    body,
                    event_id,
                    tamper: false,
                };
                Some((call, expect, effect))
            }
            Op::Malformed { connector, body } => {
                let connector = CONNECTORS[*connector as usize % 2].0;
                let (event_id, _) = self.event_id(connector, None);
                let body = match body % 4 {
                    0 => "not json at all".to_owned(),
                    1 => json!({"id": event_id, "type": "payment.settled", "data": {}}).to_string(),
                    2 => json!({"id": event_id, "type": "deposit.received"}).to_string(),
                    _ => json!({"id": event_id, "type": "deposit.received", "data": {"account_id": "acct_x", "amount": "1.00", "currency": "USD"}}).to_string(),
                };
                let call = Call::Webhook {
                    connector: connector.to_owned(),
                    body,
                    event_id,
                    tamper: false,
                };
                Some((call, Expect::webhook("rejected", Some("invalid_request")), Effect::None))
            }
            Op::Tampered { connector } => {
                let connector = CONNECTORS[*connector as usize % 2].0;
                // Refused before anything is archived: its id is not one the bank used.
                let event_id = format!("evt-tampered-{}", self.events.len());
                let body = json!({"id": event_id, "type": "deposit.received", "data": {}}).to_string();
                let call = Call::Webhook {
                    connector: connector.to_owned(),
                    body,
                    event_id,
                    tamper: true,
                };
                Some((call, Expect::problem(401, "invalid_signature"), Effect::None))
            }
            Op::Replay { request } => {
                let candidates: Vec<usize> = (0..self.sent.len())
                    .filter(|&i| {
                        let s = &self.sent[i];
                        s.first.is_some() && self.recorded(&s.tenant, &s.route, &s.key).is_some()
                    })
                    .collect();
                let i = *candidates.get(*request as usize % candidates.len().max(1))?;
                let s = self.sent[i].clone();
                let recorded = self.recorded(&s.tenant, &s.route, &s.key)?;
                let mut expect = recorded.expect.clone();
                expect.replayed = true;
                let call = Call::Api {
                    tenant: s.tenant,
                    method: s.method,
                    path: s.path,
                    body: (!s.body.is_null()).then(|| s.body.to_string()),
                    key: Some(s.key),
                    scopes: "ledger:read ledger:write",
                    content_type: "application/json",
                    claims: true,
                };
                Some((call, expect, Effect::None))
            }
            Op::ReuseKey { request } => {
                let candidates: Vec<usize> = (0..self.sent.len())
                    .filter(|&i| {
                        let s = &self.sent[i];
                        s.body.is_object() && self.recorded(&s.tenant, &s.route, &s.key).is_some()
                    })
                    .collect();
                let i = *candidates.get(*request as usize % candidates.len().max(1))?;
                let s = self.sent[i].clone();
                let mut body = s.body.clone();
                if s.route == "POST /v1/payments" {
                    body["reference"] = json!("changed");
                } else if s.route == "POST /v1/transfer-batches" {
                    body["transfers"][0]["metadata"] = json!({"changed": "yes"});
                } else if s.route.ends_with("/post") || s.route.ends_with("/reverse") {
                    body = json!({"amount": "999999"});
                } else {
                    body["metadata"] = json!({"changed": "yes"});
                }
                let call = Call::Api {
                    tenant: s.tenant,
                    method: s.method,
                    path: s.path,
                    body: Some(body.to_string()),
                    key: Some(s.key),
                    scopes: "ledger:read ledger:write",
                    content_type: "application/json",
                    claims: true,
                };
                Some((call, Expect::problem(422, "idempotency_key_reused"), Effect::None))
            }
            Op::Hostile { tenant: t, kind } => {
                let tenant = TENANTS[*t as usize % 3];
                let a = self.pick_account(u32::from(*kind)).map(|i| m.accounts[i].id.clone());
                let id = a.unwrap_or_else(|| AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)).to_string());
                let transfer = |amount: &str| {
                    format!(
                        r#"{{"debit_account_id":"{id}","credit_account_id":"{id}","currency":"USD","amount":{amount}}}"#
                    )
                };
                let key = self.key();
                let (body, content_type, scopes, claims, key, expect) = match kind % 9 {
                    0 => (
                        transfer("\"1.00\""),
                        "application/json",
                        "ledger:write",
                        false,
                        Some(key),
                        Expect::problem(401, "unauthenticated"),
                    ),
                    1 => (
                        transfer("\"1.00\""),
                        "application/json",
                        "ledger:read",
                        true,
                        Some(key),
                        Expect::problem(403, "forbidden"),
                    ),
                    2 => (
                        transfer("\"1.00\""),
                        "text/plain",
                        "ledger:write",
                        true,
                        Some(key),
                        Expect::problem(400, "invalid_request"),
                    ),
                    3 => (
                        format!(
                            r#"{{"debit_account_id":"{id}","credit_account_id":"{id}","currency":"USD","amount":"1.00","amount":"2.00"}}"#
                        ),
                        "application/json",
                        "ledger:write",
                        true,
                        Some(key),
                        Expect::problem(400, "invalid_request"),
                    ),
                    4 => (
                        transfer("12.5"),
                        "application/json",
                        "ledger:write",
                        true,
                        Some(key),
                        Expect::problem(400, "invalid_amount"),
                    ),
                    5 => (
                        transfer("1e309"),
                        "application/json",
                        "ledger:write",
                        true,
                        Some(key),
                        Expect::problem(400, "invalid_amount"),
                    ),
                    6 => (
                        transfer(&"9".repeat(400)),
                        "application/json",
                        "ledger:write",
                        true,
                        Some(key),
                        Expect::problem(400, "invalid_amount"),
                    ),
                    7 => (
                        transfer("\"1.00\""),
                        "application/json",
                        "ledger:write",
                        true,
                        None,
                        Expect::problem(400, "idempotency_key_missing"),
                    ),
                    _ => (
                        format!(
                            r#"{{"debit_account_id":"{id}","credit_account_id":"{id}","currency":"USD","amount":"1.00","colour":"red"}}"#
                        ),
                        "application/json",
                        "ledger:write",
                        true,
                        Some(key),
                        Expect::problem(400, "unknown_field"),
                    ),
                };
                let call = Call::Api {
                    tenant: tenant.to_owned(),
                    method: "POST",
                    path: "/v1/transfers".into(),
                    body: Some(body),
                    key,
                    scopes,
                    content_type,
                    claims,
                };
                Some((call, expect, Effect::None))
            }
            Op::Get { tenant, account } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let a = self.pick_account_for(tenant, *account, None)?;
                let expect = if m.accounts[a].tenant == tenant {
                    Expect::ok(200)
                } else {
                    Expect::problem(404, "account_not_found")
                };
                let path = format!("/v1/accounts/{}", m.accounts[a].id);
                Some((self.api(tenant, "GET", path, None), expect, Effect::None))
            }
            Op::Lifecycle {
                tenant,
                account,
                change,
            } => {
                let tenant = TENANTS[*tenant as usize % 3];
                let a = self.pick_account_for(tenant, *account, None)?;
                let acc = &m.accounts[a];
                let (name, to) = match change % 3 {
                    0 => ("freeze", Lifecycle::Frozen),
                    1 => ("unfreeze", Lifecycle::Open),
                    _ => ("close", Lifecycle::Closed),
                };
                let (expect, effect) = if acc.tenant != tenant {
                    (Expect::problem(404, "account_not_found"), Effect::None)
                } else if acc.kind == Kind::Clearing {
                    (Expect::problem(422, "clearing_account"), Effect::None)
                } else if acc.status == to {
                    (Expect::ok(200), Effect::None)
                } else if acc.status == Lifecycle::Closed {
                    (Expect::problem(409, "invalid_transition"), Effect::None)
                } else if to == Lifecycle::Closed && !acc.is_empty() {
                    (Expect::problem(422, "account_not_empty"), Effect::None)
                } else {
                    (Expect::ok(200), Effect::Status { account: a, to })
                };
                let path = format!("/v1/accounts/{}/{name}", acc.id);
                Some((self.api(tenant, "POST", path, None), expect, effect))
            }
            Op::Batch { tenant, legs } => {
                let tenant = TENANTS[*tenant as usize % 3];
                // Each leg as sent: its accounts, currency and amount text.
                let mut sent = Vec::with_capacity(legs.len());
                for leg in legs {
                    let d = self.pick_account_for(tenant, leg.debit, None)?;
                    let mut c = self.pick_account_for(tenant, leg.credit, Some(m.accounts[d].currency))?;
                    if c == d && leg.credit % 7 != 0 {
                        c = self.pick_account_for(tenant, leg.credit.wrapping_add(10), Some(m.accounts[d].currency))?;
                    }
                    let mut currency = m.accounts[d].currency;
                    if leg.other_currency {
                        currency = model::CURRENCIES[(leg.debit as usize / 7) % 4].0;
                    }
                    let e = model::exponent(currency)?;
                    sent.push((d, c, currency, amount_text(leg.amount, e), leg.pending, e));
                }
                let body = json!({
                    "transfers": sent.iter().map(|(d, c, currency, text, pending, _)| json!({
                        "debit_account_id": m.accounts[*d].id,
                        "credit_account_id": m.accounts[*c].id,
                        "amount": text,
                        "currency": currency,
                        "pending": pending,
                    })).collect::<Vec<_>>(),
                });
                let with_index = |mut expect: Expect, index: usize| {
                    expect.index = Some(index);
                    expect
                };
                // Malformed amounts first, then each transfer in order against the
                // balances the ones before it left.
                let mut expect = None;
                for (i, (_, _, _, text, _, e)) in sent.iter().enumerate() {
                    if model::parse_amount(text, *e, false).is_none() {
                        expect = Some(with_index(Expect::problem(400, "invalid_amount"), i));
                        break;
                    }
                }
                let mut scratch = m.clone();
                let mut effect = Vec::new();
                if expect.is_none() {
                    for (i, (d, c, currency, text, pending, e)) in sent.iter().enumerate() {
                        let x = model::parse_amount(text, *e, false).unwrap_or_default();
                        let (a, cr) = (&scratch.accounts[*d], &scratch.accounts[*c]);
                        let refusal = if a.tenant != tenant || cr.tenant != tenant {
                            Some(Expect::problem(404, "account_not_found"))
                        } else if a.kind == Kind::Clearing || cr.kind == Kind::Clearing {
                            Some(Expect::problem(422, "clearing_account"))
                        } else if let Some(code) = scratch.lifecycle_refusal(*d, *c) {
                            Some(Expect::problem(422, code))
                        } else if a.currency != *currency || cr.currency != *currency {
                            Some(Expect::problem(422, "currency_mismatch"))
                        } else if d == c {
                            Some(Expect::problem(422, "same_account"))
                        } else if !scratch.covered(*d, x) {
                            Some(Expect::problem(422, "insufficient_funds"))
                        } else {
                            None
                        };
                        if let Some(refusal) = refusal {
                            expect = Some(with_index(refusal, i));
                            break;
                        }
                        scratch.open(String::new(), *d, *c, x, *pending, None, 0);
                        effect.push((*d, *c, x, *pending));
                    }
                }
                let (expect, effect) = match expect {
                    Some(refusal) => (refusal, Effect::None),
                    None => (Expect::ok(201), Effect::Batch { legs: effect }),
                };
                let call = self.api(tenant, "POST", "/v1/transfer-batches".into(), Some(body));
                Some((call, expect, effect))
            }
            Op::Pump { .. } | Op::Patch { .. } | Op::Sweep | Op::History { .. } => None,
        }
    }

    /// A fresh event id, or (when asked and possible) one this connector used before.
    fn event_id(&mut self, connector: &str, repeat: Option<Pick>) -> (String, bool) {
        let used: Vec<&String> = self
            .events
            .iter()
            .filter(|(c, _)| c == connector)
            .map(|(_, id)| id)
            .collect();
        if let (Some(pick), false) = (repeat, used.is_empty()) {
            return (used[pick as usize % used.len()].clone(), true);
        }
        let id = format!("evt-{}", self.events.len());
        self.events.push((connector.to_owned(), id.clone()));
        (id, false)
    }

    // ------------------------------------------------------------------ sending

    async fn send_once(&self, call: &Call) -> Reply {
        match call {
            Call::Api {
                tenant,
                method,
                path,
                body,
                key,
                scopes,
                content_type,
                claims: with_claims,
            } => {
                let mut event = api_event(
                    method,
                    path,
                    body.as_deref(),
                    with_claims.then(|| claims(tenant, scopes)),
                );
                event["headers"]["content-type"] = Value::String((*content_type).to_owned());
                if let Some(key) = key {
                    event["headers"]["idempotency-key"] = Value::String(key.clone());
                }
                reply(transactions::handle(self.environment(), request(&event)).await)
            }
            Call::Webhook {
                connector,
                body,
                event_id,
                tamper,
            } => {
                let timestamp = (self.now_ms / 1000).to_string();
                let mut mac = Hmac::<Sha256>::new_from_slice(&secret_bytes(connector)).unwrap();
                mac.update(format!("{event_id}.{timestamp}.{body}").as_bytes());
                let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                let sent_body = if *tamper { body.replace('}', " }") } else { body.clone() };
                let headers = vec![
                    ("webhook-id".to_owned(), event_id.clone()),
                    ("webhook-timestamp".to_owned(), timestamp),
                    ("webhook-signature".to_owned(), format!("v1,{signature}")),
                ];
                reply(
                    bank_webhooks::handle(&self.webhooks, crate::webhook_event(connector, &sent_body, &headers)).await,
                )
            }
        }
    }

    /// Sends a call as a client or bank would: a lost answer or a 5xx is retried with
    /// the same request. Returns the answer and whether an earlier, unanswered try had
    /// already committed.
    async fn send(&mut self, call: &Call) -> (Reply, bool) {
        let mut committed_unanswered = false;
        for attempt in 0..6 {
            if attempt >= 3 {
                self.calm();
            }
            let answer = self.send_once(call).await;
            let (crashed, committed) = self.faulty.take_request_fate();
            if crashed || answer.status >= 500 {
                committed_unanswered |= committed;
                self.now_ms += 1_000;
                simulated::advance(1_000);
                continue;
            }
            return (answer, committed_unanswered);
        }
        let answer = self.send_once(call).await;
        (answer, committed_unanswered)
    }

    // ------------------------------------------------------------------ stepping

    /// Runs one operation; `step_seed` fixes its faults.
    pub async fn step(&mut self, index: usize, op: &Op, step_seed: u64) {
        let advance = 1 + (step_seed % 300_000) as i64;
        self.now_ms += advance;
        simulated::advance(advance);
        // No hold expires while this step's request may still be retried: a hold due
        // within ten seconds is let expire first.
        while let Some(next) = self.model.next_expiry_after(self.now_ms) {
            if next > self.now_ms + 10_000 {
                break;
            }
            let wait = next - self.now_ms;
            self.now_ms = next;
            simulated::advance(wait);
        }
        self.model.expire_due(self.now_ms);
        self.seed_step(step_seed);
        if let Op::Sweep = op {
            let store: &dyn LedgerStore = self.faulty.as_ref();
            // A failed sweep leaves its holds to the next one; none is released twice.
            let _ = transactions::sweep(
                store,
                fintx_domain::clock::Timestamp::from_unix_ms(self.now_ms).unwrap(),
            )
            .await;
            // A sweep whose process crashed is simply over; the next one starts afresh.
            let _ = self.faulty.take_request_fate();
            *self.tally.entry("Sweep".into()).or_default() += 1;
            self.check_invariants(index).await;
            return;
        }
        if let Op::Pump { batch } = op {
            self.pump(index, *batch as usize, false).await;
            return;
        }
        if let Op::Post {
            malformed_first: true, ..
        } = op
        {
            self.malformed_then_corrected(index, op).await;
            return;
        }
        if let Op::Patch { .. } = op {
            self.patch_account(index, op, step_seed).await;
            return;
        }
        if let Op::History { .. } = op {
            self.history(index, op).await;
            self.check_invariants(index).await;
            return;
        }
        let Some((call, expect, effect)) = self.render(op) else {
            return;
        };
        let (answer, committed_unanswered) = self.send(&call).await;
        self.compare(index, op, &call, &expect, &answer, committed_unanswered);
        self.apply(index, &effect, &expect, &answer).await;
        self.remember(&call, &expect, &answer);
        self.check_invariants(index).await;
    }

    /// Reads an account's balance at an instant and its statement, and compares both with
    /// the model's history of the account (another tenant's account answers 404).
    async fn history(&mut self, index: usize, op: &Op) {
        let Op::History {
            tenant,
            account,
            at,
            bounds,
            limit,
        } = op
        else {
            return;
        };
        let tenant = TENANTS[*tenant as usize % 3];
        let Some(a) = self.pick_account_for(tenant, *account, None) else {
            return;
        };
        let account = self.model.accounts[a].clone();
        let visible = account.tenant == tenant;
        // Instants where the history changes, and just before them.
        let mut instants: Vec<i64> = account
            .history
            .iter()
            .flat_map(|c| [c.at_ms - 1, c.at_ms])
            .chain([account.created_ms - 1, account.created_ms, self.now_ms])
            .filter(|&t| t <= self.now_ms)
            .collect();
        instants.sort_unstable();
        instants.dedup();
        let pick = |p: Pick| instants[p as usize % instants.len()];
        let text = |ms: i64| fintx_domain::clock::Timestamp::from_unix_ms(ms).unwrap().to_string();

        let t = pick(*at);
        let call = self.api(
            tenant,
            "GET",
            format!("/v1/accounts/{}/balance?at={}", account.id, text(t)),
            None,
        );
        let (answer, _) = self.send(&call).await;
        let expected = match account.balance_at(t).filter(|_| visible) {
            None => (404, json!("account_not_found")),
            Some((posted, pending_debits, pending_credits)) => {
                let e = account.exponent();
                (
                    200,
                    json!({
                        "posted": model::format_minor(posted, e),
                        "pending_debits": model::format_minor(pending_debits, e),
                        "pending_credits": model::format_minor(pending_credits, e),
                        "available": model::format_minor(posted - pending_debits, e),
                    }),
                )
            }
        };
        let found = match answer.status {
            200 => answer.body.clone(),
            _ => answer.body["code"].clone(),
        };
        if (answer.status, &found) != (expected.0, &expected.1) {
            self.violation(
                index,
                format!(
                    "balance of {} at {} answered {} {found}, the model says {} {}",
                    account.id,
                    text(t),
                    answer.status,
                    expected.0,
                    expected.1
                ),
            );
        }

        // The statement, within bounds drawn from the history.
        let (from, to) = match bounds % 4 {
            0 => (None, None),
            1 => (None, Some(pick(bounds / 4))),
            2 => (Some(pick(bounds / 4)), None),
            _ => {
                let (x, y) = (pick(bounds / 4), pick(bounds / 64));
                (Some(x.min(y)), Some(x.max(y)))
            }
        };
        let expected: Vec<model::Line> = account
            .statement()
            .into_iter()
            .filter(|l| from.is_none_or(|f| l.at_ms >= f) && to.is_none_or(|t| l.at_ms <= t))
            .collect();
        let mut query = format!("limit={}", limit % 4 + 1);
        if let Some(f) = from {
            query.push_str(&format!("&from={}", text(f)));
        }
        if let Some(t) = to {
            query.push_str(&format!("&to={}", text(t)));
        }
        let mut found: Vec<model::Line> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..8 {
            let mut path = format!("/v1/accounts/{}/entries?{query}", account.id);
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let call = self.api(tenant, "GET", path, None);
            let (answer, _) = self.send(&call).await;
            if !visible {
                if (answer.status, answer.body["code"].as_str()) != (404, Some("account_not_found")) {
                    self.violation(index, format!("another tenant's statement answered {}", answer.status));
                }
                return;
            }
            if answer.status != 200 {
                self.violation(index, format!("a statement answered {} {}", answer.status, answer.body));
                return;
            }
            let e = account.exponent();
            for line in answer.body["data"].as_array().cloned().unwrap_or_default() {
                // Printed with exactly the currency's decimals, a sign when negative.
                let minor = |field: &str| -> Option<Minor> {
                    let text = line[field].as_str()?;
                    let (negative, digits) = match text.strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (false, text),
                    };
                    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
                    if fraction.len() != e as usize || whole.is_empty() {
                        return None;
                    }
                    let value: Minor = format!("{whole}{fraction}").parse().ok()?;
                    Some(if negative { -value } else { value })
                };
                let sign = if line["direction"] == "debit" { -1 } else { 1 };
                let at = line["created_at"]
                    .as_str()
                    .and_then(fintx_domain::clock::Timestamp::parse_rfc3339)
                    .map(|t| t.unix_ms());
                match (at, minor("amount"), minor("posted_after"), line["transfer_id"].as_str()) {
                    (Some(at_ms), Some(amount), Some(posted_after), Some(transfer)) => found.push(model::Line {
                        at_ms,
                        transfer: transfer.to_owned(),
                        posted: sign * amount,
                        posted_after,
                    }),
                    _ => {
                        self.violation(index, format!("a statement line does not parse: {line}"));
                        return;
                    }
                }
            }
            cursor = answer.body["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        let complete = cursor.is_none();
        let compared = if complete {
            &expected[..]
        } else {
            &expected[..found.len().min(expected.len())]
        };
        if found != compared {
            self.violation(
                index,
                format!(
                    "the statement of {} (from {from:?} to {to:?}) lists {found:?}, the model says {compared:?}",
                    account.id
                ),
            );
        }
    }

    /// A post with a malformed amount under a key, then the corrected one under the same
    /// key: the malformed one is not recorded, so the corrected one runs.
    async fn malformed_then_corrected(&mut self, index: usize, op: &Op) {
        let Op::Post { tenant, transfer, .. } = op else { return };
        let op_tenant = *tenant;
        let tenant = TENANTS[*tenant as usize % 3];
        let Some(t) = self.pick_transfer_for(tenant, *transfer) else {
            return;
        };
        let tr = &self.model.transfers[t];
        if tr.tenant != tenant {
            return;
        }
        let e = model::exponent(tr.currency).unwrap_or(2);
        let path = format!("/v1/transfers/{}/post", tr.id);
        let key = self.key();
        let bad = Call::Api {
            tenant: tenant.to_owned(),
            method: "POST",
            path: path.clone(),
            body: Some(json!({"amount": amount_text(AmountText::Invalid(0), e)}).to_string()),
            key: Some(key.clone()),
            scopes: "ledger:write",
            content_type: "application/json",
            claims: true,
        };
        let (answer, _) = self.send(&bad).await;
        if answer.status != 400 || answer.body["code"] != "invalid_amount" {
            self.violation(
                index,
                format!("malformed post: expected 400 invalid_amount, got {answer:?}"),
            );
        }
        let corrected = Op::Post {
            tenant: op_tenant,
            transfer: *transfer,
            amount: None,
            malformed_first: false,
        };
        let Some((call, expect, effect)) = self.render(&corrected) else {
            return;
        };
        let call = match call {
            Call::Api { body, .. } => Call::Api {
                tenant: tenant.to_owned(),
                method: "POST",
                path,
                body,
                key: Some(key),
                scopes: "ledger:write",
                content_type: "application/json",
                claims: true,
            },
            other => other,
        };
        let (answer, unanswered) = self.send(&call).await;
        self.compare(index, op, &call, &expect, &answer, unanswered);
        self.apply(index, &effect, &expect, &answer).await;
        self.remember(&call, &expect, &answer);
        self.check_invariants(index).await;
    }

    /// A `PATCH` of an account's limit: the version comes from a read (as a client's
    /// would), the model decides the answer. A patch whose answer was lost and that is
    /// sent again meets its own change as a newer version: 409, the change made once.
    async fn patch_account(&mut self, index: usize, op: &Op, step_seed: u64) {
        let Op::Patch {
            tenant,
            account,
            limit,
            stale,
        } = op
        else {
            return;
        };
        let tenant = TENANTS[*tenant as usize % 3];
        let Some(a) = self.pick_account_for(tenant, *account, None) else {
            return;
        };
        let acc = self.model.accounts[a].clone();
        let e = acc.exponent();
        let text = limit.map(|l| amount_text(l, e));
        let new_limit = match &text {
            None => None,
            Some(t) => match parse_limit(t, e) {
                Some(v) => Some(v),
                None => return,
            },
        };
        let version = if acc.tenant == tenant {
            self.calm();
            // A client reads the version first, trying again while the service is out.
            let mut version = None;
            for _ in 0..3 {
                let read = self.read_api(tenant, &format!("/v1/accounts/{}", acc.id)).await;
                version = read.body["version"].as_u64();
                if version.is_some() || read.status < 500 {
                    break;
                }
            }
            let Some(v) = version else {
                self.violation(index, format!("the account {} cannot be read", acc.id));
                return;
            };
            v
        } else {
            1
        };
        let version = version + u64::from(*stale);
        let mut body = json!({ "version": version });
        if let Some(t) = &text {
            body["overdraft_limit"] = json!(t);
        }
        let changes = new_limit.is_some_and(|l| l != acc.limit);
        let (expect, effect) = if acc.tenant != tenant {
            (Expect::problem(404, "account_not_found"), None)
        } else if acc.kind == Kind::Clearing {
            (Expect::problem(422, "clearing_account"), None)
        } else if *stale {
            (Expect::problem(409, "version_conflict"), None)
        } else if acc.status == Lifecycle::Closed {
            (Expect::problem(422, "account_closed"), None)
        } else if new_limit.flatten().is_some_and(|l| acc.available() + l < 0) {
            (Expect::problem(422, "limit_below_usage"), None)
        } else {
            (Expect::ok(200), new_limit.filter(|_| changes))
        };
        let call = Call::Api {
            tenant: tenant.to_owned(),
            method: "PATCH",
            path: format!("/v1/accounts/{}", acc.id),
            body: Some(body.to_string()),
            key: None,
            scopes: "ledger:read ledger:write",
            content_type: "application/json",
            claims: true,
        };
        // The read above ran calm; the patch meets this step's faults.
        self.seed_step(step_seed);
        let (answer, unanswered) = self.send(&call).await;
        let lost_then_conflict = unanswered
            && changes
            && expect.status == 200
            && answer.status == 409
            && answer.body["code"] == "version_conflict";
        if !lost_then_conflict {
            self.compare(index, op, &call, &expect, &answer, unanswered);
        }
        if let (Some(l), true) = (effect, answer.status == 200 || lost_then_conflict) {
            self.model.accounts[a].limit = l;
        }
        self.check_invariants(index).await;
    }

    fn compare(&mut self, index: usize, op: &Op, call: &Call, expect: &Expect, answer: &Reply, unanswered: bool) {
        let code = answer.body["code"].as_str();
        let name = format!("{op:?}");
        let name = name.split([' ', '{']).next().unwrap_or_default();
        let outcome = answer.body["outcome"].as_str().unwrap_or_default();
        *self
            .tally
            .entry(format!(
                "{name} {} {outcome} {}",
                answer.status,
                code.unwrap_or_default()
            ))
            .or_default() += 1;
        if unanswered {
            *self
                .tally
                .entry("(answer lost after commit, retried)".into())
                .or_default() += 1;
        }
        let mut wrong = Vec::new();
        match expect.outcome {
            Some(outcome) => {
                let got = answer.body["outcome"].as_str();
                // A bank's re-delivery after an unanswered commit finds its event archived.
                let duplicate_after_loss = unanswered && got == Some("duplicate");
                if answer.status != 200 || (got != Some(outcome) && !duplicate_after_loss) {
                    wrong.push(format!("outcome {outcome}"));
                }
                if !duplicate_after_loss && code != expect.code {
                    wrong.push(format!("code {:?}", expect.code));
                }
            }
            None => {
                if answer.status != expect.status || code != expect.code {
                    wrong.push(format!("{} {:?}", expect.status, expect.code));
                }
                if answer.body["index"].as_u64().map(|i| i as usize) != expect.index {
                    wrong.push(format!("index {:?}", expect.index));
                }
                let replayed = answer.headers.get("idempotent-replayed").is_some();
                if replayed != expect.replayed && !(unanswered && replayed) {
                    wrong.push(format!("replayed={}", expect.replayed));
                }
                if expect.status >= 400 && answer.content_type != "application/problem+json" {
                    wrong.push("problem+json".to_owned());
                }
            }
        }
        // A replay answers exactly what the first answer said.
        if let (
            Call::Api {
                key: Some(key), tenant, ..
            },
            true,
        ) = (call, expect.replayed)
        {
            let route = route_of(call);
            if let Some(first) = self
                .sent
                .iter()
                .find(|s| &s.key == key && &s.tenant == tenant && s.route == route)
                .and_then(|s| s.first.clone())
            {
                if first != (answer.status, answer.body.clone()) {
                    wrong.push(format!("the first answer again: {first:?}"));
                }
            }
        }
        if !wrong.is_empty() {
            self.violation(
                index,
                format!(
                    "{op:?}: expected {}, got {} {}",
                    wrong.join(", "),
                    answer.status,
                    answer.body
                ),
            );
        }
    }

    /// Applies an effect to the model with the ids the system gave.
    async fn apply(&mut self, index: usize, effect: &Effect, expect: &Expect, answer: &Reply) {
        let applied = match expect.outcome {
            Some(_) => answer.status == 200 && matches!(effect, Effect::Outcome { .. } | Effect::Deposit { .. }),
            None => answer.status == expect.status && expect.status < 300,
        };
        if !applied {
            return;
        }
        let id = answer.body["id"].as_str().unwrap_or_default().to_owned();
        let now = self.now_ms;
        match effect.clone() {
            Effect::None => {}
            Effect::Open {
                tenant,
                currency,
                limit,
            } => {
                let created = self.instant_of(index, &answer.body["created_at"]);
                self.model
                    .accounts
                    .push(model::Account::opened(id, tenant, currency, limit, created));
            }
            Effect::Transfer {
                debit,
                credit,
                amount,
                pending,
                expires_in,
            } => {
                let at = self.instant_of(index, &answer.body["created_at"]);
                let t = self.model.open(id, debit, credit, amount, pending, None, at);
                if let Some(seconds) = expires_in {
                    // The hold expires `expires_in` after it was made (its `created_at`).
                    let ms = |field: &str| {
                        answer.body[field]
                            .as_str()
                            .and_then(|v| {
                                time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok()
                            })
                            .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
                    };
                    match (ms("created_at"), ms("expires_at")) {
                        (Some(created), Some(expires)) if expires == created + i64::from(seconds) * 1000 => {
                            self.model.transfers[t].expires_at_ms = Some(expires);
                        }
                        _ => self.violation(index, format!("a hold of {seconds} s answered {}", answer.body)),
                    }
                }
            }
            Effect::Post { transfer, amount } => {
                let at = self.instant_of(index, &answer.body["updated_at"]);
                self.model.post(transfer, amount, at);
            }
            Effect::Void { transfer } => {
                let at = self.instant_of(index, &answer.body["updated_at"]);
                self.model.void(transfer, at);
            }
            Effect::Reverse { transfer, amount } => {
                let at = self.instant_of(index, &answer.body["created_at"]);
                self.model.reverse(transfer, amount, id, at);
            }
            Effect::Payment {
                account,
                amount,
                connector,
            } => {
                let transfer_id = answer.body["transfer_id"].as_str().unwrap_or_default().to_owned();
                let tenant = self.model.accounts[account].tenant.clone();
                let currency = self.model.accounts[account].currency;
                let Some(clearing_id) = self.lookup_credit_of(&tenant, &transfer_id).await else {
                    self.violation(
                        index,
                        format!("payment {id}: its transfer {transfer_id} cannot be read"),
                    );
                    return;
                };
                let at = self.instant_of(index, &answer.body["created_at"]);
                let clearing = self
                    .model
                    .clearing_account(&tenant, &connector, currency, clearing_id, at);
                let p = self.model.payments.len();
                let t = self
                    .model
                    .open(transfer_id, account, clearing, amount, true, Some(p), at);
                self.model.payments.push(model::Payment {
                    id,
                    tenant,
                    account,
                    transfer: t,
                    connector,
                    amount,
                    status: PaymentStatus::Pending,
                });
            }
            Effect::Outcome { payment, to } => {
                let t = self.model.payments[payment].transfer;
                self.model.payments[payment].status = to;
                // The outcome's instant is when the bank webhook changed the transfer.
                let tenant = self.model.transfers[t].tenant.clone();
                let transfer_id = self.model.transfers[t].id.clone();
                let changed_at = match to {
                    PaymentStatus::Settled | PaymentStatus::Failed => {
                        self.calm();
                        let read = self.read_api(&tenant, &format!("/v1/transfers/{transfer_id}")).await;
                        self.instant_of(index, &read.body["updated_at"])
                    }
                    _ => now,
                };
                match to {
                    PaymentStatus::Settled => {
                        let amount = self.model.transfers[t].amount;
                        self.model.post(t, amount, changed_at);
                    }
                    PaymentStatus::Failed => self.model.void(t, changed_at),
                    PaymentStatus::Returned => {
                        let account = self.model.payments[payment].account;
                        let tenant = self.model.accounts[account].tenant.clone();
                        let account_id = self.model.accounts[account].id.clone();
                        let Some((reversal_id, _, created)) = self.newest_transfer(&tenant, &account_id).await else {
                            self.violation(index, "a return's reversal cannot be read".into());
                            return;
                        };
                        let at = self.instant_of(index, &created);
                        let amount = self.model.transfers[t].posted_amount - self.model.transfers[t].reversed_amount;
                        self.model.reverse(t, amount, reversal_id, at);
                    }
                    PaymentStatus::Pending => {}
                }
            }
            Effect::Deposit {
                account,
                amount,
                connector,
                reference,
            } => {
                let tenant = self.model.accounts[account].tenant.clone();
                let account_id = self.model.accounts[account].id.clone();
                let currency = self.model.accounts[account].currency;
                let Some((transfer_id, clearing_id, created)) = self.newest_transfer(&tenant, &account_id).await else {
                    self.violation(index, "a deposit's transfer cannot be read".into());
                    return;
                };
                let at = self.instant_of(index, &created);
                let clearing = self
                    .model
                    .clearing_account(&tenant, &connector, currency, clearing_id, at);
                self.model.open(transfer_id, clearing, account, amount, false, None, at);
                self.model.deposit_references.insert((connector, reference));
            }
            Effect::Status { account, to } => self.model.accounts[account].status = to,
            Effect::Batch { legs } => {
                let ids: Vec<String> = answer.body["transfers"]
                    .as_array()
                    .map(|ts| ts.iter().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                if ids.len() != legs.len() {
                    self.violation(
                        index,
                        format!("a batch of {} answered {} transfers", legs.len(), ids.len()),
                    );
                    return;
                }
                let at = self.instant_of(index, &answer.body["transfers"][0]["created_at"]);
                for (id, (d, c, x, pending)) in ids.into_iter().zip(legs) {
                    self.model.open(id, d, c, x, pending, None, at);
                }
            }
        }
    }

    async fn read_api(&self, tenant: &str, path: &str) -> Reply {
        let event = api_event("GET", path, None, Some(claims(tenant, "ledger:read")));
        reply(transactions::handle(self.environment(), request(&event)).await)
    }

    /// The environment serving the next request: runs of five in each, in turn.
    fn environment(&self) -> &transactions::App {
        &self.transactions[self.sent.len() / 5 % 2]
    }

    /// The credit account of a transfer (a payment's clearing account).
    async fn lookup_credit_of(&mut self, tenant: &str, transfer_id: &str) -> Option<String> {
        self.calm();
        let r = self.read_api(tenant, &format!("/v1/transfers/{transfer_id}")).await;
        r.body["credit_account_id"].as_str().map(str::to_owned)
    }

    /// The instant (virtual ms) a response's timestamp says; a missing or malformed one is
    /// a violation, and the step's time stands in for it.
    fn instant_of(&mut self, index: usize, value: &Value) -> i64 {
        match value.as_str().and_then(fintx_domain::clock::Timestamp::parse_rfc3339) {
            Some(at) => at.unix_ms(),
            None => {
                self.violation(index, format!("a timestamp was expected, found {value}"));
                self.now_ms
            }
        }
    }

    /// The newest transfer of an account: its id, the other side's account id and its
    /// `created_at`.
    async fn newest_transfer(&mut self, tenant: &str, account_id: &str) -> Option<(String, String, Value)> {
        self.calm();
        let r = self
            .read_api(tenant, &format!("/v1/accounts/{account_id}/transfers?limit=1"))
            .await;
        let t = &r.body["data"][0];
        let id = t["id"].as_str()?.to_owned();
        let other = if t["credit_account_id"] == account_id {
            t["debit_account_id"].as_str()?
        } else {
            t["credit_account_id"].as_str()?
        };
        Some((id, other.to_owned(), t["created_at"].clone()))
    }

    fn remember(&mut self, call: &Call, expect: &Expect, answer: &Reply) {
        let Call::Api {
            tenant,
            method,
            path,
            body,
            key: Some(key),
            ..
        } = call
        else {
            return;
        };
        let route = route_of(call);
        if expect.replayed || !expect.recorded() || answer.status != expect.status {
            return;
        }
        let request = body
            .as_deref()
            .map(|b| serde_json::from_str(b).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        let index = (tenant.clone(), route.clone(), key.clone());
        if self.model.idempotency.contains_key(&index) {
            return;
        }
        self.model.idempotency.insert(
            index,
            model::Recorded {
                request: request.clone(),
                expect: expect.clone(),
                body: answer.body.clone(),
            },
        );
        self.sent.push(Sent {
            tenant: tenant.clone(),
            route,
            key: key.clone(),
            method,
            path: path.clone(),
            body: request,
            first: Some((answer.status, answer.body.clone())),
        });
    }

    // ------------------------------------------------------------------ stream

    /// Moves the ledger's new transfer changes into the stream and delivers up to
    /// `batches` batches to analytics, Lambda's way: a batch with failures is delivered
    /// again from its first failed record. With faults, batches are cut at random
    /// sizes, and already delivered records come again, alone or mixed in.
    async fn pump(&mut self, index: usize, batches: usize, drain: bool) {
        let Some(memory) = self.store.clone() else { return };
        for (old, new) in memory.take_transfer_changes() {
            self.stream_sequence += 1;
            let mut record = json!({
                "eventID": format!("e{}", self.stream_sequence),
                "eventName": if old.is_some() { "MODIFY" } else { "INSERT" },
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "eventVersion": "1.1",
                "dynamodb": {
                    "SequenceNumber": format!("{:021}", self.stream_sequence),
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                    "SizeBytes": 100,
                    "NewImage": image_json(&new),
                },
            });
            if let Some(old) = old {
                record["dynamodb"]["OldImage"] = image_json(&old);
            }
            self.stream.push(record);
        }
        let mut delivered = 0;
        let mut rounds = 0;
        while !self.stream.is_empty() && (drain || delivered < batches) {
            rounds += 1;
            if rounds > 200 {
                self.violation(index, "the stream does not drain".into());
                return;
            }
            if drain && rounds > 20 {
                self.calm();
            }
            let size = if self.faults {
                1 + self.rng.below(6) as usize
            } else {
                10
            }
            .min(self.stream.len());
            let mut batch: Vec<Value> = self.stream[..size].to_vec();
            if self.faults && self.rng.chance(200) {
                // Redelivered and re-ordered: the same records again, in reverse.
                batch.extend(batch.clone().into_iter().rev());
            }
            let event: DynamoDbEvent = serde_json::from_value(json!({ "Records": batch })).unwrap();
            let response = analytics_rollups::handle_stream(&self.analytics, event).await;
            let failed: Vec<String> = response
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.clone())
                .collect();
            let first_failed = self.stream[..size]
                .iter()
                .position(|r| failed.iter().any(|f| r["dynamodb"]["SequenceNumber"] == f.as_str()));
            let done = first_failed.unwrap_or(size);
            self.stream.drain(..done);
            delivered += 1;
        }
    }

    // ------------------------------------------------------------------ invariants

    async fn check_invariants(&mut self, index: usize) {
        // Balances every step; every transfer, payment and clearing account every 16th
        // step and at the end of a world (the shrinker finds the step that broke them).
        let full = index % 16 == 0;
        let problems = match self.store.clone() {
            Some(memory) => self.memory_invariants(&memory, full),
            None => self.port_invariants().await,
        };
        for p in problems {
            self.violation(index, p);
        }
    }

    /// Over the in-memory store: everything, against the model.
    fn memory_invariants(&self, memory: &MemoryStore, full: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let accounts = memory.all_accounts();
        // What stored holds past their `expires_at` still count, per account: the
        // balances the API shows leave them out.
        let mut unreleased: HashMap<String, (Minor, Minor)> = HashMap::new();
        for t in memory.all_transfers() {
            if t.status == TransferStatus::Pending && t.expires_at.is_some_and(|at| at.unix_ms() <= self.now_ms) {
                let a = to_minor(t.amount.value(), t.currency.exponent());
                unreleased.entry(t.debit_account_id.to_string()).or_default().0 += a;
                unreleased.entry(t.credit_account_id.to_string()).or_default().1 += a;
            }
        }
        let mut sums: BTreeMap<(String, &str), (Minor, Minor, Minor)> = BTreeMap::new();
        for a in &accounts {
            let e = a.currency.exponent();
            let minor = |d: rust_decimal::Decimal| to_minor(d, e);
            let s = sums.entry((a.tenant.to_string(), a.currency.code())).or_default();
            s.0 += minor(a.balance.posted);
            s.1 += minor(a.balance.pending_debits);
            s.2 += minor(a.balance.pending_credits);
            let bound = a.overdraft_limit.bound().map(|l| minor(l.value()));
            if a.kind == AccountKind::Customer
                && bound.is_some_and(|l| minor(a.balance.posted) - minor(a.balance.pending_debits) < -l)
            {
                problems.push(format!("account {} is below its overdraft limit", a.id));
            }
            match self.model.account_by_id(&a.id.to_string()) {
                None => problems.push(format!("account {} exists but the model has none", a.id)),
                Some(i) => {
                    let m = &self.model.accounts[i];
                    let (pd, pc) = unreleased.get(&a.id.to_string()).copied().unwrap_or_default();
                    let real = (
                        minor(a.balance.posted),
                        minor(a.balance.pending_debits) - pd,
                        minor(a.balance.pending_credits) - pc,
                    );
                    if a.status.as_str() != m.status.as_str() {
                        problems.push(format!(
                            "account {} is {}, the model says {}",
                            a.id,
                            a.status.as_str(),
                            m.status.as_str()
                        ));
                    }
                    if a.overdraft_limit.bound().map(|l| minor(l.value())) != m.limit {
                        problems.push(format!("account {} has another limit than the model", a.id));
                    }
                    if real != (m.posted, m.pending_debits, m.pending_credits) {
                        problems.push(format!(
                            "account {} balances {real:?}, the model says {:?}",
                            a.id,
                            (m.posted, m.pending_debits, m.pending_credits)
                        ));
                    }
                }
            }
        }
        for ((tenant, currency), (posted, pd, pc)) in sums {
            if posted != 0 || pd != pc {
                problems.push(format!(
                    "{tenant} {currency} does not conserve: posted sum {posted}, pending {pd} vs {pc}"
                ));
            }
        }
        if accounts.len() != self.model.accounts.len() {
            problems.push(format!(
                "{} accounts stored, the model has {}",
                accounts.len(),
                self.model.accounts.len()
            ));
        }
        if !full {
            return problems;
        }
        let transfers = memory.all_transfers();
        if transfers.len() != self.model.transfers.len() {
            problems.push(format!(
                "{} transfers stored, the model has {}",
                transfers.len(),
                self.model.transfers.len()
            ));
        }
        for t in &transfers {
            let e = t.currency.exponent();
            let Some(i) = self.model.transfer_by_id(&t.id.to_string()) else {
                problems.push(format!("transfer {} exists but the model has none", t.id));
                continue;
            };
            let m = &self.model.transfers[i];
            // A stored hold past its `expires_at` is expired, swept or not.
            let due = t.expires_at.is_some_and(|at| at.unix_ms() <= self.now_ms);
            let status = match t.status {
                TransferStatus::Pending if due => Status::Expired,
                TransferStatus::Pending => Status::Pending,
                TransferStatus::Posted => Status::Posted,
                TransferStatus::Voided => Status::Voided,
                TransferStatus::Expired => Status::Expired,
            };
            let real = (
                status,
                to_minor(t.posted_amount.value(), e),
                to_minor(t.reversed_amount.value(), e),
            );
            if real != (m.status, m.posted_amount, m.reversed_amount) {
                problems.push(format!(
                    "transfer {} is {real:?}, the model says {:?}",
                    t.id,
                    (m.status, m.posted_amount, m.reversed_amount)
                ));
            }
            if m.reversed_amount > m.posted_amount {
                problems.push(format!("transfer {} is reversed beyond its amount", t.id));
            }
        }
        let by_id: HashMap<String, &fintx_domain::transfer::Transfer> =
            transfers.iter().map(|t| (t.id.to_string(), t)).collect();
        let mut clearing_expected: HashMap<String, (Minor, Minor)> = HashMap::new();
        for p in memory.all_payments() {
            let Some(t) = by_id.get(&p.transfer_id.to_string()) else {
                problems.push(format!("payment {} has no transfer", p.id));
                continue;
            };
            let agrees = match p.status {
                RealPaymentStatus::Pending => t.status == TransferStatus::Pending,
                RealPaymentStatus::Settled => t.status == TransferStatus::Posted && t.reversed_amount.is_zero(),
                RealPaymentStatus::Failed => t.status == TransferStatus::Voided,
                RealPaymentStatus::Returned => {
                    t.status == TransferStatus::Posted && t.reversed_amount == t.posted_amount
                }
            };
            if !agrees {
                problems.push(format!(
                    "payment {} is {:?} but its transfer is {:?} (reversed {})",
                    p.id,
                    p.status,
                    t.status,
                    t.reversed_amount.value()
                ));
            }
            let e = p.currency.exponent();
            let entry = clearing_expected.entry(t.credit_account_id.to_string()).or_default();
            match p.status {
                RealPaymentStatus::Pending => entry.1 += to_minor(p.amount.value(), e),
                RealPaymentStatus::Settled => entry.0 += to_minor(p.amount.value(), e),
                _ => {}
            }
        }
        // Each clearing account holds its payments in flight and settled, less deposits.
        for t in &transfers {
            let e = t.currency.exponent();
            if t.payment_id.is_none() && t.through_clearing {
                *clearing_expected.entry(t.debit_account_id.to_string()).or_default() = {
                    let v = clearing_expected
                        .get(&t.debit_account_id.to_string())
                        .copied()
                        .unwrap_or_default();
                    (v.0 - to_minor(t.posted_amount.value(), e), v.1)
                };
            }
        }
        for a in accounts.iter().filter(|a| a.kind == AccountKind::Clearing) {
            let e = a.currency.exponent();
            let expected = clearing_expected.get(&a.id.to_string()).copied().unwrap_or_default();
            let real = (to_minor(a.balance.posted, e), to_minor(a.balance.pending_credits, e));
            if real != expected || !a.balance.pending_debits.is_zero() {
                problems.push(format!(
                    "clearing account {} holds {real:?}, its payments and deposits say {expected:?}",
                    a.id
                ));
            }
        }
        problems
    }

    /// Over any store, through its port: the balances of every account the model knows.
    async fn port_invariants(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let ids: Vec<AccountId> = self
            .model
            .accounts
            .iter()
            .filter_map(|a| AccountId::parse(&a.id))
            .collect();
        let mut sums: BTreeMap<(String, &str), Minor> = BTreeMap::new();
        for chunk in ids.chunks(25) {
            let reads = fintx_domain::ports::Reads {
                any_tenant: true,
                accounts: chunk.to_vec(),
                ..Default::default()
            };
            let snapshot = match self.faulty.read(&TenantId::parse("-").unwrap(), &reads).await {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("reading balances failed: {e}"));
                    return problems;
                }
            };
            for a in snapshot.accounts.into_iter().flatten() {
                let e = a.currency.exponent();
                let i = self.model.account_by_id(&a.id.to_string()).unwrap_or(usize::MAX);
                let Some(m) = self.model.accounts.get(i) else { continue };
                // Holds past their `expires_at` that storage still counts do not count.
                let (mut pd, mut pc) = (0, 0);
                for h in a.holds.iter().filter(|h| h.expires_at.unix_ms() <= self.now_ms) {
                    if h.debit {
                        pd += to_minor(h.amount, e);
                    } else {
                        pc += to_minor(h.amount, e);
                    }
                }
                let real = (
                    to_minor(a.balance.posted, e),
                    to_minor(a.balance.pending_debits, e) - pd,
                    to_minor(a.balance.pending_credits, e) - pc,
                );
                if real != (m.posted, m.pending_debits, m.pending_credits) {
                    problems.push(format!("account {} balances {real:?}, the model says {m:?}", a.id));
                }
                *sums.entry((a.tenant.to_string(), a.currency.code())).or_default() += real.0;
            }
        }
        for ((tenant, currency), posted) in sums {
            if posted != 0 {
                problems.push(format!("{tenant} {currency} does not conserve: {posted}"));
            }
        }
        problems
    }

    /// Drains the stream and compares the daily rollups of every account with a
    /// recomputation from the model.
    pub async fn check_rollups(&mut self, index: usize) {
        if self.store.is_none() {
            return;
        }
        self.pump(index, 0, true).await;
        if !self.stream.is_empty() {
            return;
        }
        let expected = self.model.daily_rollups();
        let first = "0000";
        let last = "9999";
        let mut real: BTreeMap<(String, String, &'static str, i64), [Minor; 4]> = BTreeMap::new();
        for a in &self.model.accounts {
            let (Ok(tenant), Some(id), Ok(currency)) = (
                TenantId::parse(&a.tenant),
                AccountId::parse(&a.id),
                Currency::parse(a.currency),
            ) else {
                continue;
            };
            let rows = self
                .memory_rollups
                .rows(&tenant, &Scope::Account(id), currency, Granularity::Day, first, last)
                .await
                .unwrap_or_default();
            let e = currency.exponent();
            for (period, t) in rows {
                let day = time::OffsetDateTime::parse(&period, &time::format_description::well_known::Rfc3339)
                    .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
                    .unwrap_or(-1);
                real.insert(
                    (a.tenant.clone(), a.id.clone(), a.currency, day),
                    [
                        Minor::from(t.debit_count),
                        to_minor(t.debit_amount, e),
                        Minor::from(t.credit_count),
                        to_minor(t.credit_amount, e),
                    ],
                );
            }
        }
        if real != expected {
            let missing: Vec<_> = expected
                .iter()
                .filter(|(k, v)| real.get(*k) != Some(*v))
                .take(3)
                .collect();
            let extra: Vec<_> = real
                .iter()
                .filter(|(k, v)| expected.get(*k) != Some(*v))
                .take(3)
                .collect();
            self.violation(
                index,
                format!("rollups differ from a recomputation: expected {missing:?}, found {extra:?}"),
            );
        }
    }
}

fn route_of(call: &Call) -> String {
    match call {
        Call::Api { method, path, .. } => format!("{method} {path}"),
        Call::Webhook { connector, .. } => format!("webhook {connector}"),
    }
}

fn to_minor(value: rust_decimal::Decimal, exponent: u32) -> Minor {
    let scaled = value * rust_decimal::Decimal::from(10i64.pow(exponent));
    scaled.trunc().mantissa() / 10i128.pow(scaled.trunc().scale())
}

/// A transfer as its stream image, in DynamoDB's JSON.
fn image_json(t: &fintx_domain::transfer::Transfer) -> Value {
    let item = fintx_adapters::schema::transfer_item(t);
    Value::Object(item.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect())
}

fn attribute_json(v: &aws_sdk_dynamodb::types::AttributeValue) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => json!({ "S": s }),
        A::N(n) => json!({ "N": n }),
        A::Bool(b) => json!({ "BOOL": b }),
        A::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<serde_json::Map<_, _>>() })
        }
        A::B(b) => json!({ "B": base64::engine::general_purpose::STANDARD.encode(b.as_ref()) }),
        _ => json!({ "NULL": true }),
    }
}

/// The outcome of a simulation.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub ops: u64,
    pub violations: Vec<(u64, Violation)>,
    pub tally: BTreeMap<String, u64>,
}

/// A sequence of operations and the seed of each one's faults.
pub fn sequence(seed: u64, len: usize) -> Vec<(Op, u64)> {
    let mut rng = Rng::new(seed);
    // Every tenant starts with two accounts in each currency, so most operations meet
    // the rules rather than a missing account.
    let opening = (0..24u8).map(|i| Op::Open {
        tenant: i % 3,
        currency: (i / 3) % 4,
        // Half of the second accounts are unlimited: their balances spread.
        limit: match i {
            0..=11 => None,
            12..=17 => Some(AmountText::Minor(5_000)),
            _ => Some(AmountText::Unlimited),
        },
    });
    let mut ops: Vec<(Op, u64)> = opening.map(|op| (op, rng.next_u64())).take(len / 4).collect();
    while ops.len() < len {
        ops.push((random_op(&mut rng), rng.next_u64()));
    }
    ops
}

/// Runs one sequence in a fresh in-memory world; the violations it found.
pub async fn run_sequence(world_seed: u64, ops: &[(Op, u64)], faults: bool) -> Vec<Violation> {
    run_sequence_tallied(world_seed, ops, faults, &mut BTreeMap::new()).await
}

/// [`run_sequence`], adding its answers to `tally`.
pub async fn run_sequence_tallied(
    world_seed: u64,
    ops: &[(Op, u64)],
    faults: bool,
    tally: &mut BTreeMap<String, u64>,
) -> Vec<Violation> {
    simulated::install(START_MS, world_seed);
    fintx_adapters::metrics::silence(true);
    let mut world = World::in_memory(world_seed, faults);
    for (i, (op, step_seed)) in ops.iter().enumerate() {
        world.step(i, op, *step_seed).await;
        if !world.violations.is_empty() {
            break;
        }
    }
    if world.violations.is_empty() {
        world.calm();
        if let Some(memory) = world.store.clone() {
            for problem in world.memory_invariants(&memory, true) {
                world.violation(ops.len(), problem);
            }
        }
        world.check_rollups(ops.len()).await;
    }
    simulated::uninstall();
    fintx_adapters::metrics::silence(false);
    for (k, v) in std::mem::take(&mut world.tally) {
        *tally.entry(k).or_default() += v;
    }
    world.violations
}

/// Runs a sequence in a fresh world over any ledger store (the DynamoDB adapter on the
/// emulator, a deliberately broken store), with the answers and balances checked
/// against the model through the store's port.
pub async fn run_over(store: Arc<dyn LedgerStore>, world_seed: u64, ops: &[(Op, u64)], faults: bool) -> Vec<Violation> {
    simulated::install(START_MS, world_seed);
    fintx_adapters::metrics::silence(true);
    let mut world = World::over(store, world_seed, faults);
    for (i, (op, step_seed)) in ops.iter().enumerate() {
        world.step(i, op, *step_seed).await;
        if !world.violations.is_empty() {
            break;
        }
    }
    simulated::uninstall();
    fintx_adapters::metrics::silence(false);
    world.violations
}

/// The seed of world `index` of a simulation seeded with `seed`.
pub fn world_seed(seed: u64, index: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9).wrapping_add(index)
}

/// Runs `total` operations as worlds of `per_world` operations each, from `seed`. On a
/// violation, shrinks the failing world's sequence and prints the reproducer.
pub async fn simulate(seed: u64, total: u64, per_world: u64, faults: bool, mut progress: impl FnMut(u64)) -> Report {
    let mut violations = Vec::new();
    let mut tally = BTreeMap::new();
    let mut done = 0u64;
    let mut world = 0u64;
    while done < total {
        let len = per_world.min(total - done) as usize;
        let world_seed = world_seed(seed, world);
        let ops = sequence(world_seed, len);
        let found = run_sequence_tallied(world_seed, &ops, faults, &mut tally).await;
        if let Some(first) = found.into_iter().next() {
            let shortest = shrink(world_seed, ops[..=first.step.min(len - 1)].to_vec(), faults).await;
            let mut text = String::new();
            let _ = writeln!(
                text,
                "violation in world {world} (world seed {world_seed}): {}",
                first.what
            );
            let _ = writeln!(text, "shortest reproducing sequence ({} steps):", shortest.len());
            for (op, step_seed) in &shortest {
                let _ = writeln!(text, "  {op:?} faults-seed={step_seed}");
            }
            eprintln!("{text}");
            violations.push((world_seed, first));
        }
        done += len as u64;
        world += 1;
        progress(done);
    }
    Report {
        seed,
        ops: done,
        violations,
        tally,
    }
}

/// Removes steps while the sequence still fails (greedy, halving chunks), bounded.
pub async fn shrink(world_seed: u64, mut ops: Vec<(Op, u64)>, faults: bool) -> Vec<(Op, u64)> {
    let mut chunk = (ops.len() / 2).max(1);
    let mut tries = 0;
    while chunk >= 1 && tries < 400 {
        let mut start = 0;
        let mut removed = false;
        while start < ops.len() && tries < 400 {
            tries += 1;
            let mut candidate = ops.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            if !candidate.is_empty() && !run_sequence(world_seed, &candidate, faults).await.is_empty() {
                ops = candidate;
                removed = true;
            } else {
                start += chunk;
            }
        }
        if !removed {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    ops
}
