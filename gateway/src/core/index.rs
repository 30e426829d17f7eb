//! The subscription index: which subscriptions a topic name reaches.
//!
//! A trie keyed by topic levels. Each node keeps its literal children in a map looked up by
//! `&str` (no allocation per lookup), and its `+` child and `#` subscriptions apart from that
//! map, so routing one message costs one map lookup per level plus a walk down the `+` branches
//! that exist. Shared subscriptions (`$share/{group}/{filter}`) sit at the node of their inner
//! filter, so a group is identified by (group name, filter) as MQTT 5 §4.8.2 says, and each
//! group gets a message at most once, delivered round-robin.
//!
//! Maps use the standard library's randomly seeded hasher on purpose: level names come from
//! untrusted devices and browsers, and a predictable hash would let one of them degrade every
//! lookup by subscribing to colliding names.
//!
//! Filters given to this index must have passed [`validate_filter`](super::topic::validate_filter);
//! other input never panics but may be stored literally. Results agree with
//! [`topic::matches`](super::topic::matches), including the rule that topics starting with `$`
//! are not reached by a filter whose first level is a wildcard.

use super::topic::FilterRef;
use std::collections::HashMap;
use std::hash::Hash;
use std::str::Split;

/// Subscriptions by filter, for routing topic names to subscribers. `K` identifies a
/// subscriber (a session, a WebSocket connection), `V` is what the caller keeps per
/// subscription (granted QoS, options, a subscription id).
#[derive(Debug)]
pub struct SubscriptionIndex<K, V> {
    /// The node for the empty prefix; never removed.
    root: Node<K, V>,
    /// Number of (filter, key) entries, shared memberships included.
    len: usize,
}

/// One trie node: the filter prefix spelled by the path from the root.
#[derive(Debug)]
struct Node<K, V> {
    /// Children for literal levels; `Box<str>` keys are looked up with `&str`.
    literal: HashMap<Box<str>, Node<K, V>>,
    /// Child for a `+` level.
    plus: Option<Box<Node<K, V>>>,
    /// Subscriptions whose filter is exactly this prefix.
    here: Option<Box<Leaf<K, V>>>,
    /// Subscriptions whose filter is this prefix followed by `#`.
    hash: Option<Box<Leaf<K, V>>>,
}

/// The subscriptions of one filter.
#[derive(Debug)]
struct Leaf<K, V> {
    /// Ordinary subscriptions: every key receives every match.
    direct: HashMap<K, V>,
    /// Shared groups on this filter, by group name (few per filter, so a list).
    groups: Vec<SharedGroup<K, V>>,
}

/// One shared subscription group: members in round-robin order.
#[derive(Debug)]
struct SharedGroup<K, V> {
    /// The share name.
    name: Box<str>,
    /// Members in join order; delivery walks them from `cursor`.
    members: Vec<(K, V)>,
    /// The member offered the next message first; always `< members.len()` when non-empty.
    cursor: usize,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            plus: None,
            here: None,
            hash: None,
        }
    }
}

impl<K, V> Default for Leaf<K, V> {
    fn default() -> Self {
        Leaf {
            direct: HashMap::new(),
            groups: Vec::new(),
        }
    }
}

