//! Transfers: double-entry movements between two accounts of a tenant, immediate or held
//! (two-phase), and their reversals (SPEC §6).

use rust_decimal::Decimal;

use crate::account::{Account, AccountKind, AccountStatus, Balance, Metadata};
use crate::auth::TenantId;
use crate::clock::Timestamp;
use crate::error::DomainError;
use crate::ids::{AccountId, BatchId, PaymentId, TransferId};
use crate::money::{Amount, Currency};
use crate::statement::Entry;

pub const DESCRIPTION_MAX_CHARS: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferStatus {
    Pending,
    Posted,
    Voided,
    /// A hold past its `expires_at`, released.
    Expired,
}

impl TransferStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Posted => "posted",
            TransferStatus::Voided => "voided",
            TransferStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(TransferStatus::Pending),
            "posted" => Some(TransferStatus::Posted),
            "voided" => Some(TransferStatus::Voided),
            "expired" => Some(TransferStatus::Expired),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub tenant: TenantId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub status: TransferStatus,
    pub posted_amount: Amount,
    pub reversed_amount: Amount,
    pub reverses: Option<TransferId>,
    /// The payment this transfer belongs to: it then changes only through the payment's
    /// bank outcomes, never through the transfers API.
    pub payment_id: Option<PaymentId>,
    /// The batch this transfer was created in, all or nothing with the others.
    pub batch_id: Option<BatchId>,
    /// Whether a side is a clearing account (a payment's, a deposit's or a return's
    /// transfer): clearing accounts move only through payments and bank webhooks.
    pub through_clearing: bool,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the transfer posted (the moment its money moved); `None` while pending or
    /// voided. Analytics periods are taken from it.
    pub posted_at: Option<Timestamp>,
    /// When a hold expires: from this instant on it is released, whether or not storage
    /// has caught up (SPEC §6).
    pub expires_at: Option<Timestamp>,
    pub version: u64,
}

impl Transfer {
    /// The status at `now`: a pending hold past its `expires_at` is expired.
    pub fn status_at(&self, now: Timestamp) -> TransferStatus {
        match (self.status, self.expires_at) {
            (TransferStatus::Pending, Some(at)) if at <= now => TransferStatus::Expired,
            (status, _) => status,
        }
    }

    /// The entry each side's account keeps while this hold may expire.
    fn held_entries(&self) -> Option<[HeldEntry; 2]> {
        let expires_at = self.expires_at?;
        let entry = |debit, other| HeldEntry {
            transfer_id: self.id,
            amount: self.amount.value(),
            expires_at,
            debit,
            other,
        };
        Some([entry(true, self.credit_account_id), entry(false, self.debit_account_id)])
    }
}

/// Shortest and longest `expires_in` of a hold, in seconds (SPEC §6).
pub const EXPIRES_IN_MIN: u32 = 60;
pub const EXPIRES_IN_MAX: u32 = 2_592_000;

/// A hold that may expire, as each of its accounts keeps it: an account's balances as
/// stored still count it until it is released, and reads subtract it from `expires_at`
/// on (see [`Account::at`](crate::account::Account::at)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldEntry {
    pub transfer_id: TransferId,
    pub amount: Decimal,
    pub expires_at: Timestamp,
    /// Whether this account is the hold's debit side.
    pub debit: bool,
    /// The account on the other side.
    pub other: AccountId,
}

/// A change to an account's expiring holds, made with its balance change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldChange {
    Add(HeldEntry),
    Remove(TransferId),
}

/// A validated `POST /v1/transfers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTransfer {
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub pending: bool,
    /// Seconds until a hold expires ([`EXPIRES_IN_MIN`] to [`EXPIRES_IN_MAX`]).
    pub expires_in: Option<u32>,
    pub description: Option<String>,
    pub metadata: Metadata,
}

pub fn parse_description(text: Option<String>) -> Result<Option<String>, DomainError> {
    match text {
        Some(t) if t.chars().count() > DESCRIPTION_MAX_CHARS || t.chars().any(char::is_control) => {
            Err(DomainError::invalid_request(format!(
                "description is at most {DESCRIPTION_MAX_CHARS} printable characters"
            )))
        }
        other => Ok(other),
    }
}

