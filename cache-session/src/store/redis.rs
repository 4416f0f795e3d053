use std::sync::LazyLock;

use async_trait::async_trait;
use cache_core::RedisStore;
use redis::{Script, Value};

use super::{
    Backend, Change, Counts, INDEX_GRACE_MS, Keys, Ledger, Lookup, NewSession, Stored, UserKeys,
};
use crate::error::{Error, Result};

const PREAMBLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%d', x) end
local function keep_index(index)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', index, int(tonumber(last[2]) + GRACE)) end
end
local function follow(key, id, prefix)
  local moved = redis.call('HGET', key, 'moved_to')
  if moved then return prefix .. moved, moved end
  return key, id
end
local function drop_forward(prefix, from, to)
  if redis.call('HGET', prefix .. from, 'moved_to') == to then redis.call('DEL', prefix .. from) end
end
-- The statistics ledger of the slot (see `Ledger`): every change to an index goes through
-- these three, so the counts are exact whatever changed the sessions.
local function track(ledger, id, expires, user)
  redis.call('ZADD', ledger .. 'live', expires, id)
  if user then redis.call('ZADD', ledger .. 'users', 'GT', expires, user) end
end
local function untrack(ledger, id)
  redis.call('ZREM', ledger .. 'live', id)
end
local function settle(ledger, index, user)
  if not user then return end
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('ZADD', ledger .. 'users', last[2], user)
  else
    redis.call('ZREM', ledger .. 'users', user)
  end
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("local GRACE = {INDEX_GRACE_MS}\n{PREAMBLE}{body}"))
}

static CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ttl, absolute, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local absolute_at = now + absolute
local expires = math.min(now + ttl, absolute_at)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'created_at', int(now), 'last_accessed', int(now),
  'expires_at', int(expires), 'absolute_at', int(absolute_at), 'ttl', int(ttl))
local ledger = ARGV[7]
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'sid', ARGV[8]) end
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[1], int(expires))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
redis.call('ZADD', KEYS[2], int(expires), ARGV[5])
track(ledger, ARGV[5], int(expires), ARGV[1])
local evicted = 0
if limit > 0 then
  local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. int(now), '+inf')
  local excess = #live - limit
  if excess > 0 then
    local others = {}
    for _, id in ipairs(live) do
      if id ~= ARGV[5] then
        local created = tonumber(redis.call('HGET', ARGV[6] .. id, 'created_at')) or 0
        table.insert(others, {created, id})
      end
    end
    table.sort(others, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
    for i = 1, math.min(excess, #others) do
      redis.call('DEL', ARGV[6] .. others[i][2])
      redis.call('ZREM', KEYS[2], others[i][2])
      untrack(ledger, others[i][2])
      evicted = evicted + 1
    end
    settle(ledger, KEYS[2], ARGV[1])
  end
end
keep_index(KEYS[2])
return {int(now), int(expires), int(absolute_at), evicted}
",
    )
});

static GET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local key, id = KEYS[1], ARGV[1]
local fields = redis.call('HGETALL', key)
if fields[1] == 'moved_to' and #fields == 2 then
  key, id = ARGV[3] .. fields[2], fields[2]
  fields = redis.call('HGETALL', key)
end
if #fields == 0 then
  local score = redis.call('ZSCORE', KEYS[2], id)
  if score and tonumber(score) <= now then return {1} end
  return {0}
end
local h = {}
for i = 1, #fields, 2 do h[fields[i]] = fields[i + 1] end
if not h.expires_at or tonumber(h.expires_at) <= now or tonumber(h.absolute_at) <= now then
  redis.call('DEL', key)
  return {1}
end
if h.rotated_from and key == KEYS[1] then
  drop_forward(ARGV[3], h.rotated_from, id)
  redis.call('HDEL', key, 'rotated_from')
end
local refreshed = false
if now - tonumber(h.last_accessed) >= tonumber(ARGV[2]) then
  local expires = math.min(math.max(now + tonumber(h.ttl), tonumber(h.expires_at)), tonumber(h.absolute_at))
  redis.call('HSET', key, 'last_accessed', int(now), 'expires_at', int(expires))
  redis.call('PEXPIREAT', key, int(expires))
  redis.call('ZADD', KEYS[2], 'XX', int(expires), id)
  keep_index(KEYS[2])
  track(ARGV[4], id, int(expires), h.user_id)
  h.last_accessed, h.expires_at = int(now), int(expires)
  refreshed = key == KEYS[1]
