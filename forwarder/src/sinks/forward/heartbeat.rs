//! Heartbeats: a task per node that probes the server every `heartbeat_interval`
//! and feeds the answers to the node's failure detector.
//!
//! - `udp`: one byte `0x00` to the server's port; the answer (the same byte, from
//!   Fluentd's and nagare's servers) is the heartbeat.
//! - `tcp`: a TCP connection that opens is the heartbeat.
//! - `transport`: a connection opened as data would be (TLS and the handshake
//!   included) is the heartbeat; skipped while acks on the data connection already
//!   prove the server alive.
//!
//! The detector is checked on every tick, whether or not a probe is still running,
//! so a probe that hangs does not delay the verdict.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nagare_core::forward::UDP_HEARTBEAT;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::MissedTickBehavior;

use super::config::HeartbeatType;
use super::connection::{Connection, Link};
use super::detector::Transition;
use super::node::{Health, NodeId, Report};

/// Everything a node's heartbeat task needs.
#[derive(Debug)]
pub(super) struct Heartbeats {
    pub(super) node: NodeId,
    pub(super) addr: SocketAddr,
    pub(super) kind: HeartbeatType,
    pub(super) interval: Duration,
    pub(super) link: Link,
    pub(super) health: Arc<Health>,
    pub(super) reports: UnboundedSender<Report>,
}

type Probe = Pin<Box<dyn Future<Output = bool> + Send>>;

impl Heartbeats {
    pub(super) async fn run(self) {
        let udp = match self.kind {
            HeartbeatType::Udp => match udp_socket(self.addr).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::warn!(addr = %self.addr, error = %e, "cannot open a UDP socket for heartbeats; the server will look down until it is reachable");
                    None
                }
            },
            _ => None,
        };
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut probe: Option<Probe> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    match self.health.check() {
                        Transition::Down(phi) => {
                            let _ = self.reports.send(Report::Down { node: self.node, phi });
                        }
                        Transition::Up | Transition::None => {}
                    }
                    // Acks on the data connection are heartbeats already.
                    let fresh = self.kind == HeartbeatType::Transport
                        && self.health.silence().is_some_and(|s| s < self.interval / 2);
                    if probe.is_none() && !fresh {
                        probe = self.probe(udp.clone());
                    }
                }
                answered = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    probe = None;
                    if answered && self.health.heartbeat() == Transition::Up {
                        let _ = self.reports.send(Report::Up { node: self.node });
                    }
                }
            }
        }
    }

    fn probe(&self, udp: Option<Arc<UdpSocket>>) -> Option<Probe> {
        let addr = self.addr;
        let wait = self.interval.max(Duration::from_millis(100));
        match self.kind {
            HeartbeatType::Udp => {
                let socket = udp?;
                Some(Box::pin(async move {
                    if socket.send(UDP_HEARTBEAT).await.is_err() {
                        return false;
                    }
                    let mut answer = [0u8; 16];
                    // Answers to earlier, late probes count as well: each says the
                    // server was alive a moment ago.
                    matches!(
                        tokio::time::timeout(wait, socket.recv(&mut answer)).await,
                        Ok(Ok(_))
                    )
                }))
            }
            HeartbeatType::Tcp => {
                let timeout = self.link.connect_timeout;
                Some(Box::pin(async move {
                    matches!(
                        tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
                        Ok(Ok(_))
                    )
                }))
            }
            HeartbeatType::Transport => {
                let link = self.link.clone();
                Some(Box::pin(async move {
                    Connection::open(addr, &link).await.is_ok()
                }))
            }
            HeartbeatType::None => None,
        }
    }
}

async fn udp_socket(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    Ok(socket)
}
