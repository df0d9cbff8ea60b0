//! Rules: what they are, how they are written, how they are checked.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::table::{Block, Key, Table};
use crate::error::{ConfigError, Result, RulesOrigin, SyntaxError};

/// What a rule does with the addresses it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the connection or request through.
    Allow,
    /// Refuse it.
    Deny,
}

impl Action {
    fn is_allow(self) -> bool {
        self == Self::Allow
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

/// One firewall rule: an action for a CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What to do with matching addresses.
    pub action: Action,
    /// The addresses it covers.
    pub net: IpNet,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.net)
    }
}

/// An ordered list of allow/deny CIDR rules with a default action, compiled
/// for fast lookups: the first rule that covers an address decides (the
/// iptables model); addresses no rule covers get the default.
///
/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are checked as the IPv4
/// address they carry, and rules written in that form (`::ffff:1.2.3.0/120`)
/// are IPv4 rules. IPv6 rules never match IPv4 addresses.
///
/// Lookups cost the same whatever the number of rules: a binary search over
/// disjoint ranges, narrowed by a bucket index for long lists to about one
/// cache line. A million rules take at most 33 MB (IPv4) or 57 MB (IPv6);
/// random lists in `benches/firewall.rs` take 12 MB and 21 MB.
///
/// ```
/// use foobar_guard::firewall::{Action, Rules};
///
/// let rules: Rules = "
///     ## office and VPN
///     deny  10.66.0.0/16
///     allow 10.0.0.0/8
///     allow 2001:db8::/32
///     default deny
/// ".parse()?;
/// assert_eq!(rules.check("10.1.2.3".parse()?), Action::Allow);
/// assert_eq!(rules.check("10.66.0.1".parse()?), Action::Deny);
/// assert_eq!(rules.check("::ffff:10.1.2.3".parse()?), Action::Allow);
/// assert_eq!(rules.check("192.0.2.1".parse()?), Action::Deny);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Rules {
    v4: Table<u32>,
    v6: Table<u128>,
    default: Action,
    len: usize,
}

impl Rules {
    /// A builder, for rules written in code.
    pub fn builder() -> RulesBuilder {
        RulesBuilder::default()
    }

    /// No rules; every address gets `default`.
    pub fn with_default(default: Action) -> Self {
        RulesBuilder::default().default_action(default).build()
    }

    /// Compiles `rules` in order, with `default` for uncovered addresses.
    pub fn new(rules: impl IntoIterator<Item = Rule>, default: Action) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut len = 0u32;
        for rule in rules {
            let allow = rule.action.is_allow();
            match normalize(rule.net) {
                IpNet::V4(net) => v4.push(block(
                    u32::from(net.network()),
                    net.prefix_len(),
                    len,
                    allow,
                )),
                IpNet::V6(net) => v6.push(block(
                    u128::from(net.network()),
                    net.prefix_len(),
                    len,
                    allow,
                )),
            }
            len = len.saturating_add(1);
        }
        Self {
            v4: Table::compile(v4, default.is_allow()),
            v6: Table::compile(v6, default.is_allow()),
            default,
            len: len as usize,
        }
    }

    /// Parses the rules text format, one rule per line:
    ///
    /// ```text
    /// # comments start with '#', anywhere on a line
    /// allow 10.0.0.0/8
    /// deny  2001:db8::/32
    /// deny  192.0.2.7          # a bare address is a /32 (IPv6: /128)
    /// default deny             # for addresses no rule covers (default: allow)
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::RulesSyntax`] naming [`RulesOrigin::InMemory`], the line and the bad
    /// token.
    pub fn parse(text: &str) -> Result<Self> {
        parse_text(text, &RulesOrigin::InMemory)
    }

    /// Reads and parses a rules file (format: [`Rules::parse`]).
    ///
    /// # Errors
    /// [`ConfigError::RulesFile`] if it cannot be read; [`ConfigError::RulesSyntax`]
    /// naming the file, the line and the bad token.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::RulesFile {
            path: path.to_owned(),
            source,
        })?;
        parse_text(&text, &RulesOrigin::File(path.to_owned()))
    }

    /// The action for `addr`.
    #[inline]
    pub fn check(&self, addr: IpAddr) -> Action {
        if self.is_allowed(addr) {
            Action::Allow
        } else {
            Action::Deny
        }
    }

    /// Whether `addr` is allowed.
    #[inline]
    pub fn is_allowed(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => self.v4.allows(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4.allows(u32::from(v4)),
                None => self.v6.allows(u128::from(v6)),
            },
        }
    }

    /// The action for addresses no rule covers.
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// The number of rules compiled in.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rules (every address gets the default).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory held by the compiled tables, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

impl Default for Rules {
    /// No rules, default allow.
    fn default() -> Self {
        Self::with_default(Action::Allow)
    }
}

impl FromStr for Rules {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

fn block<K: Key>(start: K, prefix_len: u8, index: u32, allow: bool) -> Block<K> {
    Block {
        start,
        end: start.block_end(prefix_len),
        index,
        allow,
    }
}

/// Truncates host bits and turns IPv4-mapped IPv6 blocks into IPv4 blocks.
fn normalize(net: IpNet) -> IpNet {
    match net.trunc() {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(IpNet::V6(v6), IpNet::V4),
            None => IpNet::V6(v6),
        },
        other => other,
    }
}

/// Builds [`Rules`] in code, in order.
///
/// ```
/// use foobar_guard::firewall::{Action, Rules};
/// use foobar_guard::IpNet;
///
/// let rules = Rules::builder()
///     .allow("127.0.0.0/8".parse::<IpNet>()?)
///     .deny("::/0".parse::<IpNet>()?)
///     .default_action(Action::Deny)
///     .build();
/// assert!(rules.is_allowed("127.0.0.5".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RulesBuilder {
    rules: Vec<Rule>,
    default: Action,
}