/// `-value`. Negating a `Decimal` flips its sign and cannot overflow.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn minus(value: Decimal) -> Decimal {
    -value
}

/// A change to one account's balances, applied atomically with the rest of a ledger
/// write. `cover` asks the store to refuse the write unless the account can still
/// cover that amount within its overdraft limit, decided at write time by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountDelta {
    pub account_id: AccountId,
    pub posted: Decimal,
    pub pending_debits: Decimal,
    pub pending_credits: Decimal,
    pub cover: Option<Amount>,
    /// What the account must be when the write lands, checked by the store's conditions
    /// rather than by a read that could go stale (SPEC §10). `None`: only that it exists.
    pub expect: Option<Expect>,
    /// The account this delta opens when it does not exist yet: a clearing account is
    /// created by its first movement, exactly once however many writes race to it.
    pub open: Option<Box<Account>>,
    /// The lifecycle status the account must have when the write lands, checked by the
    /// store's conditions (SPEC §6): a freeze or close that lands first refuses the write.
    pub requires: Option<Requires>,
    /// Expiring holds this change adds to or removes from the account.
    pub holds: Vec<HoldChange>,
    /// The account's balance is spread over several items (a clearing account, SPEC
    /// §10): the store applies this change to one of them, with no lower-bound check.
    pub spread: bool,
}

/// Most items a spread balance is kept in: reads always sum them all, so the number a
/// store writes to (its setting, at most this) can change without losing money.
pub const BALANCE_SLOTS_MAX: u16 = 16;

/// Which of `slots` balance items a write whose first new or changed transfer is `key`
/// moves: spread evenly by the transfer's random bits, so concurrent transfers through
/// one account rarely meet, and the same write always picks the same one.
pub fn balance_slot(key: TransferId, slots: u16) -> u16 {
    let random = key.ulid().random();
    let slots = u128::from(slots.clamp(1, BALANCE_SLOTS_MAX));
    // `slots` is at least 1, so the remainder exists; it is below 16 and fits.
    random
        .checked_rem(slots)
        .and_then(|slot| u16::try_from(slot).ok())
        .unwrap_or(0)
}

/// What a movement needs of an account's lifecycle status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requires {
    /// A debit, or the posting of a hold on the debit side: the account is open.
    Open,
    /// A credit: the account is open or frozen, not closed.
    NotClosed,
}

impl Requires {
    /// Whether `status` satisfies this.
    pub fn allows(self, status: AccountStatus) -> bool {
        match self {
            Requires::Open => status == AccountStatus::Open,
            Requires::NotClosed => status != AccountStatus::Closed,
        }
    }
}

/// The unchanging facts a write assumes about an account it moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub tenant: TenantId,
    pub currency: Currency,
    pub kind: AccountKind,
    /// For a customer account: whether its limit is unlimited (its balance then spreads
    /// and a debit needs no cover). A write planned on the other assumption is refused.
    pub unlimited: bool,
}

impl Expect {
    pub fn of(account: &Account) -> Self {
        Self {
            tenant: account.tenant.clone(),
            currency: account.currency,
            kind: account.kind,
            unlimited: account.overdraft_limit.is_unlimited(),
        }
    }

    /// A customer account of `tenant` in `currency`, unlimited or not as the planner
    /// believes.
    pub fn customer(tenant: &TenantId, currency: Currency, unlimited: bool) -> Self {
        Self {
            tenant: tenant.clone(),
            currency,
            kind: AccountKind::Customer,
            unlimited,
        }
    }

    /// Whether `account` is what the write assumed.
    pub fn holds_for(&self, account: &Account) -> bool {
        account.tenant == self.tenant
            && account.currency == self.currency
            && account.kind == self.kind
            && (self.kind != AccountKind::Customer || account.overdraft_limit.is_unlimited() == self.unlimited)
    }

    /// Whether the account keeps its balance spread (see [`Account::spreads`]).
    pub fn spreads(&self) -> bool {
        self.kind.spreads() || (self.kind == AccountKind::Customer && self.unlimited)
    }
}

