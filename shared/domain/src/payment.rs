//! Payments to banks through a connector (SPEC §6, §7): a pending transfer from the
//! customer's account to the connector's clearing account, settled, failed or returned
//! by the bank's callbacks.

use crate::account::{Account, AccountKind, Metadata};
use crate::auth::TenantId;
use crate::clock::Timestamp;
use crate::crypto::Sealed;
use crate::error::DomainError;
use crate::holder::MaskedHolder;
use crate::ids::{AccountId, PaymentId, TransferId};
use crate::money::{Amount, Currency};
use crate::ports::ClearingKey;
use crate::statement::Entry;
use crate::transfer::{
    next_version, open_transfer, post_pending, reverse_posted, transfer_between, void_pending, AccountDelta, Expect,
    NewTransfer, Transfer, Transition,
};

pub const REFERENCE_MAX_CHARS: usize = 140;
pub const COUNTERPARTY_SEAL_KIND: &str = "payment";
pub const COUNTERPARTY_SEAL_FIELD: &str = "counterparty";

/// A connector name: lower-case letters, digits and dashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectorName(String);

impl ConnectorName {
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (1..=40).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A connector payments may be sent through, with the tenants it serves: a connector
/// touches only its own tenants (SPEC §7). `*` serves every tenant (local development).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorGrant {
    pub name: ConnectorName,
    tenants: Vec<String>,
}

impl ConnectorGrant {
    pub fn new(name: ConnectorName, tenants: Vec<String>) -> Self {
        Self { name, tenants }
    }

    pub fn serves(&self, tenant: &TenantId) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant.as_str())
    }

    /// Parses `name=tenant|tenant,name=*`: every connector names its tenants, so a
    /// configuration that forgets them fails at start-up instead of serving everyone.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, &'static str> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (name, tenants) = entry
                    .split_once('=')
                    .ok_or("each connector is `name=tenant|tenant` (or `name=*`)")?;
                let name = ConnectorName::parse(name.trim()).ok_or("a connector name is not valid")?;
                let tenants: Vec<String> = tenants
                    .split('|')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect();
                if tenants.is_empty() {
                    return Err("a connector serves no tenant");
                }
                Ok(Self::new(name, tenants))
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Settled,
    Failed,
    Returned,
}

impl PaymentStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Settled => "settled",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Returned => "returned",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            PaymentStatus::Pending,
            PaymentStatus::Settled,
            PaymentStatus::Failed,
            PaymentStatus::Returned,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub tenant: TenantId,
    pub account_id: AccountId,
    pub transfer_id: TransferId,
    pub connector: ConnectorName,
    pub counterparty: Sealed,
    pub counterparty_masked: MaskedHolder,
    pub amount: Amount,
    pub currency: Currency,
    pub reference: Option<String>,
    pub status: PaymentStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

/// The bank-driven transitions: `pending → settled | failed`, `settled → returned`.
/// Anything else (settling a failed payment, returning an unsettled one) is
/// `invalid_transition`; repeating the transition a payment already made is `Ok(false)`.
pub fn transition(payment: &Payment, to: PaymentStatus) -> Result<bool, DomainError> {
    use PaymentStatus::*;
    match (payment.status, to) {
        (from, to) if from == to => Ok(false),
        (Pending, Settled) | (Pending, Failed) | (Settled, Returned) => Ok(true),
        (from, to) => Err(DomainError::InvalidTransition {
            from: from.as_str(),
            action: match to {
                Settled => "settle",
                Failed => "fail",
                Returned => "return",
                Pending => "reopen",
            },
        }),
    }
}

/// The ledger effect of a bank outcome on a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentOutcome {
    pub payment: Payment,
    /// The payment's transfer in its new state, with the version it was read at.
    pub transfer_update: (Transfer, u64),
    /// The reversal a return creates.
    pub reversal: Option<Transfer>,
    pub deltas: [AccountDelta; 2],
    /// The entries of a settlement or failure (a return's follow from its reversal).
    pub entries: Vec<Entry>,
}

/// The id of a payment's transfer: the payment's own ULID under the transfer prefix, so a
/// bank outcome reads the payment and its transfer together.
pub fn payment_transfer_id(payment: PaymentId) -> TransferId {
    TransferId::from_ulid(payment.ulid())
}

