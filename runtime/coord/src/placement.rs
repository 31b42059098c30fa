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
    fn no_nodes_no_assignment() {
        assert!(assign(&[], &parts(&[("t", 3)]), &BTreeMap::new()).is_empty());
    }
}
