//! The test kit of [cachemere](https://docs.rs/cachemere), for your own tests: real Redis
//! servers, clusters and Sentinels that a test starts itself, and the faults to break them
//! with (kill, freeze, restart, a connection gone silent).
//!
//! Add it as a dev-dependency (`cache-testing = "0.1"`); it needs `redis-server` and
//! `redis-cli` on the `PATH` (Debian/Ubuntu: `apt-get install redis-server`).
//!
//! [`RedisServer::start`] launches `redis-server` on a free loopback port with no persistence
//! and a temporary directory, waits until it answers `PING`, and kills it when dropped. The
//! fault-injection methods ([`kill`](RedisServer::kill), [`pause`](RedisServer::pause),
//! [`restart`](RedisServer::restart), ...) act on that process.
//!
//! [`RedisCluster`] does the same for a Redis Cluster of three primaries, and
//! [`RedisCluster::lease`] shares a few of them between the tests of one binary.
//!
//! Set `CACHEMERE_TEST_REDIS_URL` to run against an existing server instead (fault injection is
//! then unavailable). `REDIS_URL` is deliberately not used: it names an application's Redis,
//! which tests must not write into by accident.
//!
//! ```no_run
//! use cache_core::RedisStore;
//! use cache_testing::RedisServer;
//!
//! # async fn demo() -> cache_core::Result<()> {
//! let server = RedisServer::start()?;
//! let store = RedisStore::connect(&server.config()).await?;
//! server.kill()?;
//! server.restart()?;
//! # Ok(())
//! # }
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cache_core::{Config, Error, Result};

mod cluster;
mod fixture;
mod proxy;
mod sentinel;
mod tls;

pub use self::cluster::{ClusterLease, RedisCluster};
pub use self::fixture::TestStore;
pub use self::proxy::SilentProxy;
pub use self::sentinel::RedisSentinel;
pub use self::tls::TlsFiles;

/// Names the variable that points tests at an existing server.
pub const TEST_URL_VAR: &str = "CACHEMERE_TEST_REDIS_URL";

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 5;
const INSTALL_HINT: &str = "install Redis (Debian/Ubuntu: `sudo apt-get install redis-server`, \
     macOS: `brew install redis`) or set CACHEMERE_TEST_REDIS_URL to a server the tests may write to";

/// A `redis-server` process owned by a test, or an external server named by
/// `CACHEMERE_TEST_REDIS_URL`.
#[derive(Debug)]
pub struct RedisServer {
    target: Target,
}

#[derive(Debug)]
enum Target {
    External(String),
    Owned(Owned),
}

#[derive(Debug)]
struct Owned {
    port: u16,
    persistent: bool,
    tls: Option<ServerTls>,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

/// The TLS side of a [`RedisServer::start_tls`] server.
#[derive(Debug)]
struct ServerTls {
    port: u16,
    files: TlsFiles,
    client_auth: bool,
}

fn harness(reason: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Harness {
        reason: reason.into(),
        source: Some(source),
    }
}

impl RedisServer {
    /// The server tests should use: `CACHEMERE_TEST_REDIS_URL` if set, else a fresh private
    /// `redis-server`. Fails (never skips) with installation advice when neither is available.
    pub fn start() -> Result<RedisServer> {
        match std::env::var(TEST_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Ok(RedisServer {
                target: Target::External(url),
            }),
            _ => RedisServer::start_private(),
        }
    }

    /// Always launches a private `redis-server`, ignoring `CACHEMERE_TEST_REDIS_URL` (for
    /// fault-injection tests).
    pub fn start_private() -> Result<RedisServer> {
        RedisServer::launch_private(false, None)
    }

    /// A private server that accepts TLS (`rediss://`) with a certificate signed by a fresh
    /// test authority ([`TlsFiles`]); [`url`](RedisServer::url) names its TLS port and
    /// [`config`](RedisServer::config) trusts the authority (`tls_ca_file`). It also listens
    /// in plaintext on [`port`](RedisServer::port), which the harness uses to see it is up.
    pub fn start_tls() -> Result<RedisServer> {
        RedisServer::launch_private(false, Some(false))
    }

