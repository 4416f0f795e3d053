//! Tags: the index of each tag (a sorted set scored by expiry) and the record of each
//! tagged key's tags, which goes with the key.

use std::time::Duration;

use crate::cache::Cache;
use crate::error::Result;
use futures_util::future::{join, join_all};

impl Cache {
    /// Adds `members` (store keys) to the index of every tag in `tags`.
    pub(crate) async fn record_tags(
        &self,
        members: &[String],
        ttl: Duration,
        tags: &[String],
    ) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let tag_keys: Vec<String> = tags.iter().map(|tag| self.tag_key(tag)).collect();
        let names: Vec<Vec<u8>> = tags.iter().map(|tag| tag.clone().into_bytes()).collect();
        let tags_of: Vec<String> = members
            .iter()
            .map(|member| crate::key::tags_record_of(member))
            .collect();
        let indexes = tag_keys
            .iter()
            .map(|tag_key| self.inner.guarded.tag(tag_key, members, ttl));
        let reverse = tags_of
            .iter()
            .map(|key| async { self.inner.guarded.sadd(key, &names, ttl).await.map(drop) });
        // Concurrent, so that a tagged write costs one round trip more, not one per tag and key.
        let (indexed, reversed) = join(join_all(indexes), join_all(reverse)).await;
        indexed
            .into_iter()
            .chain(reversed)
            .map(|recorded| self.counted(recorded))
            .fold(Ok(()), Result::and)
    }

    /// Moves `full_key`'s entry in each of its tags' indexes to its new expiry.
    pub(super) async fn retag(&self, full_key: &str, ttl: Duration) -> Result<()> {
        let tags_of = crate::key::tags_record_of(full_key);
        let tags = self.counted(self.inner.guarded.smembers(&tags_of).await)?;
        if tags.is_empty() {
            return Ok(());
        }
        let member = [full_key.to_owned()];
        for tag in &tags {
            let tag_key = self.tag_key(&String::from_utf8_lossy(tag));
            self.counted(self.inner.guarded.tag(&tag_key, &member, ttl).await)?;
        }
        self.counted(self.inner.guarded.expire(&tags_of, ttl).await)?;
        Ok(())
    }

    /// The store key of a tag's index.
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        format!("{}{}tag:{tag}", self.inner.prefix, crate::key::RESERVED)
    }
}