end
local out = {'{"user_id":', cjson.encode(h.user_id)}
if refreshed then out[#out + 1] = ',"refreshed":true' end
for _, name in ipairs({'created_at', 'last_accessed', 'expires_at', 'absolute_at', 'ttl'}) do
  out[#out + 1] = ',"' .. name .. '":' .. h[name]
end
if h.sid then out[#out + 1] = ',"sid":' .. cjson.encode(h.sid) end
out[#out + 1] = ',"data":{'
local sep = ''
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'd:' then
    out[#out + 1] = sep .. cjson.encode(string.sub(fields[i], 3)) .. ':' .. fields[i + 1]
    sep = ','
  end
end
out[#out + 1] = '}}'
return table.concat(out)
"#,
    )
});

static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key = follow(KEYS[1], '', ARGV[1])
local expires = redis.call('HGET', key, 'expires_at')
if not expires or tonumber(expires) <= now then return 0 end
for i = 2, #ARGV, 4 do
  local field = 'd:' .. ARGV[i + 1]
  if ARGV[i] == 's' then
    redis.call('HSET', key, field, ARGV[i + 2])
  elseif ARGV[i] == 'c' then
    if redis.call('HGET', key, field) == ARGV[i + 3] then redis.call('HSET', key, field, ARGV[i + 2]) end
  else
    redis.call('HDEL', key, field)
  end
end
return 1
",
    )
});

static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, id = follow(KEYS[1], ARGV[1], ARGV[3])
local h = redis.call('HMGET', key, 'expires_at', 'absolute_at', 'user_id')
if not h[1] or tonumber(h[1]) <= now then return false end
local expires = math.min(math.max(tonumber(h[1]), now + tonumber(ARGV[2])), tonumber(h[2]))
redis.call('HSET', key, 'expires_at', int(expires))
redis.call('PEXPIREAT', key, int(expires))
redis.call('ZADD', KEYS[2], 'XX', int(expires), id)
keep_index(KEYS[2])
track(ARGV[4], id, int(expires), h[3])
return int(expires)
",
    )
});

static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, id = follow(KEYS[1], ARGV[1], ARGV[2])
if key ~= KEYS[1] then redis.call('DEL', KEYS[1]) end
local h = redis.call('HMGET', key, 'rotated_from', 'user_id')
if h[1] then drop_forward(ARGV[2], h[1], id) end
local n = redis.call('DEL', key)
redis.call('ZREM', KEYS[2], id)
untrack(ARGV[3], id)
settle(ARGV[3], KEYS[2], h[2])
return n
",
    )
});

static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, id = follow(KEYS[1], ARGV[1], ARGV[4])
local h = redis.call('HMGET', key, 'expires_at', 'rotated_from')
if not h[1] or tonumber(h[1]) <= now then return 0 end
if h[2] and h[2] ~= ARGV[1] then drop_forward(ARGV[4], h[2], id) end
redis.call('RENAME', key, KEYS[2])
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[3], h[1], ARGV[2])
untrack(ARGV[5], id)
track(ARGV[5], ARGV[2], h[1], nil)
local grace = tonumber(ARGV[3])
if grace > 0 then
  redis.call('HSET', KEYS[2], 'rotated_from', ARGV[1])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'moved_to', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], int(math.min(now + grace, tonumber(h[1]))))
else
  redis.call('HDEL', KEYS[2], 'rotated_from')
  redis.call('DEL', KEYS[1])
end
return 1
",
    )
});

static LIST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. int(now), '+inf')
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'user_id') == ARGV[2] then
    table.insert(out, id)
    table.insert(out, redis.call('HGETALL', key))
  end
end
return out
",
    )
});

static REVOKE_ALL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  local owner = redis.call('HGET', key, 'user_id')
  if owner == ARGV[2] or not owner then
    if owner then n = n + redis.call('DEL', key) end
    redis.call('ZREM', KEYS[1], id)
    untrack(ARGV[3], id)
  end
end
settle(ARGV[3], KEYS[1], ARGV[2])
return n
",
    )
});

