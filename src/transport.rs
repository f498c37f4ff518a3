//! The transport's bounds: how many connections the server keeps open, how
//! long one may stay silent, and what each may ask of it. With these, no
//! client (with or without a key) can make the server hold unbounded memory
//! or connections, and overload is refused at once instead of queueing.
//!
//! What bounds what:
//! - `max_connections` caps open connections. Past it, a new connection is
//!   accepted and closed at once (a clear refusal, and the kernel's accept
//!   queue never fills), and the first such refusal is logged once until the
//!   server is below the cap again. It also stays below the process's
//!   descriptor limit, with room for the database pool and files.
//! - `max_connections_per_peer` caps one peer's (an IPv4 address, an IPv6
//!   /64): one peer cannot take every place (on the gRPC listener; on the
//!   proxy adapters' listener the callers are your own proxies, and nginx
//!   opens a connection per login, so there it is off). A peer with many addresses
//!   still can; what guards against that is the network's, not this
//!   process's (a firewall's connection limits, proxies reaching latchkey
//!   on a private network).
//! - `handshake_timeout`: a connection that sends nothing (or, with TLS,
//!   does not finish its handshake) within it is closed.
//! - `idle_timeout`: a connection from which nothing arrives for this
//!   long is closed. HTTP/2 keepalive pings every `keepalive_interval`
//!   make a healthy client answer, so only a dead or silent peer reaches it;
//!   a peer that stops answering pings is closed after
//!   `keepalive_timeout` already.
//! - `max_concurrent_streams` per connection, `max_header_list_bytes`, and
//!   message sizes per service (latchkey's own, and the tiny requests of
//!   health checks and reflection): a message declared larger is refused
//!   from its 5-byte prefix, before any of it is buffered.
//! - `request_timeout`: a request (its body included) must be done in
//!   this time, so a stream that sends half a message and stops is cut.
//! - `max_unproven_connections`: a connection is *unproven* until a
//!   recognised caller (a valid key or client certificate) uses it: the
//!   edges call `Proof::prove` as soon as a request's caller checks out,
//!   before the request runs (`grpc/auth.rs`, the adapters' `authenticate`
//!   middleware). At most this many are unproven at once (0: no cap; never
//!   more than three quarters of the connection cap); a new connection
//!   past it closes the oldest unproven connection of the peer network
//!   that holds the most. So peers without a key, however many addresses
//!   they use and however slowly they send, hold at most this many
//!   places; a peer that opens connections as fast as it can closes its
//!   own, not a proxy's still in its TLS handshake nor a health checker's;
//!   and a proxy's connection, which proves itself with its first request,
//!   always finds a place. On the proxy adapters' listener an unproven
//!   connection also has `unproven_timeout` from its accept to send a
//!   whole request with a valid key (the request-head deadline: a byte
//!   every few seconds no longer keeps it open; while a key it sent is
//!   being checked, the deadline waits); on the gRPC listener, where health
//!   checks and reflection are keyless by design, only the cap applies.
//!   These are checked on every read, write and flush, and a write that
//!   waits for a peer that reads nothing fails after the idle timeout: a
//!   peer that stops reading cannot hold a connection by stalling it.
//!
//! Memory the transport can be made to hold in request bodies is then at
//! most `max_connections × max_concurrent_streams × max_message_bytes`
//! (256 × 128 × 8 KiB = 256 MiB by default) with a caller key, and without
//! one `max_connections × max_concurrent_streams × probe_message_bytes`
//! (32 MiB): requests to latchkey's own services are refused before their
//! body is read unless the caller key checks out. The largest real request
//! (an issue with 16 networks and a 100-character name) is under 4 KiB.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::{millis, secs};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::domain::login::throttle::source_network;
use crate::domain::shared::network::canonical_ip;

