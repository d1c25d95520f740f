//! Cold start of the `bank-webhooks` function.

use bank_webhooks::{handle, App};
use fintx_adapters::settings::Settings;
use lambda_http::{run, service_fn, Error, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    if settings.dev_auth_headers {
        tracing::warn!("FINTX_DEV_AUTH=headers: claims are read from x-fintx-* headers; local development only");
    }
    let app = App {
        dev_auth_headers: settings.dev_auth_headers,
    };
    let app = &app;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handle(app, request).await)
    }))
    .await
}
