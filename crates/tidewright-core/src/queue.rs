//! The ready queue: steps waiting for a worker, highest priority first,
//! oldest task first within a priority, and only to a worker whose
//! capabilities cover what the step needs.
//!
//! Steps are grouped by the exact set of capabilities they need; a worker
//! looks only at the heads of the groups its capabilities cover. There are
//! few distinct sets in practice, so a pop costs a handful of comparisons
//! however long the queue is.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::state::Micros;

/// A sorted, de-duplicated set of capability names.
pub type Capabilities = BTreeSet<String>;

/// Where an item sits, so it can be removed without a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKey {
    group: usize,
    order: Order,
}

/// Priority descending, then task age, then arrival.
type Order = (Reverse<i32>, Micros, u64);

#[derive(Debug)]
struct Group<T> {
    needs: Capabilities,
    items: BTreeMap<Order, T>,
}

#[derive(Debug)]
pub struct ReadyQueue<T> {
    groups: Vec<Group<T>>,
    group_of: HashMap<Capabilities, usize>,
    arrivals: u64,
    len: usize,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        ReadyQueue {
            groups: Vec::new(),
            group_of: HashMap::new(),
            arrivals: 0,
            len: 0,
        }
    }
}

impl<T> ReadyQueue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues an item; `task_created` orders tasks of equal priority.
    pub fn push(
        &mut self,
        needs: &Capabilities,
        priority: i32,
        task_created: Micros,
        item: T,
    ) -> QueueKey {
        let group = match self.group_of.get(needs) {
            Some(&g) => g,
            None => {
                self.groups.push(Group {
                    needs: needs.clone(),
                    items: BTreeMap::new(),
                });
                self.group_of.insert(needs.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.arrivals += 1;
        let order = (Reverse(priority), task_created, self.arrivals);
        self.groups[group].items.insert(order, item);
        self.len += 1;
        QueueKey { group, order }
    }

    pub fn remove(&mut self, key: &QueueKey) -> Option<T> {
        let item = self.groups.get_mut(key.group)?.items.remove(&key.order);
        if item.is_some() {
            self.len -= 1;
        }
        item
    }

    /// The best item a worker with these capabilities may run.
    pub fn pop_for(&mut self, capabilities: &Capabilities) -> Option<T> {
        let (key, _) = self.peek_for(capabilities)?;
        self.remove(&key)
    }

    /// The best item a worker with these capabilities may run, left in
    /// place, and where it sits (to [`ReadyQueue::remove`] it).
    pub fn peek_for(&self, capabilities: &Capabilities) -> Option<(QueueKey, &T)> {
        let (order, group) = self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.needs.is_subset(capabilities))
            .filter_map(|(i, g)| g.items.keys().next().map(|order| (*order, i)))
            .min()?;
        let item = self.groups[group].items.get(&order)?;
        Some((QueueKey { group, order }, item))
    }

    /// The first `n` items of each set of needs, in queue order within it:
    /// what workers will take next.
    pub fn heads(&self, n: usize) -> impl Iterator<Item = &T> {
        self.groups
            .iter()
            .flat_map(move |g| g.items.values().take(n))
    }

    /// The items needing exactly `needs`, in queue order.
    pub fn items_needing(&self, needs: &Capabilities) -> impl Iterator<Item = &T> {
        self.group_of
            .get(needs)
            .and_then(|&g| self.groups.get(g))
            .into_iter()
            .flat_map(|g| g.items.values())
    }

    /// Whether some item could go to a worker with these capabilities.
    pub fn has_work_for(&self, capabilities: &Capabilities) -> bool {
        self.groups
            .iter()
            .any(|g| !g.items.is_empty() && g.needs.is_subset(capabilities))
    }

    /// Queue depth per set of needed capabilities (for metrics and autoscaling).
    pub fn depth_by_needs(&self) -> impl Iterator<Item = (&Capabilities, usize)> {
        self.groups
            .iter()
            .filter(|g| !g.items.is_empty())
            .map(|g| (&g.needs, g.items.len()))
    }
}

pub fn capabilities<S: AsRef<str>>(names: &[S]) -> Capabilities {
    names.iter().map(|s| s.as_ref().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Capabilities {
        capabilities(names)
    }

    #[test]
    fn highest_priority_first_then_oldest_task() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        q.push(&none, 0, 10, "low-old");
        q.push(&none, 5, 30, "high-new");
        q.push(&none, 5, 20, "high-old");
        q.push(&none, 0, 5, "low-oldest");
        let any = caps(&["shell"]);
        let order: Vec<_> = std::iter::from_fn(|| q.pop_for(&any)).collect();
        assert_eq!(order, ["high-old", "high-new", "low-oldest", "low-old"]);
        assert!(q.is_empty());
    }

    #[test]
    fn arrival_breaks_ties_within_a_task() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        q.push(&none, 0, 1, "first");
        q.push(&none, 0, 1, "second");
        assert_eq!(q.pop_for(&none), Some("first"));
    }

    #[test]
    fn a_step_goes_only_to_a_worker_with_all_it_needs() {
        let mut q = ReadyQueue::default();
        q.push(&caps(&["gpu"]), 9, 1, "gpu-step");
        q.push(&caps(&[]), 0, 2, "plain-step");
        let cpu_worker = caps(&["shell"]);
        assert!(q.has_work_for(&cpu_worker));
        assert_eq!(q.pop_for(&cpu_worker), Some("plain-step"));
        assert_eq!(q.pop_for(&cpu_worker), None, "the gpu step waits");
        assert!(!q.has_work_for(&cpu_worker));
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_for(&caps(&["gpu", "shell"])), Some("gpu-step"));
    }

    #[test]
    fn needs_must_all_be_covered() {
        let mut q = ReadyQueue::default();
        q.push(&caps(&["gpu", "claude"]), 0, 1, "both");
        assert_eq!(q.pop_for(&caps(&["gpu"])), None);
        assert_eq!(q.pop_for(&caps(&["claude", "gpu", "x"])), Some("both"));
    }

    #[test]
    fn a_peeked_item_stays_until_removed_by_its_key() {
        let mut q = ReadyQueue::default();
        q.push(&caps(&["gpu"]), 9, 1, "gpu-step");
        q.push(&caps(&[]), 0, 2, "plain-step");
        let (key, item) = q.peek_for(&caps(&["shell"])).expect("plain");
        assert_eq!(*item, "plain-step");
        assert_eq!(
            q.peek_for(&caps(&["shell"])).map(|(_, i)| *i),
            Some("plain-step")
        );
        assert_eq!(q.remove(&key), Some("plain-step"));
        assert_eq!(q.peek_for(&caps(&["shell"])), None);
        assert_eq!(
            q.peek_for(&caps(&["gpu"])).map(|(_, i)| *i),
            Some("gpu-step")
        );
    }

    #[test]
    fn heads_are_the_first_items_of_each_set_of_needs() {
        let mut q = ReadyQueue::default();
        for n in 0..5 {
            q.push(&caps(&["gpu"]), 0, n, ("gpu", n));
            q.push(&caps(&[]), 0, 10 - n, ("plain", 10 - n));
        }
        let mut heads: Vec<_> = q.heads(2).copied().collect();
        heads.sort();
        assert_eq!(heads, [("gpu", 0), ("gpu", 1), ("plain", 6), ("plain", 7)]);
    }

    #[test]
    fn removed_items_never_pop() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        let key = q.push(&none, 0, 1, "cancelled");
        q.push(&none, 0, 2, "kept");
        assert_eq!(q.remove(&key), Some("cancelled"));
        assert_eq!(q.remove(&key), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_for(&none), Some("kept"));
    }

    #[test]
    fn depth_is_reported_per_capability_set() {
        let mut q = ReadyQueue::default();
        q.push(&caps(&["gpu"]), 0, 1, 1);
        q.push(&caps(&["gpu"]), 0, 2, 2);
        q.push(&caps(&[]), 0, 3, 3);
        let mut depth: Vec<_> = q.depth_by_needs().map(|(c, n)| (c.len(), n)).collect();
        depth.sort();
        assert_eq!(depth, [(0, 1), (1, 2)]);
    }
}