/// A validated `POST /v1/payments`, its counterparty already sealed.
#[derive(Clone, Debug)]
pub struct NewPayment {
    pub account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub connector: ConnectorName,
    pub counterparty: Sealed,
    pub counterparty_masked: MaskedHolder,
    pub reference: Option<String>,
}

/// A payment's complete effect: the payment, its pending transfer from the customer's
/// account to the connector's clearing account, and the balance changes (the clearing
/// account's delta opens it on the first payment).
#[derive(Clone, Debug)]
pub struct OpenedPayment {
    pub payment: Payment,
    pub transfer: Transfer,
    pub deltas: [AccountDelta; 2],
}

/// Opens a payment out of `account` as read: the tenant's customer account (a clearing
/// account would move through a side door), then the rules of a transfer. `None` plans
/// it without a read (SPEC §10): the write's conditions then require a customer account
/// of the tenant in the payment's currency that covers the amount, which is exactly when
/// a read would have decided the same write.
pub fn open_payment(
    payment_id: PaymentId,
    tenant: &TenantId,
    request: NewPayment,
    account: Option<&Account>,
    now: Timestamp,
    unlimited: &dyn Fn(AccountId) -> bool,
) -> Result<OpenedPayment, DomainError> {
    let transfer_id = payment_transfer_id(payment_id);
    let clearing = ClearingKey {
        tenant: tenant.clone(),
        connector: request.connector.clone(),
        currency: request.currency,
    }
    .opening(now);
    let command = NewTransfer {
        debit_account_id: request.account_id,
        credit_account_id: clearing.id,
        amount: request.amount,
        currency: request.currency,
        pending: true,
        expires_in: None,
        description: Some(format!("payment {payment_id}")),
        metadata: Metadata::default(),
    };
    let (mut transfer, deltas) = match account {
        Some(account) if account.kind == AccountKind::Clearing => return Err(DomainError::ClearingAccount),
        Some(account) => open_transfer(transfer_id, tenant, command, account, &clearing, now)?,
        // The clearing account named as the payment's source: a write cannot move one item
        // twice, so a read names the rule.
        None if request.account_id == clearing.id => return Err(DomainError::ClearingAccount),
        None => {
            let customer = Expect::customer(tenant, request.currency, unlimited(request.account_id));
            let sides = [(request.account_id, customer), (clearing.id, Expect::of(&clearing))];
            let (mut transfer, mut deltas) = transfer_between(transfer_id, tenant, command, sides, now);
            deltas[1].open = Some(Box::new(clearing));
            transfer.through_clearing = true;
            (transfer, deltas)
        }
    };
    transfer.payment_id = Some(payment_id);
    let payment = Payment {
        id: payment_id,
        tenant: tenant.clone(),
        account_id: request.account_id,
        transfer_id,
        connector: request.connector,
        counterparty: request.counterparty,
        counterparty_masked: request.counterparty_masked,
        amount: request.amount,
        currency: request.currency,
        reference: request.reference,
        status: PaymentStatus::Pending,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    Ok(OpenedPayment {
        payment,
        transfer,
        deltas,
    })
}

/// A deposit a connector's bank reports: `amount` into account `account_id`.
#[derive(Clone, Debug)]
pub struct Deposit<'a> {
    pub transfer_id: TransferId,
    pub connector: &'a ConnectorName,
    pub account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub bank_reference: &'a str,
}

impl Deposit<'_> {
    /// The posted transfer from the connector's clearing account for the tenant and
    /// currency (opened by this movement if it is its first) into the account.
    fn between(&self, tenant: &TenantId, account: Expect, now: Timestamp) -> (Transfer, [AccountDelta; 2]) {
        let clearing = ClearingKey {
            tenant: tenant.clone(),
            connector: self.connector.clone(),
            currency: self.currency,
        }
        .opening(now);
        let request = NewTransfer {
            debit_account_id: clearing.id,
            credit_account_id: self.account_id,
            amount: self.amount,
            currency: self.currency,
            pending: false,
            expires_in: None,
            description: Some(format!("deposit {}", self.bank_reference)),
            metadata: Metadata::default(),
        };
        let sides = [(clearing.id, Expect::of(&clearing)), (self.account_id, account)];
        let (mut transfer, mut deltas) = transfer_between(self.transfer_id, tenant, request, sides, now);
        deltas[0].open = Some(Box::new(clearing));
        transfer.through_clearing = true;
        (transfer, deltas)
    }
}

