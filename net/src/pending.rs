//! A cap on connections still in their handshake, per remote IP address.
//!
//! Before the Noise handshake names a peer, a connection is only a socket; a host that
//! opens sockets and never speaks holds a pending slot until the handshake times out. The
//! swarm's overall cap on pending connections would let one such host take every slot and
//! lock every participant out; this cap leaves it a few.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};
use thiserror::Error;

/// Handshakes one remote IPv4 address or IPv6 /64 may have under way at once.
pub const MAX_PENDING_PER_IP: usize = 4;

/// A refused connection: its address already has as many handshakes under way as allowed.
#[derive(Debug, Error)]
#[error("{ip} already has {max} connections in their handshake")]
pub struct TooManyPending {
    /// The remote address.
    pub ip: IpAddr,
    /// The cap.
    pub max: usize,
}

/// Refuses an incoming connection while its remote IP has `max` others in their handshake.
#[derive(Debug)]
pub struct PendingPerIp {
    max: usize,
    pending: HashMap<ConnectionId, IpAddr>,
}

impl PendingPerIp {
    /// At most `max` pending incoming connections per remote IP.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            pending: HashMap::new(),
        }
    }

    fn pending_from(&self, ip: IpAddr) -> usize {
        self.pending.values().filter(|&&p| p == ip).count()
    }
}

impl Default for PendingPerIp {
    fn default() -> Self {
        Self::new(MAX_PENDING_PER_IP)
    }
}

/// Who a multiaddress counts as: its IPv4 address, or its IPv6 /64 (one host is commonly
/// given a whole /64, so single IPv6 addresses would be no limit at all).
fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => {
            let prefix = u128::from(ip) & !((1u128 << 64) - 1);
            Some(IpAddr::V6(prefix.into()))
        }
        _ => None,
    })
}

impl NetworkBehaviour for PendingPerIp {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        if self.pending_from(ip) >= self.max {
            return Err(ConnectionDenied::new(TooManyPending { ip, max: self.max }));
        }
        self.pending.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending.remove(&connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ListenFailure(failure) = event {
            self.pending.remove(&failure.connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(ip: &str, port: u16) -> Multiaddr {
        format!("/ip4/{ip}/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn an_address_gets_its_pending_slots_back_when_handshakes_end() {
        let mut limit = PendingPerIp::new(2);
        let local = remote("127.0.0.1", 9000);
        let (a, b, c, d) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
            ConnectionId::new_unchecked(4),
        );
        let attacker = remote("10.0.0.9", 5000);
        assert!(
            limit
                .handle_pending_inbound_connection(a, &local, &attacker)
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(b, &local, &attacker)
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(c, &local, &attacker)
                .is_err(),
            "a third handshake from the same address"
        );
        assert!(
            limit
                .handle_pending_inbound_connection(c, &local, &remote("10.0.0.10", 5000))
                .is_ok(),
            "another address is not affected"
        );
        let peer = PeerId::random();
        assert!(
            limit
                .handle_established_inbound_connection(a, peer, &local, &attacker)
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(d, &local, &attacker)
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(a, &local, &attacker)
                .is_err()
        );
        limit.on_swarm_event(FromSwarm::ListenFailure(libp2p::swarm::ListenFailure {
            local_addr: &local,
            send_back_addr: &attacker,
            error: &libp2p::swarm::ListenError::Aborted,
            connection_id: b,
            peer_id: None,
        }));
        assert!(
            limit
                .handle_pending_inbound_connection(a, &local, &attacker)
                .is_ok(),
            "a failed handshake frees its slot"
        );
        // One IPv6 /64 is one host.
        let ip6 = |s: &str| format!("/ip6/{s}/tcp/5000").parse::<Multiaddr>().unwrap();
        let e = ConnectionId::new_unchecked(5);
        let f = ConnectionId::new_unchecked(6);
        let g = ConnectionId::new_unchecked(7);
        assert!(
            limit
                .handle_pending_inbound_connection(e, &local, &ip6("2001:db8::1"))
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(f, &local, &ip6("2001:db8::ffff:2"))
                .is_ok()
        );
        assert!(
            limit
                .handle_pending_inbound_connection(g, &local, &ip6("2001:db8::9:9:9:3"))
                .is_err(),
            "a third address of the same /64"
        );
        assert!(
            limit
                .handle_pending_inbound_connection(g, &local, &ip6("2001:db8:0:1::1"))
                .is_ok()
        );
    }
}
