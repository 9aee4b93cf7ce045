//! The ready queue: steps waiting for a worker, highest priority first;
//! within a priority, shared fairly among tenants by their weights, and
//! within a tenant among its fairness keys (its repositories, or a label's
//! values) equally; within a key, oldest task first; and only to a worker
//! whose capabilities cover what the step needs.
//!
//! Steps are grouped by the exact set of capabilities they need; a worker
//! looks only at the heads of the groups its capabilities cover. There are
//! few distinct sets in practice, so a pop costs a handful of comparisons
//! however long the queue is.
//!
//! The fair share is stride scheduling, on two levels. Each tenant (a
//! *sharer*) has a pass, which grows by `STRIDE / weight` each time one of
//! its steps is taken, and the tenant with the lowest pass among those
//! waiting at the highest priority goes next. Within it, each of its keys
//! has a pass of its own, which grows by `STRIDE` a take, and its lowest
//! goes next. A tenant with 10,000 steps waiting and one with ten, of equal
//! weights, take turns; so do a tenant's repositories. A tenant (or key)
//! that had nothing waiting starts again at the pass of the last step
//! taken, so waiting nothing earns no credit.
//!
//! Each group orders its (priority, tenant) entries by the tenant's pass,
//! and each entry its keys by the key's pass; a lane is one key's steps at
//! one priority. A take re-keys the taken tenant's few entries and the
//! taken key's few lanes, O(log n) each.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::state::Micros;

/// A sorted, de-duplicated set of capability names.
pub type Capabilities = BTreeSet<String>;

/// What a pass grows by for a weight of 1; weights go to 1000.
const STRIDE: u64 = 1 << 20;

/// Where an item sits, so it can be removed without a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKey {
    group: usize,
    lane: Lane,
    order: Order,
}

/// Task age, then arrival.
type Order = (Micros, u64);

/// A key's items at one priority: (priority descending, sharer, key).
type Lane = (Reverse<i32>, usize, usize);

/// A sharer's items at one priority: (priority descending, sharer).
type Entry = (Reverse<i32>, usize);

#[derive(Debug)]
struct Group<T> {
    needs: Capabilities,
    lanes: HashMap<Lane, BTreeMap<Order, T>>,
    /// Each sharer's keys with items at a priority, by (key pass, key).
    entries: HashMap<Entry, BTreeSet<(u64, usize)>>,
    /// The entries with items, in the order they are served: priority,
    /// then the sharer's pass, then sharer.
    heads: BTreeSet<(Reverse<i32>, u64, usize)>,
    len: usize,
}

/// One tenant's place in the fair share.
#[derive(Debug)]
struct Sharer {
    name: String,
    weight: u32,
    pass: u64,
    /// At its cap on running steps: its entries are out of the heads, so
    /// no worker sees them, until it has room again.
    capped: bool,
    /// The (group, priority) of each of its entries that has items.
    entries: BTreeSet<(usize, Reverse<i32>)>,
    /// The pass of its last key taken: where a key of its that had
    /// nothing waiting starts again.
    key_pass: u64,
    /// Its keys, by name.
    keys: HashMap<String, usize>,
}

/// One fairness key of a tenant ("" for a tenant that shares by none).
#[derive(Debug)]
struct Key {
    pass: u64,
    /// The (group, priority) of each of its lanes that has items.
    lanes: BTreeSet<(usize, Reverse<i32>)>,
}

