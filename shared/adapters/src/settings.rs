//! Typed settings, read once at cold start from the environment that template.yaml sets.

use std::fmt;

use fintx_domain::payment::ConnectorGrant;

/// The names of the four tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    pub ledger: String,
    pub idempotency: String,
    pub webhook_events: String,
    pub analytics: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub tables: Tables,
    /// The symmetric KMS key of envelope encryption.
    pub kms_key_id: String,
    /// The KMS HMAC key the cursor signing key is derived from.
    pub cursor_key_id: String,
    /// Bank connectors payments may be sent through, with the tenants each serves
    /// (`FINTX_CONNECTORS=name=tenant|tenant,...`; their secrets are the webhook
    /// function's).
    pub connectors: Vec<ConnectorGrant>,
    /// Local development only: accept claims from `x-fintx-*` headers when the request
    /// carries no verified JWT claims. Never set by template.yaml.
    pub dev_auth_headers: bool,
    /// How many balance items a movement through a spread account picks from
    /// (`FINTX_BALANCE_SLOTS`, 1 to 16, default 16; SPEC §10). Reads sum all 16, so it can
    /// change at any time without losing money.
    pub balance_slots: u16,
}

/// The default number of balance slots a spread account's movements use.
pub const BALANCE_SLOTS_DEFAULT: u16 = fintx_domain::transfer::BALANCE_SLOTS_MAX;

#[derive(Debug, PartialEq, Eq)]
pub struct SettingsError {
    pub variable: &'static str,
    pub problem: &'static str,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment variable {} {}", self.variable, self.problem)
    }
}

impl std::error::Error for SettingsError {}

pub const DEV_AUTH_VARIABLE: &str = "FINTX_DEV_AUTH";

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let required = |variable: &'static str| -> Result<String, SettingsError> {
            match lookup(variable) {
                Some(value) if !value.trim().is_empty() => Ok(value),
                _ => Err(SettingsError {
                    variable,
                    problem: "is not set",
                }),
            }
        };
        let dev_auth_headers = match lookup(DEV_AUTH_VARIABLE).as_deref() {
            None | Some("") => false,
            Some("headers") => true,
            Some(_) => {
                return Err(SettingsError {
                    variable: DEV_AUTH_VARIABLE,
                    problem: "may only be \"headers\" (local development) or unset",
                })
            }
        };
        let balance_slots = match lookup("FINTX_BALANCE_SLOTS").as_deref().map(str::trim) {
            None | Some("") => BALANCE_SLOTS_DEFAULT,
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=fintx_domain::transfer::BALANCE_SLOTS_MAX).contains(n))
                .ok_or(SettingsError {
                    variable: "FINTX_BALANCE_SLOTS",
                    problem: "must be a whole number from 1 to 16",
                })?,
        };
        Ok(Self {
            balance_slots,
            tables: Tables {
                ledger: required("FINTX_LEDGER_TABLE")?,
                idempotency: required("FINTX_IDEMPOTENCY_TABLE")?,
                webhook_events: required("FINTX_WEBHOOK_EVENTS_TABLE")?,
                analytics: required("FINTX_ANALYTICS_TABLE")?,
            },
            kms_key_id: required("FINTX_KMS_KEY_ID")?,
            cursor_key_id: required("FINTX_CURSOR_KEY_ID")?,
            connectors: ConnectorGrant::parse_list(&lookup("FINTX_CONNECTORS").unwrap_or_default()).map_err(
                |problem| SettingsError {
                    variable: "FINTX_CONNECTORS",
                    problem,
                },
            )?,
            dev_auth_headers,
        })
    }
}

/// The common start of every function: JSON logging as Lambda configures it, settings
/// validated from the environment, and a warning when the local dev-auth switch is on.
pub fn cold_start() -> Result<Settings, SettingsError> {
    init_logging(|name| std::env::var(name).ok());
    let settings = Settings::from_env()?;
    if settings.dev_auth_headers {
        tracing::warn!("FINTX_DEV_AUTH=headers: claims are read from x-fintx-* headers; local development only");
    }
    Ok(settings)
}

/// Logs to stdout at the level Lambda's logging controls set (`AWS_LAMBDA_LOG_LEVEL`,
/// else `RUST_LOG` as a bare level, else INFO), as JSON when `AWS_LAMBDA_LOG_FORMAT` is
/// JSON. A level, not a filter expression: no regex engine is linked for logging.
fn init_logging(env: impl Fn(&str) -> Option<String>) {
    let level = log_level(&env);
    let json = env("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    // A subscriber already installed (a test harness) keeps its place.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn log_level(env: &impl Fn(&str) -> Option<String>) -> tracing::Level {
    env("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| env("RUST_LOG"))
        .and_then(|level| match level.trim().to_ascii_uppercase().as_str() {
            "TRACE" => Some(tracing::Level::TRACE),
            "DEBUG" => Some(tracing::Level::DEBUG),
            "INFO" => Some(tracing::Level::INFO),
            "WARN" => Some(tracing::Level::WARN),
            "ERROR" | "FATAL" => Some(tracing::Level::ERROR),
            _ => None,
        })
        .unwrap_or(tracing::Level::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const FULL: [(&str, &str); 6] = [
        ("FINTX_LEDGER_TABLE", "l"),
        ("FINTX_IDEMPOTENCY_TABLE", "i"),
        ("FINTX_WEBHOOK_EVENTS_TABLE", "w"),
        ("FINTX_ANALYTICS_TABLE", "a"),
        ("FINTX_KMS_KEY_ID", "k"),
        ("FINTX_CURSOR_KEY_ID", "c"),
    ];

    #[test]
    fn the_log_level_follows_lambda_logging_controls() {
        assert_eq!(log_level(&env(&[])), tracing::Level::INFO);
        assert_eq!(log_level(&env(&[("RUST_LOG", "debug")])), tracing::Level::DEBUG);
        assert_eq!(
            log_level(&env(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "trace")])),
            tracing::Level::WARN
        );
        assert_eq!(
            log_level(&env(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")])),
            tracing::Level::ERROR
        );
        assert_eq!(log_level(&env(&[("RUST_LOG", "fintx=debug")])), tracing::Level::INFO);
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = Settings::from_lookup(env(&FULL[1..])).unwrap_err();
        assert_eq!(err.variable, "FINTX_LEDGER_TABLE");
        assert!(err.to_string().contains("FINTX_LEDGER_TABLE"));
    }

    #[test]
    fn balance_slots_default_to_sixteen_and_stay_within_range() {
        assert_eq!(Settings::from_lookup(env(&FULL)).unwrap().balance_slots, 16);
        for (text, slots) in [
            ("1", Some(1)),
            ("8", Some(8)),
            ("16", Some(16)),
            ("0", None),
            ("17", None),
            ("x", None),
        ] {
            let mut with = FULL.to_vec();
            with.push(("FINTX_BALANCE_SLOTS", text));
            assert_eq!(
                Settings::from_lookup(env(&with)).ok().map(|s| s.balance_slots),
                slots,
                "{text}"
            );
        }
    }

    #[test]
    fn dev_auth_is_off_unless_explicitly_headers() {
        assert!(!Settings::from_lookup(env(&FULL)).unwrap().dev_auth_headers);
        let mut on = FULL.to_vec();
        on.push(("FINTX_DEV_AUTH", "headers"));
        assert!(Settings::from_lookup(env(&on)).unwrap().dev_auth_headers);
        let mut odd = FULL.to_vec();
        odd.push(("FINTX_DEV_AUTH", "yes"));
        assert!(Settings::from_lookup(env(&odd)).is_err());
    }
}