impl AccountDelta {
    fn new(account_id: AccountId) -> Self {
        Self {
            account_id,
            posted: Decimal::ZERO,
            pending_debits: Decimal::ZERO,
            pending_credits: Decimal::ZERO,
            cover: None,
            expect: None,
            open: None,
            requires: None,
            holds: Vec::new(),
            spread: false,
        }
    }

    /// The change of the account's balances.
    pub fn change(&self) -> Balance {
        Balance {
            posted: self.posted,
            pending_debits: self.pending_debits,
            pending_credits: self.pending_credits,
        }
    }

    /// How much the account's spending headroom (`posted − pending_debits + limit`)
    /// changes.
    pub fn headroom_change(&self) -> Result<Decimal, DomainError> {
        self.posted
            .checked_sub(self.pending_debits)
            .ok_or(DomainError::Overflow)
    }
}

/// Whether `account` may be debited by `amount`: customer accounts need
/// `available − amount ≥ −overdraft_limit`; clearing and unlimited accounts have no limit.
pub fn check_cover(account: &Account, amount: Amount) -> Result<(), DomainError> {
    let Some(limit) = account.overdraft_limit.bound() else {
        return Ok(());
    };
    if account.kind == AccountKind::Clearing {
        return Ok(());
    }
    let floor = minus(limit.value());
    let after = account
        .balance
        .available()?
        .checked_sub(amount.value())
        .ok_or(DomainError::Overflow)?;
    if after < floor {
        return Err(DomainError::InsufficientFunds);
    }
    Ok(())
}

/// Opens a transfer requested through the transfers API (or a batch): clearing accounts
/// mirror money at a bank and are never named there (SPEC §6), then the rules of
/// [`open_transfer`].
pub fn open_api_transfer(
    id: TransferId,
    tenant: &TenantId,
    request: NewTransfer,
    debit: &Account,
    credit: &Account,
    now: Timestamp,
) -> Result<(Transfer, [AccountDelta; 2]), DomainError> {
    if debit.kind == AccountKind::Clearing || credit.kind == AccountKind::Clearing {
        return Err(DomainError::ClearingAccount);
    }
    open_transfer(id, tenant, request, debit, credit, now)
}

/// The write of an API transfer decided without reading its accounts (SPEC §10): both
/// must be the tenant's customer accounts in the transfer's currency and the debit must
/// cover the amount, all stated as conditions of the write. Whenever the stored accounts
/// satisfy them, this is exactly what [`open_api_transfer`] decides from a read; when
/// they do not, the store refuses the write and the request reads and decides. `None`
/// when a read is needed to tell which rule refuses (the same account on both sides).
/// `unlimited` says which accounts the planner believes unlimited (remembered from
/// earlier reads); a wrong belief is refused by the store like any other assumption.
pub fn plan_api_transfer(
    id: TransferId,
    tenant: &TenantId,
    request: NewTransfer,
    now: Timestamp,
    unlimited: &dyn Fn(AccountId) -> bool,
) -> Option<(Transfer, [AccountDelta; 2])> {
    if request.debit_account_id == request.credit_account_id {
        return None;
    }
    let customer = |id| Expect::customer(tenant, request.currency, unlimited(id));
    let sides = [
        (request.debit_account_id, customer(request.debit_account_id)),
        (request.credit_account_id, customer(request.credit_account_id)),
    ];
    Some(transfer_between(id, tenant, request, sides, now))
}

/// Whether the transfers API may post, void or reverse `transfer`: a payment's transfer
/// changes only through its payment, and a transfer through a clearing account (a
/// deposit, say) only through the connector's webhooks.
pub fn check_api_transition(transfer: &Transfer) -> Result<(), DomainError> {
    if transfer.payment_id.is_some() {
        return Err(DomainError::ManagedByPayment);
    }
    if transfer.through_clearing {
        return Err(DomainError::ClearingAccount);
    }
    Ok(())
}

/// Whether a new transfer may move money from `debit` to `credit` as their lifecycle
/// stands: neither is closed, and the debit is not frozen (SPEC §6).
pub fn check_movable(debit: &Account, credit: &Account) -> Result<(), DomainError> {
    debit.check_creditable()?;
    credit.check_creditable()?;
    debit.check_debitable()
}

