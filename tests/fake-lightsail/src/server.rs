//! The HTTP side: one listener serving the Lightsail JSON protocol (`POST /` with
//! `X-Amz-Target`), the instance metadata service (`/latest/...`) and the admin endpoint
//! (`/__admin/...`), with SigV4 checked and faults applied before an operation runs.
//!
//! In TLS mode the one port speaks both: a connection whose first byte opens a TLS handshake
//! is served over TLS (the API and the admin endpoint), any other in plain HTTP (the metadata
//! service, which is plain HTTP on a real instance, and the admin endpoint). The API refuses
//! plain HTTP then, so a client cannot pass a TLS test without TLS.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::api::{epoch, ApiError, Outcome, Worlds};
use crate::fault::{Fault, FaultKind, Faults};
use crate::{conn, sigv4, Call, ImdsMode};

/// The target prefix of every Lightsail operation.
const TARGET_PREFIX: &str = "Lightsail_20161128.";

/// Everything the handlers share.
pub(crate) struct Shared {
    /// Every region's state; dereferences to the home region's.
    pub world: Mutex<Worlds>,
    pub faults: Mutex<Faults>,
    /// Calls with their sequence numbers, by which an answer finds its call.
    pub calls: Mutex<Vec<(u64, Call)>>,
    pub next_call: AtomicU64,
    pub tokens: Mutex<HashSet<String>>,
    pub credentials: Vec<(String, String)>,
    pub imds: ImdsMode,
    pub conns: conn::Registry,
    /// TLS mode: the server configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a connection may sit idle between requests before the fake closes it.
    pub idle_timeout: Option<Duration>,
    /// Name lookups, when watched.
    pub lookups: Option<crate::lookups::Watch>,
    /// Snapshots `(region, name)` whose bytes are being copied, and the signal that one
    /// copy is over: a retry of a create call that finds its name taken waits for the first
    /// attempt's copy before it answers.
    pub copying: Mutex<HashSet<(String, String)>>,
    pub copied: tokio::sync::Notify,
    /// The identity policy calls are checked against, if any.
    pub policy: Mutex<Option<crate::policy::Policy>>,
    /// Where every API call is recorded for the suite-wide check, if anywhere.
    pub call_log: Option<crate::call_log::CallLog>,
}

impl Shared {
    /// Records a call on arrival: its sequence number.
    fn record(
        &self,
        operation: String,
        body: Value,
        received: SystemTime,
        connection: Option<conn::RequestConnection>,
    ) -> u64 {
        let seq = self.next_call.fetch_add(1, Ordering::Relaxed);
        let call = Call {
            operation,
            body,
            received_at_ms: epoch(received) * 1000.0,
            received_mono_us: self.conns.mono_us(),
            connection,
            status: None,
            error: None,
            region: None,
        };
        self.calls.lock().unwrap().push((seq, call));
        seq
    }

    /// Notes the region a recorded call was signed for, once its signature checked out.
    fn signed_for(&self, seq: u64, region: &str) {
        let mut calls = self.calls.lock().unwrap();
        if let Some((_, call)) = calls.iter_mut().find(|(s, _)| *s == seq) {
            call.region = Some(region.to_string());
        }
    }

    /// Notes how a recorded call was answered.
    fn answered(&self, seq: u64, response: &Response<Full<Bytes>>) {
        let mut calls = self.calls.lock().unwrap();
        if let Some((_, call)) = calls.iter_mut().find(|(s, _)| *s == seq) {
            call.status = Some(response.status().as_u16());
            call.error = response
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }
}

/// Closing the connection without an answer (the `Reset` fault).
#[derive(Debug)]
pub(crate) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by fault injection")
    }
}

impl std::error::Error for Reset {}

type Answer = Result<Response<Full<Bytes>>, Reset>;

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("a valid response")
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn api_json(body: &Value) -> Response<Full<Bytes>> {
    let mut r = respond(200, "application/x-amz-json-1.1", body.to_string());
    r.headers_mut()
        .insert("x-amzn-requestid", request_id().parse().unwrap());
    r
}

