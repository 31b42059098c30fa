//! Placement: which live node should lead which partition.
//!
//! A pure function so that every node computes the same answer from the
//! same inputs, and so it can be tested exhaustively: balanced (node loads
//! differ by at most one), deterministic (input order does not matter) and
//! moving as few partitions as a balanced result allows.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{NodeId, TopicPartition};

/// Assigns every partition to one of `nodes`, keeping current assignments
/// (`current`, for example the live leaders) wherever balance allows.
///
/// Each node gets `P / N` or `P / N + 1` partitions. The extra ones go to the
/// nodes that already hold the most (then the lowest ids), a node keeps its
/// current partitions in (topic, partition) order up to its share, and the
/// rest go, in order, to the node furthest below its share (lowest id on a
/// tie). With no nodes the result is empty.
pub fn assign(
    nodes: &[NodeId],
    partitions: &[TopicPartition],
    current: &BTreeMap<TopicPartition, NodeId>,
) -> BTreeMap<TopicPartition, NodeId> {
    let nodes: BTreeSet<NodeId> = nodes.iter().copied().collect();
    let partitions: BTreeSet<&TopicPartition> = partitions.iter().collect();
    let mut out = BTreeMap::new();
    if nodes.is_empty() {
        return out;
    }
    let base = partitions.len() / nodes.len();
    let extra = partitions.len() % nodes.len();

    let mut held: BTreeMap<NodeId, Vec<&TopicPartition>> =
        nodes.iter().map(|n| (*n, Vec::new())).collect();
    for tp in &partitions {
        if let Some(list) = current.get(*tp).and_then(|n| held.get_mut(n)) {
            list.push(tp);
        }
    }
    let mut by_load: Vec<NodeId> = nodes.iter().copied().collect();
    // Stable sort: equal loads stay in id order.
    by_load.sort_by_key(|n| std::cmp::Reverse(held[n].len()));
    let target: BTreeMap<NodeId, usize> = by_load
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, base + usize::from(i < extra)))
        .collect();

    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (node, list) in &held {
        for tp in list.iter().take(target[node]) {
            out.insert((*tp).clone(), *node);
        }
        load.insert(*node, list.len().min(target[node]));
    }
    for tp in partitions {
        if out.contains_key(tp) {
            continue;
        }
        // The node furthest below its target; lowest id on a tie.
        let node = nodes
            .iter()
            .copied()
            .max_by_key(|n| (target[n] as i64 - load[n] as i64, std::cmp::Reverse(*n)))
            .unwrap_or_default();
        *load.entry(node).or_default() += 1;
        out.insert(tp.clone(), node);
    }
    out
}

/// Partitions that must be placed on one node, by a representative: each
/// partition maps to the smallest member of its group. Groups are the
/// connected components of `links` (a detector's input partition and the
/// alert partition it writes to are linked, so its runner appends locally
/// under the same leadership it reads under); partitions in no link are
/// their own group, and links naming unknown partitions are ignored.
pub fn groups(
    partitions: &[TopicPartition],
    links: &[(TopicPartition, TopicPartition)],
) -> BTreeMap<TopicPartition, TopicPartition> {
    let mut rep: BTreeMap<TopicPartition, TopicPartition> =
        partitions.iter().map(|p| (p.clone(), p.clone())).collect();
    fn root(rep: &BTreeMap<TopicPartition, TopicPartition>, p: &TopicPartition) -> TopicPartition {
        let mut at = p.clone();
        while let Some(up) = rep.get(&at).filter(|up| **up != at) {
            at = up.clone();
        }
        at
    }
    for (a, b) in links {
        if !rep.contains_key(a) || !rep.contains_key(b) {
            continue;
        }
        let (ra, rb) = (root(&rep, a), root(&rep, b));
        // The smaller root wins, so the result does not depend on the
        // order of the links.
        let (keep, drop) = if ra <= rb { (ra, rb) } else { (rb, ra) };
        rep.insert(drop, keep);
    }
    let keys: Vec<TopicPartition> = rep.keys().cloned().collect();
    keys.into_iter()
        .map(|p| {
            let r = root(&rep, &p);
            (p, r)
        })
        .collect()
}

