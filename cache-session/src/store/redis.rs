use std::sync::LazyLock;

use async_trait::async_trait;
use cache_core::RedisStore;
use redis::{Script, Value};

use super::{Backend, Change, Counts, INDEX_GRACE_MS, Keys, Lookup, NewSession, Registry, Stored};
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
";

const BATCH: usize = 500;

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
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[1], int(expires))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
redis.call('ZADD', KEYS[2], int(expires), ARGV[5])
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
      evicted = evicted + 1
    end
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
  h.last_accessed, h.expires_at = int(now), int(expires)
  refreshed = key == KEYS[1]
end
local out = {'{"user_id":', cjson.encode(h.user_id)}
if refreshed then out[#out + 1] = ',"refreshed":true' end
for _, name in ipairs({'created_at', 'last_accessed', 'expires_at', 'absolute_at', 'ttl'}) do
  out[#out + 1] = ',"' .. name .. '":' .. h[name]
end
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
local h = redis.call('HMGET', key, 'expires_at', 'absolute_at')
if not h[1] or tonumber(h[1]) <= now then return false end
local expires = math.min(math.max(tonumber(h[1]), now + tonumber(ARGV[2])), tonumber(h[2]))
redis.call('HSET', key, 'expires_at', int(expires))
redis.call('PEXPIREAT', key, int(expires))
redis.call('ZADD', KEYS[2], 'XX', int(expires), id)
keep_index(KEYS[2])
return int(expires)
",
    )
});

static DELETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, id = follow(KEYS[1], ARGV[1], ARGV[2])
if key ~= KEYS[1] then redis.call('DEL', KEYS[1]) end
local from = redis.call('HGET', key, 'rotated_from')
if from then drop_forward(ARGV[2], from, id) end
local n = redis.call('DEL', key)
redis.call('ZREM', KEYS[2], id)
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
  if owner == ARGV[2] then
    n = n + redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], id)
  elseif not owner then
    redis.call('ZREM', KEYS[1], id)
  end
end
return n
",
    )
});

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

/// Up to `BATCH` registered users from rank `start`.
async fn registered(store: &RedisStore, registry: &str, start: usize) -> Result<Vec<String>> {
    let stop = isize::try_from(start + BATCH - 1).unwrap_or(isize::MAX);
    let start = isize::try_from(start).unwrap_or(isize::MAX);
    let (users,): (Vec<String>,) = store
        .pipeline(
            "ZRANGE",
            registry,
            redis::pipe().zrange(registry, start, stop),
        )
        .await?;
    Ok(users)
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
            .arg(&keys.session_prefix);
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
            .arg(&keys.session_prefix);
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
            .arg(&keys.session_prefix);
        Ok(self
            .invoke("SESSION EXTEND", &keys.session, &invocation)
            .await?)
    }

    async fn delete(&self, keys: &Keys) -> Result<bool> {
        let mut invocation = DELETE.key(&keys.session);
        invocation
            .key(&keys.index)
            .arg(&keys.id)
            .arg(&keys.session_prefix);
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
            .arg(&old.session_prefix);
        let rotated: u8 = self
            .invoke("SESSION ROTATE", &old.session, &invocation)
            .await?;
        Ok(rotated == 1)
    }

    async fn list(
        &self,
        index: &str,
        session_prefix: &str,
        user_id: &str,
    ) -> Result<Vec<(String, Stored)>> {
        let mut invocation = LIST.key(index);
        invocation.arg(session_prefix).arg(user_id);
        let reply: Vec<Value> = self.invoke("SESSION LIST", index, &invocation).await?;
        let mut sessions = Vec::with_capacity(reply.len() / 2);
        let mut reply = reply.into_iter();
        while let (Some(id), Some(hash)) = (reply.next(), reply.next()) {
            let id = text(&id).unwrap_or_default();
            let stored = fields(&id, hash)?;
            sessions.push((id, stored));
        }
        Ok(sessions)
    }

    async fn revoke_all(&self, index: &str, session_prefix: &str, user_id: &str) -> Result<u64> {
        let mut invocation = REVOKE_ALL.key(index);
        invocation.arg(session_prefix).arg(user_id);
        Ok(self
            .invoke("SESSION REVOKE ALL", index, &invocation)
            .await?)
    }

    async fn register(&self, registry: &str, user_id: &str, until: u64) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(registry)
            .arg("GT")
            .arg(until)
            .arg(user_id)
            .ignore();
        Ok(self.pipeline("ZADD", registry, &pipe).await?)
    }

    async fn counts(&self, registry: &Registry<'_>) -> Result<Counts> {
        let now = server_now(self).await?;
        let mut counts = Counts::default();
        let mut start = 0;
        loop {
            let users = registered(self, registry.key, start).await?;
            if users.is_empty() {
                return Ok(counts);
            }
            let mut commands = Vec::with_capacity(users.len() * 2);
            for user in &users {
                let index = (registry.index_of)(user);
                let active = redis::cmd("ZCOUNT")
                    .arg(&index)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .to_owned();
                commands.push((index.clone(), redis::cmd("ZCARD").arg(&index).to_owned()));
                commands.push((index, active));
            }
            let replies: Vec<u64> = self.pipeline_by_key("ZCOUNT", &commands).await?;
            for pair in replies.chunks(2) {
                if let [total, active] = pair {
                    counts.total += total;
                    counts.active += active;
                    counts.users += u64::from(*active > 0);
                }
            }
            start += users.len();
        }
    }

    async fn cleanup(&self, registry: &Registry<'_>) -> Result<u64> {
        let now = server_now(self).await?;
        let mut removed = 0;
        let mut start = 0;
        loop {
            let users = registered(self, registry.key, start).await?;
            if users.is_empty() {
                break;
            }
            let commands: Vec<(String, redis::Cmd)> = users
                .iter()
                .map(|user| {
                    let index = (registry.index_of)(user);
                    let prune = redis::cmd("ZREMRANGEBYSCORE")
                        .arg(&index)
                        .arg("-inf")
                        .arg(now)
                        .to_owned();
                    (index, prune)
                })
                .collect();
            let counts: Vec<u64> = self.pipeline_by_key("ZREMRANGEBYSCORE", &commands).await?;
            removed += counts.iter().sum::<u64>();
            start += users.len();
        }
        let mut pipe = redis::pipe();
        pipe.zrembyscore(registry.key, "-inf", now).ignore();
        self.pipeline::<()>("ZREMRANGEBYSCORE", registry.key, &pipe)
            .await?;
        Ok(removed)
    }
}