/// The totals of the ledgers named by `ARGV` (pairs: `live`, `users`) on one server: one
/// script for all the slots a node holds. The keys are not declared: a cluster refuses
/// declared keys of several slots in one call, and the script flag lets it reach them.
/// What is live is counted as all minus what expired: a small sorted set (a slot's ledger
/// on a cluster) counts a range by walking it, and the expired entries are the few that
/// wait for the clean-up.
const LEDGER_COUNTS: &str = r"#!lua flags=no-writes,allow-cross-slot-keys
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local total, active, users = 0, 0, 0
for i = 1, #ARGV, 2 do
  local all = redis.call('ZCARD', ARGV[i])
  total = total + all
  active = active + all - redis.call('ZCOUNT', ARGV[i], '-inf', now)
  users = users + redis.call('ZCARD', ARGV[i + 1]) - redis.call('ZCOUNT', ARGV[i + 1], '-inf', now)
end
return {total, active, users}
";

/// Removes the expired entries of the ledgers named by `ARGV` (pairs: `live`, `users`, as
/// in [`LEDGER_COUNTS`]) on one server; returns the sessions removed.
const LEDGER_CLEANUP: &str = r"#!lua flags=allow-cross-slot-keys
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local removed = 0
for i = 1, #ARGV, 2 do
  removed = removed + redis.call('ZREMRANGEBYSCORE', ARGV[i], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', ARGV[i + 1], '-inf', now)
end
return removed
";

/// The two sets of `ledger`, as the scripts name them: `live` (sessions) and `users`.
fn ledger_sets(ledger: &Ledger) -> [String; 2] {
    [format!("{ledger}live"), format!("{ledger}users")]
}

/// Runs a ledger script once per server, on the ledgers whose keys it holds, all servers at
/// once: one command per server even for the 16,384 slots of a cluster. It needs Redis 7
/// (script flags); on an error (an older server, a slot that moved meanwhile) the caller
/// goes slot by slot.
async fn per_server<T: redis::FromRedisValue>(
    store: &RedisStore,
    ledgers: &[Ledger],
    source: &str,
) -> Result<Vec<T>> {
    let keys: Vec<String> = ledgers.iter().flat_map(ledger_sets).collect();
    let live: Vec<&str> = keys.iter().step_by(2).map(String::as_str).collect();
    let groups: Vec<Vec<usize>> = match cache_core::Store::locate(store, &live) {
        Some(servers) => servers.into_iter().map(|(_, indices)| indices).collect(),
        None => vec![(0..ledgers.len()).collect()],
    };
    let commands: Vec<(&str, redis::Cmd)> = groups
        .iter()
        .filter_map(|group| {
            let first = *group.first()?;
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(source).arg(0);
            for &ledger in group {
                cmd.arg(&keys[2 * ledger]).arg(&keys[2 * ledger + 1]);
            }
            Some((live[first], cmd))
        })
        .collect();
    Ok(store.pipeline_by_key("EVAL", &commands).await?)
}

/// [`LEDGER_COUNTS`] without scripts, for servers before Redis 7: four commands per ledger,
/// pipelined per server.
async fn counts_slot_by_slot(store: &RedisStore, ledgers: &[Ledger]) -> Result<Counts> {
    let now = server_now(store).await?;
    let mut commands = Vec::with_capacity(ledgers.len() * 4);
    for key in ledgers.iter().flat_map(ledger_sets) {
        let expired = redis::cmd("ZCOUNT")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .to_owned();
        commands.push((key.clone(), redis::cmd("ZCARD").arg(&key).to_owned()));
        commands.push((key, expired));
    }
    let replies: Vec<u64> = store.pipeline_by_key("ZCOUNT", &commands).await?;
    let mut counts = Counts::default();
    for four in replies.chunks(4) {
        if let [total, expired, users, gone] = *four {
            counts += Counts {
                total,
                active: total.saturating_sub(expired),
                users: users.saturating_sub(gone),
            };
        }
    }
    Ok(counts)
}

/// [`LEDGER_CLEANUP`] without scripts, for servers before Redis 7.
async fn cleanup_slot_by_slot(store: &RedisStore, ledgers: &[Ledger]) -> Result<u64> {
    let now = server_now(store).await?;
    let mut commands = Vec::with_capacity(ledgers.len() * 2);
    for key in ledgers.iter().flat_map(ledger_sets) {
        let prune = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .to_owned();
        commands.push((key, prune));
    }
    let removed: Vec<u64> = store.pipeline_by_key("ZREMRANGEBYSCORE", &commands).await?;
    Ok(removed.iter().step_by(2).sum())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

fn fields(id: &str, value: Value) -> Result<Stored> {
    let corrupt = || Error::Corrupt {
        id: id.chars().take(12).collect(),
        reason: "unexpected reply shape".into(),
    };
    let Value::Array(items) = value else {
        return Err(corrupt());
    };
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        let name = text(&name).ok_or_else(corrupt)?;
        let Value::BulkString(value) = value else {
            return Err(corrupt());
        };
        pairs.push((name, value));
    }
    Stored::from_fields(id, pairs)
}

/// The server's clock, in milliseconds since the Unix epoch.
async fn server_now(store: &RedisStore) -> Result<u64> {
    let ((secs, micros),): ((u64, u64),) = store
        .pipeline("TIME", "", redis::pipe().cmd("TIME"))
        .await?;
    Ok(secs * 1000 + micros / 1000)
}

#[async_trait]
impl Backend for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn create(&self, keys: &Keys, new: &NewSession<'_>) -> Result<(Stored, u64)> {
        let mut invocation = CREATE.key(&keys.session);
        invocation
            .key(&keys.index)
            .arg(new.user_id)
            .arg(new.ttl)
            .arg(new.absolute)
            .arg(new.limit)
            .arg(&keys.id)
            .arg(&keys.session_prefix)
            .arg(&*keys.ledger)
            .arg(new.sid.unwrap_or_default());
        for (name, value) in new.data {
            invocation.arg(name).arg(value.as_slice());
        }
        let (now, expires_at, absolute_at, evicted): (u64, u64, u64, u64) = self
            .invoke("SESSION CREATE", &keys.session, &invocation)
            .await?;
        let stored = Stored {
            user_id: new.user_id.to_owned(),
            created_at: now,
            last_accessed: now,
            expires_at,
            absolute_at,
            ttl: new.ttl,
            sid: new.sid.map(str::to_owned),
            data: new.data.to_vec(),
            refreshed: false,
        };
        Ok((stored, evicted))
    }

    async fn get(&self, keys: &Keys, touch_after: u64) -> Result<Lookup> {
        let mut invocation = GET.key(&keys.session);
        invocation
            .key(&keys.index)
            .arg(&keys.id)
            .arg(touch_after)
            .arg(&keys.session_prefix)
            .arg(&*keys.ledger);
        let reply: Value = self
            .invoke("SESSION GET", &keys.session, &invocation)
            .await?;
        match reply {
            Value::BulkString(json) => Ok(Lookup::Live(Stored::from_json(&keys.id, &json)?)),
            Value::Array(status) if matches!(status.first(), Some(Value::Int(1))) => {
                Ok(Lookup::Expired)
            }
            _ => Ok(Lookup::Missing),
        }
    }

    async fn update(&self, keys: &Keys, changes: &[(String, Change)]) -> Result<bool> {
        let mut invocation = UPDATE.key(&keys.session);
        invocation.arg(&keys.session_prefix);
        for (name, change) in changes {
            match change {
                Change::Set(value) => invocation.arg("s").arg(name).arg(value.as_slice()).arg(""),
                Change::Remove => invocation.arg("d").arg(name).arg("").arg(""),
                Change::Replace { old, new } => invocation
                    .arg("c")
                    .arg(name)
                    .arg(new.as_slice())
                    .arg(old.as_slice()),
            };
        }
        let updated: u8 = self
            .invoke("SESSION UPDATE", &keys.session, &invocation)
            .await?;
        Ok(updated == 1)
    }

    async fn extend(&self, keys: &Keys, by: u64) -> Result<Option<u64>> {
        let mut invocation = EXTEND.key(&keys.session);
        invocation
            .key(&keys.index)
            .arg(&keys.id)
            .arg(by)
            .arg(&keys.session_prefix)
            .arg(&*keys.ledger);
        Ok(self
            .invoke("SESSION EXTEND", &keys.session, &invocation)
            .await?)
    }

    async fn delete(&self, keys: &Keys) -> Result<bool> {
        let mut invocation = DELETE.key(&keys.session);
        invocation
            .key(&keys.index)
            .arg(&keys.id)
            .arg(&keys.session_prefix)
            .arg(&*keys.ledger);
        let deleted: u8 = self
            .invoke("SESSION DELETE", &keys.session, &invocation)
            .await?;
        Ok(deleted == 1)
    }

    async fn rotate(&self, old: &Keys, new: &Keys, grace: u64) -> Result<bool> {
        let mut invocation = ROTATE.key(&old.session);
        invocation
            .key(&new.session)
            .key(&old.index)
            .arg(&old.id)
            .arg(&new.id)
            .arg(grace)
            .arg(&old.session_prefix)
            .arg(&*old.ledger);
        let rotated: u8 = self
            .invoke("SESSION ROTATE", &old.session, &invocation)
            .await?;
        Ok(rotated == 1)
    }

    async fn list(&self, user: &UserKeys, user_id: &str) -> Result<Vec<(String, Stored)>> {
        let mut invocation = LIST.key(&user.index);
        invocation.arg(&user.session_prefix).arg(user_id);
        let reply: Vec<Value> = self
            .invoke("SESSION LIST", &user.index, &invocation)
            .await?;
        let mut sessions = Vec::with_capacity(reply.len() / 2);
        let mut reply = reply.into_iter();
        while let (Some(id), Some(hash)) = (reply.next(), reply.next()) {
            let id = text(&id).unwrap_or_default();
            let stored = fields(&id, hash)?;
            sessions.push((id, stored));
        }
        Ok(sessions)
    }

    async fn revoke_all(&self, user: &UserKeys, user_id: &str) -> Result<u64> {
        let mut invocation = REVOKE_ALL.key(&user.index);
        invocation
            .arg(&user.session_prefix)
            .arg(user_id)
            .arg(&*user.ledger);
        Ok(self
            .invoke("SESSION REVOKE ALL", &user.index, &invocation)
            .await?)
    }

    fn spread(&self) -> bool {
        self.is_cluster()
    }

    async fn counts(&self, ledgers: &[Ledger]) -> Result<Counts> {
        match per_server::<(u64, u64, u64)>(self, ledgers, LEDGER_COUNTS).await {
            Ok(replies) => Ok(replies.into_iter().fold(
                Counts::default(),
                |mut counts, (total, active, users)| {
                    counts += Counts {
                        total,
                        active,
                        users,
                    };
                    counts
                },
            )),
            Err(err) => {
                tracing::debug!(error = %err, "session statistics read slot by slot");
                counts_slot_by_slot(self, ledgers).await
            }
        }
    }

    async fn cleanup(&self, ledgers: &[Ledger]) -> Result<u64> {
        match per_server::<u64>(self, ledgers, LEDGER_CLEANUP).await {
            Ok(removed) => Ok(removed.into_iter().sum()),
            Err(err) => {
                tracing::debug!(error = %err, "session clean-up runs slot by slot");
                cleanup_slot_by_slot(self, ledgers).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{SessionConfig, SessionData, SessionManager};

    /// The path for servers before Redis 7 agrees with the scripts, on one server and on
    /// a cluster.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slot_by_slot_agrees_with_the_scripts() {
        let server = cache_testing::RedisServer::start_private().expect("redis-server");
        let cluster = cache_testing::RedisCluster::lease().expect("cluster");
        for config in [server.config(), cluster.config()] {
            let store = RedisStore::connect(&config).await.expect("connect");
            let short = SessionConfig::default().ttl(Duration::from_millis(200));
            let sessions = SessionManager::new(store.clone(), short);
            for user in 0..30 {
                let ttl = (user % 3 == 0).then_some(Duration::from_secs(60));
                let token = sessions
                    .create_session(&format!("u{user}"), SessionData::new(), ttl)
                    .await
                    .expect("create");
                if user % 5 == 0 {
                    sessions.delete_session(&token).await.expect("delete");
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let ledgers = crate::manager::ledgers("session:", store.is_cluster());
            let by_script = store.counts(&ledgers).await.expect("counts");
            let by_slot = counts_slot_by_slot(&store, &ledgers).await.expect("counts");
            assert_eq!(by_script, by_slot);
            assert_eq!(
                (by_script.total, by_script.active, by_script.users),
                (24, 8, 8)
            );
            assert_eq!(
                cleanup_slot_by_slot(&store, &ledgers)
                    .await
                    .expect("cleanup"),
                16
            );
            assert_eq!(store.counts(&ledgers).await.expect("counts").total, 8);
        }
    }
}
