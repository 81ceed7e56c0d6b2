//! Who a model request serves, and the queue that serves them in that
//! order. The reply pipeline answering a buyer goes first, the pipeline's
//! follow-up work (translations and summaries for agents) next, clients of
//! the `/v1` endpoints last; each class is first-come first-served within
//! itself. Admission (how many of each may wait) is the slot's semaphores';
//! this queue only orders what was admitted, so it needs no bound of its
//! own.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// Who a request serves: it decides the admission slots it takes and its
/// place in the model's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The reply pipeline, for a buyer waiting on an answer: slots kept
    /// for the pipeline, served before anything else.
    Reply,
    /// The pipeline's work nobody waits on at once (translations and
    /// summaries for agents, passages for a knowledge-base index): the
    /// pipeline's slots, served after `Reply`.
    FollowUp,
    /// A client of the OpenAI-compatible endpoints: slots of its own,
    /// served after the pipeline.
    Api,
}

impl Lane {
    fn index(self) -> usize {
        match self {
            Lane::Reply => 0,
            Lane::FollowUp => 1,
            Lane::Api => 2,
        }
    }

    /// Whether the lane takes the pipeline's reserved slots.
    pub fn is_pipeline(self) -> bool {
        !matches!(self, Lane::Api)
    }
}

/// The queue between admission and a model's worker thread.
pub(super) struct LaneQueue<T> {
    lanes: Mutex<[VecDeque<T>; 3]>,
    ready: Condvar,
}

impl<T> LaneQueue<T> {
    pub(super) fn new() -> LaneQueue<T> {
        LaneQueue {
            lanes: Mutex::new([VecDeque::new(), VecDeque::new(), VecDeque::new()]),
            ready: Condvar::new(),
        }
    }

    pub(super) fn push(&self, lane: Lane, item: T) {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())[lane.index()].push_back(item);
        self.ready.notify_one();
    }

    /// The next request in lane order, waiting for one. Blocks: for the
    /// model's own thread only.
    pub(super) fn pop(&self) -> T {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(item) = lanes.iter_mut().find_map(VecDeque::pop_front) {
                return item;
            }
            lanes = self.ready.wait(lanes).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next request in lane order, if one is waiting.
    pub(super) fn try_pop(&self) -> Option<T> {
        self.lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .find_map(VecDeque::pop_front)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m6_pipeline_requests_are_served_before_earlier_api_requests() {
        let queue = LaneQueue::new();
        queue.push(Lane::Api, "api-1");
        queue.push(Lane::Api, "api-2");
        queue.push(Lane::FollowUp, "summary");
        queue.push(Lane::Reply, "draft-1");
        queue.push(Lane::Reply, "draft-2");
        let order: Vec<&str> = std::iter::from_fn(|| queue.try_pop()).collect();
        assert_eq!(order, ["draft-1", "draft-2", "summary", "api-1", "api-2"]);
    }

    #[test]
    fn a_waiting_worker_wakes_for_the_next_request() {
        let queue = std::sync::Arc::new(LaneQueue::new());
        let worker = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.pop())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        queue.push(Lane::Api, 7);
        assert_eq!(worker.join().unwrap(), 7);
    }
}
