//! A private Redis Cluster for tests: three primaries on free loopback ports, joined with
//! `redis-cli --cluster create`.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::{INSTALL_HINT, TlsFiles, fast_failing, free_port, harness, send_signal};
use cache_core::Config;
use cache_core::key::hash_slot as slot;
use cache_core::{Error, Result};

const PRIMARIES: usize = 3;
const BUS_OFFSET: u16 = 10000;
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 5;

/// A Redis Cluster of three primaries (no replicas, no persistence) owned by a test.
///
/// [`start`](RedisCluster::start) builds a new one (about two seconds: Redis keeps a new
/// cluster node unwritable for its first two seconds); [`lease`](RedisCluster::lease) borrows
/// an emptied one from a pool kept for the test binary, which is how suites of many short
/// tests share a few clusters. The nodes run with `cluster-require-full-coverage no`, so the
/// slots of live nodes keep working while another node is down.
///
/// Node processes end with the cluster, or at the latest when the test process exits (each
/// runs under a shell that kills it when the test's end of its standard input closes).
///
/// ```no_run
/// use cache_core::{RedisStore, Store};
/// use cache_testing::RedisCluster;
/// use std::time::Duration;
///
/// # async fn demo() -> cache_core::Result<()> {
/// let cluster = RedisCluster::start()?;
/// let store = RedisStore::connect(&cluster.config()).await?;
/// store.set("user:1", b"one", Duration::from_secs(60)).await?;
/// let node = cluster.node_of("user:1");
/// cluster.kill(node)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    /// Slots moved by [`migrate_slot`](RedisCluster::migrate_slot), with their new node.
    moved: Mutex<std::collections::HashMap<u16, usize>>,
    replicas: bool,
    tls: Option<TlsFiles>,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Node {
    /// The plaintext port, which the harness uses (also on a TLS cluster).
    port: u16,
    /// A TLS cluster's: the port clients use, and the certificate files.
    tls: Option<(u16, Vec<std::ffi::OsString>)>,
    /// The slots a primary served when the cluster started (`None` for a replica).
    slots: Option<(u16, u16)>,
    dir: std::path::PathBuf,
    process: Mutex<Option<Supervised>>,
}

/// A `redis-server` under `sh`, which kills it once its standard input closes.
#[derive(Debug)]
pub(super) struct Supervised {
    shell: Child,
    stdin: Option<ChildStdin>,
    pub(super) pid: u32,
}

/// A cluster borrowed from the pool ([`RedisCluster::lease`]); it goes back, emptied, when
/// dropped.
#[derive(Debug)]
pub struct ClusterLease {
    cluster: Option<Arc<RedisCluster>>,
}

