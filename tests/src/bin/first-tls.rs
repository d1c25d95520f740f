//! What the first TLS-using SDK call of a cold process costs on the client side, measured
//! in a release build of the functions' own HTTPS client (`fintx_adapters::aws`).
//!
//! 1. The first and second random draws of the TLS crypto provider (ring, which asks the
//!    kernel). A jitter-entropy source would make the first draw cost tens of
//!    milliseconds; this shows it does not.
//! 2. Two DynamoDB calls through `sdk_config()` against a loopback listener that takes
//!    the ClientHello and hangs up. The time from the call to the ClientHello's arrival is
//!    the client's whole TLS set-up: trust store, rustls configuration, the handshake's
//!    random values and key share, the TCP connect. The first call pays the one-time
//!    parts; the second shows the steady state.
//!
//! Usage: `first-tls` (prints one JSON object).

use std::time::{Duration, Instant};

use ring::rand::SecureRandom;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let random = ring::rand::SystemRandom::new();
    let mut bytes = [0u8; 32];
    let started = Instant::now();
    random.fill(&mut bytes).expect("first random draw");
    let first_draw = started.elapsed();
    let started = Instant::now();
    random.fill(&mut bytes).expect("second random draw");
    let second_draw = started.elapsed();

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (hello_tx, mut hello_rx) = mpsc::unbounded_channel::<(Instant, u8)>();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut first = [0u8; 1];
            if socket.read_exact(&mut first).await.is_ok() {
                let _ = hello_tx.send((Instant::now(), first[0]));
            }
        }
    });

    // The SDK configuration reads these; the endpoint is the listener above.
    std::env::set_var("AWS_ENDPOINT_URL", format!("https://127.0.0.1:{port}"));
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", "first-tls"),
        ("AWS_SECRET_ACCESS_KEY", "first-tls"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var(name).is_err() {
            std::env::set_var(name, value);
        }
    }
    let started = Instant::now();
    let config = fintx_adapters::aws::sdk_config().expect("sdk config");
    let config_built = started.elapsed();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .build(),
    );

    let mut hellos = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let outcome = client.describe_limits().send().await;
        assert!(outcome.is_err(), "the listener never completes a handshake");
        let (arrived, record_type) = hello_rx.recv().await.expect("a ClientHello");
        // 0x16: a TLS handshake record, i.e. the client really spoke TLS.
        assert_eq!(record_type, 0x16, "not a TLS handshake record");
        hellos.push(millis(arrived.duration_since(started)));
    }
    println!(
        "{}",
        serde_json::json!({
            "first_random_draw_ms": millis(first_draw),
            "second_random_draw_ms": millis(second_draw),
            "sdk_config_ms": millis(config_built),
            "first_call_to_client_hello_ms": hellos[0],
            "second_call_to_client_hello_ms": hellos[1],
        })
    );
}
