//! Firewall rules.
//!
//! The rules text must parse without panicking whatever it holds. Rules
//! built from the input, written out as text in any of the accepted
//! spellings, must parse to a table that answers every address as a plain
//! first-match scan of the rules does: the compiled table (merged ranges,
//! a binary search) is the part that can be subtly wrong, so the addresses
//! asked are each rule's first and last address and their neighbours,
//! their IPv4-mapped IPv6 forms, and addresses from the input.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foobar_guard::firewall::{Action, Rule, Rules};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::Input;

/// Whether `rule` covers `addr`, as documented: IPv4-mapped addresses and
/// rules in the mapped form are IPv4; IPv6 rules never match IPv4.
fn covers(net: IpNet, addr: IpAddr) -> bool {
    let as_v4 = |a: IpAddr| match a {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    let net = net.trunc();
    let net_v4 = match net {
        IpNet::V4(v4) => Some(v4),
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .network()
            .to_ipv4_mapped()
            .and_then(|a| Ipv4Net::new(a, v6.prefix_len() - 96).ok()),
        IpNet::V6(_) => None,
    };
    match (net_v4, as_v4(addr)) {
        (Some(net), Some(addr)) => net.contains(&addr),
        (Some(_), None) | (None, Some(_)) => false,
        (None, None) => net.contains(&addr),
    }
}

/// The first-match answer.
fn scan(rules: &[Rule], default: Action, addr: IpAddr) -> Action {
    rules
        .iter()
        .find(|rule| covers(rule.net, addr))
        .map_or(default, |rule| rule.action)
}

fn rule(input: &mut Input<'_>) -> Rule {
    let action = if input.flag() {
        Action::Allow
    } else {
        Action::Deny
    };
    let net = match input.below(4) {
        0 | 1 => {
            let addr = Ipv4Addr::from(input.array::<4>());
            IpNet::V4(Ipv4Net::new(addr, input.below(33)).unwrap_or_default())
        }
        2 => {
            let addr = Ipv6Addr::from(input.array::<16>());
            IpNet::V6(Ipv6Net::new(addr, input.below(129)).unwrap_or_default())
        }
        _ => {
            // The IPv4-mapped form of an IPv4 block.
            let addr = Ipv4Addr::from(input.array::<4>()).to_ipv6_mapped();
            IpNet::V6(Ipv6Net::new(addr, 96 + input.below(33)).unwrap_or_default())
        }
    };
    Rule { action, net }
}

/// One rule as a line of text, in a spelling chosen by `style`.
fn write_rule(text: &mut String, rule: &Rule, style: u8) {
    let keyword = match (rule.action, style & 3) {
        (Action::Allow, 0) => "allow",
        (Action::Allow, 1) => "ALLOW",
        (Action::Allow, _) => "Allow",
        (Action::Deny, 0) => "deny",
        (Action::Deny, 1) => "DENY",
        (Action::Deny, _) => "Deny",
    };
    let space = if style & 4 == 0 { " " } else { " \t " };
    let full = rule.net.prefix_len() == rule.net.max_prefix_len();
    // A bare address is a single-address block.
    let net = if full && style & 8 == 0 {
        rule.net.addr().to_string()
    } else {
        rule.net.to_string()
    };
    let comment = if style & 16 == 0 { "" } else { "  # note" };
    let _ = writeln!(text, "{keyword}{space}{net}{comment}");
}

/// The addresses to ask about: each rule's edges and their neighbours.
fn edges(rules: &[Rule], out: &mut Vec<IpAddr>) {
    for rule in rules {
        match rule.net.trunc() {
            IpNet::V4(n) => {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                for a in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    out.push(IpAddr::V4(a.into()));
                    out.push(IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped()));
                }
            }
            IpNet::V6(n) => {
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                for a in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    let v6 = Ipv6Addr::from(a);
                    out.push(IpAddr::V6(v6));
                    if let Some(v4) = v6.to_ipv4_mapped() {
                        out.push(IpAddr::V4(v4));
                    }
                }
            }
        }
    }
}

pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    if !input.flag() {
        // Any text: an answer or a syntax error, never a panic.
        let text = String::from_utf8_lossy(input.rest());
        if let Ok(rules) = Rules::parse(&text) {
            let _ = rules.check(IpAddr::V4(Ipv4Addr::LOCALHOST));
            let _ = rules.check(IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
        return;
    }
    let default = if input.flag() {
        Action::Allow
    } else {
        Action::Deny
    };
    let count = input.below(24);
    let rules: Vec<Rule> = (0..count).map(|_| rule(&mut input)).collect();
    let mut text = String::new();
    let default_line = input.below(u8::try_from(rules.len()).unwrap_or(0) + 1);
    for (i, rule) in rules.iter().enumerate() {
        if usize::from(default_line) == i {
            let _ = writeln!(text, "default {default}");
        }
        write_rule(&mut text, rule, input.byte());
    }
    if usize::from(default_line) == rules.len() {
        let _ = writeln!(text, "default {default}");
    }
    let parsed = Rules::parse(&text)
        .unwrap_or_else(|e| panic!("rules written out do not parse: {e}\n{text}"));
    let built = Rules::new(rules.iter().copied(), default);
    assert_eq!(parsed.len(), rules.len());
    assert_eq!(parsed.default_action(), default);

    let mut addrs = Vec::new();
    edges(&rules, &mut addrs);
    while !input.is_empty() {
        if input.flag() {
            addrs.push(IpAddr::V6(Ipv6Addr::from(input.array::<16>())));
        } else {
            let v4 = Ipv4Addr::from(input.array::<4>());
            addrs.push(IpAddr::V4(v4));
            addrs.push(IpAddr::V6(v4.to_ipv6_mapped()));
        }
    }
    for addr in addrs {
        let expected = scan(&rules, default, addr);
        assert_eq!(
            parsed.check(addr),
            expected,
            "parsed rules on {addr}\n{text}"
        );
        assert_eq!(built.check(addr), expected, "built rules on {addr}\n{text}");
    }
}