static POOL: OnceLock<Mutex<Vec<Arc<RedisCluster>>>> = OnceLock::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisCluster {
    /// Starts a new cluster of three primaries and waits until every node reports
    /// `cluster_state:ok`. Fails (never skips) with installation advice when `redis-server`
    /// or `redis-cli` is missing.
    pub fn start() -> Result<RedisCluster> {
        RedisCluster::start_with(false, false)
    }

    /// A cluster of three primaries with one replica each (six nodes): when a primary is
    /// killed or frozen, its replica takes over its slots after the node timeout (2 s)
    /// ([`wait_for_failover`](RedisCluster::wait_for_failover)).
    pub fn start_with_replicas() -> Result<RedisCluster> {
        RedisCluster::start_with(false, true)
    }

    /// A cluster whose nodes take clients over TLS only through
    /// [`url`](RedisCluster::url) (`rediss://`), with certificates signed by a fresh test
    /// authority ([`TlsFiles`]) that [`config`](RedisCluster::config) trusts; the nodes talk
    /// to each other over TLS too (`tls-cluster yes`).
    pub fn start_tls() -> Result<RedisCluster> {
        RedisCluster::start_with(true, false)
    }

    fn start_with(tls: bool, replicas: bool) -> Result<RedisCluster> {
        let mut attempts = 1;
        loop {
            match RedisCluster::try_start(tls, replicas) {
                Ok(cluster) => return Ok(cluster),
                Err(
                    err @ Error::Harness {
                        source: Some(_), ..
                    },
                ) => return Err(err),
                Err(err) if attempts == START_ATTEMPTS => return Err(err),
                Err(_) => attempts += 1,
            }
        }
    }

    /// Borrows an idle cluster from this process's pool, emptied ([`flush`](RedisCluster::flush)),
    /// or starts a new one when all are in use. A leased cluster with a killed node is not
    /// returned to the pool.
    pub fn lease() -> Result<ClusterLease> {
        let pool = POOL.get_or_init(Mutex::default);
        let idle = lock(pool).pop();
        let cluster = match idle {
            Some(cluster) => cluster,
            None => Arc::new(RedisCluster::start()?),
        };
        cluster.flush()?;
        Ok(ClusterLease {
            cluster: Some(cluster),
        })
    }

    fn try_start(tls: bool, replicas: bool) -> Result<RedisCluster> {
        let dir = tempfile::Builder::new()
            .prefix("cachemere-cluster-")
            .tempdir()
            .map_err(harness("could not create a temporary directory"))?;
        let tls = tls.then(TlsFiles::generate).transpose()?;
        // The cluster bus listens on the client port + 10000: on a TLS cluster, the TLS port's.
        let count = if replicas { 2 * PRIMARIES } else { PRIMARIES };
        let ports = free_cluster_ports(count)?;
        let mut nodes = Vec::with_capacity(count);
        for &bus_based in &ports {
            let (port, node_tls) = match &tls {
                Some(files) => {
                    let args = [
                        "--tls-cert-file".into(),
                        files.server_cert_file().into_os_string(),
                        "--tls-key-file".into(),
                        files.server_key_file().into_os_string(),
                        "--tls-ca-cert-file".into(),
                        files.ca_file().into_os_string(),
                        "--tls-auth-clients".into(),
                        "no".into(),
                        "--tls-cluster".into(),
                        "yes".into(),
                    ];
                    (free_port()?, Some((bus_based, args.to_vec())))
                }
                None => (bus_based, None),
            };
            nodes.push(Node {
                port,
                tls: node_tls,
                slots: None,
                dir: dir.path().join(port.to_string()),
                process: Mutex::new(None),
            });
        }
        for node in &nodes {
            std::fs::create_dir_all(&node.dir)
                .map_err(harness("could not create a node directory"))?;
            node.launch()?;
        }
        for node in &nodes {
            node.wait_answering()?;
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        if let Some(files) = &tls {
            create.extend(["--tls".to_owned(), "--cacert".to_owned()]);
            create.push(files.ca_file().display().to_string());
        }
        create.extend(
            nodes
                .iter()
                .map(|node| format!("127.0.0.1:{}", node.client_port())),
        );
        create.extend([
            "--cluster-replicas".to_owned(),
            u8::from(replicas).to_string(),
        ]);
        create.push("--cluster-yes".to_owned());
        let output = redis_cli(&create)?;
        if !output.status.success() {
            return Err(failure(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        let mut cluster = RedisCluster {
            nodes,
            moved: Mutex::default(),
            replicas,
            tls,
            _dir: dir,
        };
        cluster.wait_ok()?;
        cluster.read_slots()?;
        Ok(cluster)
    }

    fn wait_ok(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info = node.cli(&["CLUSTER", "INFO"]).unwrap_or_default();
                let known = node.cli(&["CLUSTER", "NODES"]).unwrap_or_default();
                let masters = known.lines().filter(|l| l.contains("master")).count();
                let in_sync = !self.replicas
                    || node.cli(&["INFO", "replication"]).is_ok_and(|info| {
                        info.contains("role:master") || info.contains("master_link_status:up")
                    });
                if info.contains("cluster_state:ok")
                    && masters == PRIMARIES
                    && known.lines().count() == self.nodes.len()
                    && !known.contains("handshake")
                    && !known.contains("fail")
                    && in_sync
                {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(failure(format!(
                        "the cluster on port {} was not ready within {READY_TIMEOUT:?}: {info}",
                        node.port
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn read_slots(&mut self) -> Result<()> {
        let nodes = self.nodes[0].cli(&["CLUSTER", "NODES"])?;
        for node in &mut self.nodes {
            let line = nodes
                .lines()
                .find(|line| line.contains(&format!("127.0.0.1:{}@", node.port)))
                .ok_or_else(|| failure(format!("node {} is not in CLUSTER NODES", node.port)))?;
            node.slots = slot_range(line);
            if node.slots.is_none() && line.contains("master") {
                return Err(failure(format!("no slot range in `{line}`")));
            }
        }
        Ok(())
    }

    /// The cluster's URL for `REDIS_URL`: every node, comma-separated (`rediss://` on a
    /// [TLS](RedisCluster::start_tls) cluster).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.nodes
            .iter()
            .map(|node| format!("{scheme}://127.0.0.1:{}", node.client_port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A [`Config`] for this cluster with short timeouts (1 s connect, 1 s command); on a
    /// [TLS](RedisCluster::start_tls) cluster it trusts the test authority.
    pub fn config(&self) -> Config {
        let mut config = fast_failing(self.url());
        config.tls_ca_file = self.tls.as_ref().map(TlsFiles::ca_file);
        config
    }

    /// The nodes' plaintext ports (which the harness uses, also on a TLS cluster), in the
    /// order of their slot ranges.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// How many times the cluster's nodes ran `command`, all together (`calls` in their
    /// `INFO commandstats`): see [`RedisServer::command_calls`](crate::RedisServer::command_calls).
    pub fn command_calls(&self, command: &str) -> Result<u64> {
        self.ports()
            .into_iter()
            .map(|port| command_calls(port, command))
            .sum()
    }

    /// Which node (an index into [`ports`](RedisCluster::ports)) holds `key`: the node that
    /// served its slot when the cluster started, or the one it was
    /// [migrated](RedisCluster::migrate_slot) to.
    pub fn node_of(&self, key: &str) -> usize {
        self.node_of_slot(slot(key.as_bytes()))
    }

    /// Which node holds `slot` (see [`node_of`](RedisCluster::node_of)).
    pub fn node_of_slot(&self, slot: u16) -> usize {
        if let Some(&node) = lock(&self.moved).get(&slot) {
            return node;
        }
        self.nodes
            .iter()
            .position(|node| {
                node.slots
                    .is_some_and(|(first, last)| (first..=last).contains(&slot))
            })
            .unwrap_or(0)
    }

    /// Waits until every replica has acknowledged everything its primary holds (its offset
    /// equals the primary's `master_repl_offset`), so that a failover loses no write made so
    /// far.
    pub fn wait_replicated(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        for node in &self.nodes {
            loop {
                let info = node.cli(&["INFO", "replication"])?;
                if !info.contains("role:master") {
                    break;
                }
                let field = |name: &str| {
                    info.lines()
                        .find_map(|line| line.trim().strip_prefix(name))
                        .map(str::to_owned)
                };
                let offset = field("master_repl_offset:").unwrap_or_default();
                let replicas: Vec<&str> = info
                    .lines()
                    .filter(|line| line.starts_with("slave") && line.contains("offset="))
                    .collect();
                let caught_up = !replicas.is_empty()
                    && replicas.iter().all(|line| {
                        line.split(',')
                            .any(|part| part.strip_prefix("offset=") == Some(offset.trim()))
                    });
                if caught_up {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(failure(format!(
                        "the replicas of node {} did not catch up within {within:?}: {info}",
                        node.port
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// Waits until another node serves, as a healthy primary, the slots node `old` served
    /// when the cluster started, and the cluster reports `cluster_state:ok` again; returns
    /// that node's index. Needs [replicas](RedisCluster::start_with_replicas).
    pub fn wait_for_failover(&self, old: usize, within: Duration) -> Result<usize> {
        let slots = self
            .node(old)?
            .slots
            .ok_or_else(|| failure(format!("node {old} started as a replica")))?;
        let deadline = Instant::now() + within;
        loop {
            // The first other node that answers is the witness.
            let witness = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != old)
                .find_map(|(_, node)| {
                    let known = node.cli(&["CLUSTER", "NODES"]).ok()?;
                    let info = node.cli(&["CLUSTER", "INFO"]).ok()?;
                    Some((known, info))
                });
            let new = witness
                .filter(|(_, info)| info.contains("cluster_state:ok"))
                .and_then(|(known, _)| {
                    let line = known.lines().find(|line| {
                        let flags = line.split_whitespace().nth(2).unwrap_or_default();
                        flags.contains("master")
                            && !flags.contains("fail")
                            && slot_range(line) == Some(slots)
                    })?;
                    self.nodes.iter().position(|node| {
                        line.contains(&format!("127.0.0.1:{}@", node.port))
                            || line.contains(&format!("127.0.0.1:{}@", node.client_port()))
                    })
                });
            if let Some(new) = new.filter(|&new| new != old) {
                return Ok(new);
            }
            if Instant::now() > deadline {
                return Err(failure(format!(
                    "no replica took over node {old}'s slots within {within:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves `slot` to node `to` while clients keep using it, the way `redis-cli --cluster
    /// reshard` does: the target is told it is `IMPORTING` the slot and the source that it is
    /// `MIGRATING` it; the slot's keys move one by one (`MIGRATE … REPLACE`), `pace` apart;
    /// then every primary learns the slot's new owner (`CLUSTER SETSLOT … NODE`). In
    /// between, clients get `ASK` redirects for keys already moved (and `TRYAGAIN` for a
    /// command over keys on both sides); afterwards `MOVED`.
    pub fn migrate_slot(&self, slot: u16, to: usize, pace: Duration) -> Result<()> {
        let from = self.node_of_slot(slot);
        if from == to {
            return Ok(());
        }
        let (source, target) = (self.node(from)?, self.node(to)?);
        let id = |node: &Node| -> Result<String> {
            Ok(node.cli(&["CLUSTER", "MYID"])?.trim().to_owned())
        };
        let (source_id, target_id) = (id(source)?, id(target)?);
        let slot_arg = slot.to_string();
        target.cli(&["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &source_id])?;
        source.cli(&["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &target_id])?;
        let target_port = target.port.to_string();
        loop {
            let keys = source.cli(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "1"])?;
            let Some(key) = keys.lines().map(str::trim).find(|key| !key.is_empty()) else {
                break;
            };
            let migrate = [
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                key,
                "0",
                "5000",
                "REPLACE",
            ];
            let reply = source.cli(&migrate)?;
            if !reply.starts_with("OK") && !reply.starts_with("NOKEY") {
                return Err(failure(format!("MIGRATE {key}: {reply}")));
            }
            std::thread::sleep(pace);
        }
        // the target first, then the source (as `redis-cli --cluster reshard` does): told
        // first, the source would send clients to a target still importing the slot, which
        // sends them back
        let others = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(index, node)| node.slots.is_some() && *index != from && *index != to)
            .map(|(_, node)| node);
        for node in [target, source].into_iter().chain(others) {
            node.cli(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &target_id])?;
        }
        lock(&self.moved).insert(slot, to);
        Ok(())
    }

    /// Empties every node (`FLUSHALL`) and resets its statistics (`CONFIG RESETSTAT`).
    pub fn flush(&self) -> Result<()> {
        for node in &self.nodes {
            node.cli(&["FLUSHALL", "SYNC"])?;
            node.cli(&["CONFIG", "RESETSTAT"])?;
        }
        Ok(())
    }

    /// Kills node `index` (`SIGKILL`), as a crash would; its slots become unreachable.
    pub fn kill(&self, index: usize) -> Result<()> {
        let node = self.node(index)?;
        let process = lock(&node.process).take();
        match process {
            Some(process) => process.end(),
            None => Err(failure(format!("node {} is not running", node.port))),
        }
    }

    /// Freezes node `index` (`SIGSTOP`): its connections stay open but nothing is answered.
    pub fn pause(&self, index: usize) -> Result<()> {
        self.signal(index, "STOP")
    }

    /// Unfreezes a paused node (`SIGCONT`).
    pub fn resume(&self, index: usize) -> Result<()> {
        self.signal(index, "CONT")
    }

    fn signal(&self, index: usize, signal: &str) -> Result<()> {
        let node = self.node(index)?;
        let pid = lock(&node.process)
            .as_ref()
            .map(|process| process.pid)
            .ok_or_else(|| failure(format!("node {} is not running", node.port)))?;
        send_signal(pid, signal)
    }

    /// Starts a killed node again on its port, empty, with its cluster identity (its
    /// `nodes.conf`), so that it takes its slots back.
    pub fn restart(&self, index: usize) -> Result<()> {
        let node = self.node(index)?;
        if let Some(process) = lock(&node.process).take() {
            process.end()?;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match node.launch().and_then(|()| node.wait_answering()) {
                Ok(()) => break,
                Err(err) if Instant::now() > deadline => return Err(err),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        self.wait_ok()
    }

    fn all_running(&self) -> bool {
        self.nodes.iter().all(|node| lock(&node.process).is_some())
    }

    fn node(&self, index: usize) -> Result<&Node> {
        self.nodes.get(index).ok_or_else(|| {
            failure(format!(
                "the cluster has {} nodes, not {}",
                self.nodes.len(),
                index + 1
            ))
        })
    }
}

impl std::ops::Deref for ClusterLease {
    type Target = RedisCluster;

    fn deref(&self) -> &RedisCluster {
        self.cluster
            .as_deref()
            .unwrap_or_else(|| unreachable!("a lease holds its cluster until dropped"))
    }
}

impl Drop for ClusterLease {
    fn drop(&mut self) {
        if let (Some(cluster), Some(pool)) = (self.cluster.take(), POOL.get())
            && cluster.all_running()
        {
            lock(pool).push(cluster);
        }
    }
}

impl Node {
    /// The port clients use: the TLS port on a TLS cluster.
    fn client_port(&self) -> u16 {
        self.tls.as_ref().map_or(self.port, |(port, _)| *port)
    }

    fn launch(&self) -> Result<()> {
        let port = self.port.to_string();
        let mut args: Vec<OsString> = Vec::new();
        if let Some((tls_port, tls_args)) = &self.tls {
            args.extend(["--tls-port".into(), tls_port.to_string().into()]);
            args.extend(tls_args.iter().cloned());
        }
        args.extend(
            [
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                "--cluster-require-full-coverage",
                "no",
                "--cluster-config-file",
            ]
            .map(OsString::from),
        );
        args.extend([
            self.dir.join("nodes.conf").into_os_string(),
            "--dir".into(),
            self.dir.clone().into_os_string(),
            "--logfile".into(),
            self.dir.join("redis.log").into_os_string(),
        ]);
        *lock(&self.process) = Some(Supervised::spawn(&args)?);
        Ok(())
    }

    fn wait_answering(&self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if super::ping(self.port) {
                return Ok(());
            }
            if let Some(process) = lock(&self.process).as_mut()
                && let Ok(Some(status)) = process.shell.try_wait()
            {
                return Err(failure(format!(
                    "redis-server exited with {status} on port {} (see {})",
                    self.port,
                    self.dir.join("redis.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(failure(format!(
            "redis-server --cluster-enabled on port {} did not answer PING within {READY_TIMEOUT:?}",
            self.port
        )))
    }

    fn cli(&self, args: &[&str]) -> Result<String> {
        cli(self.port, args)
    }
}

/// `calls` of `command` in the `INFO commandstats` of the server on `port` (0 if never).
pub(super) fn command_calls(port: u16, command: &str) -> Result<u64> {
    let info = cli(port, &["INFO", "commandstats"])?;
    let prefix = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
    Ok(info
        .lines()
        .find_map(|line| line.trim().strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0))
}

/// `redis-cli -p <port> <args>`: its output, or a harness error when it failed or the
/// server answered `ERR`.
pub(super) fn cli(port: u16, args: &[&str]) -> Result<String> {
    let port = port.to_string();
    let output = redis_cli(&[&["-p", port.as_str()], args].concat())?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() && !text.starts_with("ERR") {
        Ok(text)
    } else {
        Err(failure(format!(
            "redis-cli -p {port} {}: {text}",
            args.join(" ")
        )))
    }
}

impl Supervised {
    /// `redis-server args` under `sh`, which kills it once this process's end of its standard
    /// input closes (so no server outlives the test process).
    pub(super) fn spawn(args: &[OsString]) -> Result<Supervised> {
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & echo $!; read -r _; kill -9 $! 2>/dev/null"#)
            .arg("sh")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(harness("could not run sh to start redis-server"))?;
        let stdin = shell.stdin.take();
        let mut pid = String::new();
        if let Some(stdout) = shell.stdout.take() {
            BufReader::new(stdout)
                .read_line(&mut pid)
                .map_err(harness("could not read redis-server's pid"))?;
        }
        let pid = pid
            .trim()
            .parse()
            .map_err(|_| failure(format!("no redis-server pid from sh: `{pid}`")))?;
        Ok(Supervised { shell, stdin, pid })
    }

    /// Kills the server and waits for its shell.
    pub(super) fn end(mut self) -> Result<()> {
        let _ = send_signal(self.pid, "KILL");
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        self.shell
            .wait()
            .map_err(harness("could not wait for redis-server"))?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(process) = lock(&self.process).take() {
            let _ = process.end();
        }
    }
}

/// `redis-cli args`, given up after [`CLI_TIMEOUT`]: a frozen server (or Sentinel) accepts
/// the connection and never answers.
pub(super) fn redis_cli(args: &[impl AsRef<std::ffi::OsStr>]) -> Result<std::process::Output> {
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Harness {
            reason: format!("could not run redis-cli: {INSTALL_HINT}"),
            source: Some(source),
        })?;
    let started = std::time::Instant::now();
    while child
        .try_wait()
        .map_err(harness("could not wait for redis-cli"))?
        .is_none()
    {
        if started.elapsed() > CLI_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failure(format!(
                "redis-cli got no answer within {CLI_TIMEOUT:?} (a frozen server?)"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
        .wait_with_output()
        .map_err(harness("could not read redis-cli's output"))
}

/// How long [`redis_cli`] waits for an answer.
const CLI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub(super) fn failure(reason: String) -> Error {
    Error::Harness {
        reason,
        source: None,
    }
}

/// The first slot range in a `CLUSTER NODES` line (a primary's).
fn slot_range(line: &str) -> Option<(u16, u16)> {
    line.split_whitespace()
        .nth(8)
        .and_then(|range| range.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
}

/// Ports whose cluster-bus port (`port + 10000`) is free as well.
fn free_cluster_ports(count: usize) -> Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(count);
    let mut holders = Vec::new();
    for _ in 0..200 {
        if ports.len() == count {
            return Ok(ports);
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(harness("could not find a free port"))?;
        let port = listener
            .local_addr()
            .map_err(harness("could not find a free port"))?
            .port();
        let Some(bus) = port.checked_add(BUS_OFFSET) else {
            continue;
        };
        if let Ok(bus_listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, bus)) {
            ports.push(port);
            holders.push((listener, bus_listener));
        }
    }
    Err(failure(format!(
        "found only {} of {count} free port pairs (port and port + {BUS_OFFSET})",
        ports.len()
    )))
}