/// Opens a transfer between two of the tenant's accounts and says how their balances move.
/// The checks follow SPEC precedence: both accounts exist in the tenant (the caller
/// passes only the tenant's), their lifecycle status, currencies, sameness, then funds.
pub fn open_transfer(
    id: TransferId,
    tenant: &TenantId,
    request: NewTransfer,
    debit: &Account,
    credit: &Account,
    now: Timestamp,
) -> Result<(Transfer, [AccountDelta; 2]), DomainError> {
    check_movable(debit, credit)?;
    if debit.currency != request.currency || credit.currency != request.currency {
        return Err(DomainError::CurrencyMismatch);
    }
    if debit.id == credit.id {
        return Err(DomainError::SameAccount);
    }
    check_cover(debit, request.amount)?;
    let sides = [(debit.id, Expect::of(debit)), (credit.id, Expect::of(credit))];
    let (mut transfer, mut deltas) = transfer_between(id, tenant, request, sides, now);
    // Clearing accounts are opened by their first movement.
    for (delta, account) in deltas.iter_mut().zip([debit, credit]) {
        if account.kind == AccountKind::Clearing {
            delta.open = Some(Box::new(account.clone()));
        }
    }
    transfer.through_clearing = debit.kind == AccountKind::Clearing || credit.kind == AccountKind::Clearing;
    Ok((transfer, deltas))
}

/// The transfer and balance changes between two accounts assumed to be as `sides` says;
/// customer debits carry their cover.
pub(crate) fn transfer_between(
    id: TransferId,
    tenant: &TenantId,
    request: NewTransfer,
    sides: [(AccountId, Expect); 2],
    now: Timestamp,
) -> (Transfer, [AccountDelta; 2]) {
    let [(debit_id, debit), (credit_id, credit)] = sides;
    let a = request.amount.value();
    let mut d = AccountDelta::new(debit_id);
    let mut c = AccountDelta::new(credit_id);
    // Only a bounded customer account's debit needs cover.
    d.cover = (debit.kind == AccountKind::Customer && !debit.unlimited).then_some(request.amount);
    // Clearing accounts have no lifecycle: their movements assume no status.
    d.requires = (debit.kind == AccountKind::Customer).then_some(Requires::Open);
    c.requires = (credit.kind == AccountKind::Customer).then_some(Requires::NotClosed);
    let through_clearing = debit.kind == AccountKind::Clearing || credit.kind == AccountKind::Clearing;
    // Accounts without a lower bound spread their balances (SPEC §10); a change that
    // carries an expiring hold stays on the account's own item (see below).
    d.spread = debit.spreads();
    c.spread = credit.spreads();
    d.expect = Some(debit);
    c.expect = Some(credit);
    let expires_at = match (request.pending, request.expires_in) {
        (true, Some(seconds)) => {
            Timestamp::from_unix_ms(now.unix_ms().saturating_add(i64::from(seconds).saturating_mul(1000)))
        }
        _ => None,
    };
    let (status, posted_amount) = if request.pending {
        d.pending_debits = a;
        c.pending_credits = a;
        (TransferStatus::Pending, Amount::ZERO)
    } else {
        d.posted = minus(a);
        c.posted = a;
        (TransferStatus::Posted, request.amount)
    };
    let transfer = Transfer {
        id,
        tenant: tenant.clone(),
        debit_account_id: debit_id,
        credit_account_id: credit_id,
        amount: request.amount,
        currency: request.currency,
        status,
        posted_amount,
        reversed_amount: Amount::ZERO,
        reverses: None,
        payment_id: None,
        batch_id: None,
        through_clearing,
        description: request.description,
        metadata: request.metadata,
        created_at: now,
        updated_at: now,
        posted_at: (status == TransferStatus::Posted).then_some(now),
        expires_at,
        version: 1,
    };
    if let Some([debit_entry, credit_entry]) = transfer.held_entries() {
        // Expiring holds are read from the account's own item, so their changes go there.
        d.holds.push(HoldChange::Add(debit_entry));
        c.holds.push(HoldChange::Add(credit_entry));
        d.spread = false;
        c.spread = false;
    }
    (transfer, [d, c])
}

