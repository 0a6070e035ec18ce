//! The Compose view of a YAML document: its services, and what a `ports:` entry publishes. One definition for
//! every Compose check.

use super::{Entry, YKind, YNode, YamlDoc};

/// A service: its name, its key and its body (aliases resolved).
pub struct Service<'a> {
    pub name: &'a str,
    pub entry: &'a Entry,
    pub body: &'a YNode,
}

/// The services of a Compose document (`services:` at the top; a merge key `<<` is not a service).
pub fn services<'a>(doc: &'a YamlDoc) -> Vec<Service<'a>> {
    let Some(s) = doc.get(&doc.root, "services") else {
        return Vec::new();
    };
    let YKind::Map(entries) = &s.kind else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| e.key != "<<")
        .map(|e| Service {
            name: &e.key,
            entry: e,
            body: doc.resolve(&e.value),
        })
        .collect()
}

/// How a short-syntax `ports` entry that interpolates a variable (`${…}`) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolated {
    /// An entry that starts with a variable (`${API_PORT}:8000`, `${BIND}:8000:8000`): the operator chooses the
    /// address or the port, so it is not taken as published on every interface (for services that may
    /// legitimately face clients).
    Trust,
    /// Only a variable address (`${BIND}:5432:5432`) is trusted; a variable host port (`${PG_PORT}:5432`) still
    /// binds every interface (for datastores, which never should).
    AddressOnly,
}

/// Is a `ports` entry published on every interface of the host? Short syntax `[HOST_IP:]HOST:CONTAINER` or a
/// bare container port (Docker picks a host port on every interface); long syntax with `published` and no
/// loopback `host_ip`.
pub fn published_everywhere(doc: &YamlDoc, item: &YNode, interpolated: Interpolated) -> bool {
    let loopback = |ip: &str| {
        ip.starts_with("127.") || ip == "localhost" || ip == "::1" || ip.starts_with("[::1]")
    };
    if item.is_map() {
        let published = doc.get(item, "published").is_some();
        let host_ip = doc.get(item, "host_ip").and_then(|n| doc.str(n));
        return published && !host_ip.is_some_and(|ip| loopback(ip) || ip.contains("${"));
    }
    let Some(s) = doc.str(item) else {
        return false;
    };
    let s = s.trim();
    if s.starts_with("${") && interpolated == Interpolated::Trust {
        return false;
    }
    if s.starts_with("[::1]") {
        return false;
    }
    // Variables may hold colons (`${BIND:-127.0.0.1}`): read the entry with each one as a single `$`.
    let plain = without_variables(s);
    let parts: Vec<&str> = plain.split(':').collect();
    if parts.len() >= 3 {
        let address = parts[0];
        // `${BIND}:5432:5432`: the address is the operator's choice.
        return !(address.contains('$') || loopback(address));
    }
    true
}

/// `s` with each `${…}` replaced by one `$` (an unclosed one runs to the end).
fn without_variables(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        out.push('$');
        match rest[i..].find('}') {
            Some(j) => rest = &rest[i + j + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn everywhere(entries: &str, interpolated: Interpolated) -> Vec<bool> {
        let text = format!("services:\n  db:\n    image: postgres:16\n    ports:\n{entries}");
        let file = parse(&text);
        let doc = &file.docs[0];
        let svc = &services(doc)[0];
        let Some(ports) = doc.get(svc.body, "ports") else {
            panic!("no ports");
        };
        doc.items(ports)
            .into_iter()
            .map(|i| published_everywhere(doc, i, interpolated))
            .collect()
    }

    #[test]
    fn one_reading_of_ports_with_named_treatment_of_variables() {
        let entries = "      - \"5432:5432\"\n      - \"127.0.0.1:5432:5432\"\n      - \"[::1]:6379:6379\"\n      - \"8000\"\n      - \"${PG_PORT:-5432}:5432\"\n      - \"${BIND:-127.0.0.1}:5432:5432\"\n      - \"0.0.0.0:6333:6333\"\n      - target: 5432\n        published: 5432\n      - target: 5432\n        published: 5432\n        host_ip: 127.0.0.1\n";
        assert_eq!(
            everywhere(entries, Interpolated::AddressOnly),
            [true, false, false, true, true, false, true, true, false]
        );
        assert_eq!(
            everywhere(entries, Interpolated::Trust),
            [true, false, false, true, false, false, true, true, false]
        );
    }

    #[test]
    fn variables_are_read_as_one_token() {
        assert_eq!(without_variables("${A:-1:2}:80"), "$:80");
        assert_eq!(without_variables("${A"), "$");
        assert_eq!(without_variables("80:80"), "80:80");
    }
}
