//! Request bodies in two steps: the wire shape as the client sent it (`TryFrom<JsonObject>`:
//! field types, required fields, no unknown field), then the domain command it stands for
//! (`TryFrom<Body>`: currencies, amounts at the currency's exponent, ids, limits). Errors
//! name fields but never echo their values.

use std::collections::BTreeMap;

use fintx_adapters::http::JsonObject;
use fintx_domain::account::{AccountName, Metadata, NewAccount, OverdraftLimit};
use fintx_domain::batch::{check_batch_size, BATCH_MAX};
use fintx_domain::holder::Holder;
use fintx_domain::ids::AccountId;
use fintx_domain::lifecycle::AccountPatch;
use fintx_domain::money::{Amount, Currency};
use fintx_domain::payment::{parse_reference, ConnectorName};
use fintx_domain::transfer::{parse_description, NewTransfer, EXPIRES_IN_MAX, EXPIRES_IN_MIN};
use fintx_domain::DomainError;

fn required_amount(object: &mut JsonObject, field: &str) -> Result<String, DomainError> {
    object
        .amount(field)?
        .ok_or_else(|| DomainError::invalid_request(format!("`{field}` is required")))
}

/// An id that cannot exist cannot be the tenant's account.
fn account_id(text: &str) -> Result<AccountId, DomainError> {
    AccountId::parse(text).ok_or(DomainError::AccountNotFound)
}

/// `POST /v1/accounts`.
pub(crate) struct AccountBody {
    pub currency: String,
    pub name: Option<String>,
    pub overdraft_limit: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub holder: Option<HolderBody>,
}

impl TryFrom<JsonObject> for AccountBody {
    type Error = DomainError;

    fn try_from(mut o: JsonObject) -> Result<Self, DomainError> {
        let body = Self {
            currency: o.required_string("currency")?,
            name: o.string("name")?,
            overdraft_limit: o.amount("overdraft_limit")?,
            metadata: o.string_map("metadata")?,
            holder: o.object("holder")?.map(HolderBody::try_from).transpose()?,
        };
        o.finish()?;
        Ok(body)
    }
}

impl TryFrom<AccountBody> for NewAccount {
    type Error = DomainError;

    fn try_from(body: AccountBody) -> Result<Self, DomainError> {
        let currency = Currency::parse(&body.currency)?;
        Ok(NewAccount {
            currency,
            holder: body.holder.map(Holder::try_from).transpose()?,
            name: body.name.as_deref().map(AccountName::parse).transpose()?,
            overdraft_limit: match body.overdraft_limit {
                Some(text) => OverdraftLimit::parse(&text, currency)?,
                None => OverdraftLimit::ZERO,
            },
            metadata: Metadata::parse(body.metadata.unwrap_or_default())?,
        })
    }
}

/// `PATCH /v1/accounts/{id}`.
#[derive(Clone)]
pub(crate) struct AccountPatchBody {
    pub version: u64,
    pub name: Option<String>,
    pub overdraft_limit: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

impl TryFrom<JsonObject> for AccountPatchBody {
    type Error = DomainError;

    fn try_from(mut o: JsonObject) -> Result<Self, DomainError> {
        let body = Self {
            version: o
                .positive_integer("version")?
                .ok_or_else(|| DomainError::invalid_request("`version` is required"))?,
            name: o.string("name")?,
            overdraft_limit: o.amount("overdraft_limit")?,
            metadata: o.string_map("metadata")?,
        };
        o.finish()?;
        Ok(body)
    }
}

impl AccountPatchBody {
    /// The patch for an account in `currency` (its limit is written at that exponent).
    pub fn patch(self, currency: Currency) -> Result<AccountPatch, DomainError> {
        Ok(AccountPatch {
            version: self.version,
            name: self.name.as_deref().map(AccountName::parse).transpose()?,
            overdraft_limit: self
                .overdraft_limit
                .map(|text| OverdraftLimit::parse(&text, currency))
                .transpose()?,
            metadata: self.metadata.map(Metadata::parse).transpose()?,
        })
    }
}

/// An account's `holder`, and a payment's `counterparty`.
pub(crate) struct HolderBody {
    pub name: String,
    pub account_number: Option<String>,
    pub routing_number: Option<String>,
    pub iban: Option<String>,
}

impl TryFrom<JsonObject> for HolderBody {
    type Error = DomainError;

    fn try_from(mut o: JsonObject) -> Result<Self, DomainError> {
        let body = Self {
            name: o.required_string("name")?,
            account_number: o.string("account_number")?,
            routing_number: o.string("routing_number")?,
            iban: o.string("iban")?,
        };
        o.finish()?;
        Ok(body)
    }
}

impl TryFrom<HolderBody> for Holder {
    type Error = DomainError;

    fn try_from(body: HolderBody) -> Result<Self, DomainError> {
        Holder::parse(body.name, body.account_number, body.routing_number, body.iban)
    }
}

/// `POST /v1/transfers`.
pub(crate) struct TransferBody {
    pub debit_account_id: String,
    pub credit_account_id: String,
    pub amount: String,
    pub currency: String,
    pub pending: Option<bool>,
    pub expires_in: Option<u64>,
    pub description: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
}

impl TryFrom<JsonObject> for TransferBody {
    type Error = DomainError;