/// [`assign`] over groups of linked partitions (see [`groups`]): each group
/// is placed as one unit, on the node that currently leads most of its
/// members (the lowest such id on a tie) where balance allows. Balance
/// counts groups, not partitions.
pub fn assign_linked(
    nodes: &[NodeId],
    partitions: &[TopicPartition],
    links: &[(TopicPartition, TopicPartition)],
    current: &BTreeMap<TopicPartition, NodeId>,
) -> BTreeMap<TopicPartition, NodeId> {
    let rep = groups(partitions, links);
    let mut votes: BTreeMap<&TopicPartition, BTreeMap<NodeId, usize>> = BTreeMap::new();
    for (p, r) in &rep {
        let v = votes.entry(r).or_default();
        if let Some(n) = current.get(p) {
            *v.entry(*n).or_default() += 1;
        }
    }
    let units: Vec<TopicPartition> = votes.keys().map(|r| (*r).clone()).collect();
    let unit_current: BTreeMap<TopicPartition, NodeId> = votes
        .iter()
        .filter_map(|(r, v)| {
            // Most members; on a tie the lowest id (max_by_key keeps the last).
            let best = v
                .iter()
                .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
                .map(|(n, _)| *n)?;
            Some(((*r).clone(), best))
        })
        .collect();
    let placed = assign(nodes, &units, &unit_current);
    rep.into_iter()
        .filter_map(|(p, r)| Some((p, *placed.get(&r)?)))
        .collect()
}

