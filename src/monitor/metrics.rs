//! The Prometheus textfile metrics (`metrics_file`, for node_exporter's textfile collector):
//! the state of every target, in the text exposition format, rewritten whole and atomically
//! after every run. Labels: `target` (the path, or `instance`), `disk` (the Lightsail disk or
//! instance name, once known) and `kind` (`disk`, `system-volume`, `instance`).

use std::fmt::Write;

use super::state::TargetState;

/// The metrics, each with its help and type, and how a target's state gives its value
/// (`None`: no sample for that target).
type Metric = (&'static str, &'static str, fn(&TargetState) -> Option<f64>);

const METRICS: [Metric; 7] = [
    (
        "lightsnap_last_success_timestamp_seconds",
        "When the last successful snapshot run of the target started (seconds since the epoch).",
        |s| s.last_success.as_ref().map(|x| x.time),
    ),
    (
        "lightsnap_last_attempt_timestamp_seconds",
        "When the last snapshot run of the target started (seconds since the epoch).",
        |s| s.last_attempt.as_ref().map(|x| x.time),
    ),
    (
        "lightsnap_last_run_success",
        "Whether the last snapshot run of the target succeeded (1) or failed (0).",
        |s| {
            s.last_attempt
                .as_ref()
                .map(|x| if x.result == "success" { 1.0 } else { 0.0 })
        },
    ),
    (
        "lightsnap_frozen_window_seconds",
        "How long writes were paused in the last successful snapshot run of the target.",
        |s| s.last_success.as_ref().map(|x| x.window_ms / 1000.0),
    ),
    (
        "lightsnap_consecutive_failures",
        "How many snapshot runs of the target in a row have failed.",
        |s| Some(f64::from(s.consecutive_failures)),
    ),
    (
        "lightsnap_last_verification_timestamp_seconds",
        "When the last restore rehearsal (lightsnap verify) of a snapshot of the target ended (seconds since the epoch).",
        |s| s.last_verification.as_ref().map(|v| v.time),
    ),
    (
        "lightsnap_last_verification_clean",
        "Whether the last restore rehearsal of a snapshot of the target found it clean (1), or failed or could not finish (0).",
        |s| {
            s.last_verification
                .as_ref()
                .map(|v| if v.result == "clean" { 1.0 } else { 0.0 })
        },
    ),
];

/// A label value, escaped as the exposition format wants (`\\`, `\"`, `\n`).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics file's text for `states`.
pub fn render(states: &[TargetState]) -> String {
    let mut out = String::new();
    for (name, help, value) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in states {
            if let Some(v) = value(s) {
                let _ = writeln!(
                    out,
                    "{name}{{target=\"{}\",disk=\"{}\",kind=\"{}\"}} {v}",
                    escape(&s.target),
                    escape(s.disk.as_deref().unwrap_or_default()),
                    escape(&s.kind)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
    }

    #[test]
    fn a_target_without_a_success_has_no_success_samples() {
        let s = TargetState {
            target: "/data".into(),
            consecutive_failures: 2,
            ..TargetState::default()
        };
        let text = render(&[s]);
        assert!(
            text.contains(
                "lightsnap_consecutive_failures{target=\"/data\",disk=\"\",kind=\"\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("lightsnap_last_success_timestamp_seconds{"),
            "{text}"
        );
    }
}
