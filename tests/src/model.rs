//! A reference model of the fintx ledger (SPEC §§2-8), written from the specification
//! without `fintx_domain`: its own amounts (integer minor units), its own records and
//! state machines. The model test and the simulation drive the real handlers and this
//! model with the same operations and compare every answer, so a rule that is wrong in
//! the domain shows up as a disagreement instead of being checked against itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// Minor units of a currency (cents for USD, yen for JPY, fils for BHD).
pub type Minor = i128;

/// The currencies the model knows, with their ISO 4217 exponents.
pub const CURRENCIES: [(&str, u32); 4] = [("USD", 2), ("EUR", 2), ("JPY", 0), ("BHD", 3)];

pub fn exponent(currency: &str) -> Option<u32> {
    CURRENCIES.iter().find(|(c, _)| *c == currency).map(|(_, e)| *e)
}

/// Largest amount SPEC §2 allows: 15 integer digits, in minor units of `exponent`.
pub fn amount_max(exponent: u32) -> Minor {
    (10i128.pow(15) * 10i128.pow(exponent)) - 1
}

/// Parses a wire amount as the specification describes it: a plain positive decimal
/// string, at most the currency's exponent of fractional digits and 15 integer digits.
pub fn parse_amount(text: &str, exponent: u32, allow_zero: bool) -> Option<Minor> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.contains('.') && frac.is_empty() {
        return None;
    }
    if frac.len() > exponent as usize {
        return None;
    }
    let int_digits = int.trim_start_matches('0').len();
    if int_digits > 15 {
        return None;
    }
    let mut value: Minor = int.parse::<Minor>().ok()?;
    for _ in 0..exponent {
        value *= 10;
    }
    let mut frac_value: Minor = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    for _ in frac.len()..exponent as usize {
        frac_value *= 10;
    }
    value += frac_value;
    (allow_zero || value > 0).then_some(value)
}

/// Formats minor units as the API prints them: always the currency's exponent.
pub fn format_minor(value: Minor, exponent: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u128.pow(exponent);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = exponent as usize
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Customer,
    Clearing,
}

/// An account's lifecycle status (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Open,
    Frozen,
    Closed,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Open => "open",
            Lifecycle::Frozen => "frozen",
            Lifecycle::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub tenant: String,
    pub currency: &'static str,
    pub kind: Kind,
    pub status: Lifecycle,
    /// How far below zero `available` may go; `None`: unlimited.
    pub limit: Option<Minor>,
    pub posted: Minor,
    pub pending_debits: Minor,
    pub pending_credits: Minor,
    /// When it was opened (virtual ms).
    pub created_ms: i64,
    /// Every change of its balances, in the order it was applied.
    pub history: Vec<Change>,
}

/// One change of an account's balances by one transfer: its creation, or (`resolved`)
/// its hold posting, voided or expiring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub at_ms: i64,
    pub transfer: String,
    pub resolved: bool,
    pub posted: Minor,
    pub pending_debits: Minor,
    pub pending_credits: Minor,
}

/// A statement line: when, which transfer, how much the posted balance moved and what
/// it was after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub at_ms: i64,
    pub transfer: String,
    pub posted: Minor,
    pub posted_after: Minor,
}

impl Account {
    /// A customer account opened at `created_ms`.
    pub fn opened(id: String, tenant: String, currency: &'static str, limit: Option<Minor>, created_ms: i64) -> Self {
        Account {
            id,
            tenant,
            currency,
            kind: Kind::Customer,
            status: Lifecycle::Open,
            limit,
            posted: 0,
            pending_debits: 0,
            pending_credits: 0,
            created_ms,
            history: Vec::new(),
        }
    }

