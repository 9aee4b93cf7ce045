//! Broadcast channels by key, made on a key's first subscriber and dropped
//! once nobody listens (or the sender says the key is done): the per-task
//! event fan-out (`hub`) and the agents' topics (`service::state`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::broadcast;

pub struct Channels<K, V> {
    by_key: Mutex<HashMap<K, broadcast::Sender<V>>>,
    /// How far a subscriber may fall behind before it lags.
    buffer: usize,
}

impl<K: Eq + Hash, V: Clone> Channels<K, V> {
    pub fn new(buffer: usize) -> Self {
        Channels {
            by_key: Mutex::default(),
            buffer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, broadcast::Sender<V>>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, key: K) -> broadcast::Receiver<V> {
        self.lock()
            .entry(key)
            .or_insert_with(|| broadcast::channel(self.buffer).0)
            .subscribe()
    }

    /// Sends each `(key, value, last)` to its key's subscribers, if it has
    /// any, under one lock; returns how many received the last value. A
    /// key's channel is dropped after its `last` value (which ends its
    /// subscribers once they have read it) or when nobody listens.
    pub fn send<'k>(&self, values: impl IntoIterator<Item = (&'k K, V, bool)>) -> usize
    where
        K: 'k,
    {
        let mut channels = self.lock();
        let mut delivered = 0;
        if channels.is_empty() {
            return delivered;
        }
        for (key, value, last) in values {
            delivered = 0;
            let Some(sender) = channels.get(key) else {
                continue;
            };
            // No subscriber left is not an error: nobody listens.
            delivered = sender.send(value).unwrap_or(0);
            if last || sender.receiver_count() == 0 {
                channels.remove(key);
            }
        }
        delivered
    }

    /// Keys with a live channel: none once every watcher has gone, which
    /// tests check so a refused or ended watch leaves nothing behind.
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// Ends every subscription: the server is stopping.
    pub fn close_all(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_channel_lives_while_someone_listens_and_until_its_last_value() {
        let channels: Channels<String, u32> = Channels::new(4);
        let key = "t1".to_string();
        assert_eq!(channels.send([(&key, 1, false)]), 0, "nobody listens yet");
        assert_eq!(channels.live(), 0);
        let mut first = channels.subscribe(key.clone());
        let second = channels.subscribe(key.clone());
        assert_eq!(channels.send([(&key, 2, false)]), 2);
        drop(second);
        assert_eq!(channels.send([(&key, 3, true)]), 1);
        assert_eq!(channels.live(), 0, "dropped after its last value");
        assert_eq!(first.recv().await.ok(), Some(2));
        assert_eq!(first.recv().await.ok(), Some(3));
        assert!(first.recv().await.is_err(), "closed after the last value");

        let quiet = channels.subscribe(key.clone());
        drop(quiet);
        assert_eq!(channels.send([(&key, 4, false)]), 0);
        assert_eq!(channels.live(), 0, "dropped once nobody listens");

        let mut left = channels.subscribe(key.clone());
        channels.close_all();
        assert!(left.recv().await.is_err(), "closed at shutdown");
    }
}
