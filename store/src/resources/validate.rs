//! Validation helpers: errors that name the field and the value.

use std::net::IpAddr;

use super::kinds::Kind;
use super::{DocumentError, Metadata};
use crate::selector::Selector;

/// An invalid value: field path (relative), value and rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Field path, e.g. `blockSize` or `ingress[0].source.ports[1]`.
    pub field: String,
    /// The offending value, as written.
    pub value: String,
    /// The rule it breaks.
    pub why: String,
    /// Other invalid fields of the same document, reported with it.
    pub also: Vec<Invalid>,
}

impl Invalid {
    /// An invalid `value` of `field`.
    pub fn new(field: impl Into<String>, value: impl ToString, why: impl Into<String>) -> Invalid {
        Invalid { field: field.into(), value: value.to_string(), why: why.into(), also: Vec::new() }
    }

    /// Nests the field under `parent`.
    pub fn under(mut self, parent: &str) -> Invalid {
        self.field = if self.field.is_empty() { parent.into() } else { format!("{parent}.{}", self.field) };
        self.also = self.also.into_iter().map(|a| a.under(parent)).collect();
        self
    }

    /// Several invalid fields as one: each on a line of its own.
    pub fn all(mut bad: Vec<Invalid>) -> Result<(), Invalid> {
        if bad.len() <= 1 {
            return bad.pop().map_or(Ok(()), Err);
        }
        let first = bad.remove(0);
        Err(Invalid { also: bad, ..first })
    }

    pub(super) fn in_document(self, n: usize, name: &str, root: &str) -> DocumentError {
        let Invalid { field, value, why, also } = self.under(root);
        let more: String = also.iter().map(|b| format!("\n  {}: `{}`: {}", b.field, b.value, b.why)).collect();
        DocumentError { document: n, name: name.into(), message: format!("{field}: `{value}`: {why}{more}") }
    }
}

/// Checks a selector parses.
pub fn selector(field: &str, text: &str) -> Result<(), Invalid> {
    Selector::parse(text).map(drop).map_err(|e| Invalid::new(field, text, e.why))
}

/// Kubernetes-style names: lower-case letters, digits, `-` and `.`, 1–253 long,
/// starting and ending alphanumeric.
fn dns_subdomain(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Name and namespace rules; namespaced kinds default to namespace `default`.
pub(super) fn metadata(kind: Kind, meta: &mut Metadata) -> Result<(), Invalid> {
    if !dns_subdomain(&meta.name) {
        return Err(Invalid::new(
            "name",
            &meta.name,
            "must be lower-case letters, digits, '-' or '.', start and end with a letter or digit (at most 253)",
        ));
    }
    match (kind.info().namespaced, &meta.namespace) {
        (true, None) => meta.namespace = Some("default".into()),
        (true, Some(ns)) if !dns_subdomain(ns) => {
            return Err(Invalid::new("namespace", ns, "not a valid namespace name"));
        }
        (false, Some(ns)) => {
            return Err(Invalid::new("namespace", ns, format!("{} is not namespaced", kind.info().name)));
        }
        _ => {}
    }
    Ok(())
}

/// AS numbers: 1 to 4294967295 (0 is reserved, RFC 7607).
pub fn as_number(field: &str, asn: u32) -> Result<(), Invalid> {
    if asn == 0 { Err(Invalid::new(field, asn, "AS 0 is reserved (RFC 7607)")) } else { Ok(()) }
}

/// An address, optionally with `:port` (`192.0.2.1`, `192.0.2.1:1179`, `[2001:db8::1]:179`).
pub fn ip_with_port(field: &str, text: &str) -> Result<(IpAddr, Option<u16>), Invalid> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    text.parse::<std::net::SocketAddr>()
        .map(|sa| (sa.ip(), Some(sa.port())))
        .map_err(|_| Invalid::new(field, text, "not an IP address or IP:port"))
}