/// A deposit into `account` as read. A clearing account is never a deposit's target: it
/// answers as missing. The caller checks that the connector serves the account's tenant.
pub fn receive_deposit(
    deposit: &Deposit<'_>,
    account: &Account,
    now: Timestamp,
) -> Result<(Transfer, [AccountDelta; 2]), DomainError> {
    if account.kind == AccountKind::Clearing {
        return Err(DomainError::NotFound);
    }
    account.check_creditable()?;
    if account.currency != deposit.currency {
        return Err(DomainError::CurrencyMismatch);
    }
    Ok(deposit.between(&account.tenant, Expect::of(account), now))
}

/// The deposit decided without reading its account (SPEC §10), for a connector that
/// knows which of its tenants holds it: the write's conditions require a customer
/// account of `tenant` in the deposit's currency, which is exactly when a read would have
/// decided the same write.
/// `None` when the deposit names the clearing account itself: a write cannot move one
/// item twice, and a read names the rule.
///
/// `unlimited` is whether the planner believes the account unlimited (its balance then
/// spreads); a wrong belief is refused by the store like any other assumption.
pub fn plan_deposit(
    deposit: &Deposit<'_>,
    tenant: &TenantId,
    now: Timestamp,
    unlimited: bool,
) -> Option<(Transfer, [AccountDelta; 2])> {
    let customer = Expect::customer(tenant, deposit.currency, unlimited);
    let planned = deposit.between(tenant, customer, now);
    (planned.1[0].account_id != planned.1[1].account_id).then_some(planned)
}

/// Applies a bank outcome: `settled` posts the payment's hold in full, `failed` releases
/// it, `returned` reverses the whole posted amount back from the clearing account.
/// `Ok(None)` means the payment already is in that state (a duplicate outcome).
pub fn apply_outcome(
    payment: &Payment,
    transfer: &Transfer,
    to: PaymentStatus,
    clearing: &Account,
    reversal_id: TransferId,
    now: Timestamp,
) -> Result<Option<PaymentOutcome>, DomainError> {
    if !transition(payment, to)? {
        return Ok(None);
    }
    let (updated_transfer, reversal, deltas) = match to {
        PaymentStatus::Settled | PaymentStatus::Failed => {
            let step = if to == PaymentStatus::Settled {
                post_pending(transfer, None, now)?
            } else {
                void_pending(transfer, now)?
            };
            match step {
                Transition::Apply(next, deltas) => (*next, None, deltas),
                // The payment and its transfer disagree: refuse rather than guess.
                Transition::Unchanged => {
                    return Err(DomainError::InvalidTransition {
                        from: transfer.status.as_str(),
                        action: "settle",
                    })
                }
            }
        }
        PaymentStatus::Returned => {
            let r = reverse_posted(
                transfer,
                reversal_id,
                None,
                Some(format!("return of payment {}", payment.id)),
                clearing,
                None,
                now,
            )?;
            (r.original, Some(r.reversal), r.deltas)
        }
        // `transition` refuses every move back to pending before this point.
        PaymentStatus::Pending => {
            return Err(DomainError::InvalidTransition {
                from: payment.status.as_str(),
                action: "reopen",
            })
        }
    };
    // A bank outcome records what the bank already did: the account's lifecycle status
    // does not refuse it (a frozen account's payment still settles, a return still comes
    // back).
    let mut deltas = deltas;
    for delta in &mut deltas {
        delta.requires = None;
        // The clearing account's side spreads (SPEC §10).
        delta.spread |= delta.account_id == clearing.id && clearing.kind.spreads();
    }
    let entries = match reversal {
        None => Entry::resolving(transfer.id, now, &deltas).to_vec(),
        Some(_) => Vec::new(),
    };
    let mut next = payment.clone();
    next.status = to;
    next.updated_at = now;
    next.version = next_version(payment.version)?;
    Ok(Some(PaymentOutcome {
        entries,
        payment: next,
        transfer_update: (updated_transfer, transfer.version),
        reversal,
        deltas,
    }))
}