    /// [`start_tls`](RedisServer::start_tls) for a server that also requires a client
    /// certificate signed by its authority (mutual TLS); [`config`](RedisServer::config)
    /// presents [`TlsFiles::client_cert_file`].
    pub fn start_mutual_tls() -> Result<RedisServer> {
        RedisServer::launch_private(false, Some(true))
    }

    /// The certificates of a [TLS](RedisServer::start_tls) server.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        match &self.target {
            Target::Owned(Owned { tls: Some(tls), .. }) => Some(&tls.files),
            _ => None,
        }
    }

    /// A private `redis-server` that keeps its data on disk (`appendonly yes`, fsync on every
    /// write), so that a [`kill`](RedisServer::kill) and [`restart`](RedisServer::restart)
    /// bring back everything it acknowledged, as a production server with persistence does.
    pub fn start_persistent() -> Result<RedisServer> {
        RedisServer::launch_private(true, None)
    }

    fn launch_private(persistent: bool, client_auth: Option<bool>) -> Result<RedisServer> {
        let dir = tempfile::Builder::new()
            .prefix("cachemere-redis-")
            .tempdir()
            .map_err(harness("could not create a temporary directory"))?;
        let tls = match client_auth {
            Some(client_auth) => Some(ServerTls {
                port: free_port()?,
                files: TlsFiles::generate()?,
                client_auth,
            }),
            None => None,
        };
        let mut owned = Owned {
            port: free_port()?,
            persistent,
            tls,
            dir,
            child: Mutex::new(None),
        };
        let mut attempts = 1;
        loop {
            match owned.launch() {
                Ok(()) => {
                    return Ok(RedisServer {
                        target: Target::Owned(owned),
                    });
                }
                Err(
                    err @ Error::Harness {
                        source: Some(_), ..
                    },
                ) => return Err(err),
                Err(err) if attempts == START_ATTEMPTS => return Err(err),
                Err(_) => {
                    attempts += 1;
                    owned.port = free_port()?;
                    if let Some(tls) = &mut owned.tls {
                        tls.port = free_port()?;
                    }
                }
            }
        }
    }

    /// The server's URL (`redis://127.0.0.1:<port>/0`; `rediss://127.0.0.1:<TLS port>/0` for
    /// a [TLS](RedisServer::start_tls) server).
    pub fn url(&self) -> String {
        match &self.target {
            Target::External(url) => url.clone(),
            Target::Owned(Owned { tls: Some(tls), .. }) => {
                format!("rediss://127.0.0.1:{}/0", tls.port)
            }
            Target::Owned(owned) => format!("redis://127.0.0.1:{}/0", owned.port),
        }
    }

    /// The port of a private server (`None` for an external one).
    pub fn port(&self) -> Option<u16> {
        match &self.target {
            Target::External(_) => None,
            Target::Owned(owned) => Some(owned.port),
        }
    }

    /// How many times the server ran `command` (`calls` in `INFO commandstats`, 0 if never),
    /// read with `redis-cli`: count round trips in a test instead of timing them.
    ///
    /// ```no_run
    /// # fn main() -> cache_core::Result<()> {
    /// let server = cache_testing::RedisServer::start_private()?;
    /// let before = server.command_calls("mget")?;
    /// // ... run the code under test ...
    /// assert_eq!(server.command_calls("mget")? - before, 1, "one MGET");
    /// # Ok(())
    /// # }
    /// ```
    pub fn command_calls(&self, command: &str) -> Result<u64> {
        let owned = self.owned("read the command statistics of")?;
        cluster::command_calls(owned.port, command)
    }

    /// A [`Config`] for this server with short timeouts (1 s connect, 1 s command), so that
    /// failing tests fail fast. For a [TLS](RedisServer::start_tls) server it trusts the test
    /// authority, and presents the client certificate when the server requires one.
    pub fn config(&self) -> Config {
        let mut config = fast_failing(self.url());
        if let Target::Owned(Owned { tls: Some(tls), .. }) = &self.target {
            config.tls_ca_file = Some(tls.files.ca_file());
            if tls.client_auth {
                config.tls_cert_file = Some(tls.files.client_cert_file());
                config.tls_key_file = Some(tls.files.client_key_file());
            }
        }
        config
    }

    fn owned(&self, action: &str) -> Result<&Owned> {
        match &self.target {
            Target::Owned(owned) => Ok(owned),
            Target::External(_) => Err(Error::Harness {
                reason: format!(
                    "cannot {action} an external server ({TEST_URL_VAR}); use RedisServer::start_private"
                ),
                source: None,
            }),
        }
    }

    /// Stops the server gracefully (`SIGTERM`) and waits for it to exit.
    pub fn stop(&self) -> Result<()> {
        let owned = self.owned("stop")?;
        owned.signal("TERM")?;
        owned.reap()
    }

    /// Kills the server abruptly (`SIGKILL`), as a crash would.
    pub fn kill(&self) -> Result<()> {
        let owned = self.owned("kill")?;
        owned.signal("KILL")?;
        owned.reap()
    }

    /// Freezes the server (`SIGSTOP`): connections stay open but nothing is answered.
    pub fn pause(&self) -> Result<()> {
        self.owned("pause")?.signal("STOP")
    }

    /// Unfreezes a paused server (`SIGCONT`).
    pub fn resume(&self) -> Result<()> {
        self.owned("resume")?.signal("CONT")
    }

    /// Starts the server again on the same port (killing it first if it still runs), with an
    /// empty dataset, or with the data on disk for a [persistent](RedisServer::start_persistent)
    /// server.
    pub fn restart(&self) -> Result<()> {
        let owned = self.owned("restart")?;
        if owned.pid().is_some() {
            owned.signal("KILL")?;
            owned.reap()?;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match owned.launch() {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() > deadline => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Owned {
    fn launch(&self) -> Result<()> {
        let mut command = Command::new("redis-server");
        if let Some(tls) = &self.tls {
            command
                .args(["--tls-port", &tls.port.to_string()])
                .arg("--tls-cert-file")
                .arg(tls.files.server_cert_file())
                .arg("--tls-key-file")
                .arg(tls.files.server_key_file())
                .arg("--tls-ca-cert-file")
                .arg(tls.files.ca_file())
                .args([
                    "--tls-auth-clients",
                    if tls.client_auth { "yes" } else { "no" },
                ]);
        }
        let child = command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .args(["--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Harness {
                reason: format!("could not run redis-server: {INSTALL_HINT}"),
                source: Some(source),
            })?;
        *self.lock() = Some(child);
        self.wait_ready()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Child::id)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.lock().as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Harness {
                    reason: format!(
                        "redis-server exited with {status} on port {} (see {})",
                        self.port,
                        self.dir.path().join("redis.log").display()
                    ),
                    source: None,
                });
            }
            if ping(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(Error::Harness {
            reason: format!(
                "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}",
                self.port
            ),
            source: None,
        })
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Err(Error::Harness {
                reason: format!("cannot send SIG{signal}: the server is not running"),
                source: None,
            });
        };
        send_signal(pid, signal)
    }

    fn reap(&self) -> Result<()> {
        if let Some(mut child) = self.lock().take() {
            child
                .wait()
                .map_err(harness("could not wait for redis-server"))?;
        }
        Ok(())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A [`Config`] for `url` with 1 s connect and command timeouts.
fn fast_failing(url: String) -> Config {
    let mut config = Config::default();
    config.redis_url = Some(url);
    config.connect_timeout = Duration::from_secs(1);
    config.command_timeout = Duration::from_secs(1);
    config
}

/// Sends `SIG<signal>` to a process.
fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_err(harness(format!("could not send SIG{signal}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Harness {
            reason: format!("kill -{signal} {pid} failed with {status}"),
            source: None,
        })
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(harness("could not find a free port"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(harness("could not find a free port"))
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
