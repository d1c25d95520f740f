//! One `SdkConfig` per cold start, with explicit retry and timeout options. Pointing
//! `AWS_ENDPOINT_URL` at the emulator is the only difference between local and AWS.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

pub async fn sdk_config() -> SdkConfig {
    // Lambda hands a function its region and temporary credentials in the environment;
    // naming those sources skips the default chain's profile files and metadata
    // providers, which only lengthen the cold start.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new());
    if let Ok(region) = std::env::var("AWS_REGION") {
        loader = loader.region(aws_config::Region::new(region));
    }
    loader
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(1_000))
                .operation_attempt_timeout(Duration::from_millis(2_000))
                .operation_timeout(Duration::from_millis(5_000))
                .build(),
        )
        .load()
        .await
}
