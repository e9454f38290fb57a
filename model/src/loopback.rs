//! Free loopback ports for processes a test or benchmark is about to start.
//!
//! A port found by binding `127.0.0.1:0` and releasing it comes from the
//! kernel's ephemeral range, the same range outgoing connections take their
//! local ports from: between the check and the server's own bind, a peer
//! dialling out (a Raft replica, a client) can take it, and the server then
//! fails with "address already in use". Ports handed out here come from below
//! that range, where no outgoing connection lands, and are never handed out
//! twice by one process.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const LOW: u32 = 10_000;

/// The first of `n` consecutive loopback ports that are free (each checked by
/// binding it) and not handed out before by this process.
pub fn free_ports(n: u16) -> std::io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let high = ephemeral_low().unwrap_or(0);
    if high < LOW + 2_000 {
        return any_free_ports(n);
    }
    let span = high - LOW;
    // Two processes started at once (test binaries, benchmarks) rarely probe the same ports.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..2_000 {
        let offset = NEXT.fetch_add(u32::from(n), Ordering::Relaxed);
        let base = LOW + (start + offset) % span;
        if base + u32::from(n) > high {
            continue;
        }
        let Ok(base) = u16::try_from(base) else { continue };
        if all_bindable(base, n) {
            return Ok(base);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("no {n} consecutive free ports below {high}")))
}

/// The kernel's first ephemeral port (Linux), if readable.
fn ephemeral_low() -> Option<u32> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// Whether `base..base + n` are all free to bind (and exist).
fn all_bindable(base: u16, n: u16) -> bool {
    (0..n).all(|i| base.checked_add(i).is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()))
}

/// `n` consecutive ports found through `bind(:0)`: the fallback where the
/// ephemeral range leaves no room below it.
fn any_free_ports(n: u16) -> std::io::Result<u16> {
    for _ in 0..200 {
        let base = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if base <= u16::MAX - n && all_bindable(base, n) {
            return Ok(base);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("no {n} consecutive free ports")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_outside_the_ephemeral_range() {
        let mut seen = std::collections::BTreeSet::new();
        for n in [1u16, 12, 3, 1, 1] {
            let base = free_ports(n).expect("free ports");
            for p in base..base + n {
                assert!(seen.insert(p), "port {p} handed out twice");
                assert!(TcpListener::bind(("127.0.0.1", p)).is_ok(), "port {p} is not free");
                if let Some(low) = ephemeral_low().filter(|&l| l >= LOW + 2_000) {
                    assert!(u32::from(p) >= LOW && u32::from(p) < low, "port {p} inside the ephemeral range");
                }
            }
        }
    }
}
