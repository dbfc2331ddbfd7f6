//! Every SDK error sorted into an [`ApiErrorKind`] and said as one plain sentence with what
//! to do, from the SDK's typed errors (the dispatch failure's connector error kind, the
//! credentials error in its source chain, the I/O error under it). The SDK's own rendering,
//! with its debug structures, goes to the log (`-v`) and never into the message.

use std::error::Error;
use std::io::ErrorKind as IoKind;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_lightsail::config::http::HttpResponse;
use aws_sdk_lightsail::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::cloud::lightsail::{ApiError, ApiErrorKind};

/// What to do when no credentials were found: Lightsail has no instance role, so the usual
/// EC2 habit of relying on one does not apply.
const NO_CREDENTIALS: &str = "no AWS credentials found (tried AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, then the profile in root's ~/.aws/credentials and ~/.aws/config; Lightsail instances have no instance role): run `aws configure` as root, set them in the environment, or name a profile with `profile` in /etc/lightsnap/config.toml";

/// What to do when the service refused the credentials it was given.
const REFUSED_CREDENTIALS: &str = "check the access key (AWS_PROFILE, AWS_ACCESS_KEY_ID, or `profile` in the configuration), that it is active, and that its policy allows Lightsail";

/// The [`ApiError`] of a failed call of `operation` to the Lightsail endpoint `endpoint`.
pub(super) fn classify<E>(
    operation: &'static str,
    endpoint: &str,
    err: SdkError<E, HttpResponse>,
) -> ApiError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    // The SDK's whole story, for -v: a service error's code and message are in the message
    // already (and a name-free check's NotFound is routine), so those only at -vv.
    if matches!(err, SdkError::ServiceError(_)) {
        tracing::debug!(
            "Lightsail {operation} at {endpoint} failed: {}",
            DisplayErrorContext(&err)
        );
    } else {
        tracing::info!(
            "Lightsail {operation} at {endpoint} failed: {}",
            DisplayErrorContext(&err)
        );
    }
    let (kind, code, message) = match &err {
        SdkError::ServiceError(s) => {
            let code = s.err().code().map(str::to_string);
            let kind = service_kind(code.as_deref(), s.raw().status().is_client_error());
            let said = s.err().message().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "Lightsail answered HTTP {} without a message",
                    s.raw().status().as_u16()
                )
            });
            let message = match kind {
                ApiErrorKind::Auth => {
                    format!("{said} (the credentials were refused: {REFUSED_CREDENTIALS})")
                }
                ApiErrorKind::AccessDenied => denied(operation, &said),
                _ => said,
            };
            (kind, code, message)
        }
        SdkError::TimeoutError(_) => (ApiErrorKind::Timeout, None, no_answer(endpoint)),
        SdkError::DispatchFailure(d) => {
            let (kind, message) = if let Some(c) = find::<CredentialsError>(&err) {
                (ApiErrorKind::Auth, credentials(c))
            } else if d.is_timeout() {
                (ApiErrorKind::Timeout, no_answer(endpoint))
            } else if d.is_io() {
                not_reached(endpoint, &err)
            } else {
                (
                    ApiErrorKind::Network,
                    format!(
                        "Lightsail at {endpoint} could not be called{}: check the endpoint and the AWS configuration",
                        because(&err)
                    ),
                )
            };
            (kind, None, message)
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status();
            let kind = if status.is_server_error() {
                ApiErrorKind::Unavailable
            } else {
                ApiErrorKind::Network
            };
            let message = format!(
                "the answer from {endpoint} (HTTP {}) is not one Lightsail gives: check that the endpoint is Lightsail's, or try again",
                status.as_u16()
            );
            (kind, None, message)
        }
        // A request that could not even be built; credentials errors may surface here too.
        _ => match find::<CredentialsError>(&err) {
            Some(c) => (ApiErrorKind::Auth, None, credentials(c)),
            None => (
                ApiErrorKind::Network,
                None,
                format!(
                    "the request to Lightsail could not be built{}: check the region and the AWS configuration",
                    because(&err)
                ),
            ),
        },
    };
    ApiError {
        operation,
        kind,
        code,
        message,
    }
}