    /// Posted, pending debits and pending credits as they stood at `at_ms` (every change
    /// at or before it); `None` before the account existed.
    pub fn balance_at(&self, at_ms: i64) -> Option<(Minor, Minor, Minor)> {
        if at_ms < self.created_ms {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|c| c.at_ms <= at_ms)
                .fold((0, 0, 0), |(p, d, c), x| {
                    (p + x.posted, d + x.pending_debits, c + x.pending_credits)
                }),
        )
    }

    /// The statement: every change of the posted balance, newest first (by instant, then
    /// transfer id, a creation before a resolution at one instant).
    pub fn statement(&self) -> Vec<Line> {
        let mut changes: Vec<&Change> = self.history.iter().filter(|c| c.posted != 0).collect();
        changes.sort_by(|a, b| (a.at_ms, &a.transfer, a.resolved).cmp(&(b.at_ms, &b.transfer, b.resolved)));
        let mut posted = 0;
        let mut lines: Vec<Line> = changes
            .into_iter()
            .map(|c| {
                posted += c.posted;
                Line {
                    at_ms: c.at_ms,
                    transfer: c.transfer.clone(),
                    posted: c.posted,
                    posted_after: posted,
                }
            })
            .collect();
        lines.reverse();
        lines
    }

    pub fn available(&self) -> Minor {
        self.posted - self.pending_debits
    }

    pub fn exponent(&self) -> u32 {
        exponent(self.currency).unwrap_or(0)
    }

    /// Whether nothing is left in it: the condition for closing it.
    pub fn is_empty(&self) -> bool {
        self.posted == 0 && self.pending_debits == 0 && self.pending_credits == 0
    }

    /// The balance object the API must show.
    pub fn balance_json(&self) -> Value {
        let e = self.exponent();
        serde_json::json!({
            "posted": format_minor(self.posted, e),
            "pending_debits": format_minor(self.pending_debits, e),
            "pending_credits": format_minor(self.pending_credits, e),
            "available": format_minor(self.available(), e),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Posted,
    Voided,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Posted => "posted",
            Status::Voided => "voided",
            Status::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Transfer {
    pub id: String,
    pub tenant: String,
    pub debit: usize,
    pub credit: usize,
    pub amount: Minor,
    pub currency: &'static str,
    pub status: Status,
    pub posted_amount: Minor,
    pub reversed_amount: Minor,
    pub payment: Option<usize>,
    pub through_clearing: bool,
    /// When it posted (virtual ms), for the analytics recomputation.
    pub posted_at_ms: Option<i64>,
    /// When a hold expires (virtual ms).
    pub expires_at_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Settled,
    Failed,
    Returned,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Settled => "settled",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Returned => "returned",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Payment {
    pub id: String,
    pub tenant: String,
    pub account: usize,
    pub transfer: usize,
    pub connector: String,
    pub amount: Minor,
    pub status: PaymentStatus,
}

/// What the model expects of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub status: u16,
    /// The problem code of a refusal, or the webhook outcome's code.
    pub code: Option<&'static str>,
    /// A webhook's outcome (`applied`, `duplicate`, `ignored`, `rejected`).
    pub outcome: Option<&'static str>,
    /// Whether the answer must be a replay of a recorded one.
    pub replayed: bool,
    /// A batch refusal's `index`: the transfer that refused it.
    pub index: Option<usize>,
}

impl Expect {
    pub fn ok(status: u16) -> Self {
        Expect {
            status,
            code: None,
            outcome: None,
            replayed: false,
            index: None,
        }
    }

    pub fn problem(status: u16, code: &'static str) -> Self {
        Expect {
            status,
            code: Some(code),
            outcome: None,
            replayed: false,
            index: None,
        }
    }

    pub fn webhook(outcome: &'static str, code: Option<&'static str>) -> Self {
        Expect {
            status: 200,
            code,
            outcome: Some(outcome),
            replayed: false,
            index: None,
        }
    }

    /// Whether SPEC §5 records this answer under an idempotency key.
    pub fn recorded(&self) -> bool {
        matches!(self.status, 200..=299 | 404 | 409 | 422) && self.code != Some("unknown_connector")
    }
}

/// An answer recorded under an idempotency key: the request it answered and the answer.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub request: Value,
    pub expect: Expect,
    pub body: Value,
}

/// The ledger as the specification says it must be.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub accounts: Vec<Account>,
    pub transfers: Vec<Transfer>,
    pub payments: Vec<Payment>,
    /// `(tenant, route, key)` → the recorded answer.
    pub idempotency: HashMap<(String, String, String), Recorded>,
    /// `(connector, event id)` → archived.
    pub events: BTreeSet<(String, String)>,
    pub deposit_references: BTreeSet<(String, String)>,
    /// `(tenant, connector, currency)` → clearing account index.
    pub clearing: BTreeMap<(String, String, &'static str), usize>,
    /// Connector → tenants it serves (`*`: all).
    pub connectors: BTreeMap<String, Vec<String>>,
}

impl Model {
    pub fn serves(&self, connector: &str, tenant: &str) -> bool {
        self.connectors
            .get(connector)
            .is_some_and(|tenants| tenants.iter().any(|t| t == "*" || t == tenant))
    }

    pub fn account_by_id(&self, id: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a.id == id)
    }

    pub fn transfer_by_id(&self, id: &str) -> Option<usize> {
        self.transfers.iter().position(|t| t.id == id)
    }

    /// Why a new transfer from `debit` to `credit` is refused by their lifecycle, if it
    /// is: a closed account on either side, then a frozen debit account.
    pub fn lifecycle_refusal(&self, debit: usize, credit: usize) -> Option<&'static str> {
        let (d, c) = (self.accounts[debit].status, self.accounts[credit].status);
        if d == Lifecycle::Closed || c == Lifecycle::Closed {
            Some("account_closed")
        } else if d == Lifecycle::Frozen {
            Some("account_frozen")
        } else {
            None
        }
    }

    /// A debit of `amount` is covered: customer accounts need
    /// `available − amount ≥ −limit`; clearing and unlimited accounts have no limit.
    pub fn covered(&self, account: usize, amount: Minor) -> bool {
        let a = &self.accounts[account];
        a.kind == Kind::Clearing || a.limit.is_none_or(|limit| a.available() - amount >= -limit)
    }

    /// A new posted or pending transfer between two accounts; returns its index.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        id: String,
        debit: usize,
        credit: usize,
        amount: Minor,
        pending: bool,
        payment: Option<usize>,
        now_ms: i64,
    ) -> usize {
        let tenant = self.accounts[debit].tenant.clone();
        let currency = self.accounts[debit].currency;
        let through_clearing =
            self.accounts[debit].kind == Kind::Clearing || self.accounts[credit].kind == Kind::Clearing;
        if pending {
            self.accounts[debit].pending_debits += amount;
            self.accounts[credit].pending_credits += amount;
            self.record(debit, now_ms, &id, false, [0, amount, 0]);
            self.record(credit, now_ms, &id, false, [0, 0, amount]);
        } else {
            self.accounts[debit].posted -= amount;
            self.accounts[credit].posted += amount;
            self.record(debit, now_ms, &id, false, [-amount, 0, 0]);
            self.record(credit, now_ms, &id, false, [amount, 0, 0]);
        }
        self.transfers.push(Transfer {
            id,
            tenant,
            debit,
            credit,
            amount,
            currency,
            status: if pending { Status::Pending } else { Status::Posted },
            posted_amount: if pending { 0 } else { amount },
            reversed_amount: 0,
            payment,
            through_clearing,
            posted_at_ms: (!pending).then_some(now_ms),
            expires_at_ms: None,
        });
        self.transfers.len() - 1
    }

    /// Adds a change to an account's history.
    fn record(&mut self, account: usize, at_ms: i64, transfer: &str, resolved: bool, [p, d, c]: [Minor; 3]) {
        self.accounts[account].history.push(Change {
            at_ms,
            transfer: transfer.to_owned(),
            resolved,
            posted: p,
            pending_debits: d,
            pending_credits: c,
        });
    }

    pub fn post(&mut self, transfer: usize, amount: Minor, now_ms: i64) {
        let t = &mut self.transfers[transfer];
        let held = t.amount;
        t.status = Status::Posted;
        t.posted_amount = amount;
        t.posted_at_ms = Some(now_ms);
        let (d, c, id) = (t.debit, t.credit, t.id.clone());
        self.accounts[d].pending_debits -= held;
        self.accounts[c].pending_credits -= held;
        self.accounts[d].posted -= amount;
        self.accounts[c].posted += amount;
        self.record(d, now_ms, &id, true, [-amount, -held, 0]);
        self.record(c, now_ms, &id, true, [amount, 0, -held]);
    }

    /// From its `expires_at` on, a hold is expired: its amounts no longer count.
    pub fn expire_due(&mut self, now_ms: i64) {
        let due: Vec<usize> = (0..self.transfers.len())
            .filter(|&i| {
                let t = &self.transfers[i];
                t.status == Status::Pending && t.expires_at_ms.is_some_and(|at| at <= now_ms)
            })
            .collect();
        for i in due {
            // Released at the instant it expired, whenever that is noticed.
            let at = self.transfers[i].expires_at_ms.unwrap_or(now_ms);
            self.void(i, at);
            self.transfers[i].status = Status::Expired;
        }
    }

    /// The next instant a pending hold expires after `now_ms`.
    pub fn next_expiry_after(&self, now_ms: i64) -> Option<i64> {
        self.transfers
            .iter()
            .filter(|t| t.status == Status::Pending)
            .filter_map(|t| t.expires_at_ms)
            .filter(|&at| at > now_ms)
            .min()
    }

    pub fn void(&mut self, transfer: usize, at_ms: i64) {
        let t = &mut self.transfers[transfer];
        t.status = Status::Voided;
        let (d, c, held, id) = (t.debit, t.credit, t.amount, t.id.clone());
        self.accounts[d].pending_debits -= held;
        self.accounts[c].pending_credits -= held;
        self.record(d, at_ms, &id, true, [0, -held, 0]);
        self.record(c, at_ms, &id, true, [0, 0, -held]);
    }

    /// Reverses `amount` of a posted transfer with a new posted transfer the other way.
    pub fn reverse(&mut self, transfer: usize, amount: Minor, id: String, now_ms: i64) -> usize {
        self.transfers[transfer].reversed_amount += amount;
        let (d, c, payment) = {
            let t = &self.transfers[transfer];
            (t.credit, t.debit, t.payment)
        };
        self.open(id, d, c, amount, false, payment, now_ms)
    }

    /// The clearing account of a tenant, connector and currency, created on first use.
    /// The clearing account, opened by its first movement at `now_ms`.
    pub fn clearing_account(
        &mut self,
        tenant: &str,
        connector: &str,
        currency: &'static str,
        id: String,
        now_ms: i64,
    ) -> usize {
        let key = (tenant.to_owned(), connector.to_owned(), currency);
        if let Some(&index) = self.clearing.get(&key) {
            return index;
        }
        self.accounts.push(Account {
            id,
            tenant: tenant.to_owned(),
            currency,
            kind: Kind::Clearing,
            status: Lifecycle::Open,
            limit: Some(0),
            posted: 0,
            pending_debits: 0,
            pending_credits: 0,
            created_ms: now_ms,
            history: Vec::new(),
        });
        let index = self.accounts.len() - 1;
        self.clearing.insert(key, index);
        index
    }

    /// Posted movement per (tenant, account id, currency, UTC day start ms): debit count,
    /// debit amount, credit count, credit amount — what the analytics must show.
    pub fn daily_rollups(&self) -> BTreeMap<(String, String, &'static str, i64), [Minor; 4]> {
        let mut rows: BTreeMap<(String, String, &'static str, i64), [Minor; 4]> = BTreeMap::new();
        for t in &self.transfers {
            let (Some(at), true) = (t.posted_at_ms, t.posted_amount > 0) else {
                continue;
            };
            let day = at - at.rem_euclid(86_400_000);
            let debit = &self.accounts[t.debit].id;
            let credit = &self.accounts[t.credit].id;
            let d = rows
                .entry((t.tenant.clone(), debit.clone(), t.currency, day))
                .or_default();
            d[0] += 1;
            d[1] += t.posted_amount;
            let c = rows
                .entry((t.tenant.clone(), credit.clone(), t.currency, day))
                .or_default();
            c[2] += 1;
            c[3] += t.posted_amount;
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_the_currency_exponent() {
        assert_eq!(parse_amount("12.34", 2, false), Some(1234));
        assert_eq!(parse_amount("12.3", 2, false), Some(1230));
        assert_eq!(parse_amount("12", 0, false), Some(12));
        assert_eq!(parse_amount("1.005", 2, false), None);
        assert_eq!(parse_amount("0.00", 2, false), None);
        assert_eq!(parse_amount("0.00", 2, true), Some(0));
        assert_eq!(parse_amount("-1.00", 2, false), None);
        assert_eq!(parse_amount("1.", 2, false), None);
        assert_eq!(parse_amount("999999999999999.99", 2, false), Some(amount_max(2)));
        assert_eq!(parse_amount("1000000000000000", 2, false), None);
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(1_234_500, 3), "1234.500");
        assert_eq!(format_minor(7, 0), "7");
    }
}