/// What a state transition decided.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived: built, matched and consumed at once
pub enum Transition {
    /// The transfer already is in the requested state: answer it unchanged, write nothing.
    Unchanged,
    /// The new transfer state and the balance changes to apply.
    Apply(Box<Transfer>, [AccountDelta; 2]),
}

/// Posts a pending transfer, in full or for `amount` ≤ the held amount; the rest of the
/// hold is released.
pub fn post_pending(transfer: &Transfer, amount: Option<Amount>, now: Timestamp) -> Result<Transition, DomainError> {
    match transfer.status {
        // Posting again is answered unchanged only when it asks for what was posted
        // (no amount: the whole hold); any other amount is a different transition.
        TransferStatus::Posted if amount.unwrap_or(transfer.amount) == transfer.posted_amount => {
            return Ok(Transition::Unchanged)
        }
        TransferStatus::Posted => {
            return Err(DomainError::InvalidTransition {
                from: "posted",
                action: "post another amount of",
            })
        }
        TransferStatus::Voided => {
            return Err(DomainError::InvalidTransition {
                from: "voided",
                action: "post",
            })
        }
        TransferStatus::Expired => return Err(DomainError::HoldExpired),
        TransferStatus::Pending if transfer.status_at(now) == TransferStatus::Expired => {
            return Err(DomainError::HoldExpired)
        }
        TransferStatus::Pending => {}
    }
    let post = amount.unwrap_or(transfer.amount);
    if post > transfer.amount {
        return Err(DomainError::InvalidAmount(
            "a hold can be posted for at most the held amount",
        ));
    }
    if post.is_zero() {
        return Err(DomainError::InvalidAmount("the amount must be greater than zero"));
    }
    let held = transfer.amount.value();
    let p = post.value();
    let mut d = AccountDelta::new(transfer.debit_account_id);
    let mut c = AccountDelta::new(transfer.credit_account_id);
    d.pending_debits = minus(held);
    d.posted = minus(p);
    // A frozen account's holds do not post (SPEC §6); its credits still do.
    d.requires = Some(Requires::Open);
    c.pending_credits = minus(held);
    c.posted = p;
    c.requires = Some(Requires::NotClosed);
    forget_hold(transfer, &mut d, &mut c);
    let mut next = transfer.clone();
    next.status = TransferStatus::Posted;
    next.posted_amount = post;
    next.updated_at = now;
    next.posted_at = Some(now);
    next.version = next_version(transfer.version)?;
    Ok(Transition::Apply(Box::new(next), [d, c]))
}

/// Releases a pending transfer's hold. An expired hold, released in storage or not yet,
/// is answered unchanged (SPEC §6): it already counts nowhere, and the sweep releases it.
pub fn void_pending(transfer: &Transfer, now: Timestamp) -> Result<Transition, DomainError> {
    match transfer.status {
        TransferStatus::Voided | TransferStatus::Expired => return Ok(Transition::Unchanged),
        TransferStatus::Pending if transfer.status_at(now) == TransferStatus::Expired => {
            return Ok(Transition::Unchanged)
        }
        TransferStatus::Posted => {
            return Err(DomainError::InvalidTransition {
                from: "posted",
                action: "void",
            })
        }
        TransferStatus::Pending => {}
    }
    let (next, deltas) = release(transfer, TransferStatus::Voided, now)?;
    Ok(Transition::Apply(Box::new(next), deltas))
}

/// A pending hold released, as `to` (voided or expired): its amount leaves both accounts'
/// pending balances and their expiring holds.
fn release(
    transfer: &Transfer,
    to: TransferStatus,
    now: Timestamp,
) -> Result<(Transfer, [AccountDelta; 2]), DomainError> {
    let held = transfer.amount.value();
    let mut d = AccountDelta::new(transfer.debit_account_id);
    let mut c = AccountDelta::new(transfer.credit_account_id);
    d.pending_debits = minus(held);
    c.pending_credits = minus(held);
    forget_hold(transfer, &mut d, &mut c);
    let mut next = transfer.clone();
    next.status = to;
    next.updated_at = now;
    next.version = next_version(transfer.version)?;
    Ok((next, [d, c]))
}

