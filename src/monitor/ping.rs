//! Pings in the healthchecks.io style, the de facto protocol of dead-man's-switch services:
//! `GET URL/start` when a run starts, `GET URL` when it succeeds, `POST URL/fail` with a short
//! plain-text body (what failed, the exit code) when it fails — POST because that is how such
//! services take a body. A URL's query string is kept after the suffix
//! (`https://hc-ping.com/UUID/start?rid=…`, Uptime Kuma's `…/push/TOKEN?status=up`). A ping
//! never fails or delays a run for long: it is sent before the run's first step and after its
//! last (never while anything is frozen), within one time limit for the whole of it (name
//! lookup, connection, TLS, answer), and an error is a warning. A stop request (SIGINT,
//! SIGTERM, SIGHUP) ends a ping at once: before the run it ends the process (nothing is
//! frozen yet), after it the ping is given up and the run's outcome stands.
//!
//! HTTP through `ureq` (every address a name resolves to is tried; `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured), over rustls with the aws-lc-rs
//! provider the SDK already brings and the system's CA roots. A ping URL is a secret (whoever
//! has it can report for us): it is logged as its scheme and host only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ureq::http::Uri;

use crate::exit_code::ExitCode;
use crate::signals::{Signals, Stop};

/// How long a ping may take, name lookup and connection included.
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

fn parse(url: &str) -> Result<Uri> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!(
            "ping_url {}: must start with http:// or https://",
            redacted(url)
        );
    }
    let uri: Uri = url
        .parse()
        .with_context(|| format!("ping_url {}: not a URL", redacted(url)))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => bail!(
            "ping_url {}: must start with http:// or https://",
            redacted(url)
        ),
    }
    let Some(authority) = uri.authority() else {
        bail!("ping_url {}: no host", redacted(url));
    };
    // `http` leaves out a port that is not a u16 rather than refusing it.
    let port_text = authority
        .as_str()
        .rsplit_once(']')
        .map_or(authority.as_str(), |x| x.1);
    let bad_port = port_text
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_err());
    if authority.host().is_empty()
        || bad_port
        || authority.as_str().contains('@')
        || url.contains(['#', ' '])
    {
        bail!(
            "ping_url {}: want scheme://host[:port]/path[?query], without credentials or fragment",
            redacted(url)
        );
    }
    Ok(uri)
}

/// A URL as it may be logged: its scheme and host, nothing that could be its secret (the
/// path, the query, credentials).
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    format!("{scheme}://{host}")
}

/// Checks a `ping_url` as the configuration is read.
pub fn check_url(url: &str) -> Result<()> {
    parse(url).map(|_| ())
}

/// The URL of a ping of `kind`: the suffix added to the path, the query kept after it.
fn url_of(base: &Uri, kind: Kind) -> String {
    let suffix = match kind {
        Kind::Start => "/start",
        Kind::Success => "",
        Kind::Fail => "/fail",
    };
    let path = base.path().trim_end_matches('/');
    let query = base.query().map(|q| format!("?{q}")).unwrap_or_default();
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    let path = if path.is_empty() && suffix.is_empty() {
        "/"
    } else {
        path
    };
    format!("{scheme}://{authority}{path}{suffix}{query}")
}

/// The body of a fail ping, cut to [`MAX_BODY`] bytes on a character boundary.
fn body_of(body: &str) -> &str {
    let mut cut = body.len().min(MAX_BODY);
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    &body[..cut]
}

/// How a ping ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Sent (or failed: a warning was logged).
    Done,
    /// Given up for a stop request, which calls for this exit code.
    Stopped(ExitCode),
}

/// Sends one ping; an error is a warning, never the run's. A stop request ends it at once.
/// Called outside any async runtime (before the run's, or after it is gone). The start ping
/// leaves the stop signals as they are (their default action ends the process: nothing is
/// frozen yet, and a handler installed here would swallow a stop request made before the
/// run listens for them); the last ping listens for them itself, the run's handlers being
/// installed for good by then.
pub fn send(url: &str, kind: Kind, body: &str) -> Sent {
    let started = Instant::now();
    let shown = redacted(url);
    let outcome = match crate::runtime() {
        Ok(rt) => rt.block_on(async {
            if kind == Kind::Start {
                return Ok(request_in_thread(url, kind, body).await);
            }
            match Signals::install() {
                Ok(mut signals) => send_or_stop(url, kind, body, &mut signals).await,
                Err(_) => Ok(request_in_thread(url, kind, body).await),
            }
        }),
        Err(e) => Ok(Err(anyhow::Error::from(e))),
    };
    match outcome {
        Ok(Ok(status)) if (200..300).contains(&status) => {
            tracing::debug!("ping {kind:?}: {status} in {:?}", started.elapsed());
            Sent::Done
        }
        Ok(Ok(status)) => {
            tracing::warn!("ping {kind:?} to {shown}: answered HTTP {status}");
            Sent::Done
        }
        Ok(Err(e)) => {
            tracing::warn!("ping {kind:?} to {shown}: {e:#}");
            Sent::Done
        }
        Err(code) => {
            tracing::warn!("ping {kind:?} to {shown}: given up, stop requested");
            Sent::Stopped(code)
        }
    }
}

/// The ping, unless a stop request comes first (`Err` with its exit code).
async fn send_or_stop<S: Stop>(
    url: &str,
    kind: Kind,
    body: &str,
    stop: &mut S,
) -> std::result::Result<Result<u16>, ExitCode> {
    tokio::select! {
        answer = request_in_thread(url, kind, body) => Ok(answer),
        code = stop.recv() => Err(code),
    }
}

