//! Signature Version 4, checked the way the service checks it: the canonical request is
//! rebuilt from the headers the client says it signed, and the signature recomputed with the
//! secret of the access key named in the credential scope.
//!
//! The key derivation and HMAC come from `aws-sigv4` (the SDK's own signer); the canonical
//! request is built here because a verifier must canonicalise exactly the headers the client
//! listed, where the signer chooses its own.

use std::time::{Duration, SystemTime};

use hyper::HeaderMap;
use sha2::{Digest, Sha256};

use crate::api::ApiError;

/// The service name in the credential scope.
const SERVICE: &str = "lightsail";
/// How far the request time may be from the server's, as the service allows.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// A parsed `Authorization` header.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let auth = Authorization {
        access_key: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(auth)
}

/// `20261125T075423Z` → the time it names.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    if text.len() != 16 || !text.ends_with('Z') || text.as_bytes()[8] != b'T' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// A header value as canonicalised: trimmed, inner runs of spaces made one.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks the request's signature against `credentials` (access key, secret). Returns the
/// region the request was signed for.
pub(crate) fn verify(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    credentials: &[(String, String)],
    now: SystemTime,
) -> Result<String, ApiError> {
    let header = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    let Some(value) = header("authorization").first().copied() else {
        return Err(ApiError::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let auth = parse_authorization(value).ok_or_else(|| {
        ApiError::new(
            "IncompleteSignatureException",
            format!("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters in the AWS4-HMAC-SHA256 form: {value}"),
        )
    })?;
    let Some(secret) = credentials
        .iter()
        .find(|(key, _)| key == auth.access_key)
        .map(|(_, secret)| secret)
    else {
        return Err(ApiError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    if auth.service != SERVICE {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: '{SERVICE}', not '{}'.",
                auth.service
            ),
        ));
    }
    let amz_date = header("x-amz-date").first().copied().unwrap_or_default();
    let Some(when) = parse_amz_date(amz_date) else {
        return Err(ApiError::new(
            "IncompleteSignatureException",
            "Authorization header requires existence of a valid X-Amz-Date header",
        ));
    };
    if !amz_date.starts_with(auth.date) {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
                auth.date,
                &amz_date[..8.min(amz_date.len())]
            ),
        ));
    }
    let skew = now.duration_since(when).unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is not within 15 minutes of the server's time."),
        ));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(ApiError::new(
            "InvalidSignatureException",
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }

    let mut canonical = format!("{method}\n{path}\n{query}\n");
    for name in &auth.signed_headers {
        let values: Vec<String> = header(name).into_iter().map(canonical_value).collect();
        canonical.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = header("x-amz-content-sha256")
        .first()
        .map(|h| h.to_string())
        .unwrap_or_else(|| sha256_hex(body));
    canonical.push_str(&format!(
        "\n{}\n{payload_hash}",
        auth.signed_headers.join(";")
    ));
    let scope = format!("{}/{}/{SERVICE}/aws4_request", auth.date, auth.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = aws_sigv4::sign::v4::generate_signing_key(secret, when, auth.region, SERVICE);
    let expected = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
    if expected != auth.signature {
        return Err(ApiError::new(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(auth.region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_authorization_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/lightsail/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=abcd",
        )
        .unwrap();
        assert_eq!(a.access_key, "AKID");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert_eq!(a.signature, "abcd");
        assert!(parse_authorization("Basic dXNlcjpwdw==").is_none());
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/2026/x").is_none());
    }

    #[test]
    fn parses_amz_dates() {
        let t = parse_amz_date("20261125T075423Z").unwrap();
        assert_eq!(
            humantime::format_rfc3339(t).to_string(),
            "2026-11-25T07:54:23Z"
        );
        assert!(parse_amz_date("2026-11-25").is_none());
    }

    /// The example from the SigV4 documentation ("GET https://iam.amazonaws.com/?Action=
    /// ListUsers&Version=2010-05-08"), whose signature is published.
    #[test]
    fn verifies_the_documented_example() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                .parse()
                .unwrap(),
        );
        let creds = vec![(
            "AKIDEXAMPLE".to_string(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        )];
        let when = parse_amz_date("20150830T123600Z").unwrap();
        // The example is for IAM: checked with the service name swapped in.
        let err = verify(
            "GET",
            "/",
            "Action=ListUsers&Version=2010-05-08",
            &headers,
            b"",
            &creds,
            when,
        )
        .unwrap_err();
        assert!(err.message.contains("scoped to correct service"), "{err:?}");
        let canonical = "GET\n/\nAction=ListUsers&Version=2010-05-08\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let key = aws_sigv4::sign::v4::generate_signing_key(&creds[0].1, when, "us-east-1", "iam");
        assert_eq!(
            aws_sigv4::sign::v4::calculate_signature(key, sts.as_bytes()),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn refuses_missing_unknown_and_stale_credentials() {
        let headers = HeaderMap::new();
        let creds = vec![("AKID".to_string(), "secret".to_string())];
        let now = SystemTime::now();
        let err = verify("POST", "/", "", &headers, b"{}", &creds, now).unwrap_err();
        assert_eq!(err.code, "MissingAuthenticationTokenException");

        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=NOPE/20261125/us-east-1/lightsail/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
                .parse()
                .unwrap(),
        );
        let err = verify("POST", "/", "", &headers, b"{}", &creds, now).unwrap_err();
        assert_eq!(err.code, "UnrecognizedClientException");

        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/lightsail/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20261125T075423Z".parse().unwrap());
        let later = parse_amz_date("20261125T085423Z").unwrap();
        let err = verify("POST", "/", "", &headers, b"{}", &creds, later).unwrap_err();
        assert!(err.message.contains("Signature expired"), "{err:?}");
        let on_time = parse_amz_date("20261125T075500Z").unwrap();
        let err = verify("POST", "/", "", &headers, b"{}", &creds, on_time).unwrap_err();
        assert!(err.message.contains("does not match"), "{err:?}");
    }
}