impl<K, V> Default for SubscriptionIndex<K, V> {
    fn default() -> Self {
        SubscriptionIndex {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: Clone + Eq + Hash, V> SubscriptionIndex<K, V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subscriptions: (filter, key) pairs, shared memberships included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `key`'s subscription to `filter` (validated; may be `$share/{group}/{filter}`).
    /// If `key` already had exactly this filter, its value is replaced and the old one
    /// returned (an MQTT re-SUBSCRIBE replaces the options).
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let parsed = FilterRef::parse(filter);
        let leaf = self.root.leaf_or_insert(parsed.filter());
        let old = match parsed.share_group() {
            None => leaf.direct.insert(key, value),
            Some(group) => leaf.group_or_insert(group).insert(key, value),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`'s subscription to `filter`, returning its value. Nodes left empty are
    /// freed, so memory follows the live subscriptions, not their history.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let parsed = FilterRef::parse(filter);
        let old = self
            .root
            .remove(parsed.filter().split('/'), parsed.share_group(), key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The value of `key`'s subscription to `filter`, if any.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let parsed = FilterRef::parse(filter);
        let leaf = self.root.leaf(parsed.filter())?;
        match parsed.share_group() {
            None => leaf.direct.get(key),
            Some(group) => {
                let g = leaf.groups.iter().find(|g| &*g.name == group)?;
                g.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
        }
    }

    /// Routes one message published to `topic` (a valid topic name).
    ///
    /// Calls `direct` once for every matching ordinary subscription; a key subscribed with
    /// two overlapping filters is reported once per filter, and the caller merges. For every
    /// matching shared group, offers the message to its members in round-robin order,
    /// calling `shared` until one returns `true` (accepted); the group's next message then
    /// starts after that member. If no member accepts, the group still moves on by one, so
    /// a member that keeps refusing does not stall the rotation. Each group is offered a
    /// given message at most once. The index allocates nothing while routing.
    pub fn route(
        &mut self,
        topic: &str,
        mut direct: impl FnMut(&K, &V),
        mut shared: impl FnMut(&K, &V) -> bool,
    ) {
        let skip_wildcards = topic.starts_with('$');
        self.root
            .route(topic.split('/'), skip_wildcards, &mut direct, &mut shared);
    }

    /// Calls `f` for every subscription matching `topic`, shared-group members included,
    /// without delivering anything: round-robin positions do not move. For counting and
    /// listing.
    pub fn visit_matches(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        let skip_wildcards = topic.starts_with('$');
        self.root.visit(topic.split('/'), skip_wildcards, &mut f);
    }

    /// Number of trie nodes below the root, to check that removal prunes.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.root.count()
    }
}

impl<K: Clone + Eq + Hash, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.plus.is_none() && self.here.is_none() && self.hash.is_none()
    }

    /// The leaf for `filter`, creating the path to it.
    fn leaf_or_insert(&mut self, filter: &str) -> &mut Leaf<K, V> {
        let mut node = self;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.hash.get_or_insert_with(Box::default);
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.literal.entry(Box::from(level)).or_default()
            };
        }
        node.here.get_or_insert_with(Box::default)
    }

    /// The leaf for `filter`, if it exists.
    fn leaf(&self, filter: &str) -> Option<&Leaf<K, V>> {
        let mut node = self;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.hash.as_deref();
            }
            node = if level == "+" {
                node.plus.as_deref()?
            } else {
                node.literal.get(level)?
            };
        }
        node.here.as_deref()
    }

    /// Removes from the leaf `levels` lead to, pruning what becomes empty on the way back.
    /// Recursion depth is bounded by the depth of the trie, not by the input.
    fn remove(&mut self, mut levels: Split<'_, char>, group: Option<&str>, key: &K) -> Option<V> {
        let level = match levels.next() {
            None => return take_from(&mut self.here, group, key),
            Some(level) => level,
        };
        if level == "#" && levels.clone().next().is_none() {
            return take_from(&mut self.hash, group, key);
        }
        if level == "+" {
            let child = self.plus.as_deref_mut()?;
            let old = child.remove(levels, group, key);
            if child.is_empty() {
                self.plus = None;
            }
            return old;
        }
        let child = self.literal.get_mut(level)?;
        let old = child.remove(levels, group, key);
        if child.is_empty() {
            self.literal.remove(level);
            shrink_if_sparse(&mut self.literal);
        }
        old
    }

    /// Delivers to the subscriptions under this node that match the remaining `levels`.
    /// `skip_wildcards` is set at the root for `$` topics.
    fn route<D, S>(
        &mut self,
        mut levels: Split<'_, char>,
        skip_wildcards: bool,
        d: &mut D,
        s: &mut S,
    ) where
        D: FnMut(&K, &V),
        S: FnMut(&K, &V) -> bool,
    {
        let Some(level) = levels.next() else {
            // The topic ends here: exact filters, and `prefix/#` (which matches `prefix`).
            if let Some(leaf) = self.here.as_deref_mut() {
                leaf.deliver(d, s);
            }
            if let Some(leaf) = self.hash.as_deref_mut() {
                leaf.deliver(d, s);
            }
            return;
        };
        if skip_wildcards {
            if let Some(child) = self.literal.get_mut(level) {
                child.route(levels, false, d, s);
            }
            return;
        }
        if let Some(leaf) = self.hash.as_deref_mut() {
            leaf.deliver(d, s);
        }
        if let Some(child) = self.literal.get_mut(level) {
            child.route(levels.clone(), false, d, s);
        }
        if let Some(child) = self.plus.as_deref_mut() {
            child.route(levels, false, d, s);
        }
    }

    /// Read-only twin of `route`: every matching subscription, shared members included.
    fn visit<F: FnMut(&K, &V)>(
        &self,
        mut levels: Split<'_, char>,
        skip_wildcards: bool,
        f: &mut F,
    ) {
        let Some(level) = levels.next() else {
            for leaf in [self.here.as_deref(), self.hash.as_deref()]
                .into_iter()
                .flatten()
            {
                leaf.visit(f);
            }
            return;
        };
        if skip_wildcards {
            if let Some(child) = self.literal.get(level) {
                child.visit(levels, false, f);
            }
            return;
        }
        if let Some(leaf) = self.hash.as_deref() {
            leaf.visit(f);
        }
        if let Some(child) = self.literal.get(level) {
            child.visit(levels.clone(), false, f);
        }
        if let Some(child) = self.plus.as_deref() {
            child.visit(levels, false, f);
        }
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        let plus = self.plus.as_deref().map_or(0, |c| 1 + c.count());
        plus + self.literal.values().map(|c| 1 + c.count()).sum::<usize>()
    }
}

/// Removes `key` from a leaf slot and frees the leaf once it holds nothing.
fn take_from<K: Eq + Hash, V>(
    slot: &mut Option<Box<Leaf<K, V>>>,
    group: Option<&str>,
    key: &K,
) -> Option<V> {
    let leaf = slot.as_deref_mut()?;
    let old = match group {
        None => {
            let old = leaf.direct.remove(key);
            shrink_if_sparse(&mut leaf.direct);
            old
        }
        Some(name) => {
            let i = leaf.groups.iter().position(|g| &*g.name == name)?;
            let old = leaf.groups[i].remove(key);
            if leaf.groups[i].members.is_empty() {
                leaf.groups.swap_remove(i);
            }
            old
        }
    };
    if leaf.direct.is_empty() && leaf.groups.is_empty() {
        *slot = None;
    }
    old
}

/// Gives memory back after a burst of unsubscribes; the factor of four keeps churn around
/// one size from reallocating each time.
fn shrink_if_sparse<A: Eq + Hash, B>(map: &mut HashMap<A, B>) {
    if map.capacity() > 16 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

impl<K: Eq + Hash, V> Leaf<K, V> {
    fn group_or_insert(&mut self, name: &str) -> &mut SharedGroup<K, V> {
        let i = match self.groups.iter().position(|g| &*g.name == name) {
            Some(i) => i,
            None => {
                self.groups.push(SharedGroup {
                    name: name.into(),
                    members: Vec::new(),
                    cursor: 0,
                });
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }

    fn visit<F: FnMut(&K, &V)>(&self, f: &mut F) {
        for (k, v) in &self.direct {
            f(k, v);
        }
        for g in &self.groups {
            for (k, v) in &g.members {
                f(k, v);
            }
        }
    }

    fn deliver<D, S>(&mut self, d: &mut D, s: &mut S)
    where
        D: FnMut(&K, &V),
        S: FnMut(&K, &V) -> bool,
    {
        for (k, v) in &self.direct {
            d(k, v);
        }
        for g in &mut self.groups {
            g.offer(s);
        }
    }
}

impl<K: Eq, V> SharedGroup<K, V> {
    /// Adds or updates a member; new members join at the end of the rotation.
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.members.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.members.push((key, value));
                None
            }
        }
    }

    /// Removes a member, keeping the rotation where it was: the member that would have been
    /// offered the next message still is (or the one after it, if it was the one removed).
    fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.members.iter().position(|(k, _)| k == key)?;
        let (_, v) = self.members.remove(i);
        if i < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.members.len() {
            self.cursor = 0;
        }
        Some(v)
    }

    fn offer<S: FnMut(&K, &V) -> bool>(&mut self, s: &mut S) {
        let n = self.members.len();
        if n == 0 {
            return;
        }
        let start = self.cursor.min(n - 1);
        let (before, from_cursor) = self.members.split_at(start);
        for (i, (k, v)) in from_cursor.iter().chain(before).enumerate() {
            if s(k, v) {
                self.cursor = (start + i + 1) % n;
                return;
            }
        }
        self.cursor = (start + 1) % n;
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
