//! One lock per channel for subscription changes: a channel's first join
//! (subscribe) and last leave (unsubscribe) must never interleave, but
//! changes to different channels have nothing to wait for, so a socket
//! looping join/leave on its own session never slows anyone else's.
//! A channel's lock exists only while someone holds or waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct ChannelLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one channel's subscription changes; gives the channel's
/// entry back when the last holder or waiter is done.
pub struct ChannelGuard<'a> {
    owner: &'a ChannelLocks,
    channel: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl ChannelLocks {
    pub async fn lock(&self, channel: &str) -> ChannelGuard<'_> {
        let lock = self.map().entry(channel.to_owned()).or_default().clone();
        let guard = lock.lock_owned().await;
        ChannelGuard {
            owner: self,
            channel: channel.to_owned(),
            guard: Some(guard),
        }
    }

    /// Channels with a lock entry now (held or waited for).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ChannelGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.owner.map();
        // Only the map's own reference left: nobody holds or waits.
        if map
            .get(&self.channel)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn different_channels_do_not_wait_for_each_other() {
        let locks = ChannelLocks::default();
        let _held = locks.lock("a").await;
        let other = tokio::time::timeout(Duration::from_secs(1), locks.lock("b")).await;
        assert!(other.is_ok(), "b waited behind a");
    }

    #[tokio::test]
    async fn the_same_channel_waits_and_entries_are_given_back() {
        let locks = Arc::new(ChannelLocks::default());
        let held = locks.lock("a").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("a").await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a second holder got in");
        drop(held);
        waiter.await.expect("the waiter gets the lock");
        assert!(locks.is_empty(), "no entry is left behind");
    }
}