/// Limits of the gRPC listener; see the module docs for what each bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Open connections at most; 0 means as many as the descriptor limit
    /// allows.
    pub max_connections: usize,
    /// Open connections from one peer (an IPv4 address, an IPv6 /64) at
    /// most, so one peer cannot hold every place.
    pub max_connections_per_peer: usize,
    /// Concurrent requests (HTTP/2 streams) per connection.
    pub max_concurrent_streams: u32,
    /// The largest request message to latchkey's own services, in bytes
    /// (the largest real one is under 4 KiB).
    pub max_message_bytes: usize,
    /// The largest request message to health checks and reflection.
    pub probe_message_bytes: usize,
    /// The largest request header list, in bytes.
    pub max_header_list_bytes: u32,
    /// Time to the first byte (and a TLS handshake), in milliseconds.
    #[serde(rename = "handshake_timeout", alias = "handshake_timeout_ms", with = "millis")]
    pub handshake_timeout_ms: u64,
    /// A connection from which nothing arrives for this long is closed.
    #[serde(rename = "idle_timeout", alias = "idle_timeout_secs", with = "secs")]
    pub idle_timeout_secs: u64,
    /// HTTP/2 keepalive pings, and how long an answer may take.
    #[serde(rename = "keepalive_interval", alias = "keepalive_interval_secs", with = "secs")]
    pub keepalive_interval_secs: u64,
    #[serde(rename = "keepalive_timeout", alias = "keepalive_timeout_secs", with = "secs")]
    pub keepalive_timeout_secs: u64,
    /// The longest a request may take, its body included.
    #[serde(rename = "request_timeout", alias = "request_timeout_secs", with = "secs")]
    pub request_timeout_secs: u64,
    /// At stop, how long connections may take to finish what they carry
    /// before they are dropped (a client that stops reading a stream
    /// could otherwise hold the stop, and the flushes after it, forever).
    #[serde(rename = "shutdown_grace", alias = "shutdown_grace_secs", with = "secs")]
    pub shutdown_grace_secs: u64,
    /// Connections not yet used by a recognised caller, at most; past it
    /// the oldest of them is closed to make room.
    pub max_unproven_connections: usize,
    /// On the proxy adapters' listener: the time from accept within which
    /// a connection must carry a whole request with a valid key, in
    /// milliseconds.
    #[serde(rename = "unproven_timeout", alias = "unproven_timeout_ms", with = "millis")]
    pub unproven_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_peer: 64,
            // HTTP/2 clients open up to 100 streams before they learn the
            // server's limit (h2's and grpc-go's default); a limit below that
            // would refuse well-behaved clients on a fresh connection.
            max_concurrent_streams: 128,
            max_message_bytes: 8 * 1024,
            probe_message_bytes: 1024,
            max_header_list_bytes: 16 * 1024,
            handshake_timeout_ms: 5_000,
            idle_timeout_secs: 300,
            keepalive_interval_secs: 30,
            keepalive_timeout_secs: 10,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            // A quarter of the default cap: keyless peers can hold no more,
            // and a proxy's connection, which proves itself at once, always
            // finds a place.
            max_unproven_connections: 64,
            unproven_timeout_ms: 10_000,
        }
    }
}

/// Descriptors kept free for the database pool, log files and the like.
const RESERVED_DESCRIPTORS: usize = 64;

impl ServerConfig {
    /// The connection cap in force: the configured one, kept below the
    /// process's open-file limit.
    pub fn connection_cap(&self) -> usize {
        let by_descriptors =
            open_file_limit().map(|limit| limit.saturating_sub(RESERVED_DESCRIPTORS).max(1));
        match (self.max_connections, by_descriptors) {
            (0, Some(limit)) => limit,
            (0, None) => 1024,
            (configured, Some(limit)) => configured.min(limit),
            (configured, None) => configured,
        }
    }
}

/// The cap on unproven connections in force: 0 turns it off (any number,
/// up to the connection cap); otherwise at most three quarters of the
/// connection cap, so that however low the descriptor limit makes that cap,
/// proven callers keep a quarter of it.
fn unproven_cap(configured: usize, connection_cap: usize) -> usize {
    if configured == 0 {
        return usize::MAX;
    }
    configured.min(connection_cap - connection_cap / 4).max(1)
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A listener whose connections each hold a place under the cap until they
/// close, with the handshake and idle timeouts applied. Refused
/// connections and accept errors never end it: a refusal is closed at once
/// (logged once per stretch at the cap), and an accept error (out of
/// descriptors, say) is logged and followed by a short pause, so it cannot
/// spin a core. The gRPC server and the proxy adapters both listen on one.
pub struct BoundedListener {
    listener: TcpListener,
    places: Arc<Semaphore>,
    peers: Arc<Peers>,
    unproven: Arc<Unproven>,
    cap: usize,
    at_cap: AtomicBool,
    handshake: Duration,
    idle: Duration,
    /// How long a connection may stay unproven, where that is bounded.
    unproven_timeout: Option<Duration>,
}

/// Whether an unproven connection also has a deadline to prove itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofDeadline {
    /// Only the cap on unproven connections (the gRPC listener: health
    /// checks and reflection need no key).
    None,
    /// `unproven_timeout` from accept (the proxy adapters' listener:
    /// every request needs a key).
    Timeout,
}

