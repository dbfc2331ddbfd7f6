//! Who am I: the instance id, region and zone from the instance metadata service.
//!
//! IMDSv2 first (a session token from `PUT /latest/api/token`), falling back to IMDSv1 where
//! the token call is refused or gets no answer (old blueprints, or a hop limit of 1 behind a
//! container). A small client of its own because the SDK's IMDS client has no v1 fallback. The
//! endpoint is the standard `AWS_EC2_METADATA_SERVICE_ENDPOINT`, and
//! `AWS_EC2_METADATA_DISABLED=true` turns it off, as for every AWS tool. Never used for
//! credentials: Lightsail instances have no instance role.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

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
    #[error("the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED); name the disk with --disk-name")]
    Disabled,
    /// No answer at all: not on Lightsail/EC2, or blocked.
    #[error("no answer from the instance metadata service at {endpoint}: {why}; is this a Lightsail instance? Otherwise name the disk with --disk-name")]
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
}

/// The metadata endpoint in force.
pub fn endpoint() -> String {
    std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Asks the metadata service for the instance identity, each request bounded by `timeout`.
pub async fn identity(timeout: Duration) -> Result<Identity, ImdsError> {
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(ImdsError::Disabled);
    }
    let endpoint = endpoint();
    let client = Client { endpoint, timeout };
    let token = client.token().await;
    let get = |path: &'static str| client.get(path, token.as_deref());
    Ok(Identity {
        instance_id: get("/latest/meta-data/instance-id").await?,
        region: get("/latest/meta-data/placement/region").await?,
        availability_zone: get("/latest/meta-data/placement/availability-zone").await?,
    })
}

struct Client {
    endpoint: String,
    timeout: Duration,
}

impl Client {
    /// An IMDSv2 token, or `None` to go on with IMDSv1.
    async fn token(&self) -> Option<String> {
        let (status, body) = self
            .request(
                "PUT",
                "/latest/api/token",
                &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
            )
            .await
            .ok()?;
        (status == 200).then(|| body.trim().to_string())
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<String, ImdsError> {
        let headers: Vec<(&str, &str)> = token
            .map(|t| vec![("X-aws-ec2-metadata-token", t)])
            .unwrap_or_default();
        let (status, body) = self.request("GET", path, &headers).await?;
        if status != 200 {
            return Err(ImdsError::Status {
                endpoint: self.endpoint.clone(),
                path: path.to_string(),
                status,
            });
        }
        Ok(body.trim().to_string())
    }

    /// One HTTP/1.0 request (no chunking, connection closed after): all IMDS needs.
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, String), ImdsError> {
        let unreachable = |why: String| ImdsError::Unreachable {
            endpoint: self.endpoint.clone(),
            why,
        };
        let authority = self
            .endpoint
            .strip_prefix("http://")
            .ok_or_else(|| unreachable("only http:// endpoints are supported".into()))?;
        let authority = authority.split('/').next().unwrap_or(authority);
        let addr = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let exchange = async {
            let mut stream = TcpStream::connect(&addr).await?;
            let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\n");
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("Content-Length: 0\r\n\r\n");
            stream.write_all(req.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("timed out after {:?}", self.timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        parse_response(&raw).ok_or_else(|| unreachable("malformed HTTP response".into()))
    }
}

fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\ni-0123456789abcdef0";
        assert_eq!(
            parse_response(raw),
            Some((200, "i-0123456789abcdef0".to_string()))
        );
        assert_eq!(parse_response(b"garbage"), None);
    }
}