/// The class of a service error code.
fn service_kind(code: Option<&str>, client_error: bool) -> ApiErrorKind {
    match code {
        Some("InvalidInputException" | "OperationFailureException") => ApiErrorKind::Rejected,
        Some("NotFoundException") => ApiErrorKind::NotFound,
        Some("AccessDeniedException") => ApiErrorKind::AccessDenied,
        Some(
            "UnauthenticatedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "MissingAuthenticationTokenException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch",
        ) => ApiErrorKind::Auth,
        Some("ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded") => {
            ApiErrorKind::Throttled
        }
        // Documented as 400s, but they mean "not ready yet": try again later.
        Some("AccountSetupInProgressException" | "RegionSetupInProgressException") => {
            ApiErrorKind::Unavailable
        }
        Some(_) if client_error => ApiErrorKind::Rejected,
        _ => ApiErrorKind::Unavailable,
    }
}

/// The sentence for a call the key's IAM policy refused: which action, and what to do.
fn denied(operation: &str, said: &str) -> String {
    format!(
        "the AWS credentials are not allowed lightsail:{operation} on this resource ({said}); `lightsnap iam-policy` prints the IAM policy lightsnap needs"
    )
}

fn no_answer(endpoint: &str) -> String {
    format!(
        "Lightsail at {endpoint} did not answer in time: check the network (and any proxy or firewall on the way) and the endpoint"
    )
}

/// The sentence for credentials that could not be had.
fn credentials(e: &CredentialsError) -> String {
    match e {
        CredentialsError::CredentialsNotLoaded(_) => NO_CREDENTIALS.to_string(),
        CredentialsError::ProviderTimedOut(_) => {
            "loading the AWS credentials timed out: check the profile in root's ~/.aws/config (a credential_process or SSO that hangs)".to_string()
        }
        _ => format!(
            "the AWS credentials could not be loaded{}: check the profile in root's ~/.aws/credentials and ~/.aws/config, or the AWS_* environment",
            because(e)
        ),
    }
}

/// The sentence (and class) for a connection that could not be made or broke: DNS,
/// refused, TLS, reset, or something else of the network.
fn not_reached(endpoint: &str, err: &(dyn Error + 'static)) -> (ApiErrorKind, String) {
    let io = find::<std::io::Error>(err).map(std::io::Error::kind);
    let said = chain(err).to_lowercase();
    let why = because(err);
    let message = match io {
        Some(IoKind::ConnectionRefused) => format!(
            "Lightsail at {endpoint} refused the connection: check the endpoint (AWS_ENDPOINT_URL_LIGHTSAIL, or the region) and that it is up"
        ),
        Some(IoKind::TimedOut) => return (ApiErrorKind::Timeout, no_answer(endpoint)),
        _ if said.contains("dns error") || said.contains("lookup address") => format!(
            "the host name of the Lightsail endpoint {endpoint} does not resolve in DNS{why}: check the instance's DNS resolver, and the region or AWS_ENDPOINT_URL_LIGHTSAIL"
        ),
        _ if said.contains("tls") || said.contains("certificate") => format!(
            "the TLS handshake with Lightsail at {endpoint} failed{why}: check that the endpoint speaks https, the system clock, and the CA certificates"
        ),
        Some(IoKind::ConnectionReset | IoKind::ConnectionAborted | IoKind::BrokenPipe | IoKind::UnexpectedEof) => format!(
            "the connection to Lightsail at {endpoint} broke{why}: check the network, then try again"
        ),
        _ => format!(
            "Lightsail at {endpoint} could not be reached{why}: check the network and the endpoint"
        ),
    };
    (ApiErrorKind::Network, message)
}

/// The first error of type `T` in `err`'s source chain, `err` included.
fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cause = e.source();
    }
    None
}

/// Every cause's own text, for recognising what the SDK does not type (DNS, TLS).
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut all = Vec::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        all.push(e.to_string());
        cause = e.source();
    }
    all.join(": ")
}

