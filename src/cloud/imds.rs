//! Who am I: the instance id, region and zone from the instance metadata service.
//!
//! Through the SDK's own IMDS client (`aws_config::imds::Client`): IMDSv2 session tokens,
//! retries of what is worth retrying, and the standard settings every AWS tool reads —
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`, `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` (`IPv6`:
//! `http://[fd00:ec2::254]`) and their profile keys `ec2_metadata_service_endpoint(_mode)`.
//! `AWS_EC2_METADATA_DISABLED=true` turns it off. IMDSv1 alone is not spoken: Lightsail
//! instances serve IMDSv2. Never used for credentials: Lightsail instances have no instance
//! role. Its errors are lightsnap's own sentences ([`ImdsError`]), saying what to do.

use std::time::Duration;

use aws_config::imds::client::error::ImdsError as SdkImdsError;

/// The IPv4 endpoint, the default.
const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// The IPv6 endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
const IPV6_ENDPOINT: &str = "http://[fd00:ec2::254]";

/// What the metadata service says about this instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// EC2 instance id (`i-0123...`); a Lightsail instance's `supportCode` ends in it.
    pub instance_id: String,
    /// Region (`us-east-1`).
    pub region: String,
    /// Availability zone (`us-east-1a`).
    pub availability_zone: String,
}

/// Why the metadata service could not say who we are.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// Turned off by `AWS_EC2_METADATA_DISABLED`.
    #[error("the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED); name the disk with --disk")]
    Disabled,
    /// No answer at all: not on Lightsail/EC2, or blocked.
    #[error("no answer from the instance metadata service at {endpoint}: {why}; is this a Lightsail instance? Otherwise name the disk with --disk")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What went wrong.
        why: String,
    },
    /// An answer, but not a useful one.
    #[error("the instance metadata service at {endpoint} answered {status} for {path}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The path asked for.
        path: String,
        /// HTTP status.
        status: u16,
    },
    /// The settings name an endpoint (or endpoint mode) that cannot be used.
    #[error("the instance metadata service endpoint is not valid ({why}): check AWS_EC2_METADATA_SERVICE_ENDPOINT and AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")]
    BadEndpoint {
        /// What the SDK said.
        why: String,
    },
}

/// The metadata endpoint in force, as far as the environment says (for messages; the
/// profile's `ec2_metadata_service_endpoint` is read by the SDK too).
pub fn endpoint() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|e| !e.is_empty());
    if let Some(e) = var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        return e.trim_end_matches('/').to_string();
    }
    match var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
        Some(m) if m.eq_ignore_ascii_case("ipv6") => IPV6_ENDPOINT.into(),
        _ => DEFAULT_ENDPOINT.into(),
    }
}

/// Asks the metadata service for the instance identity; each attempt bounded by `timeout`,
/// the whole of one answer (retries included) by three times it. The connect and read
/// timeouts stay the SDK's (1 s), unlike the Lightsail client's (2 s connect): seen in the
/// tests, where the fake serves the API and the metadata on one port, a metadata client with
/// the Lightsail client's connect timeout made a frozen window's CreateDiskSnapshot stall 5 s
/// and be retried (the SDK keys its connection pools by connector settings).
pub async fn identity(timeout: Duration) -> Result<Identity, ImdsError> {
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(ImdsError::Disabled);
    }
    let client = aws_config::imds::Client::builder()
        .max_attempts(3)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout * 3)
        // Lightsnap asks three questions in a second: a short-lived token is enough.
        .token_ttl(Duration::from_secs(60))
        .build();
    let get = async |path: &'static str| -> Result<String, ImdsError> {
        client
            .get(path)
            .await
            .map(|s| s.as_ref().trim().to_string())
            .map_err(|e| plain(path, e))
    };
    Ok(Identity {
        instance_id: get("/latest/meta-data/instance-id").await?,
        region: get("/latest/meta-data/placement/region").await?,
        availability_zone: get("/latest/meta-data/placement/availability-zone").await?,
    })
}

/// The SDK's error as lightsnap's sentence.
fn plain(path: &str, e: SdkImdsError) -> ImdsError {
    let endpoint = endpoint();
    // The innermost cause says it best ("Connection refused", "timed out").
    let root = {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    };
    match &e {
        SdkImdsError::ErrorResponse(r) => ImdsError::Status {
            endpoint,
            path: path.to_string(),
            status: r.response().status().as_u16(),
        },
        SdkImdsError::FailedToLoadToken(t) if !t.is_dispatch_failure() => ImdsError::Unreachable {
            endpoint,
            why: format!("no IMDSv2 session token ({root})"),
        },
        _ if root.contains("invalid endpoint") || root.contains("endpoint mode") => {
            ImdsError::BadEndpoint { why: root }
        }
        _ => ImdsError::Unreachable {
            endpoint,
            why: root,
        },
    }
}
