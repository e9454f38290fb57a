//! A per-destination request coalescer: at most ONE batched call to the
//! destination is in flight; requests that arrive meanwhile queue up and go
//! together as the next call, as soon as the in-flight one returns. An idle
//! coalescer sends a request at once (no linger), so batching only happens
//! when callers outpace the round trip — exactly when it saves calls.
//!
//! The calls are made by a driver task (spawned on the current tokio
//! runtime), so a caller that gives up (its own timeout, a cancelled
//! future) neither cancels the call carrying other callers' requests nor
//! strands the queue; its request is skipped if it has not been sent yet.

use std::future::Future;
use tokio::sync::{mpsc, oneshot};

/// How a batch is sent: `send` gets the requests in queue order and must
/// return exactly one response per request, in the same order.
pub trait BatchSend<Req, Resp>: Send + 'static {
    /// Sends `batch` as one call.
    fn send(&mut self, batch: Vec<Req>) -> impl Future<Output = Vec<Resp>> + Send;

    /// Size of `req` counted against [`Limits::max_bytes`].
    fn size(&self, req: &Req) -> usize;
}

/// Bounds of one batch (a request larger than `max_bytes` still goes, alone).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most requests per call.
    pub max_requests: usize,
    /// Most request bytes per call (by [`BatchSend::size`]).
    pub max_bytes: usize,
}

struct Pending<Req, Resp> {
    req: Req,
    reply: oneshot::Sender<Resp>,
}

/// Handle to a running coalescer; cheap to clone. The driver task ends when
/// every handle is dropped. The queue is unbounded: each caller has one
/// request outstanding (an openraft replication stream waits for its reply),
/// so it holds at most one request per caller.
pub struct Coalescer<Req, Resp> {
    tx: mpsc::UnboundedSender<Pending<Req, Resp>>,
}

impl<Req, Resp> Clone for Coalescer<Req, Resp> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Coalescer<Req, Resp> {
    /// Starts the driver task on the current tokio runtime (panics outside
    /// one, like `tokio::spawn`).
    pub fn spawn(sender: impl BatchSend<Req, Resp>, limits: Limits) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive(rx, sender, limits));
        Self { tx }
    }

    /// Queues `req` and waits for its response. `None` when the driver is
    /// gone (its runtime shut down) or the sender returned no response for it.
    pub async fn call(&self, req: Req) -> Option<Resp> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Pending { req, reply }).ok()?;
        rx.await.ok()
    }

    /// False once the driver task has stopped (e.g. its runtime shut down).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }
}

async fn drive<Req, Resp, S: BatchSend<Req, Resp>>(
    mut rx: mpsc::UnboundedReceiver<Pending<Req, Resp>>,
    mut sender: S,
    limits: Limits,
) {
    let mut carry: Option<Pending<Req, Resp>> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = sender.size(&first.req);
        let mut batch = vec![first];
        while batch.len() < limits.max_requests {
            let Ok(p) = rx.try_recv() else { break };
            let size = sender.size(&p.req);
            if bytes + size > limits.max_bytes {
                carry = Some(p);
                break;
            }
            bytes += size;
            batch.push(p);
        }
        // A caller that already gave up needs no call.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (reqs, replies): (Vec<Req>, Vec<oneshot::Sender<Resp>>) =
            batch.into_iter().map(|p| (p.req, p.reply)).unzip();
        let resps = sender.send(reqs).await;
        debug_assert_eq!(resps.len(), replies.len(), "BUG: a batch sender must answer every request");
        for (reply, resp) in replies.into_iter().zip(resps) {
            let _ = reply.send(resp);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    /// Echoes each request ×10 after a delay, recording every batch.
    struct Echo {
        batches: Batches,
        delay: Duration,
    }

    impl BatchSend<u32, u32> for Echo {
        async fn send(&mut self, batch: Vec<u32>) -> Vec<u32> {
            self.batches.lock().unwrap().push(batch.clone());
            tokio::time::sleep(self.delay).await;
            batch.into_iter().map(|r| r * 10).collect()
        }
        fn size(&self, req: &u32) -> usize {
            *req as usize
        }
    }

    fn echo(delay: Duration, limits: Limits) -> (Coalescer<u32, u32>, Batches) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let c = Coalescer::spawn(Echo { batches: Arc::clone(&batches), delay }, limits);
        (c, batches)
    }

    const WIDE: Limits = Limits { max_requests: 100, max_bytes: 1 << 20 };

    #[tokio::test]
    async fn idle_call_goes_alone_and_queued_calls_go_together() {
        let (c, batches) = echo(Duration::from_millis(300), WIDE);
        assert_eq!(c.call(1).await, Some(10));
        // An idle coalescer sends at once; calls made while it is in flight
        // queue and go together as the next call.
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.call(1).await }
        });
        while batches.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let rest = (2..=5).map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.call(i).await })
        });
        let got: Vec<_> = futures::future::join_all(rest).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![Some(20), Some(30), Some(40), Some(50)]);
        assert_eq!(first.await.unwrap(), Some(10));
        let b = batches.lock().unwrap().clone();
        assert_eq!(&b[..2], &[vec![1], vec![1]], "an idle coalescer does not wait for company");
        let mut rest: Vec<u32> = b[2].clone();
        rest.sort_unstable();
        assert_eq!(rest, vec![2, 3, 4, 5], "queued while one call was in flight: {b:?}");
    }

    #[tokio::test]
    async fn limits_split_batches_and_given_up_callers_are_skipped() {
        let (c, batches) = echo(Duration::from_millis(300), Limits { max_requests: 2, max_bytes: 10 });
        let busy = tokio::spawn({
            let c = c.clone();
            async move { c.call(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Queued while 1 is in flight: 2 gives up before it is sent.
        let gone = tokio::time::timeout(Duration::from_millis(5), c.call(2));
        assert!(gone.await.is_err());
        let rest = [3, 4, 9, 5].map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.call(i).await })
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(busy.await.unwrap(), Some(10));
        for (h, i) in rest.into_iter().zip([3, 4, 9, 5]) {
            assert_eq!(h.await.unwrap(), Some(i * 10));
        }
        let b = batches.lock().unwrap().clone();
        assert!(b.iter().all(|x| !x.contains(&2)), "a caller that left is not sent: {b:?}");
        assert!(b.iter().all(|x| x.len() <= 2 && (x.len() == 1 || x.iter().sum::<u32>() <= 10)), "{b:?}");
    }
}
