//! Who may open a TCP connection: at most `MAX_CONNECTIONS` at once, and at most
//! `MAX_CONNECTIONS_PER_IP` from one address. Each admitted socket holds a [`Slot`] for as
//! long as it lives; the slot travels inside the socket's I/O object, through an upgrade, so a
//! WebSocket or Socket.IO connection counts until its socket is dropped, not only while hyper
//! serves its HTTP part. Refusals are logged as a [`RefusalLog`](crate::telemetry::RefusalLog) allows: one line per
//! [`REPORT_EVERY`](crate::telemetry::REPORT_EVERY) with the count, never one line per refused socket under a flood.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::ConnectionLimits;

/// The counts of open connections, against the configured caps.
pub(super) struct Admission {
    max_total: usize,
    max_per_ip: Option<u64>,
    /// Held for a few map operations, never across an `.await`.
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    /// Only filled when a per-address cap is set; an address leaves with its last socket.
    per_ip: HashMap<IpAddr, u64>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Full {
    /// `MAX_CONNECTIONS` are open.
    Total,
    /// `MAX_CONNECTIONS_PER_IP` are open from this address.
    PerIp,
}

impl Admission {
    pub(super) fn new(limits: &ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            open: Mutex::default(),
        })
    }

    /// A slot for one more connection from `ip`, or which cap is reached.
    pub(super) fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let ip = ip.to_canonical();
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Full::Total);
        }
        if let Some(max) = self.max_per_ip {
            let from_ip = open.per_ip.entry(ip).or_default();
            if *from_ip >= max {
                return Err(Full::PerIp);
            }
            *from_ip += 1;
        }
        open.total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.lock().total
    }

    /// The configured cap `full` refers to, for the log line.
    pub(super) fn cap(&self, full: Full) -> u64 {
        match full {
            Full::Total => self.max_total as u64,
            Full::PerIp => self.max_per_ip.unwrap_or(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The counts stay consistent whatever panicked: every update is one statement.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(from_ip) = open.per_ip.get_mut(&ip) {
            *from_ip = from_ip.saturating_sub(1);
            if *from_ip == 0 {
                open.per_ip.remove(&ip);
            }
        }
    }
}

/// One admitted connection; dropping it frees its place.
pub(super) struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_total: usize, max_per_ip: Option<u64>) -> Arc<Admission> {
        Admission::new(&ConnectionLimits {
            max_connections: max_total,
            max_connections_per_ip: max_per_ip,
            ..ConnectionLimits::default()
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn the_total_cap_refuses_the_next_connection_until_one_closes() {
        let admission = admission(2, None);
        let first = admission.try_admit(A).expect("first");
        let _second = admission.try_admit(B).expect("second");
        assert_eq!(admission.try_admit(A).err(), Some(Full::Total));
        drop(first);
        assert!(admission.try_admit(A).is_ok(), "a freed slot is reusable");
    }

    #[test]
    fn the_per_address_cap_counts_each_address_apart_and_forgets_empty_ones() {
        let admission = admission(10, Some(1));
        let from_a = admission.try_admit(A).expect("a");
        assert_eq!(admission.try_admit(A).err(), Some(Full::PerIp));
        let _from_b = admission
            .try_admit(B)
            .expect("another address is not affected");
        drop(from_a);
        assert_eq!(admission.lock().per_ip.len(), 1, "A's entry is gone");
        let _again = admission.try_admit(A).expect("a's place is free again");
        assert_eq!(admission.open(), 2);
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_the_ipv4_address() {
        let admission = admission(10, Some(1));
        let _v4 = admission.try_admit(A).expect("v4");
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(admission.try_admit(mapped).err(), Some(Full::PerIp));
    }
}
