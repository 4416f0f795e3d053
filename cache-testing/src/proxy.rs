//! A TCP proxy in front of a server whose connections can be made to go silent.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cache_core::Result;

const POLL: Duration = Duration::from_millis(20);

/// A loopback TCP proxy to a server (a [`RedisServer`](super::RedisServer)'s port, say) that
/// fakes a half-open connection: after [`silence`](SilentProxy::silence), every connection
/// open at that moment stays open but carries nothing either way (what a client sees after a
/// network partition or a NAT timeout, with no reset), while new connections are forwarded as
/// usual. Dropping the proxy closes everything.
///
/// ```no_run
/// use cache_testing::{RedisServer, SilentProxy};
///
/// # fn demo() -> cache_core::Result<()> {
/// let server = RedisServer::start_private()?;
/// let proxy = SilentProxy::start(server.port().expect("a private server"))?;
/// let mut config = server.config();
/// config.redis_url = Some(proxy.url());
/// // connect through `config`, then:
/// proxy.silence();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SilentProxy {
    port: u16,
    silenced: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SilentProxy {
    /// Listens on a free loopback port and forwards each connection to `target_port`.
    pub fn start(target_port: u16) -> Result<SilentProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(super::harness("bind the proxy's port"))?;
        let port = listener
            .local_addr()
            .map_err(super::harness("read the proxy's port"))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(super::harness("make the proxy's listener non-blocking"))?;
        let proxy = SilentProxy {
            port,
            silenced: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (silenced, stop) = (Arc::clone(&proxy.silenced), Arc::clone(&proxy.stop));
        std::thread::spawn(move || accept(&listener, target_port, &silenced, &stop));
        Ok(proxy)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection open now goes silent for good; later ones are forwarded.
    pub fn silence(&self) {
        self.silenced.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept(
    listener: &TcpListener,
    target_port: u16,
    silenced: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => return,
        };
        let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, target_port)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let generation = silenced.load(Ordering::SeqCst);
        for (from, to) in [(&client, &server), (&server, &client)] {
            let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let (silenced, stop) = (Arc::clone(silenced), Arc::clone(stop));
            std::thread::spawn(move || pump(from, to, generation, &silenced, &stop));
        }
    }
}

/// Copies `from` to `to` until either closes, dropping what arrives once silenced.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    generation: u64,
    silenced: &AtomicU64,
    stop: &AtomicBool,
) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => break,
        };
        if silenced.load(Ordering::SeqCst) != generation {
            continue;
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    if silenced.load(Ordering::SeqCst) == generation || stop.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}