/// Reverses `amount` (default: all that is still reversible) of a posted transfer with a
/// new posted transfer in the opposite direction.
pub struct Reversal {
    pub original: Transfer,
    pub reversal: Transfer,
    pub deltas: [AccountDelta; 2],
}

pub fn reverse_posted(
    original: &Transfer,
    new_id: TransferId,
    amount: Option<Amount>,
    description: Option<String>,
    original_credit: &Account,
    original_debit: Option<&Account>,
    now: Timestamp,
) -> Result<Reversal, DomainError> {
    let reversal = plan_reversal(original, new_id, amount, description, &Expect::of(original_credit), now)?;
    // The reversal debits the original credit account and credits the original debit.
    match original_debit {
        Some(debit) => check_movable(original_credit, debit)?,
        None => original_credit.check_debitable()?,
    }
    check_cover(original_credit, reversal.reversal.amount)?;
    Ok(reversal)
}

/// The reversal decided without reading the account it debits (the original credit
/// account, assumed to be `credit`): a bounded customer account's cover is then a
/// condition of the write, decided by the store (SPEC §10), where [`reverse_posted`]
/// checks it first.
pub fn plan_reversal(
    original: &Transfer,
    new_id: TransferId,
    amount: Option<Amount>,
    description: Option<String>,
    credit: &Expect,
    now: Timestamp,
) -> Result<Reversal, DomainError> {
    if original.status != TransferStatus::Posted {
        return Err(DomainError::InvalidTransition {
            from: original.status.as_str(),
            action: "reverse",
        });
    }
    let remaining = original
        .posted_amount
        .checked_sub(original.reversed_amount)
        .ok_or(DomainError::ReversalExceedsAmount)?;
    let amount = amount.unwrap_or(remaining);
    if amount.is_zero() {
        return Err(if remaining.is_zero() {
            DomainError::ReversalExceedsAmount
        } else {
            DomainError::InvalidAmount("the amount must be greater than zero")
        });
    }
    if amount > remaining {
        return Err(DomainError::ReversalExceedsAmount);
    }
    let r = amount.value();
    let mut d = AccountDelta::new(original.credit_account_id);
    let mut c = AccountDelta::new(original.debit_account_id);
    d.posted = minus(r);
    d.cover = (credit.kind == AccountKind::Customer && !credit.unlimited).then_some(amount);
    // Accounts without a lower bound spread their balance (SPEC §10); a clearing account
    // has no lifecycle.
    d.spread = credit.spreads();
    d.requires = (credit.kind == AccountKind::Customer).then_some(Requires::Open);
    c.posted = r;
    c.requires = Some(Requires::NotClosed);
    let mut updated = original.clone();
    updated.reversed_amount = original
        .reversed_amount
        .checked_add(amount)
        .ok_or(DomainError::Overflow)?;
    updated.updated_at = now;
    updated.version = next_version(original.version)?;
    let reversal = Transfer {
        id: new_id,
        tenant: original.tenant.clone(),
        debit_account_id: original.credit_account_id,
        credit_account_id: original.debit_account_id,
        amount,
        currency: original.currency,
        status: TransferStatus::Posted,
        posted_amount: amount,
        reversed_amount: Amount::ZERO,
        reverses: Some(original.id),
        payment_id: original.payment_id,
        batch_id: None,
        through_clearing: original.through_clearing,
        description,
        metadata: Metadata::default(),
        created_at: now,
        updated_at: now,
        posted_at: Some(now),
        expires_at: None,
        version: 1,
    };
    Ok(Reversal {
        original: updated,
        reversal,
        deltas: [d, c],
    })
}

/// Moves the changes of a post or void to balance slots for the accounts `unlimited`
/// says are unlimited (SPEC §10), so that resolving holds through a busy unlimited
/// account spreads as creating them does. The belief becomes a condition of the write
/// (the slot must still say unlimited); a change of an expiring hold stays on the
/// account's own item, where its record is.
pub fn spread_resolution(transfer: &Transfer, deltas: &mut [AccountDelta; 2], unlimited: &dyn Fn(AccountId) -> bool) {
    if transfer.through_clearing {
        return;
    }
    for delta in deltas.iter_mut() {
        if delta.holds.is_empty() && unlimited(delta.account_id) {
            delta.spread = true;
            delta.expect = Some(Expect::customer(&transfer.tenant, transfer.currency, true));
        }
    }
}