/// The partitions whose assignment differs between `from` and `to`, with
/// their new node: the moves a rebalance has to make.
pub fn moves(
    from: &BTreeMap<TopicPartition, NodeId>,
    to: &BTreeMap<TopicPartition, NodeId>,
) -> Vec<(TopicPartition, NodeId)> {
    to.iter()
        .filter(|(tp, n)| from.get(*tp) != Some(*n))
        .map(|(tp, n)| (tp.clone(), *n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(topics: &[(&str, i32)]) -> Vec<TopicPartition> {
        topics
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(*t, p)))
            .collect()
    }

    fn loads(a: &BTreeMap<TopicPartition, NodeId>) -> BTreeMap<NodeId, usize> {
        let mut m = BTreeMap::new();
        for n in a.values() {
            *m.entry(*n).or_default() += 1;
        }
        m
    }

    fn assert_balanced(a: &BTreeMap<TopicPartition, NodeId>, nodes: &[NodeId], total: usize) {
        assert_eq!(a.len(), total, "every partition is assigned");
        let l = loads(a);
        for n in l.keys() {
            assert!(nodes.contains(n), "only live nodes: {n}");
        }
        let max = nodes
            .iter()
            .map(|n| l.get(n).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let min = nodes
            .iter()
            .map(|n| l.get(n).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        assert!(max - min <= 1, "balanced: {l:?}");
    }

    #[test]
    fn fresh_assignment_is_balanced_and_ignores_input_order() {
        let p = parts(&[("orders", 12), ("alerts", 5)]);
        let a = assign(&[1, 2, 3], &p, &BTreeMap::new());
        assert_balanced(&a, &[1, 2, 3], 17);
        let mut rev = p.clone();
        rev.reverse();
        assert_eq!(assign(&[3, 1, 2], &rev, &BTreeMap::new()), a);
    }

    #[test]
    fn a_balanced_assignment_stays_put() {
        let p = parts(&[("orders", 12)]);
        let a = assign(&[1, 2, 3], &p, &BTreeMap::new());
        assert!(moves(&a, &assign(&[1, 2, 3], &p, &a)).is_empty());
    }

    #[test]
    fn a_joining_node_takes_only_its_share() {
        let p = parts(&[("orders", 12)]);
        let a = assign(&[1, 2, 3], &p, &BTreeMap::new());
        let b = assign(&[1, 2, 3, 4], &p, &a);
        assert_balanced(&b, &[1, 2, 3, 4], 12);
        let m = moves(&a, &b);
        assert_eq!(m.len(), 3, "12/4 partitions move: {m:?}");
        assert!(
            m.iter().all(|(_, n)| *n == 4),
            "only to the newcomer: {m:?}"
        );
    }

    #[test]
    fn a_dead_nodes_partitions_move_and_nothing_else() {
        let p = parts(&[("orders", 12), ("x", 1)]);
        let a = assign(&[1, 2, 3], &p, &BTreeMap::new());
        let b = assign(&[1, 3], &p, &a);
        assert_balanced(&b, &[1, 3], 13);
        let m = moves(&a, &b);
        let dead: usize = a.values().filter(|n| **n == 2).count();
        assert_eq!(
            m.len(),
            dead,
            "exactly the dead node's partitions move: {m:?}"
        );
    }

    #[test]
    fn minimal_movement_over_many_shapes() {
        // For every shape, the moves are exactly the surplus above the
        // targets: no balanced assignment moves fewer.
        for n_nodes in 1..6 {
            for n_parts in 0..20 {
                let nodes: Vec<NodeId> = (1..=n_nodes).collect();
                let p = parts(&[("t", n_parts)]);
                // A skewed start: everything on node 1, some on a dead node 9.
                let start: BTreeMap<TopicPartition, NodeId> = p
                    .iter()
                    .map(|tp| (tp.clone(), if tp.partition % 3 == 0 { 9 } else { 1 }))
                    .collect();
                let a = assign(&nodes, &p, &start);
                assert_balanced(&a, &nodes, p.len());
                let on_one = start.values().filter(|n| **n == 1).count();
                let share =
                    p.len() / nodes.len() + usize::from(!p.len().is_multiple_of(nodes.len()));
                let expected = p.len() - on_one.min(share);
                assert_eq!(
                    moves(&start, &a).len(),
                    expected,
                    "{n_nodes} nodes, {n_parts} partitions"
                );
            }
        }
    }

    #[test]
    fn linked_partitions_stay_together_and_groups_balance() {
        let p = parts(&[("in", 12), ("alerts", 12), ("other", 3)]);
        let links: Vec<(TopicPartition, TopicPartition)> = (0..12)
            .map(|i| {
                (
                    TopicPartition::new("in", i),
                    TopicPartition::new("alerts", i),
                )
            })
            .collect();
        let nodes = [1, 2, 3];
        // Start split: the inputs on 1, the alerts spread.
        let start: BTreeMap<TopicPartition, NodeId> = p
            .iter()
            .map(|tp| {
                (
                    tp.clone(),
                    if tp.topic == "in" {
                        1
                    } else {
                        1 + tp.partition % 3
                    },
                )
            })
            .collect();
        let a = assign_linked(&nodes, &p, &links, &start);
        assert_eq!(a.len(), p.len());
        for i in 0..12 {
            assert_eq!(
                a[&TopicPartition::new("in", i)],
                a[&TopicPartition::new("alerts", i)],
                "pair {i} together"
            );
        }
        let mut per: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (tp, n) in &a {
            if tp.topic != "alerts" {
                *per.entry(*n).or_default() += 1;
            }
        }
        let (max, min) = (per.values().max().copied(), per.values().min().copied());
        assert!(max.zip(min).is_some_and(|(x, y)| x - y <= 1), "{per:?}");
        // Order of inputs does not matter.
        let mut rev = p.clone();
        rev.reverse();
        let mut rlinks = links.clone();
        rlinks.reverse();
        assert_eq!(a, assign_linked(&nodes, &rev, &rlinks, &start));
    }

    #[test]
    fn a_one_partition_alert_topic_joins_everything_it_collects() {
        let p = parts(&[("in", 4), ("alerts", 1)]);
        let links: Vec<(TopicPartition, TopicPartition)> = (0..4)
            .map(|i| {
                (
                    TopicPartition::new("in", i),
                    TopicPartition::new("alerts", 0),
                )
            })
            .collect();
        let g = groups(&p, &links);
        let reps: std::collections::BTreeSet<_> = g.values().collect();
        assert_eq!(reps.len(), 1, "{g:?}");
        // Links to partitions that do not exist are ignored.
        let g = groups(
            &p,
            &[(TopicPartition::new("in", 0), TopicPartition::new("gone", 0))],
        );
        assert_eq!(g.len(), p.len());
        assert!(g.iter().all(|(p, r)| p == r));
    }

    #[test]
    fn no_nodes_no_assignment() {
        assert!(assign(&[], &parts(&[("t", 3)]), &BTreeMap::new()).is_empty());
    }
}
