//! The Lua scripts of the store's atomic steps.

use std::sync::LazyLock;

use redis::Script;

pub(super) static DELETE_IF_EQUALS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// The source of [`REPLACE_IF_EQUALS`], also sent as `EVAL` inside pipelines.
pub(super) const REPLACE_IF_EQUALS_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
";

pub(super) static REPLACE_IF_EQUALS: LazyLock<Script> =
    LazyLock::new(|| Script::new(REPLACE_IF_EQUALS_LUA));

/// Fences keys (see `fence.rs`): a string or nothing becomes the marker `ARGV[1]` for
/// `ARGV[2]` ms, a key of another type is removed; returns how many keys held something
/// other than a marker (bytes starting with `ARGV[3]`), read with `GETRANGE` so that a
/// large value is not copied.
pub(super) const FENCE_LUA: &str = r"
local held = 0
for _, key in ipairs(KEYS) do
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'none' or kind == 'string' then
        if kind == 'string' and redis.call('GETRANGE', key, 0, #ARGV[3] - 1) ~= ARGV[3] then
            held = held + 1
        end
        redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    else
        redis.call('UNLINK', key)
        held = held + 1
    end
end
return held
";

pub(super) static FENCE: LazyLock<Script> = LazyLock::new(|| Script::new(FENCE_LUA));

/// Tag index: a sorted set of member keys scored by their expiry time (server clock, ms).
pub(super) static TAG: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do
    redis.call('ZADD', KEYS[1], 'GT', expires, ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 0
",
    )
});

pub(super) static TAKE_TAGGED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
redis.call('UNLINK', KEYS[1])
return live
",
    )
});

pub(super) static WRITE_WITH_TTL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local reply = redis.call(ARGV[1], KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return reply
",
    )
});
