//! The snapshot name template: `{disk}` and `{utc:FORMAT}`, where FORMAT may use `%Y %m %d
//! %H %M %S` and nothing else, so that every name it makes is one Lightsail accepts.

use anyhow::{Context, Result};

use crate::cloud::validate;

/// Checks a name template renders to a valid name for a typical disk.
pub(super) fn check(template: &str) -> Result<()> {
    let sample = render_name(template, "data-1", std::time::UNIX_EPOCH)?;
    validate::name("name_template result", &sample)?;
    Ok(())
}

/// The conversions a `{utc:FORMAT}` may use: each writes digits only, so a name stays one
/// Lightsail accepts. Checked here rather than left to jiff, which would also take `%a`, `%Z`
/// and others (letters, signs and spaces a name may not have).
const CONVERSIONS: [char; 6] = ['Y', 'm', 'd', 'H', 'M', 'S'];

/// Renders a name template: `{disk}` and `{utc:FORMAT}` with `%Y %m %d %H %M %S`.
pub fn render_name(template: &str, disk: &str, now: std::time::SystemTime) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .with_context(|| format!("name_template {template:?}: unclosed '{{'"))?;
        let key = &rest[start + 1..end];
        if key == "disk" {
            out.push_str(disk);
        } else if let Some(format) = key.strip_prefix("utc:") {
            let mut chars = format.chars();
            while let Some(c) = chars.next() {
                if c == '%' {
                    let spec = chars.next().unwrap_or('%');
                    anyhow::ensure!(
                        CONVERSIONS.contains(&spec),
                        "name_template {template:?}: %{spec} is not one of %Y %m %d %H %M %S"
                    );
                }
            }
            let at = jiff::Timestamp::try_from(now)
                .with_context(|| format!("name_template {template:?}: {now:?} is out of range"))?;
            let utc = jiff::fmt::strtime::format(format, at)
                .with_context(|| format!("name_template {template:?}: formatting {{{key}}}"))?;
            out.push_str(&utc);
        } else {
            anyhow::bail!("name_template {template:?}: unknown field {{{key}}}: use {{disk}} or {{utc:FORMAT}}");
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
