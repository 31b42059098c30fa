//! Alert cycles: deployments read topics and write alert (and dead-letter)
//! topics, so together they form a graph over topics. A deployment whose
//! writes reach one of its own inputs through other deployments (A → B → A)
//! would feed on its own alerts for ever, each round writing more: such a
//! deployment is refused before anything is persisted.

use std::collections::{HashMap, VecDeque};

use crate::spec::{DeploymentSpec, FailurePolicy};

/// One edge of the topic graph, kept under the topic read: `deployment`
/// reads it and writes `to`.
struct Edge<'a> {
    deployment: &'a str,
    to: String,
}

/// The topics a deployment writes: its alert topic and, with the
/// dead-letter policy, its dead-letter topic (which receives input records).
fn writes(spec: &DeploymentSpec) -> Vec<String> {
    let mut out = vec![spec.output.clone()];
    if spec.on_failure == FailurePolicy::DeadLetter {
        out.push(spec.dead_letter_topic());
    }
    out
}

/// The cycle that deploying `new` beside `existing` would close, written as
/// `topic -[deployment]-> topic ...`, or `None` when there is none. Every
/// existing deployment counts whatever its state (a paused or completed one
/// can be resumed), and so do replays and shadows: they write too.
pub(crate) fn find_cycle<'a>(
    existing: impl IntoIterator<Item = &'a DeploymentSpec>,
    new: &DeploymentSpec,
) -> Option<String> {
    let mut edges: HashMap<String, Vec<Edge<'_>>> = HashMap::new();
    let mut add = |spec: &'a DeploymentSpec| {
        for input in &spec.inputs {
            for to in writes(spec) {
                edges.entry(input.clone()).or_default().push(Edge {
                    deployment: &spec.name,
                    to,
                });
            }
        }
    };
    for spec in existing {
        if spec.name != new.name {
            add(spec);
        }
    }
    // Breadth first from each topic `new` writes, until one of its inputs.
    let mut parent: HashMap<String, (String, String)> = HashMap::new();
    let mut queue = VecDeque::new();
    for w in writes(new) {
        if !parent.contains_key(&w) {
            parent.insert(w.clone(), (String::new(), new.name.clone()));
            queue.push_back(w);
        }
    }
    while let Some(topic) = queue.pop_front() {
        if new.inputs.contains(&topic) {
            return Some(path(&parent, &topic));
        }
        for e in edges.get(&topic).into_iter().flatten() {
            if !parent.contains_key(&e.to) {
                parent.insert(e.to.clone(), (topic.clone(), e.deployment.to_string()));
                queue.push_back(e.to.clone());
            }
        }
    }
    None
}

/// `input -[new]-> t1 -[b]-> ... -> input`, from the BFS parents.
fn path(parent: &HashMap<String, (String, String)>, end: &str) -> String {
    let mut hops = Vec::new();
    let mut at = end.to_string();
    // Each step goes to a topic discovered earlier, so this ends; the bound
    // only guards against a bug looping.
    for _ in 0..=parent.len() {
        let Some((from, by)) = parent.get(&at) else {
            break;
        };
        hops.push((by.clone(), at.clone()));
        if from.is_empty() {
            break;
        }
        at = from.clone();
    }
    hops.reverse();
    // `end` is one of the new deployment's inputs: the first hop reads it.
    let mut out = format!("{end:?}");
    for (by, to) in hops {
        out.push_str(&format!(" -[{by}]-> {to:?}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, inputs: &[&str], output: &str) -> DeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "name": name, "module": "m", "inputs": inputs, "output": output,
        }))
        .expect("spec")
    }

    #[test]
    fn two_and_three_step_cycles_are_found_and_named() {
        let a = spec("a", &["x"], "y");
        let b = spec("b", &["y"], "x");
        let cycle = find_cycle([&a], &b).expect("a cycle");
        assert_eq!(cycle, r#""y" -[b]-> "x" -[a]-> "y""#);
        let c = spec("c", &["z"], "x");
        let b = spec("b", &["y"], "z");
        let cycle = find_cycle([&a, &b], &c).expect("a cycle");
        assert_eq!(cycle, r#""z" -[c]-> "x" -[a]-> "y" -[b]-> "z""#);
    }

    #[test]
    fn chains_fan_outs_and_redeploys_are_not_cycles() {
        let a = spec("a", &["x"], "y");
        let b = spec("b", &["y"], "z");
        let c = spec("c", &["x", "y"], "w");
        assert_eq!(find_cycle([&a, &b], &c), None);
        // Replacing `a` by itself with the same topics is no cycle.
        assert_eq!(find_cycle([&a, &b], &a), None);
    }

    #[test]
    fn dead_letter_topics_are_writes_too() {
        let a = spec("a", &["x"], "y");
        let mut b = spec("b", &["y"], "alerts-b");
        b.on_failure = FailurePolicy::DeadLetter;
        b.dead_letter_topic = Some("x".into());
        let cycle = find_cycle([&a], &b).expect("a cycle through the dead-letter topic");
        assert!(cycle.contains("-[b]-> \"x\""), "{cycle}");
    }
}