fn api_error(err: &ApiError) -> Response<Full<Bytes>> {
    let mut r = respond(
        err.status,
        "application/x-amz-json-1.1",
        err.body().to_string(),
    );
    let headers = r.headers_mut();
    headers.insert("x-amzn-errortype", err.code.parse().unwrap());
    headers.insert("x-amzn-requestid", request_id().parse().unwrap());
    r
}

/// Serves one request that came on connection `conn`.
pub(crate) async fn handle(shared: Arc<Shared>, conn: u64, req: Request<Incoming>) -> Answer {
    let connection = shared.conns.request(conn);
    let tls = connection.as_ref().is_some_and(|c| c.tls);
    let path = req.uri().path().to_string();
    if path.starts_with("/latest/") {
        let answer = imds(&shared, &req, &path, connection);
        return Ok(answer);
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Reset),
    };
    if let Some(admin) = path.strip_prefix("/__admin/") {
        return Ok(admin_request(&shared, parts.method.as_str(), admin, &body));
    }
    // A dead-man's-switch service (healthchecks.io style): every request under /ping/ is
    // recorded as the call `PING <method> <path>[?query]`, its body as `{"body": text}`, and
    // answered 200.
    if path.starts_with("/ping/") {
        let with_query = parts
            .uri
            .path_and_query()
            .map_or(path.as_str(), |p| p.as_str());
        let seq = shared.record(
            format!("PING {} {with_query}", parts.method),
            json!({ "body": String::from_utf8_lossy(&body) }),
            SystemTime::now(),
            connection,
        );
        let response = respond(200, "text/plain", "OK");
        shared.answered(seq, &response);
        return Ok(response);
    }
    let received = SystemTime::now();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let operation = target
        .strip_prefix(TARGET_PREFIX)
        .unwrap_or_default()
        .to_string();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let seq = shared.record(
        if operation.is_empty() {
            target.clone()
        } else {
            operation.clone()
        },
        parsed.clone().unwrap_or(Value::Null),
        received,
        connection,
    );
    let answer = if shared.tls.is_some() && !tls {
        Ok(respond(
            400,
            "text/plain",
            "this fake serves the Lightsail API over https only (TLS mode)\n",
        ))
    } else {
        api(
            &shared, seq, &parts, &body, received, &target, &operation, parsed,
        )
        .await
    };
    if let Ok(response) = &answer {
        shared.answered(seq, response);
    }
    answer
}