/// A resolved hold leaves the expiring holds of both its accounts.
fn forget_hold(transfer: &Transfer, d: &mut AccountDelta, c: &mut AccountDelta) {
    if transfer.expires_at.is_some() {
        d.holds.push(HoldChange::Remove(transfer.id));
        c.holds.push(HoldChange::Remove(transfer.id));
    }
}

/// Releases a hold past its `expires_at` in storage: the transfer becomes `expired` and
/// both accounts stop counting it. `None` unless the hold is pending and expired at
/// `now`. The write is made once: its transfer update is conditioned on the version it
/// read, and payment holds never expire.
pub fn expire_hold(transfer: &Transfer, now: Timestamp) -> Result<Option<(Transfer, [AccountDelta; 2])>, DomainError> {
    if transfer.status != TransferStatus::Pending || transfer.status_at(now) != TransferStatus::Expired {
        return Ok(None);
    }
    release(transfer, TransferStatus::Expired, now).map(Some)
}

/// The release, in storage, of the holds of `account` past their `expires_at`
/// (`debits_only`: only those it is the debit side of, which are what its cover needs):
/// the transfers to mark expired and the balance changes of both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Release {
    pub expired: Vec<TransferId>,
    /// This account's changes, then the other sides'.
    pub own: Vec<AccountDelta>,
    pub others: Vec<AccountDelta>,
    /// Two per hold (this account's, then the other side's), each dated at the hold's
    /// `expires_at`: when it was released, whenever storage catches up.
    pub entries: Vec<Entry>,
}

impl Release {
    /// The first `holds` releases only.
    pub fn truncate(&mut self, holds: usize) {
        self.expired.truncate(holds);
        self.own.truncate(holds);
        self.others.truncate(holds);
        self.entries.truncate(holds.saturating_mul(2));
    }
}

/// Most holds one write releases besides its own change, keeping it well inside
/// DynamoDB's 100 actions per transaction.
pub const RELEASES_MAX: usize = 16;

/// The actions one release of an expired hold adds to a write: the transfer's update,
/// at most one more account (the other side's), and the two accounts' entries. With
/// [`RELEASES_MAX`] of them a write stays within 64 actions of its own.
pub const RELEASE_ACTIONS: usize = 4;

pub fn release_expired(account: &Account, now: Timestamp, debits_only: bool) -> Release {
    let mut release = Release::default();
    for entry in account
        .expired_holds(now)
        .filter(|e| e.debit || !debits_only)
        .take(RELEASES_MAX)
    {
        let mut own = AccountDelta::new(account.id);
        let mut other = AccountDelta::new(entry.other);
        let released = minus(entry.amount);
        if entry.debit {
            own.pending_debits = released;
            other.pending_credits = released;
        } else {
            own.pending_credits = released;
            other.pending_debits = released;
        }
        own.holds.push(HoldChange::Remove(entry.transfer_id));
        other.holds.push(HoldChange::Remove(entry.transfer_id));
        release.entries.extend([
            Entry::resolved(entry.transfer_id, entry.expires_at, &own),
            Entry::resolved(entry.transfer_id, entry.expires_at, &other),
        ]);
        release.expired.push(entry.transfer_id);
        release.own.push(own);
        release.others.push(other);
    }
    release
}

/// Applies a delta to an account as the store will (used by the in-memory store and the
/// model in property tests).
pub fn apply_delta(account: &mut Account, delta: &AccountDelta) -> Result<(), DomainError> {
    account.balance = account.balance.plus(&delta.change())?;
    for change in &delta.holds {
        match change {
            HoldChange::Add(entry) => account.holds.push(entry.clone()),
            HoldChange::Remove(id) => account.holds.retain(|e| e.transfer_id != *id),
        }
    }
    account.version = next_version(account.version)?;
    Ok(())
}