impl BoundedListener {
    pub fn new(listener: TcpListener, config: &ServerConfig, deadline: ProofDeadline) -> Self {
        let cap = config.connection_cap();
        Self {
            listener,
            places: Arc::new(Semaphore::new(cap)),
            peers: Arc::new(Peers {
                limit: config.max_connections_per_peer,
                open: std::sync::Mutex::new(HashMap::new()),
            }),
            unproven: Unproven::new(unproven_cap(config.max_unproven_connections, cap)),
            cap,
            at_cap: AtomicBool::new(false),
            handshake: Duration::from_millis(config.handshake_timeout_ms),
            idle: Duration::from_secs(config.idle_timeout_secs),
            unproven_timeout: (deadline == ProofDeadline::Timeout)
                .then(|| Duration::from_millis(config.unproven_timeout_ms)),
        }
    }

    /// The next connection admitted under the cap.
    pub async fn next(&self) -> (Guarded, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    if let Some(guarded) = self.admit(stream, peer) {
                        return (guarded, peer);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; pausing accepts briefly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) -> Option<Guarded> {
        let Some(peer_place) = Peers::take(&self.peers, peer.ip()) else {
            tracing::debug!(%peer, "one peer's cap reached: connection closed");
            return None;
        };
        match Arc::clone(&self.places).try_acquire_owned() {
            Ok(place) => {
                self.at_cap.store(false, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                let proof = Unproven::admit(&self.unproven, peer.ip());
                Some(Guarded::new(
                    stream,
                    (place, peer_place),
                    proof,
                    Timeouts {
                        handshake: self.handshake,
                        idle: self.idle,
                        unproven: self.unproven_timeout,
                    },
                ))
            }
            Err(_) => {
                if !self.at_cap.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        cap = self.cap,
                        %peer,
                        "connection limit reached: new connections are closed at once until some close"
                    );
                }
                None
            }
        }
    }

    /// The connections as a stream, for tonic.
    pub fn incoming(
        self,
    ) -> impl futures_util::Stream<Item = io::Result<Guarded>> + Send + 'static {
        futures_util::stream::unfold(self, |listener| async move {
            let (guarded, _) = listener.next().await;
            Some((Ok(guarded), listener))
        })
    }
}

/// The connections no recognised caller has used yet, oldest first.
#[derive(Debug)]
struct Unproven {
    cap: usize,
    open: std::sync::Mutex<BTreeMap<u64, Proof>>,
    next: AtomicU64,
    /// Whether the cap was met since it was last below it (logged once
    /// per stretch).
    at_cap: AtomicBool,
}

impl Unproven {
    fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: std::sync::Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            at_cap: AtomicBool::new(false),
        })
    }

    /// Registers a new connection from `peer` as unproven, closing one
    /// unproven connection if that makes more than the cap: the oldest of
    /// the peer network that holds the most of them. So a peer that opens
    /// connections as fast as it can closes its own, not a proxy's that is
    /// still in its handshake, nor a health checker's.
    fn admit(unproven: &Arc<Unproven>, ip: IpAddr) -> Proof {
        let id = unproven.next.fetch_add(1, Ordering::Relaxed);
        let proof = Proof(Arc::new(Link {
            id,
            peer: source_network(ip),
            ip: canonical_ip(ip),
            proven: AtomicBool::new(false),
            checking: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            unproven: Arc::clone(unproven),
        }));
        let mut open = crate::domain::shared::sync::lock(&unproven.open);
        if open.len() < unproven.cap {
            unproven.at_cap.store(false, Ordering::Relaxed);
        }
        while open.len() >= unproven.cap {
            let Some(victim) = heaviest_peers_oldest(&open) else {
                break;
            };
            if let Some(evicted) = open.remove(&victim) {
                evicted.0.evicted.store(true, Ordering::SeqCst);
                evicted.0.waker.wake();
            }
            if !unproven.at_cap.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    cap = unproven.cap,
                    "unproven connections at their cap: the oldest of the peer holding the most is closed for each new one"
                );
            }
        }
        open.insert(id, proof.clone());
        proof
    }

    fn forget(&self, id: u64) {
        crate::domain::shared::sync::lock(&self.open).remove(&id);
    }
}

