//! Natural batching: items for one key (a shard's primary, a replica) that arrive while the key's
//! previous batch is in flight wait, and go together as the next batch. There is no timer: a lone
//! item is sent at once, and batches grow only with the load.
//!
//! A batch is sent by a driver task that keeps sending until its key's queue is empty; a key has
//! at most `in_flight` drivers (batches on the wire). Every item gets its own answer, or the
//! batch's error.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value as Json;
use tokio::sync::oneshot;
use walshard_contract::ApiError;

/// What a batch send answers: one result per item, in order, or the whole batch's error.
pub type BatchResult = Result<Vec<Result<Json, ApiError>>, ApiError>;

type Reply = oneshot::Sender<Result<Json, ApiError>>;

struct Queue<I> {
    pending: Vec<(I, Reply)>,
    drivers: usize,
}

impl<I> Default for Queue<I> {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            drivers: 0,
        }
    }
}

/// Per-key queues of items waiting for the next batch.
pub struct Coalescer<K, I> {
    queues: Mutex<HashMap<K, Queue<I>>>,
    /// Most items in one batch.
    max_items: usize,
    /// Most batches on the wire per key.
    in_flight: usize,
}

impl<K, I> Coalescer<K, I>
where
    K: Hash + Eq + Clone + Send + 'static,
    I: Send + 'static,
{
    /// Batches of at most `max_items`, at most `in_flight` of them sent at once per key (both at
    /// least 1).
    pub fn new(max_items: usize, in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            queues: Mutex::new(HashMap::new()),
            max_items: max_items.max(1),
            in_flight: in_flight.max(1),
        })
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<K, Queue<I>>> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item` for `key` and waits for its answer. If fewer than `in_flight` batches of
    /// `key` are on the wire, a driver is started that sends batches with `send` until the
    /// queue is empty.
    pub async fn submit<F, Fut>(
        self: &Arc<Self>,
        key: K,
        item: I,
        send: F,
    ) -> Result<Json, ApiError>
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = BatchResult> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queues = self.queues();
            let q = queues.entry(key.clone()).or_default();
            q.pending.push((item, tx));
            let start = q.drivers < self.in_flight;
            if start {
                q.drivers += 1;
            }
            start
        };
        if start {
            let driver = Driver {
                owner: self.clone(),
                key,
                finished: false,
            };
            tokio::spawn(driver.run(send));
        }
        rx.await.unwrap_or_else(|_| {
            Err(ApiError::new(
                503u16,
                "the batch carrying this request was dropped",
            ))
        })
    }

    /// The next batch of `key`, or `None` (and one driver fewer) when its queue is empty.
    fn next_batch(&self, key: &K) -> Option<Vec<(I, Reply)>> {
        let mut queues = self.queues();
        let q = queues.get_mut(key)?;
        if q.pending.is_empty() {
            q.drivers = q.drivers.saturating_sub(1);
            if q.drivers == 0 {
                queues.remove(key);
            }
            return None;
        }
        let n = q.pending.len().min(self.max_items);
        Some(q.pending.drain(..n).collect())
    }

    /// A driver ended without emptying the queue (it panicked): fail what waits, free its slot.
    fn abandon(&self, key: &K) {
        let mut queues = self.queues();
        if let Some(q) = queues.get_mut(key) {
            q.drivers = q.drivers.saturating_sub(1);
            if q.drivers == 0 {
                for (_, reply) in q.pending.drain(..) {
                    let _ = reply.send(Err(ApiError::new(500u16, "batch driver failed")));
                }
                queues.remove(key);
            }
        }
    }
}

/// Sends one key's batches until its queue is empty.
struct Driver<K, I>
where
    K: Hash + Eq + Clone + Send + 'static,
    I: Send + 'static,
{
    owner: Arc<Coalescer<K, I>>,
    key: K,
    /// Set once the queue was found empty (the slot is freed already).
    finished: bool,
}

impl<K, I> Driver<K, I>
where
    K: Hash + Eq + Clone + Send + 'static,
    I: Send + 'static,
{
    async fn run<F, Fut>(mut self, send: F)
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = BatchResult> + Send + 'static,
    {
        while let Some(batch) = self.owner.next_batch(&self.key) {
            let (items, replies): (Vec<I>, Vec<Reply>) = batch.into_iter().unzip();
            match send(items).await {
                Ok(answers) if answers.len() == replies.len() => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Ok(answers) => {
                    let e = ApiError::new(
                        502u16,
                        format!("a batch of {} got {} answers", replies.len(), answers.len()),
                    );
                    replies
                        .into_iter()
                        .for_each(|r| drop(r.send(Err(e.clone()))));
                }
                Err(e) => replies
                    .into_iter()
                    .for_each(|r| drop(r.send(Err(e.clone())))),
            }
        }
        self.finished = true;
    }
}

impl<K, I> Drop for Driver<K, I>
where
    K: Hash + Eq + Clone + Send + 'static,
    I: Send + 'static,
{
    fn drop(&mut self) {
        if !self.finished {
            self.owner.abandon(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    /// A send that records its batches and holds each until `gate` is notified.
    fn gated(
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
        gate: Arc<Notify>,
    ) -> impl Fn(Vec<u32>) -> std::pin::Pin<Box<dyn Future<Output = BatchResult> + Send>>
    + Send
    + Sync
    + 'static {
        move |items: Vec<u32>| {
            let batches = batches.clone();
            let gate = gate.clone();
            Box::pin(async move {
                batches.lock().expect("batches").push(items.clone());
                gate.notified().await;
                Ok(items
                    .iter()
                    .map(|i| {
                        if *i == 13 {
                            Err(ApiError::new(409u16, "thirteen"))
                        } else {
                            Ok(Json::from(*i))
                        }
                    })
                    .collect())
            })
        }
    }

    #[tokio::test]
    async fn a_lone_item_goes_at_once_and_the_rest_gather_behind_it() {
        let c = Coalescer::<&str, u32>::new(100, 1);
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Notify::new());
        let send = gated(batches.clone(), gate.clone());
        let first = tokio::spawn({
            let (c, send) = (c.clone(), send);
            async move { c.submit("sh1", 1, send).await }
        });
        while batches.lock().expect("b").is_empty() {
            tokio::task::yield_now().await;
        }
        let mut later = Vec::new();
        for i in 2..=5u32 {
            let c = c.clone();
            let send = gated(batches.clone(), gate.clone());
            later.push(tokio::spawn(async move { c.submit("sh1", i, send).await }));
        }
        tokio::task::yield_now().await;
        // Each submit above found a driver on the wire and queued behind it.
        assert_eq!(batches.lock().expect("b").len(), 1);
        gate.notify_one();
        assert_eq!(first.await.expect("join"), Ok(Json::from(1)));
        while batches.lock().expect("b").len() < 2 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for (i, h) in (2..=5u32).zip(later) {
            assert_eq!(h.await.expect("join"), Ok(Json::from(i)));
        }
        assert_eq!(*batches.lock().expect("b"), vec![vec![1], vec![2, 3, 4, 5]]);
        assert!(c.queues().is_empty(), "an idle key leaves no queue behind");
    }

    #[tokio::test]
    async fn each_item_gets_its_own_answer_and_keys_do_not_wait_for_each_other() {
        let c = Coalescer::<&str, u32>::new(2, 1);
        let sent = Arc::new(AtomicUsize::new(0));
        let send = {
            let sent = sent.clone();
            move |items: Vec<u32>| {
                sent.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(items
                        .into_iter()
                        .map(|i| {
                            if i == 13 {
                                Err(ApiError::new(409u16, "13"))
                            } else {
                                Ok(Json::from(i))
                            }
                        })
                        .collect())
                }
            }
        };
        let calls = (10..16u32).map(|i| {
            let key = if i % 2 == 0 { "a" } else { "b" };
            let (c, send) = (c.clone(), send.clone());
            async move { (i, c.submit(key, i, send).await) }
        });
        for (i, answer) in futures::future::join_all(calls).await {
            match i {
                13 => assert_eq!(answer.map_err(|e| e.status), Err(409)),
                _ => assert_eq!(answer, Ok(Json::from(i))),
            }
        }
        assert!(sent.load(Ordering::SeqCst) >= 2);
        assert!(c.queues().is_empty());
    }

    #[tokio::test]
    async fn a_batch_error_reaches_every_item_and_a_count_mismatch_is_an_error() {
        let c = Coalescer::<u8, u32>::new(10, 1);
        let failing = |_: Vec<u32>| async { Err(ApiError::new(503u16, "no primary")) };
        assert_eq!(
            c.submit(1, 7, failing).await.map_err(|e| e.status),
            Err(503)
        );
        let short = |_: Vec<u32>| async { Ok(Vec::new()) };
        assert_eq!(c.submit(1, 7, short).await.map_err(|e| e.status), Err(502));
    }

    #[tokio::test]
    async fn a_panicking_send_fails_its_items_and_frees_the_key() {
        let c = Coalescer::<u8, u32>::new(10, 1);
        let panics = |_: Vec<u32>| async {
            if true {
                panic!("send failed");
            }
            Ok(Vec::new())
        };
        assert!(c.submit(1, 7, panics).await.is_err());
        let fine = |items: Vec<u32>| async move {
            Ok(items.into_iter().map(|i| Ok(Json::from(i))).collect())
        };
        assert_eq!(c.submit(1, 8, fine).await, Ok(Json::from(8)));
    }
}