    fn try_from(mut o: JsonObject) -> Result<Self, DomainError> {
        let body = Self {
            debit_account_id: o.required_string("debit_account_id")?,
            credit_account_id: o.required_string("credit_account_id")?,
            amount: required_amount(&mut o, "amount")?,
            currency: o.required_string("currency")?,
            pending: o.boolean("pending")?,
            expires_in: o.positive_integer("expires_in")?,
            description: o.string("description")?,
            metadata: o.string_map("metadata")?,
        };
        o.finish()?;
        Ok(body)
    }
}

impl TryFrom<TransferBody> for NewTransfer {
    type Error = DomainError;

    fn try_from(body: TransferBody) -> Result<Self, DomainError> {
        let description = parse_description(body.description)?;
        let metadata = Metadata::parse(body.metadata.unwrap_or_default())?;
        let currency = Currency::parse(&body.currency)?;
        let pending = body.pending.unwrap_or(false);
        let expires_in = match body.expires_in {
            None => None,
            Some(_) if !pending => {
                return Err(DomainError::invalid_request(
                    "`expires_in` applies to holds (`pending: true`)",
                ))
            }
            Some(s) => Some(
                u32::try_from(s)
                    .ok()
                    .filter(|s| (EXPIRES_IN_MIN..=EXPIRES_IN_MAX).contains(s))
                    .ok_or_else(|| {
                        DomainError::invalid_request(format!(
                            "`expires_in` is {EXPIRES_IN_MIN} to {EXPIRES_IN_MAX} seconds"
                        ))
                    })?,
            ),
        };
        Ok(NewTransfer {
            debit_account_id: account_id(&body.debit_account_id)?,
            credit_account_id: account_id(&body.credit_account_id)?,
            amount: Amount::parse_positive(&body.amount, currency)?,
            currency,
            pending,
            expires_in,
            description,
            metadata,
        })
    }
}

/// `POST /v1/transfer-batches`: the transfers as `POST /v1/transfers` takes them. A
/// transfer's own error names its position (`index`).
pub(crate) struct BatchBody {
    pub transfers: Vec<Result<TransferBody, DomainError>>,
}

fn at(index: usize) -> impl Fn(DomainError) -> DomainError {
    move |error| DomainError::InBatch {
        index,
        error: Box::new(error),
    }
}

impl TryFrom<JsonObject> for BatchBody {
    type Error = DomainError;

    fn try_from(mut o: JsonObject) -> Result<Self, DomainError> {
        let transfers = o
            .objects("transfers")?
            .ok_or_else(|| DomainError::invalid_request("`transfers` is required"))?;
        o.finish()?;
        if transfers.is_empty() || transfers.len() > BATCH_MAX {
            return Err(DomainError::invalid_request(format!(
                "a batch holds 1 to {BATCH_MAX} transfers"
            )));
        }
        Ok(Self {
            transfers: transfers.into_iter().map(TransferBody::try_from).collect(),
        })
    }
}

impl TryFrom<BatchBody> for Vec<NewTransfer> {
    type Error = DomainError;

    fn try_from(body: BatchBody) -> Result<Self, DomainError> {
        let transfers = body
            .transfers
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.and_then(NewTransfer::try_from).map_err(at(i)))
            .collect::<Result<Vec<_>, _>>()?;
        check_batch_size(&transfers)?;
        Ok(transfers)
    }
}

/// `POST /v1/transfers/{id}/post|void|reverse`: which fields a change takes depends on
/// the change, so the route says what it accepts.
pub(crate) struct ChangeBody {
    pub amount: Option<String>,
    pub description: Option<String>,
}

impl ChangeBody {
    pub fn read(mut o: JsonObject, amount: bool, description: bool) -> Result<Self, DomainError> {
        let body = Self {
            amount: if amount { o.amount("amount")? } else { None },
            description: if description {
                parse_description(o.string("description")?)?
            } else {
                None
            },
        };
        o.finish()?;
        Ok(body)
    }
}

/// `POST /v1/payments`.
pub(crate) struct PaymentBody {
    pub account_id: String,
    pub amount: String,
    pub currency: String,
    pub connector: String,
    pub counterparty: HolderBody,
    pub reference: Option<String>,
}

impl TryFrom<JsonObject> for PaymentBody {
    type Error = DomainError;

    fn try_from(mut o: JsonObject) -> Result<Self, DomainError> {
        let body = Self {
            account_id: o.required_string("account_id")?,
            amount: required_amount(&mut o, "amount")?,
            currency: o.required_string("currency")?,
            connector: o.required_string("connector")?,
            counterparty: o
                .object("counterparty")?
                .ok_or_else(|| DomainError::invalid_request("`counterparty` is required"))
                .and_then(HolderBody::try_from)?,
            reference: o.string("reference")?,
        };
        o.finish()?;
        Ok(body)
    }
}

/// A payment as requested, validated; its counterparty is sealed before anything is
/// written, and whether the connector serves the tenant is the route's to check.
pub(crate) struct PaymentRequest {
    pub account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub connector: Option<ConnectorName>,
    pub counterparty: Holder,
    pub reference: Option<String>,
}

impl TryFrom<PaymentBody> for PaymentRequest {
    type Error = DomainError;

    fn try_from(body: PaymentBody) -> Result<Self, DomainError> {
        let counterparty = Holder::try_from(body.counterparty)?;
        let reference = parse_reference(body.reference)?;
        let currency = Currency::parse(&body.currency)?;
        Ok(Self {
            amount: Amount::parse_positive(&body.amount, currency)?,
            account_id: account_id(&body.account_id)?,
            currency,
            connector: ConnectorName::parse(&body.connector),
            counterparty,
            reference,
        })
    }
}