/// ` (ROOT CAUSE)` when the innermost cause says something plain, else nothing: some of the
/// SDK's causes render as debug structures, which belong in the log, not the message.
fn because(err: &(dyn Error + 'static)) -> String {
    let mut root = err;
    while let Some(next) = root.source() {
        root = next;
    }
    let text = root.to_string();
    let plain = !text.is_empty()
        && !text.contains(['{', '}'])
        && !text.contains("Some(")
        && !text.contains("::")
        && text.lines().count() == 1;
    if plain {
        format!(" ({text})")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_sdk_lightsail::error::ConnectorError;
    use aws_sdk_lightsail::operation::get_disk::GetDiskError;

    fn dispatch(c: ConnectorError) -> SdkError<GetDiskError, HttpResponse> {
        SdkError::dispatch_failure(c)
    }

    fn plain(e: &ApiError) {
        let text = e.to_string();
        for bad in [
            "{ ",
            "Some(",
            "ConnectorError",
            "DispatchFailure",
            "Credentials",
        ] {
            assert!(!text.contains(bad), "{bad:?} in {text}");
        }
    }

    #[test]
    fn missing_credentials_are_auth_and_say_what_to_do() {
        let e = classify(
            "GetDisk",
            "https://x",
            dispatch(ConnectorError::other(
                CredentialsError::not_loaded("no providers in chain").into(),
                None,
            )),
        );
        assert_eq!(e.kind, ApiErrorKind::Auth);
        assert!(e.message.contains("aws configure"), "{e}");
        assert!(e.message.contains("no instance role"), "{e}");
        plain(&e);
    }

    #[test]
    fn network_failures_name_the_endpoint_and_the_cause() {
        let refused = std::io::Error::new(IoKind::ConnectionRefused, "Connection refused");
        let e = classify(
            "GetDisk",
            "http://127.0.0.1:9",
            dispatch(ConnectorError::io(refused.into())),
        );
        assert_eq!(e.kind, ApiErrorKind::Network);
        assert!(e.message.contains("refused the connection"), "{e}");
        assert!(e.message.contains("http://127.0.0.1:9"), "{e}");
        plain(&e);

        let dns = std::io::Error::other("dns error: failed to lookup address information");
        let e = classify(
            "GetDisk",
            "https://lightsail.nowhere",
            dispatch(ConnectorError::io(dns.into())),
        );
        assert!(e.message.contains("does not resolve"), "{e}");
        plain(&e);

        let timeout = std::io::Error::new(IoKind::TimedOut, "deadline");
        let e = classify(
            "GetDisk",
            "https://x",
            dispatch(ConnectorError::timeout(timeout.into())),
        );
        assert_eq!(e.kind, ApiErrorKind::Timeout);
        plain(&e);
    }

    /// A refusal by the key's policy is its own class, and names the action and the command
    /// that prints the policy.
    #[test]
    fn access_denied_names_the_action_and_the_policy_command() {
        use aws_sdk_lightsail::error::ErrorMetadata;
        use aws_sdk_lightsail::operation::delete_disk_snapshot::DeleteDiskSnapshotError;
        let meta = ErrorMetadata::builder()
            .code("AccessDeniedException")
            .message("User: arn:aws:iam::1:user/x is not authorized to perform: lightsail:DeleteDiskSnapshot")
            .build();
        let raw = HttpResponse::new(400.try_into().unwrap(), "".into());
        let err = SdkError::service_error(DeleteDiskSnapshotError::generic(meta), raw);
        let e = classify("DeleteDiskSnapshot", "https://x", err);
        assert_eq!(e.kind, ApiErrorKind::AccessDenied);
        assert!(e.message.contains("lightsail:DeleteDiskSnapshot"), "{e}");
        assert!(e.message.contains("lightsnap iam-policy"), "{e}");
        assert_eq!(
            crate::exit_code::ExitCode::of_api(&e),
            crate::exit_code::ExitCode::AccessDenied
        );
    }

    #[test]
    fn debug_looking_causes_stay_out_of_the_message() {
        #[derive(Debug)]
        struct Noisy;
        impl std::fmt::Display for Noisy {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Inner { kind: Other(None) }")
            }
        }
        impl Error for Noisy {}
        let e = classify(
            "GetDisk",
            "https://x",
            dispatch(ConnectorError::other(Box::new(Noisy), None)),
        );
        assert_eq!(e.kind, ApiErrorKind::Network);
        plain(&e);
    }
}
