//! A Sentinel-managed primary for tests: two `redis-server`s (a primary and its replica) and
//! three `redis-server --sentinel`s watching them.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::cluster::{Supervised, cli, failure};
use super::{RedisServer, fast_failing, free_port, harness};
use cache_core::Config;
use cache_core::Result;

/// The service name the Sentinels watch.
const SERVICE: &str = "cachemere";
const SENTINELS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A primary, its replica and three Sentinels (quorum two, the primary judged down after
/// one second), owned by a test: [`kill`](RedisSentinel::kill) the primary and the Sentinels
/// promote the replica.
///
/// ```no_run
/// use cache_core::RedisStore;
/// use cache_testing::RedisSentinel;
/// use std::time::Duration;
///
/// # async fn demo() -> cache_core::Result<()> {
/// let sentinel = RedisSentinel::start()?;
/// let store = RedisStore::connect(&sentinel.config()).await?;
/// let old = sentinel.primary()?;
/// sentinel.kill(old)?;
/// let new = sentinel.wait_for_failover(old, Duration::from_secs(30))?;
/// assert_ne!(old, new);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct SentinelProcess {
    port: u16,
    process: Option<Supervised>,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            let _ = process.end();
        }
    }
}

impl RedisSentinel {
    /// Starts the primary, its replica and the Sentinels, and waits until the replica is in
    /// sync and every Sentinel knows the replica and the other two Sentinels (so that a
    /// failover can be agreed).
    pub fn start() -> Result<RedisSentinel> {
        let dir = tempfile::Builder::new()
            .prefix("cachemere-sentinel-")
            .tempdir()
            .map_err(harness("could not create a temporary directory"))?;
        let servers = vec![RedisServer::start_private()?, RedisServer::start_private()?];
        let ports: Vec<u16> = servers.iter().filter_map(RedisServer::port).collect();
        cli(ports[1], &["REPLICAOF", "127.0.0.1", &ports[0].to_string()])?;
        let mut sentinels = Vec::with_capacity(SENTINELS);
        for _ in 0..SENTINELS {
            let port = free_port()?;
            let config = dir.path().join(format!("sentinel-{port}.conf"));
            let log = dir.path().join(format!("sentinel-{port}.log"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 5000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.path().display(),
                log = log.display(),
                primary = ports[0],
            );
            std::fs::write(&config, text).map_err(harness("could not write a sentinel.conf"))?;
            let process =
                Supervised::spawn(&[config.into_os_string(), OsString::from("--sentinel")])?;
            sentinels.push(SentinelProcess {
                port,
                process: Some(process),
            });
        }
        let sentinel = RedisSentinel {
            servers,
            sentinels,
            _dir: dir,
        };
        sentinel.wait_ready()?;
        Ok(sentinel)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let replica = self.servers[1].port().unwrap_or_default();
        loop {
            let synced = cli(replica, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"));
            let agreed = self.sentinels.iter().all(|sentinel| {
                cli(sentinel.port, &["SENTINEL", "MASTER", SERVICE]).is_ok_and(|reply| {
                    let fields: Vec<&str> = reply.lines().collect();
                    let field = |name: &str| {
                        fields
                            .iter()
                            .position(|line| *line == name)
                            .and_then(|at| fields.get(at + 1))
                            .copied()
                    };
                    field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2")
                })
            });
            if synced && agreed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failure(format!(
                    "the Sentinels did not agree on a primary and its replica within \
                     {READY_TIMEOUT:?} (replica in sync: {synced})"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL for `REDIS_URL`: `redis+sentinel://` and the three Sentinels.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", sentinels.join(","))
    }

    /// A [`Config`] for the Sentinels' primary with short timeouts (1 s connect, 1 s command).
    pub fn config(&self) -> Config {
        fast_failing(self.url())
    }

    /// The Sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .map(|sentinel| sentinel.port)
            .collect()
    }

    /// The data servers' ports (index 0 started as the primary).
    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().filter_map(RedisServer::port).collect()
    }

    /// Which data server (an index into [`ports`](RedisSentinel::ports)) the first Sentinel
    /// that answers names as the primary.
    pub fn primary(&self) -> Result<usize> {
        let ports = self.ports();
        for sentinel in &self.sentinels {
            let Ok(reply) = cli(
                sentinel.port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
            ) else {
                continue;
            };
            if let Some(index) = reply
                .lines()
                .nth(1)
                .and_then(|port| port.trim().parse::<u16>().ok())
                .and_then(|port| ports.iter().position(|p| *p == port))
            {
                return Ok(index);
            }
        }
        Err(failure("no Sentinel names a primary".into()))
    }

    /// Asks the Sentinels for a failover (`SENTINEL FAILOVER`): the replica is promoted and
    /// the old primary, still running and reachable, is demoted to a replica of it (it then
    /// answers writes with `READONLY`). Wait for it with
    /// [`wait_for_failover`](RedisSentinel::wait_for_failover).
    pub fn failover(&self) -> Result<()> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match cli(sentinel.port, &["SENTINEL", "FAILOVER", SERVICE]) {
                Ok(reply) if reply.trim() == "OK" => return Ok(()),
                Ok(reply) => last = Some(reply),
                Err(err) => last = Some(err.to_string()),
            }
        }
        Err(failure(format!(
            "no Sentinel started a failover: {}",
            last.unwrap_or_default().trim()
        )))
    }

    /// Kills data server `index` (`SIGKILL`), as a crash would.
    pub fn kill(&self, index: usize) -> Result<()> {
        self.server(index)?.kill()
    }

    /// Freezes data server `index` (`SIGSTOP`).
    pub fn pause(&self, index: usize) -> Result<()> {
        self.server(index)?.pause()
    }

    /// Unfreezes data server `index` (`SIGCONT`).
    pub fn resume(&self, index: usize) -> Result<()> {
        self.server(index)?.resume()
    }

    /// Freezes Sentinel `index` (`SIGSTOP`, an index into
    /// [`sentinel_ports`](RedisSentinel::sentinel_ports)): it accepts connections and answers
    /// nothing.
    pub fn pause_sentinel(&self, index: usize) -> Result<()> {
        self.signal_sentinel(index, "STOP")
    }

    /// Unfreezes Sentinel `index` (`SIGCONT`).
    pub fn resume_sentinel(&self, index: usize) -> Result<()> {
        self.signal_sentinel(index, "CONT")
    }

    fn signal_sentinel(&self, index: usize, signal: &str) -> Result<()> {
        let pid = self
            .sentinels
            .get(index)
            .and_then(|sentinel| sentinel.process.as_ref())
            .map(|process| process.pid)
            .ok_or_else(|| failure(format!("Sentinel {index} is not running")))?;
        super::send_signal(pid, signal)
    }

    fn server(&self, index: usize) -> Result<&RedisServer> {
        self.servers
            .get(index)
            .ok_or_else(|| failure(format!("there are two data servers, not {}", index + 1)))
    }

    /// Waits until the Sentinels name a primary other than `old` and it reports the
    /// `master` role; returns its index.
    pub fn wait_for_failover(&self, old: usize, within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(new) = self.primary()
                && new != old
                && cli(self.ports()[new], &["ROLE"]).is_ok_and(|role| role.starts_with("master"))
            {
                return Ok(new);
            }
            if Instant::now() > deadline {
                return Err(failure(format!(
                    "the Sentinels did not fail over within {within:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