#[derive(Debug)]
pub struct ReadyQueue<T> {
    groups: Vec<Group<T>>,
    group_of: HashMap<Capabilities, usize>,
    sharers: Vec<Sharer>,
    sharer_of: HashMap<String, usize>,
    keys: Vec<Key>,
    /// The pass of the last sharer taken: where a sharer that had nothing
    /// waiting starts again.
    virtual_pass: u64,
    arrivals: u64,
    len: usize,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        ReadyQueue {
            groups: Vec::new(),
            group_of: HashMap::new(),
            sharers: Vec::new(),
            sharer_of: HashMap::new(),
            keys: Vec::new(),
            virtual_pass: 0,
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

    /// Sets a sharer's weight (1 to 1000; others are held to that range):
    /// its part of the turns against the others'. Unset, a sharer's weight
    /// is 1.
    pub fn set_weight(&mut self, sharer: &str, weight: u32) {
        let at = self.sharer(sharer);
        self.sharers[at].weight = weight.clamp(1, crate::share::MAX_WEIGHT);
    }

    /// Holds a sharer's items back while it is at its cap on running steps
    /// (`capped`), or offers them again. O(log n) per entry it has waiting.
    /// Back from its cap it starts level with the others, as a sharer that
    /// had nothing waiting does: time it could not run earns no credit.
    pub fn set_capped(&mut self, sharer: &str, capped: bool) {
        let at = self.sharer(sharer);
        let s = &mut self.sharers[at];
        if s.capped == capped {
            return;
        }
        s.capped = capped;
        if !capped {
            s.pass = s.pass.max(self.virtual_pass);
        }
        for &(group, priority) in &s.entries {
            let heads = &mut self.groups[group].heads;
            if capped {
                heads.remove(&(priority, s.pass, at));
            } else {
                heads.insert((priority, s.pass, at));
            }
        }
    }

    /// Queues an item of `sharer` (its tenant) under its fairness `key`
    /// ("" for none); `task_created` orders its tasks of equal priority.
    pub fn push(
        &mut self,
        needs: &Capabilities,
        (sharer, key, priority): (&str, &str, i32),
        task_created: Micros,
        item: T,
    ) -> QueueKey {
        let group = match self.group_of.get(needs) {
            Some(&g) => g,
            None => {
                self.groups.push(Group {
                    needs: needs.clone(),
                    lanes: HashMap::new(),
                    entries: HashMap::new(),
                    heads: BTreeSet::new(),
                    len: 0,
                });
                self.group_of.insert(needs.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let at = self.sharer(sharer);
        let k = self.key(at, key);
        let priority = Reverse(priority);
        let lane = (priority, at, k);
        self.arrivals += 1;
        let order = (task_created, self.arrivals);
        if !self.groups[group].lanes.contains_key(&lane) {
            let key = &mut self.keys[k];
            if key.lanes.is_empty() {
                // Nothing of the key waited: no credit from the time it
                // did not.
                key.pass = key.pass.max(self.sharers[at].key_pass);
            }
            key.lanes.insert((group, priority));
            let key_pass = key.pass;
            let g = &mut self.groups[group];
            let entry = g.entries.entry((priority, at)).or_default();
            if entry.is_empty() {
                let sharer = &mut self.sharers[at];
                if sharer.entries.is_empty() {
                    // Nothing waited: no credit from the time it did not.
                    sharer.pass = sharer.pass.max(self.virtual_pass);
                }
                sharer.entries.insert((group, priority));
                if !sharer.capped {
                    g.heads.insert((priority, sharer.pass, at));
                }
            }
            entry.insert((key_pass, k));
        }
        let g = &mut self.groups[group];
        g.lanes.entry(lane).or_default().insert(order, item);
        g.len += 1;
        self.len += 1;
        QueueKey { group, lane, order }
    }

    /// Takes an item out of the queue for good (a cancelled step): the
    /// fair share does not count it.
    pub fn remove(&mut self, key: &QueueKey) -> Option<T> {
        let g = self.groups.get_mut(key.group)?;
        let items = g.lanes.get_mut(&key.lane)?;
        let item = items.remove(&key.order)?;
        g.len -= 1;
        self.len -= 1;
        if items.is_empty() {
            g.lanes.remove(&key.lane);
            let (priority, at, k) = key.lane;
            let lanes_key = &mut self.keys[k];
            lanes_key.lanes.remove(&(key.group, priority));
            let pass = lanes_key.pass;
            if let Some(entry) = g.entries.get_mut(&(priority, at)) {
                entry.remove(&(pass, k));
                if entry.is_empty() {
                    g.entries.remove(&(priority, at));
                    let sharer = &mut self.sharers[at];
                    g.heads.remove(&(priority, sharer.pass, at));
                    sharer.entries.remove(&(key.group, priority));
                }
            }
        }
        Some(item)
    }

    /// Takes an item to run: its sharer's and its key's turns are counted.
    pub fn take(&mut self, key: &QueueKey) -> Option<T> {
        let item = self.remove(key)?;
        let (_, at, k) = key.lane;
        let sharer = &mut self.sharers[at];
        self.virtual_pass = self.virtual_pass.max(sharer.pass);
        let old = sharer.pass;
        sharer.pass += STRIDE / u64::from(sharer.weight);
        let new = sharer.pass;
        if !sharer.capped {
            for &(group, priority) in &sharer.entries {
                let heads = &mut self.groups[group].heads;
                heads.remove(&(priority, old, at));
                heads.insert((priority, new, at));
            }
        }
        let taken = &mut self.keys[k];
        sharer.key_pass = sharer.key_pass.max(taken.pass);
        let old = taken.pass;
        taken.pass += STRIDE;
        let new = taken.pass;
        for &(group, priority) in &taken.lanes {
            if let Some(entry) = self.groups[group].entries.get_mut(&(priority, at)) {
                entry.remove(&(old, k));
                entry.insert((new, k));
            }
        }
        Some(item)
    }

    /// The next item a worker with these capabilities may run, taken.
    pub fn pop_for(&mut self, capabilities: &Capabilities) -> Option<T> {
        let (key, _) = self.peek_for(capabilities)?;
        self.take(&key)
    }

    /// The next item a worker with these capabilities may run, left in
    /// place, and where it sits (to [`ReadyQueue::take`] it).
    pub fn peek_for(&self, capabilities: &Capabilities) -> Option<(QueueKey, &T)> {
        let (_, group, lane, order) = self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.needs.is_subset(capabilities))
            .filter_map(|(i, g)| {
                let &(priority, pass, at) = g.heads.first()?;
                let &(key_pass, k) = g.entries.get(&(priority, at))?.first()?;
                let lane = (priority, at, k);
                let (order, _) = g.lanes.get(&lane)?.first_key_value()?;
                Some(((priority, pass, key_pass, *order), i, lane, *order))
            })
            .min()?;
        let item = self.groups[group].lanes.get(&lane)?.get(&order)?;
        Some((QueueKey { group, lane, order }, item))
    }

    /// About the first `n` items of each set of needs: each of its first
    /// lanes' first items, in turn; what workers will take next.
    pub fn heads(&self, n: usize) -> impl Iterator<Item = &T> {
        self.groups.iter().flat_map(move |g| {
            let mut lanes: Vec<_> = g
                .heads
                .iter()
                .take(n)
                .filter_map(|&(priority, _, at)| {
                    Some((priority, at, g.entries.get(&(priority, at))?))
                })
                .flat_map(|(priority, at, keys)| {
                    keys.iter()
                        .take(n)
                        .filter_map(move |&(_, k)| g.lanes.get(&(priority, at, k)))
                })
                .take(n)
                .map(|items| items.values())
                .collect();
            let mut next = Vec::with_capacity(n);
            while next.len() < n && !lanes.is_empty() {
                lanes.retain_mut(|items| match items.next() {
                    Some(item) if next.len() < n => {
                        next.push(item);
                        true
                    }
                    _ => false,
                });
            }
            next
        })
    }

    /// The items needing exactly `needs`, in no particular order.
    pub fn items_needing(&self, needs: &Capabilities) -> impl Iterator<Item = &T> {
        self.group_of
            .get(needs)
            .and_then(|&g| self.groups.get(g))
            .into_iter()
            .flat_map(|g| g.lanes.values().flat_map(BTreeMap::values))
    }

    /// Whether some item could go to a worker with these capabilities.
    pub fn has_work_for(&self, capabilities: &Capabilities) -> bool {
        self.groups
            .iter()
            .any(|g| g.len > 0 && g.needs.is_subset(capabilities))
    }

    /// Queue depth per set of needed capabilities (for metrics and autoscaling).
    pub fn depth_by_needs(&self) -> impl Iterator<Item = (&Capabilities, usize)> {
        self.groups
            .iter()
            .filter(|g| g.len > 0)
            .map(|g| (&g.needs, g.len))
    }

    /// How many items each sharer has waiting, of those that have any.
    pub fn waiting_by_sharer(&self) -> impl Iterator<Item = (&str, usize)> {
        self.sharers
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.entries.is_empty())
            .map(|(at, s)| {
                let waiting = s
                    .entries
                    .iter()
                    .flat_map(|&(group, priority)| {
                        let g = &self.groups[group];
                        g.entries
                            .get(&(priority, at))
                            .into_iter()
                            .flatten()
                            .filter_map(move |&(_, k)| g.lanes.get(&(priority, at, k)))
                    })
                    .map(BTreeMap::len)
                    .sum();
                (s.name.as_str(), waiting)
            })
    }

    /// The sharer named `name`, made with weight 1 when new.
    fn sharer(&mut self, name: &str) -> usize {
        if let Some(&at) = self.sharer_of.get(name) {
            return at;
        }
        self.sharers.push(Sharer {
            name: name.to_string(),
            weight: 1,
            pass: self.virtual_pass,
            capped: false,
            entries: BTreeSet::new(),
            key_pass: 0,
            keys: HashMap::new(),
        });
        self.sharer_of
            .insert(name.to_string(), self.sharers.len() - 1);
        self.sharers.len() - 1
    }

    /// Sharer `at`'s key `name`, made when new, level with its others.
    fn key(&mut self, at: usize, name: &str) -> usize {
        // By &str, without an allocation: most pushes find the key.
        if let Some(&k) = self.sharers[at].keys.get(name) {
            return k;
        }
        self.keys.push(Key {
            pass: self.sharers[at].key_pass,
            lanes: BTreeSet::new(),
        });
        let k = self.keys.len() - 1;
        self.sharers[at].keys.insert(name.to_string(), k);
        k
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
        q.push(&none, ("t", "", 0), 10, "low-old");
        q.push(&none, ("t", "", 5), 30, "high-new");
        q.push(&none, ("t", "", 5), 20, "high-old");
        q.push(&none, ("t", "", 0), 5, "low-oldest");
        let any = caps(&["shell"]);
        let order: Vec<_> = std::iter::from_fn(|| q.pop_for(&any)).collect();
        assert_eq!(order, ["high-old", "high-new", "low-oldest", "low-old"]);
        assert!(q.is_empty());
    }

    #[test]
    fn arrival_breaks_ties_within_a_task() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        q.push(&none, ("t", "", 0), 1, "first");
        q.push(&none, ("t", "", 0), 1, "second");
        assert_eq!(q.pop_for(&none), Some("first"));
    }

    #[test]
    fn a_step_goes_only_to_a_worker_with_all_it_needs() {
        let mut q = ReadyQueue::default();
        q.push(&caps(&["gpu"]), ("t", "", 9), 1, "gpu-step");
        q.push(&caps(&[]), ("t", "", 0), 2, "plain-step");
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
        q.push(&caps(&["gpu", "claude"]), ("t", "", 0), 1, "both");
        assert_eq!(q.pop_for(&caps(&["gpu"])), None);
        assert_eq!(q.pop_for(&caps(&["claude", "gpu", "x"])), Some("both"));
    }

    #[test]
    fn a_peeked_item_stays_until_removed_by_its_key() {
        let mut q = ReadyQueue::default();
        q.push(&caps(&["gpu"]), ("t", "", 9), 1, "gpu-step");
        q.push(&caps(&[]), ("t", "", 0), 2, "plain-step");
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
            q.push(&caps(&["gpu"]), ("t", "", 0), n, ("gpu", n));
            q.push(&caps(&[]), ("t", "", 0), 10 - n, ("plain", 10 - n));
        }
        let mut heads: Vec<_> = q.heads(2).copied().collect();
        heads.sort();
        assert_eq!(heads, [("gpu", 0), ("gpu", 1), ("plain", 6), ("plain", 7)]);
    }