/// The oldest unproven connection of the peer network that holds the most
/// (of two that hold as many, the one whose oldest is older). The map
/// holds at most the cap, so a walk over it is cheap.
fn heaviest_peers_oldest(open: &BTreeMap<u64, Proof>) -> Option<u64> {
    let mut by_peer: HashMap<IpNet, (usize, u64)> = HashMap::new();
    for (&id, proof) in open {
        let entry = by_peer.entry(proof.0.peer).or_insert((0, id));
        entry.0 += 1;
    }
    by_peer
        .into_values()
        .max_by(|(count_a, oldest_a), (count_b, oldest_b)| {
            count_a.cmp(count_b).then(oldest_b.cmp(oldest_a))
        })
        .map(|(_, oldest)| oldest)
}

/// One connection's standing: unproven until a recognised caller uses it.
/// Cheap to clone; the edges get it with each request (as connect info)
/// and call [`Proof::prove`] once the request's caller checks out.
#[derive(Debug, Clone)]
pub struct Proof(Arc<Link>);

#[derive(Debug)]
struct Link {
    id: u64,
    /// The peer's network (an IPv4 address, an IPv6 /64).
    peer: IpNet,
    /// The peer's address, as the connection came from it.
    ip: IpAddr,
    proven: AtomicBool,
    /// A request with a credential is being checked: the deadline to prove
    /// itself waits for the answer (a slow database must not cut a proxy).
    checking: AtomicBool,
    /// Closed to make room for a newer unproven connection.
    evicted: AtomicBool,
    /// Wakes the connection's reader when it is evicted.
    waker: AtomicWaker,
    unproven: Arc<Unproven>,
}

impl Proof {
    /// A recognised caller used the connection: it no longer counts
    /// against the unproven cap, and no deadline to prove itself applies.
    pub fn prove(&self) {
        if !self.0.proven.swap(true, Ordering::SeqCst) {
            self.0.unproven.forget(self.0.id);
        }
    }

    pub fn is_proven(&self) -> bool {
        self.0.proven.load(Ordering::SeqCst)
    }

    /// A whole request that carries a credential arrived and is being
    /// checked: until [`Proof::checked`], the deadline to prove itself
    /// does not cut the connection (it stays evictable).
    pub fn checking(&self) {
        self.0.checking.store(true, Ordering::SeqCst);
    }

    /// The credential did not check out: the deadline applies again.
    pub fn checked(&self) {
        self.0.checking.store(false, Ordering::SeqCst);
        self.0.waker.wake();
    }

    /// The address the connection came from: what a caller's allowed
    /// networks are checked against.
    pub fn peer_ip(&self) -> IpAddr {
        self.0.ip
    }

    /// The proof a request's connection carries, on either listener and
    /// with or without TLS.
    pub fn of_request<B>(request: &http::Request<B>) -> Option<Proof> {
        let extensions = request.extensions();
        extensions
            .get::<GuardedInfo>()
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<GuardedInfo>>()
                    .map(TlsConnectInfo::get_ref)
            })
            .map(|info| info.proof.clone())
            .or_else(|| {
                extensions
                    .get::<axum::extract::ConnectInfo<Proof>>()
                    .map(|info| info.0.clone())
            })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, BoundedListener>>
    for Proof
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, BoundedListener>) -> Self {
        stream.io().proof.clone()
    }
}

/// Open connections per peer network.
#[derive(Debug)]
struct Peers {
    limit: usize,
    open: std::sync::Mutex<HashMap<IpNet, usize>>,
}

/// A connection's place among its peer's; given back when dropped.
#[derive(Debug)]
pub struct PeerPlace {
    peers: Arc<Peers>,
    network: IpNet,
}

impl Peers {
    fn take(peers: &Arc<Peers>, ip: IpAddr) -> Option<PeerPlace> {
        // A peer is what the throttle calls a source: an IPv4 address, or
        // an IPv6 /64.
        let network = source_network(ip);
        let mut open = crate::domain::shared::sync::lock(&peers.open);
        let count = open.entry(network).or_insert(0);
        if *count >= peers.limit {
            return None;
        }
        *count += 1;
        Some(PeerPlace {
            peers: Arc::clone(peers),
            network,
        })
    }
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut open = crate::domain::shared::sync::lock(&self.peers.open);
        if let Some(count) = open.get_mut(&self.network) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.network);
            }
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection under the transport's bounds: it holds its place under the
/// cap until dropped, and fails its reads once the peer has been silent for
/// the handshake timeout (before its first byte) or the idle timeout, once
/// it was closed to make room for a newer unproven connection, and (where
/// the listener sets one) once it stayed unproven past its deadline.
pub struct Guarded {
    stream: TcpStream,
    _place: (OwnedSemaphorePermit, PeerPlace),
    proof: Proof,
    deadline: Pin<Box<Sleep>>,
    handshake: bool,
    idle: Duration,
    /// The deadline to prove itself, while it is unproven.
    unproven_deadline: Option<Pin<Box<Sleep>>>,
    /// Since when a write has waited for the peer to read, if one has.
    write_stall: Option<Pin<Box<Sleep>>>,
}