impl Default for RulesBuilder {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: Action::Allow,
        }
    }
}

impl RulesBuilder {
    /// Appends `allow net`.
    pub fn allow(self, net: impl Into<IpNet>) -> Self {
        self.rule(Action::Allow, net)
    }

    /// Appends `deny net`.
    pub fn deny(self, net: impl Into<IpNet>) -> Self {
        self.rule(Action::Deny, net)
    }

    /// Appends a rule.
    pub fn rule(mut self, action: Action, net: impl Into<IpNet>) -> Self {
        self.rules.push(Rule {
            action,
            net: net.into(),
        });
        self
    }

    /// The action for addresses no rule covers. Default: allow.
    pub fn default_action(mut self, action: Action) -> Self {
        self.default = action;
        self
    }

    /// Compiles the rules.
    pub fn build(self) -> Rules {
        Rules::new(self.rules, self.default)
    }
}

fn parse_text(text: &str, origin: &RulesOrigin) -> Result<Rules> {
    let mut builder = RulesBuilder::default();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.split_once('#').map_or(raw, |(code, _)| code);
        let mut tokens = line.split_whitespace();
        let Some(keyword) = tokens.next() else {
            continue;
        };
        let error = |token: &str, reason: SyntaxError| ConfigError::RulesSyntax {
            origin: origin.clone(),
            line: number + 1,
            token: token.to_owned(),
            reason,
        };
        let Some(operand) = tokens.next() else {
            return Err(error(line.trim(), SyntaxError::IncompleteRule));
        };
        if let Some(extra) = tokens.next() {
            return Err(error(extra, SyntaxError::TrailingToken));
        }
        if keyword.eq_ignore_ascii_case("default") {
            builder = builder.default_action(
                parse_action(operand).ok_or_else(|| error(operand, SyntaxError::UnknownAction))?,
            );
            continue;
        }
        let action =
            parse_action(keyword).ok_or_else(|| error(keyword, SyntaxError::UnknownKeyword))?;
        let net = parse_net(operand).ok_or_else(|| error(operand, SyntaxError::NotANetwork))?;
        builder = builder.rule(action, net);
    }
    Ok(builder.build())
}

fn parse_action(token: &str) -> Option<Action> {
    if token.eq_ignore_ascii_case("allow") {
        Some(Action::Allow)
    } else if token.eq_ignore_ascii_case("deny") {
        Some(Action::Deny)
    } else {
        None
    }
}

/// A CIDR block, or a bare address as a single-address block.
fn parse_net(token: &str) -> Option<IpNet> {
    if token.contains('/') {
        return token.parse().ok();
    }
    match token.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(IpNet::V4(Ipv4Net::from(v4))),
        IpAddr::V6(v6) => Some(IpNet::V6(Ipv6Net::from(v6))),
    }
}