/// The version after one more change of a record.
pub fn next_version(version: u64) -> Result<u64, DomainError> {
    version.checked_add(1).ok_or(DomainError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::OverdraftLimit;

    #[test]
    fn a_balance_slot_is_within_the_setting_stable_and_spread() {
        let ids: Vec<TransferId> = (0..1_600u128)
            .map(|i| TransferId::from_ulid(ulid::Ulid::from_parts(1, i.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
            .collect();
        for slots in [1, 7, 16, 40] {
            let mut used = std::collections::BTreeMap::new();
            for id in &ids {
                let slot = balance_slot(*id, slots);
                assert_eq!(slot, balance_slot(*id, slots), "the same write picks the same slot");
                assert!(slot < slots.clamp(1, BALANCE_SLOTS_MAX));
                *used.entry(slot).or_insert(0) += 1;
            }
            let expected = slots.clamp(1, BALANCE_SLOTS_MAX);
            assert_eq!(used.len(), usize::from(expected), "{slots}: every slot is used");
            let fair = 1_600 / i32::from(expected);
            assert!(
                used.values().all(|&n| (n - fair).abs() <= fair / 2),
                "{slots}: {used:?}"
            );
        }
    }

    fn request(pending: bool, expires_in: Option<u32>) -> NewTransfer {
        let usd = Currency::parse("USD").unwrap();
        NewTransfer {
            debit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            credit_account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1, 2)),
            amount: Amount::parse("5000.00", usd).unwrap(),
            currency: usd,
            pending,
            expires_in,
            description: None,
            metadata: Metadata::default(),
        }
    }

    #[test]
    fn an_unlimited_account_needs_no_cover_and_spreads_except_for_expiring_holds() {
        let tenant = TenantId::parse("t1").unwrap();
        let now = Timestamp::from_unix_ms(1_700_000_000_000).unwrap();
        let id = TransferId::from_ulid(ulid::Ulid::from_parts(2, 3));
        let debit = request(false, None).debit_account_id;
        let believed = |unlimited: bool| move |account: AccountId| unlimited && account == debit;
        // Believed bounded: cover, the own item, and the belief as a condition.
        let (_, [d, c]) = plan_api_transfer(id, &tenant, request(false, None), now, &believed(false)).unwrap();
        assert!(d.cover.is_some() && !d.spread && !d.expect.as_ref().unwrap().unlimited);
        assert!(!c.spread);
        // Believed unlimited: no cover, a slot, still its lifecycle.
        let (_, [d, c]) = plan_api_transfer(id, &tenant, request(false, None), now, &believed(true)).unwrap();
        assert!(d.cover.is_none() && d.spread && d.expect.as_ref().unwrap().unlimited);
        assert_eq!(d.requires, Some(Requires::Open));
        assert!(!c.spread, "the bounded side keeps its own item");
        // A hold that expires is read from the account's own item: it goes there.
        let (_, [d, _]) = plan_api_transfer(id, &tenant, request(true, Some(60)), now, &believed(true)).unwrap();
        assert!(d.cover.is_none() && !d.spread && d.holds.len() == 1);
        let (_, [d, _]) = plan_api_transfer(id, &tenant, request(true, None), now, &believed(true)).unwrap();
        assert!(d.spread, "a hold without expiry spreads");
        // Read: an unlimited account covers any amount; a bounded one does not.
        let usd = Currency::parse("USD").unwrap();
        let mut account = Account::open(
            debit,
            tenant.clone(),
            crate::account::NewAccount {
                currency: usd,
                holder: None,
                name: None,
                overdraft_limit: OverdraftLimit::parse("unlimited", usd).unwrap(),
                metadata: Metadata::default(),
            },
            None,
            now,
        );
        assert!(account.spreads());
        assert!(check_cover(&account, Amount::parse("999999999999999", usd).unwrap()).is_ok());
        account.overdraft_limit = OverdraftLimit::parse("10", usd).unwrap();
        assert_eq!(
            check_cover(&account, Amount::parse("10.01", usd).unwrap()),
            Err(DomainError::InsufficientFunds)
        );
        assert!(!account.spreads());
        assert!(!Expect::of(&account).holds_for(&Account {
            overdraft_limit: OverdraftLimit::Unlimited,
            ..account.clone()
        }));
        assert!(OverdraftLimit::parse("-1", usd).is_err());
        assert!(OverdraftLimit::parse("Unlimited", usd).is_err());
    }
}