pub fn parse_reference(text: Option<String>) -> Result<Option<String>, DomainError> {
    match text {
        Some(t) if t.is_empty() || t.chars().count() > REFERENCE_MAX_CHARS || t.chars().any(char::is_control) => Err(
            DomainError::invalid_request(format!("reference is 1 to {REFERENCE_MAX_CHARS} printable characters")),
        ),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::account::Metadata;
    use crate::account::NewAccount;
    use crate::transfer::{open_transfer, NewTransfer, TransferStatus};

    fn setup() -> (Payment, Transfer, Account) {
        let usd = Currency::parse("USD").unwrap();
        let tenant = TenantId::parse("t1").unwrap();
        let now = Timestamp::from_unix_ms(1_000).unwrap();
        let id = |n| AccountId::from_ulid(ulid::Ulid::from_parts(1, n));
        let customer = Account::open(
            id(1),
            tenant.clone(),
            NewAccount {
                currency: usd,
                holder: None,
                name: None,
                overdraft_limit: crate::account::OverdraftLimit::parse("100", usd).unwrap(),
                metadata: Metadata::default(),
            },
            None,
            now,
        );
        let clearing = Account::clearing(id(2), tenant.clone(), usd, "demo-bank", now);
        let request = NewTransfer {
            debit_account_id: customer.id,
            credit_account_id: clearing.id,
            amount: Amount::parse("40", usd).unwrap(),
            currency: usd,
            pending: true,
            expires_in: None,
            description: None,
            metadata: Metadata::default(),
        };
        let (transfer, _) = open_transfer(
            TransferId::from_ulid(ulid::Ulid::from_parts(1, 3)),
            &tenant,
            request,
            &customer,
            &clearing,
            now,
        )
        .unwrap();
        let payment = Payment {
            id: PaymentId::from_ulid(ulid::Ulid::from_parts(1, 4)),
            tenant,
            account_id: customer.id,
            transfer_id: transfer.id,
            connector: ConnectorName::parse("demo-bank").unwrap(),
            counterparty: Sealed::from_bytes(vec![1]),
            counterparty_masked: MaskedHolder {
                name_initials: "A.".into(),
                account_number_last4: None,
                iban_last4: None,
            },
            amount: transfer.amount,
            currency: usd,
            reference: None,
            status: PaymentStatus::Pending,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        (payment, transfer, clearing)
    }

    #[test]
    fn settling_posts_the_hold_and_returning_reverses_it_from_clearing() {
        let (payment, transfer, clearing) = setup();
        let now = Timestamp::from_unix_ms(2_000).unwrap();
        let rid = TransferId::from_ulid(ulid::Ulid::from_parts(2, 1));
        let settled = apply_outcome(&payment, &transfer, PaymentStatus::Settled, &clearing, rid, now)
            .unwrap()
            .unwrap();
        assert_eq!(settled.payment.status, PaymentStatus::Settled);
        assert_eq!(settled.transfer_update.0.status, TransferStatus::Posted);
        assert_eq!(
            apply_outcome(
                &settled.payment,
                &settled.transfer_update.0,
                PaymentStatus::Settled,
                &clearing,
                rid,
                now
            ),
            Ok(None)
        );
        let returned = apply_outcome(
            &settled.payment,
            &settled.transfer_update.0,
            PaymentStatus::Returned,
            &clearing,
            rid,
            now,
        )
        .unwrap()
        .unwrap();
        let reversal = returned.reversal.unwrap();
        assert_eq!(
            (reversal.debit_account_id, reversal.amount),
            (clearing.id, transfer.amount)
        );
        assert_eq!(returned.deltas[0].cover, None, "a clearing account has no limit");
    }

    #[test]
    fn out_of_order_outcomes_are_invalid_transitions() {
        let (payment, transfer, clearing) = setup();
        let now = Timestamp::from_unix_ms(2_000).unwrap();
        let rid = TransferId::from_ulid(ulid::Ulid::from_parts(2, 1));
        let failed = apply_outcome(&payment, &transfer, PaymentStatus::Failed, &clearing, rid, now)
            .unwrap()
            .unwrap();
        assert_eq!(failed.transfer_update.0.status, TransferStatus::Voided);
        for to in [PaymentStatus::Settled, PaymentStatus::Returned] {
            let r = apply_outcome(&failed.payment, &failed.transfer_update.0, to, &clearing, rid, now);
            assert!(matches!(r, Err(DomainError::InvalidTransition { .. })), "{to:?}: {r:?}");
        }
        let r = apply_outcome(&payment, &transfer, PaymentStatus::Returned, &clearing, rid, now);
        assert!(matches!(r, Err(DomainError::InvalidTransition { .. })));
    }

    #[test]
    fn connector_grants_name_their_tenants() {
        let grants = ConnectorGrant::parse_list("demo-bank=t1|t2, demo-stripe=*").unwrap();
        let t1 = TenantId::parse("t1").unwrap();
        let t3 = TenantId::parse("t3").unwrap();
        assert!(grants[0].serves(&t1) && !grants[0].serves(&t3));
        assert!(grants[1].serves(&t3));
        assert!(ConnectorGrant::parse_list("demo-bank").is_err());
        assert!(ConnectorGrant::parse_list("demo-bank=").is_err());
        assert!(ConnectorGrant::parse_list("Demo=t1").is_err());
        assert_eq!(ConnectorGrant::parse_list("").unwrap(), vec![]);
    }

    #[test]
    fn connector_names_are_plain() {
        assert!(ConnectorName::parse("demo-bank").is_some());
        assert!(ConnectorName::parse("Demo").is_none());
        assert!(ConnectorName::parse("").is_none());
        assert!(ConnectorName::parse("a#b").is_none());
    }

    #[test]
    fn a_deposit_comes_from_the_clearing_account_its_key_names_and_never_into_one() {
        let usd = Currency::parse("USD").unwrap();
        let now = Timestamp::from_unix_ms(1_000).unwrap();
        let tenant = TenantId::parse("t1").unwrap();
        let customer = Account::open(
            AccountId::from_ulid(ulid::Ulid::from_parts(1, 1)),
            tenant.clone(),
            NewAccount {
                currency: usd,
                holder: None,
                name: None,
                overdraft_limit: crate::account::OverdraftLimit::ZERO,
                metadata: Metadata::default(),
            },
            None,
            now,
        );
        let bank = ConnectorName::parse("demo-bank").unwrap();
        let id = TransferId::from_ulid(ulid::Ulid::from_parts(2, 2));
        let amount = Amount::parse("7.25", usd).unwrap();
        let deposit = Deposit {
            transfer_id: id,
            connector: &bank,
            account_id: customer.id,
            amount,
            currency: usd,
            bank_reference: "ref-1",
        };
        let (transfer, deltas) = receive_deposit(&deposit, &customer, now).unwrap();
        // Planned from the tenant alone, it is the same write, the read's facts stated as
        // conditions.
        assert_eq!(
            plan_deposit(&deposit, &tenant, now, false),
            Some((transfer.clone(), deltas.clone()))
        );
        let key = ClearingKey {
            tenant: tenant.clone(),
            connector: bank.clone(),
            currency: usd,
        };
        assert_eq!(
            (
                transfer.debit_account_id,
                transfer.credit_account_id,
                transfer.through_clearing
            ),
            (key.account_id(), customer.id, true)
        );
        // The clearing side opens its account if this is its first movement.
        assert_eq!(deltas[0].open.as_deref(), Some(&key.opening(now)));
        let clearing = key.opening(now);
        let into_clearing = Deposit {
            account_id: clearing.id,
            ..deposit.clone()
        };
        assert_eq!(
            receive_deposit(&into_clearing, &clearing, now).unwrap_err(),
            DomainError::NotFound
        );
        let in_euros = Deposit {
            currency: Currency::parse("EUR").unwrap(),
            ..deposit
        };
        assert_eq!(
            receive_deposit(&in_euros, &customer, now).unwrap_err(),
            DomainError::CurrencyMismatch
        );
    }
}
