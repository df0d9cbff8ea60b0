//! The checks behind foobar's fuzz targets.
//!
//! foobar reads untrusted bytes in several parsers. Each check here takes
//! arbitrary bytes, feeds them (or something built from them) to one of
//! those parsers, and panics when the parser breaks a property it must
//! keep: a panic of its own, a different answer when the same bytes arrive
//! in other pieces, a compiled table that disagrees with a plain scan, a
//! client that spoofs its address, a route that changes with whitespace.
//!
//! The libFuzzer targets in `fuzz/` (cargo-fuzz, nightly) call these
//! functions, and this crate's tests (stable) replay every file of the
//! committed corpus and every crash kept in `fuzz/regressions/`, so a
//! property found broken once stays checked in CI.
//!
//! | target | parser | properties |
//! |---|---|---|
//! | `http1_request` | the server's request-head parser (foobar-core) | no panic; a head is decided by its own bytes (a prefix is never a different head, bytes after it change nothing); framing fields consistent |
//! | `http1_response` | the upstream response-head parser (foobar-core) | as above, for responses |
//! | `chunked` | the chunked decoder (foobar-core) | no panic, always progress; the same result whatever the read sizes; encode then decode gives the data back |
//! | `proxy_protocol` | PROXY v1/v2 headers (foobar-guard) | no panic; a header is decided by its own bytes; built headers announce the address they were built with |
//! | `firewall` | rules text and the compiled table (foobar-guard) | no panic; the table agrees with a first-match scan of the rules on every boundary address |
//! | `sql` | the statement classifier (foobar-db) | no panic in any SQL mode; the classification does not change with whitespace and comments |
//! | `forwarded` | trusted-proxy `Forwarded` / `X-Forwarded-For` resolution (foobar-guard) | whatever a client sends, the address its trusted proxies append is the one found |

mod chunked;
mod firewall;
mod forwarded;
mod http1;
mod input;
mod proxy_protocol;
mod sql;

pub use input::Input;

/// A check: panics when the parser it drives breaks a property.
pub type Check = fn(&[u8]);

/// Every target by name (the name of its fuzz target and corpus folder).
pub const TARGETS: &[(&str, Check)] = &[
    ("http1_request", http1_request),
    ("http1_response", http1_response),
    ("chunked", chunked),
    ("proxy_protocol", proxy_protocol),
    ("firewall", firewall),
    ("sql", sql),
    ("forwarded", forwarded),
];

/// The server's HTTP/1 request-head parser.
pub fn http1_request(data: &[u8]) {
    http1::request(data);
}

/// The upstream HTTP/1 response-head parser.
pub fn http1_response(data: &[u8]) {
    http1::response(data);
}

/// The chunked transfer-coding decoder.
pub fn chunked(data: &[u8]) {
    chunked::check(data);
}

/// PROXY protocol v1 and v2 headers.
pub fn proxy_protocol(data: &[u8]) {
    proxy_protocol::check(data);
}

/// Firewall rules: the text format and the compiled lookup table.
pub fn firewall(data: &[u8]) {
    firewall::check(data);
}

/// The SQL statement classifier.
pub fn sql(data: &[u8]) {
    sql::check(data);
}

/// Client-address resolution through trusted proxies.
pub fn forwarded(data: &[u8]) {
    forwarded::check(data);
}