    #[test]
    fn removed_items_never_pop() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        let key = q.push(&none, ("t", "", 0), 1, "cancelled");
        q.push(&none, ("t", "", 0), 2, "kept");
        assert_eq!(q.remove(&key), Some("cancelled"));
        assert_eq!(q.remove(&key), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_for(&none), Some("kept"));
    }

    /// Who the next `n` pops go to, by sharer.
    fn turns(q: &mut ReadyQueue<&'static str>, n: usize) -> Vec<&'static str> {
        let any = caps(&[]);
        (0..n).filter_map(|_| q.pop_for(&any)).collect()
    }

    #[test]
    fn tenants_of_equal_weight_take_turns_however_many_each_has_waiting() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        for n in 0..1000 {
            q.push(&none, ("a", "", 0), n, "a");
        }
        assert_eq!(turns(&mut q, 3), ["a", "a", "a"], "alone, a goes on");
        // b's ten come later, their tasks newer: they are not behind a's
        // thousand, and a's wait earned it nothing.
        for n in 0..10 {
            q.push(&none, ("b", "", 0), 5000 + n, "b");
        }
        let next = turns(&mut q, 20);
        assert_eq!(next.iter().filter(|t| **t == "b").count(), 10, "{next:?}");
        assert!(next.windows(2).all(|w| w[0] != w[1]), "in turn: {next:?}");
        assert_eq!(q.waiting_by_sharer().collect::<Vec<_>>(), [("a", 987)]);
    }

    #[test]
    fn weights_set_each_tenants_part_of_the_turns() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        q.set_weight("heavy", 3);
        for n in 0..2000 {
            q.push(&none, ("heavy", "", 0), n, "heavy");
            q.push(&none, ("light", "", 0), n, "light");
        }
        let next = turns(&mut q, 400);
        let heavy = next.iter().filter(|t| **t == "heavy").count();
        assert!((295..=305).contains(&heavy), "3 to 1: {heavy} of 400");
    }

    #[test]
    fn a_tenant_that_had_nothing_waiting_starts_level_not_ahead() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        q.push(&none, ("b", "", 0), 0, "b");
        assert_eq!(turns(&mut q, 1), ["b"]);
        for n in 0..100 {
            q.push(&none, ("a", "", 0), n, "a");
        }
        assert_eq!(turns(&mut q, 50).len(), 50);
        for n in 0..100 {
            q.push(&none, ("b", "", 0), n, "b");
        }
        let next = turns(&mut q, 10);
        assert!(
            next.iter().filter(|t| **t == "b").count() <= 6,
            "b's idle time is no credit: {next:?}"
        );
    }

    #[test]
    fn a_capped_tenant_is_passed_over_until_it_has_room_and_comes_back_level() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        for n in 0..100 {
            q.push(&none, ("a", "", 0), n, "a");
            q.push(&none, ("b", "", 0), n, "b");
        }
        q.set_capped("a", true);
        assert_eq!(turns(&mut q, 20), ["b"; 20], "a is at its cap");
        // Pushed while capped: held back too.
        q.push(&none, ("a", "", 9), 500, "a-urgent");
        assert_eq!(q.peek_for(&none).map(|(_, t)| *t), Some("b"));
        assert_eq!(
            q.waiting_by_sharer().collect::<Vec<_>>(),
            [("a", 101), ("b", 80)],
            "a's steps still wait"
        );
        q.set_capped("a", false);
        assert_eq!(turns(&mut q, 1), ["a-urgent"]);
        let next = turns(&mut q, 20);
        assert_eq!(
            next.iter().filter(|t| **t == "a").count(),
            10,
            "level again, not owed the 20 turns b had: {next:?}"
        );
    }

    #[test]
    fn a_tenants_keys_share_its_part_and_the_other_tenant_keeps_its_own() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        // acme's big repository floods first; its small one and zeta come
        // later, their tasks newer.
        for n in 0..100 {
            q.push(&none, ("acme", "big", 0), n, "acme/big");
        }
        for n in 0..100 {
            q.push(&none, ("acme", "small", 0), 1000 + n, "acme/small");
            q.push(&none, ("zeta", "", 0), 1000 + n, "zeta");
        }
        let next = turns(&mut q, 40);
        let count = |what: &str| next.iter().filter(|t| **t == what).count();
        assert_eq!(count("zeta"), 20, "zeta's half is its own: {next:?}");
        assert_eq!(
            (count("acme/big"), count("acme/small")),
            (10, 10),
            "acme's half is shared by its keys: {next:?}"
        );
        let waiting: Vec<_> = q.waiting_by_sharer().collect();
        assert_eq!(waiting, [("acme", 180), ("zeta", 80)]);
    }

    #[test]
    fn a_key_that_had_nothing_waiting_starts_level_with_its_tenants_others() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        for n in 0..100 {
            q.push(&none, ("acme", "a", 0), n, "a");
        }
        assert_eq!(turns(&mut q, 50).len(), 50);
        for n in 0..100 {
            q.push(&none, ("acme", "b", 0), 500 + n, "b");
        }
        let next = turns(&mut q, 10);
        assert_eq!(
            next.iter().filter(|t| **t == "b").count(),
            5,
            "b's idle time is no credit against a: {next:?}"
        );
    }

    #[test]
    fn priority_goes_before_the_share_and_task_age_within_a_tenant() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        q.push(&none, ("a", "", 0), 1, "a-low");
        q.push(&none, ("b", "", 5), 9, "b-high");
        q.push(&none, ("a", "", 0), 0, "a-older");
        assert_eq!(turns(&mut q, 3), ["b-high", "a-older", "a-low"]);
    }

    #[test]
    fn a_removed_item_is_not_counted_in_its_tenants_share() {
        let mut q = ReadyQueue::default();
        let none = caps(&[]);
        let cancelled: Vec<QueueKey> = (0..5)
            .map(|n| q.push(&none, ("a", "", 0), n, "a"))
            .collect();
        for key in &cancelled {
            assert_eq!(q.remove(key), Some("a"));
        }
        q.push(&none, ("b", "", 0), 10, "b");
        q.push(&none, ("a", "", 0), 11, "a");
        q.push(&none, ("b", "", 0), 12, "b");
        assert_eq!(turns(&mut q, 3), ["a", "b", "b"]);
    }

    #[test]
    fn depth_is_reported_per_capability_set() {
        let mut q = ReadyQueue::default();
        q.push(&caps(&["gpu"]), ("t", "", 0), 1, 1);
        q.push(&caps(&["gpu"]), ("t", "", 0), 2, 2);
        q.push(&caps(&[]), ("t", "", 0), 3, 3);
        let mut depth: Vec<_> = q.depth_by_needs().map(|(c, n)| (c.len(), n)).collect();
        depth.sort();
        assert_eq!(depth, [(0, 1), (1, 2)]);
    }
}
