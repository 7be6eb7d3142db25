//! Ports for the servers the harness starts (Synapse, Gatekeeper's
//! listeners, PostgreSQL, the SMTP server, chromium). Shared by the
//! integration tests (`tests/support`) and the library's unit tests (which
//! include this file by path with `postgres.rs`), so that there is one way
//! of choosing a port.
//!
//! A server that is told its port is started after the port was chosen, by
//! another process: between the choice and its `bind` the port must not be
//! taken. Port 0 ("any free port") cannot promise that: the kernel hands it
//! out of the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`),
//! the very range every outgoing connection of the suite (hundreds of HTTP
//! and PostgreSQL clients, on parallel threads) takes its local port from,
//! so one of them may take the port in that gap and the server then fails
//! with "Address already in use". Ports outside that range are never
//! handed to a connection by the kernel: only a server that binds one
//! explicitly can hold it. Within this process a counter keeps two callers
//! from ever getting the same one; a random start per process keeps test
//! processes running side by side (other test binaries, other checkouts)
//! apart; and each port is still bound once before it is handed out, to
//! skip one held by a server that is already listening.

use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Below this, ports are more often some installed service's default, so
/// the pool starts here when the ephemeral range leaves room above it.
const LOWEST: u32 = 10_000;

/// The kernel's ephemeral range, `(low, high)` inclusive; Linux's default
/// when it cannot be read.
pub fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// The ports the harness hands out, `[start, end)`: the larger of the
/// stretches below and above the ephemeral range, none if both are tiny
/// (a machine whose ephemeral range is nearly everything).
pub fn pool() -> Option<(u32, u32)> {
    let (low, high) = ephemeral_range();
    // Never below 1025: the ports under it need root and are services'.
    let floor = if low > LOWEST { LOWEST } else { 1025 };
    let below = (floor.min(low), low);
    let above: (u32, u32) = (high + 1, 65_536);
    let (start, end) = if below.1 - below.0 >= above.1.saturating_sub(above.0) { below } else { above };
    (end.saturating_sub(start) >= 1_000).then_some((start, end))
}

/// A loopback port no other server listens on and no outgoing connection
/// of this machine can be given, for a server about to be started on it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let Some((low, high)) = pool() else {
        // No room outside the ephemeral range: the kernel's choice, with
        // the race this module exists to avoid (the servers' starts retry
        // or say why they failed).
        return TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    };
    let span = high - low;
    let start = *START.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        (std::process::id().wrapping_mul(2_654_435_761) ^ nanos) % span
    });
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}