/// The request on a thread of its own, given up after [`TIMEOUT`] whatever the thread is
/// doing (a name lookup the resolver cannot interrupt included): the thread is left to end
/// by itself.
async fn request_in_thread(url: &str, kind: Kind, body: &str) -> Result<u16> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (url, body) = (url.to_string(), body.to_string());
    std::thread::Builder::new()
        .name("ping".into())
        .spawn(move || {
            let _ = tx.send(request(&url, kind, &body));
        })
        .context("starting the ping's thread")?;
    match tokio::time::timeout(TIMEOUT, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => bail!("the ping's thread ended without an answer"),
        Err(_) => bail!("no answer within {TIMEOUT:?}"),
    }
}

/// The HTTP agent of the pings: one time limit for everything, no redirects followed (a
/// service that moved says so with its 3xx, logged), any status read as an answer.
fn agent() -> Result<ureq::Agent> {
    let mut roots = Vec::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        roots.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
    }
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .build();
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(ureq::Proxy::try_from_env())
        .user_agent(concat!("lightsnap/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .new_agent())
}

fn request(url: &str, kind: Kind, body: &str) -> Result<u16> {
    let target = url_of(&parse(url)?, kind);
    let agent = agent()?;
    let answer = match kind {
        Kind::Start | Kind::Success => agent.get(&target).call(),
        Kind::Fail => agent
            .post(&target)
            .content_type("text/plain; charset=utf-8")
            .send(body_of(body)),
    };
    // ureq's errors may quote the URL: say what failed without it.
    let answer = answer.map_err(|e| anyhow::anyhow!("{}", scrub(&e.to_string(), url)))?;
    Ok(answer.status().as_u16())
}

/// `text` with every occurrence of `url` (and of what follows its host) replaced by its
/// redacted form.
fn scrub(text: &str, url: &str) -> String {
    let shown = redacted(url);
    let mut out = text.to_string();
    for kind in [Kind::Start, Kind::Success, Kind::Fail] {
        if let Ok(u) = parse(url) {
            out = out.replace(&url_of(&u, kind), &shown);
        }
    }
    let after_host = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find(['/', '?']).map(|i| &rest[i..]))
        .filter(|p| p.len() > 1);
    if let Some(p) = after_host {
        out = out.replace(p, "/…");
    }
    out.replace(url, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for good in [
            "https://hc-ping.com/abc-123",
            "http://127.0.0.1:8080/ping/x/",
            "https://hc-ping.com/abc?rid=1&create=1",
            "https://kuma.example/api/push/TOKEN?status=up&msg=OK",
            "http://[::1]:8080/p",
        ] {
            check_url(good).unwrap_or_else(|e| panic!("{good}: {e:#}"));
        }
        for bad in [
            "ftp://x/y",
            "hc-ping.com/abc",
            "https:///x",
            "http://u:p@h/x",
            "http://h:99999/x",
            "http://h/x#frag",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_kind_has_its_url_and_the_query_stays_last() {
        let u = parse("https://hc-ping.com/uuid?rid=7").unwrap();
        assert_eq!(
            url_of(&u, Kind::Start),
            "https://hc-ping.com/uuid/start?rid=7"
        );
        assert_eq!(url_of(&u, Kind::Success), "https://hc-ping.com/uuid?rid=7");
        assert_eq!(
            url_of(&u, Kind::Fail),
            "https://hc-ping.com/uuid/fail?rid=7"
        );
        let plain = parse("http://127.0.0.1:8080/ping/x/").unwrap();
        assert_eq!(
            url_of(&plain, Kind::Success),
            "http://127.0.0.1:8080/ping/x"
        );
        let root = parse("http://h").unwrap();
        assert_eq!(url_of(&root, Kind::Success), "http://h/");
        assert_eq!(url_of(&root, Kind::Start), "http://h/start");
    }

    #[test]
    fn a_fail_body_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_BODY);
        let cut = body_of(&long);
        assert!(cut.len() <= MAX_BODY && cut.len() > MAX_BODY - 2);
        assert_eq!(body_of("why"), "why");
    }

    /// The secret part of a URL (its path and query) never shows.
    #[test]
    fn urls_are_shown_as_scheme_and_host() {
        assert_eq!(
            redacted("https://hc-ping.com/secret-uuid?rid=1"),
            "https://hc-ping.com"
        );
        assert_eq!(redacted("http://127.0.0.1:8080/p/s"), "http://127.0.0.1");
        assert_eq!(redacted("http://u:pw@h:1/x"), "http://h");
        assert_eq!(redacted("http://[::1]:8080/s"), "http://[::1]");
        let e = check_url("https://hc-ping.com/secret#f").unwrap_err();
        assert!(!format!("{e:#}").contains("secret"), "{e:#}");
        let s = scrub(
            "http://h/secret/fail?x=1: connection refused",
            "http://h/secret?x=1",
        );
        assert!(!s.contains("secret"), "{s}");
    }

    /// A stop request during a ping that hangs ends it at once.
    #[tokio::test]
    async fn a_stop_request_ends_a_ping() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ping/hang", listener.local_addr().unwrap());
        struct StopNow;
        impl Stop for StopNow {
            async fn recv(&mut self) -> ExitCode {
                ExitCode::Terminated
            }
        }
        let started = Instant::now();
        let r = send_or_stop(&url, Kind::Success, "", &mut StopNow).await;
        assert_eq!(r.unwrap_err(), ExitCode::Terminated);
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        drop(listener);
    }

    /// A server that takes the connection and never answers: the ping gives up after
    /// [`TIMEOUT`], not later.
    #[tokio::test]
    async fn a_silent_server_is_given_up_within_the_limit() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ping/silent", listener.local_addr().unwrap());
        let started = Instant::now();
        let r = request_in_thread(&url, Kind::Success, "").await;
        assert!(r.is_err(), "{r:?}");
        assert!(
            started.elapsed() < TIMEOUT + Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(listener);
    }
}
