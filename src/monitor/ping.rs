//! Pings in the healthchecks.io style, the de facto protocol of dead-man's-switch services:
//! `GET URL/start` when a run starts, `GET URL` when it succeeds, `POST URL/fail` with a short
//! plain-text body (what failed, the exit code) when it fails — POST because that is how such
//! services take a body. A ping never fails or delays a run for long: it is sent before the
//! run's first step and after its last (never while anything is frozen), with a short timeout,
//! and an error is a warning.
//!
//! Plain HTTP/1.1 over a blocking socket, with rustls (already in the tree, for the SDK) for
//! `https://`: one request, no pool, no redirects.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a ping may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The longest body sent (services keep the first few kilobytes).
const MAX_BODY: usize = 2000;

/// Which ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `URL/start`.
    Start,
    /// `URL`.
    Success,
    /// `URL/fail`.
    Fail,
}

/// A URL split into what the request needs.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse(url: &str) -> Result<Url> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        bail!("ping_url {url:?} must start with http:// or https://");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h,
            p.parse::<u16>()
                .with_context(|| format!("ping_url {url:?}: bad port {p:?}"))?,
        ),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() || authority.contains('@') || path.contains(['?', '#', ' ']) {
        bail!("ping_url {url:?}: want scheme://host[:port]/path, without credentials, query or fragment");
    }
    Ok(Url {
        tls,
        host: host.trim_start_matches('[').trim_end_matches(']').into(),
        port,
        path: path.trim_end_matches('/').to_string(),
    })
}

/// Checks a `ping_url` as the configuration is read.
pub fn check_url(url: &str) -> Result<()> {
    parse(url).map(|_| ())
}

/// Sends one ping; an error is a warning, never the run's.
pub fn send(url: &str, kind: Kind, body: &str) {
    let started = Instant::now();
    match request(url, kind, body) {
        Ok(status) if (200..300).contains(&status) => {
            tracing::debug!("ping {kind:?}: {status} in {:?}", started.elapsed());
        }
        Ok(status) => tracing::warn!("ping {kind:?} to {url}: answered HTTP {status}"),
        Err(e) => tracing::warn!("ping {kind:?} to {url}: {e:#}"),
    }
}

/// The request of a ping: method, path and body.
fn what(base: &str, kind: Kind, body: &str) -> (&'static str, String, String) {
    let mut body = body.to_string();
    if body.len() > MAX_BODY {
        let mut cut = MAX_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    match kind {
        Kind::Start => ("GET", format!("{base}/start"), String::new()),
        Kind::Success => ("GET", base.to_string(), String::new()),
        Kind::Fail => ("POST", format!("{base}/fail"), body),
    }
}

fn request(url: &str, kind: Kind, body: &str) -> Result<u16> {
    let u = parse(url)?;
    let (method, path, body) = what(&u.path, kind, body);
    let path = if path.is_empty() { "/".into() } else { path };
    let addr = (u.host.as_str(), u.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", u.host))?
        .next()
        .with_context(|| format!("{} has no address", u.host))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).context("connecting")?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lightsnap/{}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        u.host,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let mut answer = Vec::new();
    if u.tls {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(u.host.clone())?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        stream.flush()?;
        read_head(&mut stream, &mut answer)?;
    } else {
        let mut stream = tcp;
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        read_head(&mut stream, &mut answer)?;
    }
    status_of(&answer)
}

/// Reads until the status line is in (the rest of the answer does not matter).
fn read_head(stream: &mut impl Read, answer: &mut Vec<u8>) -> Result<()> {
    let mut buf = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 8192 {
        let n = stream.read(&mut buf).context("reading the answer")?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

fn status_of(answer: &[u8]) -> Result<u16> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next().unwrap_or_default();
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_and_checked() {
        assert_eq!(
            parse("https://hc-ping.com/abc-123").unwrap(),
            Url {
                tls: true,
                host: "hc-ping.com".into(),
                port: 443,
                path: "/abc-123".into()
            }
        );
        let u = parse("http://127.0.0.1:8080/ping/x/").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 8080, "/ping/x"));
        for bad in [
            "ftp://x/y",
            "hc-ping.com/abc",
            "https:///x",
            "http://u:p@h/x",
            "http://h:99999/x",
            "http://h/x?y",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_kind_has_its_request() {
        assert_eq!(
            what("/p", Kind::Start, "x"),
            ("GET", "/p/start".into(), String::new())
        );
        assert_eq!(
            what("/p", Kind::Success, "x"),
            ("GET", "/p".into(), String::new())
        );
        assert_eq!(
            what("/p", Kind::Fail, "why"),
            ("POST", "/p/fail".into(), "why".into())
        );
        let long = "é".repeat(MAX_BODY);
        assert!(what("/p", Kind::Fail, &long).2.len() <= MAX_BODY);
    }

    #[test]
    fn the_status_is_read_from_the_first_line() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\nOK").unwrap(), 200);
        assert!(status_of(b"garbage").is_err());
    }
}