#[allow(clippy::too_many_arguments)]
async fn api(
    shared: &Arc<Shared>,
    seq: u64,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    received: SystemTime,
    target: &str,
    operation: &str,
    parsed: Option<Value>,
) -> Answer {
    let operation = operation.to_string();
    let signed_for = match sigv4::verify(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &parts.headers,
        body,
        &shared.credentials,
        received,
    ) {
        Ok(region) => region,
        Err(e) => return Ok(api_error(&e)),
    };
    // A real endpoint is one region's and refuses a signature scoped to another. The fake
    // serves the seed's regions on one endpoint, each from its own state, chosen by the
    // signature's scope; a region it does not serve is refused as the service refuses it.
    let served = shared.world.lock().unwrap().served();
    if !served.contains(&signed_for) {
        return Ok(api_error(&ApiError::new(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region, not '{signed_for}'. This endpoint serves '{}'.",
                served.join("', '")
            ),
        )));
    }
    shared.signed_for(seq, &signed_for);
    let region = signed_for;
    if parts.method != hyper::Method::POST || parts.uri.path() != "/" || operation.is_empty() {
        return Ok(api_error(&ApiError::new(
            "UnknownOperationException",
            format!(
                "expected POST / with X-Amz-Target: {TARGET_PREFIX}<Operation>, got {} {} with target {target:?}",
                parts.method,
                parts.uri.path()
            ),
        )));
    }
    let Some(body) = parsed else {
        return Ok(api_error(&ApiError::new(
            "SerializationException",
            "the request body is not valid JSON",
        )));
    };

    let access_key = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::call_log::access_key)
        .unwrap_or_default();
    // lightsnap's SDK client names itself in the user agent (`app/lightsnap`).
    let by_lightsnap = ["x-amz-user-agent", "user-agent"].iter().any(|h| {
        parts
            .headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ua| ua.split(' ').any(|w| w == "app/lightsnap"))
    });
    let caller = crate::call_log::Client {
        access_key,
        lightsnap: by_lightsnap,
    };
    if let Some(refused) = refused(shared, &region, &operation, &body, &caller) {
        return Ok(api_error(&refused));
    }

    let fault = shared.faults.lock().unwrap().take(&operation);
    let mut latency = None;
    let mut fail_snapshot = false;
    let mut corrupt_disk = false;
    match fault {
        None => {}
        Some(FaultKind::Hang) => std::future::pending::<()>().await,
        Some(FaultKind::Reset) => return Err(Reset),
        Some(FaultKind::Status500) => {
            return Ok(respond(500, "text/plain", "Internal Server Error"));
        }
        Some(FaultKind::Throttle) => {
            return Ok(api_error(&ApiError::new(
                "ThrottlingException",
                "Rate exceeded",
            )))
        }
        Some(FaultKind::Error {
            code,
            message,
            status,
        }) => {
            let mut err = ApiError::new(
                code.clone(),
                message.unwrap_or_else(|| format!("injected {code}")),
            );
            if let Some(s) = status {
                err.status = s;
            }
            return Ok(api_error(&err));
        }
        Some(FaultKind::FailedOperation { code, details }) => {
            let mut worlds = shared.world.lock().unwrap();
            let world = worlds.region_mut(&region).expect("a served region");
            let out = world.failed_operation(&operation, &body, &code, &details, received);
            return Ok(api_json(&out));
        }
        Some(FaultKind::Latency { ms }) => latency = Some(Duration::from_millis(ms)),
        Some(FaultKind::SnapshotError) => fail_snapshot = true,
        Some(FaultKind::CorruptDisk) => corrupt_disk = true,
    }

    let outcome = {
        let mut worlds = shared.world.lock().unwrap();
        worlds
            .region_mut(&region)
            .expect("a served region")
            .corrupt_next = corrupt_disk;
        let outcome = worlds.call(&region, &operation, &body, received);
        worlds
            .region_mut(&region)
            .expect("a served region")
            .corrupt_next = false;
        // Marked while the world is still locked, so a retry cannot see the name taken
        // before it is marked.
        if let Ok(Outcome {
            created: Some((_, name)),
            copies,
            ..
        }) = &outcome
        {
            if !copies.is_empty() {
                let mark = (region.clone(), name.clone());
                shared.copying.lock().unwrap().insert(mark);
            }
        }
        outcome
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            // Lightsail's point in time is the call, the fake's is its copy: a retry answered
            // "already exists" while the first attempt's copy is still running would let the
            // client thaw before the bytes are taken. Wait for that copy first.
            let name = ["diskSnapshotName", "instanceSnapshotName"]
                .iter()
                .find_map(|k| body.get(*k).and_then(Value::as_str));
            if let Some(name) = name {
                let mark = (region.clone(), name.to_string());
                loop {
                    let copied = shared.copied.notified();
                    if !shared.copying.lock().unwrap().contains(&mark) {
                        break;
                    }
                    copied.await;
                }
            }
            if let Some(delay) = latency {
                tokio::time::sleep(delay).await;
            }
            return Ok(api_error(&e));
        }
    };
    // The point in time of a snapshot is the call: copy before answering.
    if !outcome.copies.is_empty() {
        let copies = outcome.copies.clone();
        let mark = outcome
            .created
            .as_ref()
            .map(|(_, n)| (region.clone(), n.clone()));
        let waiters = Arc::clone(shared);
        let copied = tokio::task::spawn_blocking(move || {
            let copied = copies.iter().try_for_each(|job| {
                crate::copy::copy_image(&job.from, &job.to)
                    .map(drop)
                    .map_err(|e| {
                        format!(
                            "copying {} to {}: {e}",
                            job.from.display(),
                            job.to.display()
                        )
                    })
            });
            // Here, not after the await: a client that gave up drops this request's future,
            // and a retry waiting for the copy must still hear of its end.
            if let Some(mark) = mark {
                waiters.copying.lock().unwrap().remove(&mark);
                waiters.copied.notify_waiters();
            }
            copied
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(why) = copied {
            if let Some((instance, name)) = &outcome.created {
                let mut worlds = shared.world.lock().unwrap();
                if let Some(w) = worlds.region_mut(&region) {
                    w.forget_snapshot(*instance, name);
                }
            }
            return Ok(api_error(&ApiError::new(
                "ServiceException",
                format!("the fake could not take the snapshot: {why}"),
            )));
        }
    }
    if fail_snapshot {
        if let Some((instance, name)) = &outcome.created {
            let mut worlds = shared.world.lock().unwrap();
            if let Some(w) = worlds.region_mut(&region) {
                w.fail_snapshot(*instance, name);
            }
        }
    }
    if let Some(delay) = latency {
        tokio::time::sleep(delay).await;
    }
    Ok(api_json(&outcome.body))
}

/// The AccessDeniedException of a call the policy in force refuses, as IAM words it. The call
/// is recorded in the call log first, if there is one.
fn refused(
    shared: &Shared,
    region: &str,
    operation: &str,
    body: &Value,
    client: &crate::call_log::Client,
) -> Option<ApiError> {
    use crate::policy::Decision;
    let policy = shared.policy.lock().unwrap();
    if policy.is_none() && shared.call_log.is_none() {
        return None;
    }
    let (request, account, missing, caller, home) = {
        let worlds = shared.world.lock().unwrap();
        let world = worlds.region(region)?;
        let request = world.access_request(region, operation, body);
        let missing = world.names_missing_resource(operation, &request);
        let caller = if shared.imds == ImdsMode::Off {
            None
        } else {
            worlds.caller()
        };
        (
            request,
            world.account().to_string(),
            missing,
            caller,
            worlds.home_region().to_string(),
        )
    };
    let decision = policy.as_ref().map(|p| p.evaluate(&request));
    if let Some(log) = &shared.call_log {
        log.append(&crate::call_log::Record {
            operation: operation.to_string(),
            region: region.to_string(),
            home_region: home,
            access_key: client.access_key.clone(),
            lightsnap: client.lightsnap,
            caller,
            request: request.clone(),
            resource_missing: missing,
            enforced: decision.map(|d| format!("{d:?}")),
        });
    }
    let why = match decision? {
        Decision::Allow => return None,
        Decision::ExplicitDeny => "with an explicit deny in an identity-based policy",
        Decision::ImplicitDeny => "because no identity-based policy allows the action",
    };
    Some(ApiError::new(
        "AccessDeniedException",
        format!(
            "User: arn:aws:iam::{account}:user/lightsnap is not authorized to perform: {} on resource: {} {why}",
            request.action, request.resource
        ),
    ))
}

/// The instance metadata service: IMDSv2 tokens, and the few paths lightsnap reads.
fn imds(
    shared: &Shared,
    req: &Request<Incoming>,
    path: &str,
    connection: Option<conn::RequestConnection>,
) -> Response<Full<Bytes>> {
    let tls = connection.as_ref().is_some_and(|c| c.tls);
    let token = req
        .headers()
        .get("x-aws-ec2-metadata-token")
        .map(|_| true)
        .unwrap_or(false);
    let seq = shared.record(
        format!("IMDS {} {path}", req.method()),
        json!({ "token": token }),
        SystemTime::now(),
        connection,
    );
    let response = if tls {
        respond(
            400,
            "text/plain",
            "the metadata service is plain http, as on an instance\n",
        )
    } else {
        imds_answer(shared, req, path)
    };
    shared.answered(seq, &response);
    response
}

fn imds_answer(shared: &Shared, req: &Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let token = header("x-aws-ec2-metadata-token");
    let text = |status: u16, body: String| respond(status, "text/plain", body);
    if shared.imds == ImdsMode::Off {
        return text(404, "Not Found".into());
    }
    if path == "/latest/api/token" {
        if req.method() != hyper::Method::PUT {
            return text(405, "Method Not Allowed".into());
        }
        if shared.imds == ImdsMode::V1Only {
            return text(403, "Forbidden".into());
        }
        let Some(ttl) = header("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| (1..=21600).contains(t))
        else {
            return text(400, "Bad Request".into());
        };
        let mut tokens = shared.tokens.lock().unwrap();
        let t = format!("fake-imds-token-{}-{}", tokens.len(), request_id());
        tokens.insert(t.clone());
        // The real service says how long the token lives; the SDK's IMDS client requires it.
        let mut r = text(200, t);
        r.headers_mut()
            .insert("x-aws-ec2-metadata-token-ttl-seconds", ttl.into());
        return r;
    }
    if req.method() != hyper::Method::GET {
        return text(405, "Method Not Allowed".into());
    }
    let authorised = match &token {
        Some(t) if shared.imds != ImdsMode::V1Only => shared.tokens.lock().unwrap().contains(t),
        None => shared.imds != ImdsMode::Required,
        Some(_) => true,
    };
    if !authorised {
        return text(401, "Unauthorized".into());
    }
    let world = shared.world.lock().unwrap();
    let Some((id, region, zone)) = world.identity() else {
        return text(404, "Not Found".into());
    };
    let body = match path {
        "/latest/meta-data/instance-id" => id,
        "/latest/meta-data/placement/region" => region,
        "/latest/meta-data/placement/availability-zone" => zone,
        "/latest/meta-data/" => "instance-id\nplacement/\n".into(),
        "/latest/dynamic/instance-identity/document" => {
            return respond(
                200,
                "application/json",
                serde_json::to_string_pretty(&json!({
                    "accountId": world.account(),
                    "architecture": "x86_64",
                    "availabilityZone": zone,
                    "imageId": "ami-0123456789abcdef0",
                    "instanceId": id,
                    "instanceType": "t3.micro",
                    "pendingTime": "2026-01-01T00:00:00Z",
                    "privateIp": "172.26.0.10",
                    "region": region,
                    "version": "2017-09-30",
                }))
                .unwrap(),
            )
        }
        _ => return text(404, "Not Found".into()),
    };
    text(200, body)
}

/// The admin endpoint: calls received, faults in force, snapshots.
fn admin_request(shared: &Shared, method: &str, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let json_ok = |v: Value| respond(200, "application/json", v.to_string());
    match (method, path) {
        ("GET", "calls") => json_ok(json!(shared.calls())),
        ("DELETE", "calls") => {
            shared.calls.lock().unwrap().clear();
            json_ok(json!({}))
        }
        ("GET", "faults") => json_ok(json!(shared.faults.lock().unwrap().list())),
        ("POST", "faults") => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => {
                shared.faults.lock().unwrap().add(f);
                json_ok(json!({}))
            }
            Err(e) => respond(400, "text/plain", format!("not a fault: {e}\n")),
        },
        ("DELETE", "faults") => {
            shared.faults.lock().unwrap().clear();
            json_ok(json!({}))
        }
        ("GET", "snapshots") => json_ok(shared.world.lock().unwrap().snapshots()),
        ("GET", "disks") => json_ok(shared.world.lock().unwrap().all_disks()),
        ("GET", p) if p.starts_with("snapshots/") => {
            let region = &p["snapshots/".len()..];
            match shared.world.lock().unwrap().region(region) {
                Some(w) => json_ok(w.snapshots()),
                None => respond(404, "text/plain", format!("region {region} is not served\n")),
            }
        }
        ("GET", "connections") => {
            let stats = shared.conns.stats();
            json_ok(json!({
                "connections": stats.connections,
                "tls_handshakes": stats.tls_handshakes,
                "failed_handshakes": stats.failed_handshakes,
                "list": shared.conns.list(),
            }))
        }
        ("GET", "lookups") => match &shared.lookups {
            Some(w) => json_ok(json!(w.seen())),
            None => respond(
                404,
                "text/plain",
                "not watching lookups (--watch-lookups)\n",
            ),
        },
        ("GET", "auto-snapshots") => json_ok(
            shared
                .world
                .lock()
                .unwrap()
                .auto_snapshots(SystemTime::now()),
        ),
        ("POST", "auto-snapshots") => match auto_snapshot_request(shared, body) {
            Ok(()) => json_ok(json!({})),
            Err(e) => respond(400, "text/plain", format!("{e}\n")),
        },
        _ => respond(
            404,
            "text/plain",
            "admin endpoints: GET|DELETE calls, GET|POST|DELETE faults, GET snapshots[/REGION], GET disks, \
             GET connections, GET lookups, GET|POST auto-snapshots\n",
        ),
    }
}

/// `POST /__admin/auto-snapshots`: `{"resource": R, "action": "start", "seconds": N}` (no
/// `seconds`: until ended) or `{"resource": R, "action": "end", "status": "Success"}`.
fn auto_snapshot_request(shared: &Shared, body: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        resource: String,
        action: String,
        seconds: Option<f64>,
        status: Option<String>,
    }
    let r: Req = serde_json::from_slice(body).map_err(|e| format!("not a request: {e}"))?;
    let now = SystemTime::now();
    let mut world = shared.world.lock().unwrap();
    match r.action.as_str() {
        "start" => {
            let duration = match r.seconds {
                None => None,
                Some(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
                Some(s) => return Err(format!("seconds {s}: a number, 0 or more")),
            };
            world.start_auto_snapshot(&r.resource, now, duration)
        }
        "end" => {
            world.end_auto_snapshot(&r.resource, now, r.status.as_deref().unwrap_or("Success"))
        }
        other => Err(format!("action {other:?}: start or end")),
    }
}

/// Serves HTTP/1.1 on one connection (plain or TLS).
async fn serve_http<I>(io: I, shared: Arc<Shared>, id: u64)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let idle = shared.idle_timeout;
    let service = hyper::service::service_fn(move |req| handle(shared.clone(), id, req));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper times the wait for a request's head, which on a kept-alive connection starts
    // when the previous answer is out: an idle timeout, as a real endpoint has one.
    if let Some(t) = idle {
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(t);
    }
    let _ = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

/// Serves one accepted connection: records it, and in TLS mode makes the handshake when
/// the client opens with one.
async fn connection(stream: tokio::net::TcpStream, client_port: u16, shared: Arc<Shared>) {
    let id = shared.conns.accepted(client_port);
    let _ = stream.set_nodelay(true);
    let Some(config) = shared.tls.clone() else {
        serve_http(stream, shared.clone(), id).await;
        return shared.conns.closed(id);
    };
    // A TLS record starts with content type 22 (handshake); an HTTP request with a method.
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == 0x16 => {
            match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                Ok(tls) => {
                    shared.conns.handshake(id);
                    serve_http(tls, shared.clone(), id).await;
                }
                Err(_) => shared.conns.handshake_failed(),
            }
        }
        Ok(1) => serve_http(stream, shared.clone(), id).await,
        _ => {}
    }
    shared.conns.closed(id);
}

/// Accepts connections until `stop` fires.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        tokio::spawn(connection(stream, peer.port(), shared.clone()));
    }
}