/// The timeouts a connection is admitted with.
struct Timeouts {
    handshake: Duration,
    idle: Duration,
    unproven: Option<Duration>,
}

/// What a request learns of its connection: the TCP addresses, and its
/// proof (see [`Proof`]).
#[derive(Debug, Clone)]
pub struct GuardedInfo {
    pub tcp: TcpConnectInfo,
    pub proof: Proof,
}

impl Guarded {
    fn new(
        stream: TcpStream,
        place: (OwnedSemaphorePermit, PeerPlace),
        proof: Proof,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            stream,
            _place: place,
            proof,
            deadline: Box::pin(tokio::time::sleep(timeouts.handshake)),
            handshake: true,
            idle: timeouts.idle,
            unproven_deadline: timeouts
                .unproven
                .map(|after| Box::pin(tokio::time::sleep(after))),
            write_stall: None,
        }
    }

    /// Why the connection must close now, if it must: evicted, or unproven
    /// past its deadline (not while a credential it sent is being checked).
    /// Checked on every read, write and flush, so a peer that stops reading
    /// cannot keep a closed connection open by stalling the writes.
    fn must_close(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let link = &self.proof.0;
        link.waker.register(cx.waker());
        if link.proven.load(Ordering::SeqCst) {
            self.unproven_deadline = None;
            return None;
        }
        if link.evicted.load(Ordering::SeqCst) {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room: too many connections without a recognised caller",
            ));
        }
        if link.checking.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(deadline) = self.unproven_deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request with a valid key within the unproven timeout",
                ));
            }
        }
        None
    }

    /// A write that cannot go on: the peer has not read for the idle
    /// timeout (it reads nothing, so the read side's deadlines, which only
    /// run while the server reads, would never fire).
    fn write_stalled(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let idle = self.idle;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        stall.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer read nothing for the idle timeout",
            )
        })
    }

    /// A write, flush or vectored write of the stream, after the checks of
    /// [`Guarded::must_close`]; one that cannot go on counts towards the
    /// stall deadline, which restarts at the next blocked write.
    fn write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Some(error) = self.must_close(cx) {
            return Poll::Ready(Err(error));
        }
        match write(Pin::new(&mut self.stream), cx) {
            Poll::Pending => match self.write_stalled(cx) {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
            ready => {
                self.write_stall = None;
                ready
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if !self.proof.is_proven() {
            self.proof.0.unproven.forget(self.proof.0.id);
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = GuardedInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        GuardedInfo {
            tcp: self.stream.connect_info(),
            proof: self.proof.clone(),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.must_close(cx) {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.handshake = false;
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let what = if self.handshake {
                        "nothing arrived within the handshake timeout"
                    } else {
                        "the connection was idle past the idle timeout"
                    };
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_with(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str) -> IpAddr {
        ip.parse().unwrap()
    }

    #[test]
    fn a_flooding_peer_closes_its_own_connections_first() {
        let unproven = Unproven::new(3);
        let checker = Unproven::admit(&unproven, net("192.0.2.1"));
        let flood: Vec<Proof> = (0..10)
            .map(|_| Unproven::admit(&unproven, net("2001:db8::1")))
            .collect();
        assert!(
            !checker.0.evicted.load(Ordering::SeqCst),
            "the health checker stays"
        );
        let evicted = flood
            .iter()
            .filter(|p| p.0.evicted.load(Ordering::SeqCst))
            .count();
        assert_eq!(evicted, 8, "the flood closes its own oldest");
        // A proven connection leaves the count; a new one finds room.
        flood[9].prove();
        let proxy = Unproven::admit(&unproven, net("198.51.100.1"));
        assert!(!proxy.0.evicted.load(Ordering::SeqCst));
        assert!(!flood[9].0.evicted.load(Ordering::SeqCst));
    }

    #[test]
    fn the_unproven_cap_leaves_proven_callers_a_quarter() {
        assert_eq!(unproven_cap(64, 256), 64);
        assert_eq!(unproven_cap(64, 40), 30);
        assert_eq!(unproven_cap(64, 1), 1);
        assert_eq!(unproven_cap(0, 256), usize::MAX);
    }
}
