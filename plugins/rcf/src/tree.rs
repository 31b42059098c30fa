//! One robust random cut tree (Guha, Mishra, Roy, Schrijvers, "Robust
//! Random Cut Forest Based Anomaly Detection On Streams", ICML 2016).
//!
//! A tree holds a set of points. Every internal node cuts the bounding box
//! of its points on one dimension, chosen with probability proportional to
//! that dimension's extent, at a uniform position; so a point far from the
//! others on some dimension is isolated near the root. Points are inserted
//! and deleted (the forest keeps a sliding window) without rebuilding:
//! insertion draws a cut over the box of a subtree plus the new point and
//! either separates the point there or descends, which yields the same
//! distribution of trees as building from scratch (the paper's Theorem 3).
//!
//! The anomaly score of a point is its collusive displacement (CoDisp):
//! along the path from its leaf to the root, the largest ratio of the
//! sibling subtree's size to the size of the subtree holding the point.
//! The cut of the node where that maximum is reached is where the point
//! was set apart from the bulk: its dimension and side are this tree's
//! attribution.
//!
//! Nodes live in arenas indexed by `u32` (no pointers, so the tree
//! serializes as plain vectors and behaves identically in wasm).

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// No node.
const NONE: u32 = u32::MAX;
/// High bit of a [`Ref`]: the index is a leaf's.
const LEAF: u32 = 1 << 31;

/// A child/parent reference: an internal node index, or a leaf index with
/// the [`LEAF`] bit set.
type Ref = u32;

fn is_leaf(r: Ref) -> bool {
    r != NONE && r & LEAF != 0
}

/// An internal node: a cut and the bounding box of everything below it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Internal {
    parent: u32,
    left: Ref,
    right: Ref,
    dim: u32,
    cut: f64,
    /// Points below (duplicates counted).
    count: u32,
}

/// A leaf: one distinct point and how many copies of it the tree holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Leaf {
    parent: u32,
    count: u32,
}

/// Where a point was isolated in one tree (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Displacement {
    /// CoDisp of the point in this tree.
    pub codisp: f64,
    /// Dimension of the cut that isolated it (where CoDisp peaked).
    pub dim: usize,
    /// Whether the point lies above that cut.
    pub above: bool,
}

/// A robust random cut tree over points of `dims` dimensions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tree {
    dims: usize,
    root: Ref,
    nodes: Vec<Internal>,
    /// Bounding boxes of `nodes`: `2 * dims` values each (mins, then maxes).
    boxes: Vec<f64>,
    free_nodes: Vec<u32>,
    leaves: Vec<Leaf>,
    /// Coordinates of `leaves`: `dims` values each.
    points: Vec<f64>,
    free_leaves: Vec<u32>,
    /// Insertion's merged box, kept to avoid an allocation per insert.
    #[serde(skip)]
    merged: Vec<f64>,
}

impl Tree {
    /// An empty tree for points of `dims` dimensions.
    pub fn new(dims: usize) -> Self {
        Tree {
            dims,
            root: NONE,
            nodes: Vec::new(),
            boxes: Vec::new(),
            free_nodes: Vec::new(),
            leaves: Vec::new(),
            points: Vec::new(),
            free_leaves: Vec::new(),
            merged: Vec::new(),
        }
    }

    /// Points held (duplicates counted).
    pub fn len(&self) -> u32 {
        self.count(self.root)
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.root == NONE
    }

    fn count(&self, r: Ref) -> u32 {
        match r {
            NONE => 0,
            r if is_leaf(r) => self.leaves[(r & !LEAF) as usize].count,
            r => self.nodes[r as usize].count,
        }
    }

    fn parent(&self, r: Ref) -> u32 {
        if is_leaf(r) {
            self.leaves[(r & !LEAF) as usize].parent
        } else {
            self.nodes[r as usize].parent
        }
    }

    fn set_parent(&mut self, r: Ref, p: u32) {
        if is_leaf(r) {
            self.leaves[(r & !LEAF) as usize].parent = p;
        } else {
            self.nodes[r as usize].parent = p;
        }
    }

    /// The bounding box of `r`: (mins, maxes).
    fn bounds(&self, r: Ref) -> (&[f64], &[f64]) {
        let d = self.dims;
        if is_leaf(r) {
            let i = (r & !LEAF) as usize * d;
            let p = &self.points[i..i + d];
            (p, p)
        } else {
            let i = r as usize * 2 * d;
            (&self.boxes[i..i + d], &self.boxes[i + d..i + 2 * d])
        }
    }

    fn new_leaf(&mut self, point: &[f64], parent: u32) -> u32 {
        let d = self.dims;
        let leaf = Leaf { parent, count: 1 };
        match self.free_leaves.pop() {
            Some(i) => {
                self.leaves[i as usize] = leaf;
                self.points[i as usize * d..(i as usize + 1) * d].copy_from_slice(point);
                i
            }
            None => {
                self.leaves.push(leaf);
                self.points.extend_from_slice(point);
                (self.leaves.len() - 1) as u32
            }
        }
    }

    fn new_node(&mut self, node: Internal, bbox: &[f64]) -> u32 {
        let d = self.dims;
        match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                self.boxes[i as usize * 2 * d..(i as usize + 1) * 2 * d].copy_from_slice(bbox);
                i
            }
            None => {
                self.nodes.push(node);
                self.boxes.extend_from_slice(bbox);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Replaces child `old` of internal node `parent` (or the root) by `new`.
    fn replace_child(&mut self, parent: u32, old: Ref, new: Ref) {
        if parent == NONE {
            self.root = new;
            return;
        }
        let p = &mut self.nodes[parent as usize];
        if p.left == old {
            p.left = new;
        } else {
            p.right = new;
        }
    }

    /// Inserts `point` (of `dims` values, finite for meaningful cuts: the
    /// model clamps them); returns its leaf (shared
    /// with an identical point already held).
    pub fn insert(&mut self, point: &[f64], rng: &mut Rng) -> u32 {
        debug_assert_eq!(point.len(), self.dims);
        if self.root == NONE {
            let l = self.new_leaf(point, NONE);
            self.root = l | LEAF;
            return l;
        }
        let d = self.dims;
        let node = self.root;
        let mut merged = std::mem::take(&mut self.merged);
        merged.resize(2 * d, 0.0);
        let leaf = self.descend(point, node, &mut merged, rng);
        self.merged = merged;
        leaf
    }

    /// The insertion proper, from `node` down (see [`Tree::insert`]).
    fn descend(&mut self, point: &[f64], mut node: Ref, merged: &mut [f64], rng: &mut Rng) -> u32 {
        let d = self.dims;
        loop {
            let (lo, hi) = self.bounds(node);
            let mut total = 0.0;
            for i in 0..d {
                merged[i] = lo[i].min(point[i]);
                merged[d + i] = hi[i].max(point[i]);
                total += merged[d + i] - merged[i];
            }
            if total <= 0.0 {
                // Only a leaf equal to `point` has an empty merged box:
                // one more copy (ancestors were counted on the way down).
                let l = node & !LEAF;
                self.leaves[l as usize].count += 1;
                return l;
            }
            let (dim, cut) = draw_cut(merged, total, rng);
            let (lo_d, hi_d) = (lo[dim], hi[dim]);
            // A leaf's box is a point, so any cut separates there; testing
            // `is_leaf` too keeps a non-finite coordinate (NaN cut) from
            // descending into a leaf.
            if cut < lo_d || cut >= hi_d || is_leaf(node) {
                // The cut separates `point` from everything below `node`.
                let parent = self.parent(node);
                let count = self.count(node) + 1;
                let leaf = self.new_leaf(point, NONE) | LEAF;
                let (left, right) = if cut < lo_d {
                    (leaf, node)
                } else {
                    (node, leaf)
                };
                let n = self.new_node(
                    Internal {
                        parent,
                        left,
                        right,
                        dim: dim as u32,
                        cut,
                        count,
                    },
                    merged,
                );
                self.set_parent(leaf, n);
                self.set_parent(node, n);
                self.replace_child(parent, node, n);
                return leaf & !LEAF;
            }
            // Within `node`'s box on that dimension: `node` is internal (a
            // leaf's box is a point), and `point` goes below it.
            let i = node as usize;
            self.boxes[i * 2 * d..(i + 1) * 2 * d].copy_from_slice(merged);
            let n = &mut self.nodes[i];
            n.count += 1;
            node = if point[n.dim as usize] <= n.cut {
                n.left
            } else {
                n.right
            };
        }
    }

    /// Removes one copy of the point at `leaf`.
    pub fn delete(&mut self, leaf: u32) {
        let l = leaf as usize;
        self.leaves[l].count -= 1;
        let mut up = self.leaves[l].parent;
        if self.leaves[l].count == 0 {
            self.free_leaves.push(leaf);
            let me = leaf | LEAF;
            if up == NONE {
                self.root = NONE;
                return;
            }
            // The parent goes; the sibling takes its place.
            let p = self.nodes[up as usize].clone();
            let sibling = if p.left == me { p.right } else { p.left };
            self.set_parent(sibling, p.parent);
            self.replace_child(p.parent, up, sibling);
            self.free_nodes.push(up);
            up = p.parent;
            while up != NONE {
                self.nodes[up as usize].count -= 1;
                self.refit(up);
                up = self.nodes[up as usize].parent;
            }
        } else {
            // Still present: boxes are unchanged.
            while up != NONE {
                self.nodes[up as usize].count -= 1;
                up = self.nodes[up as usize].parent;
            }
        }
    }

    /// Coordinate `i` of the low and high corners of `r`'s box.
    fn corner(&self, r: Ref, i: usize) -> (f64, f64) {
        let d = self.dims;
        if is_leaf(r) {
            let p = self.points[(r & !LEAF) as usize * d + i];
            (p, p)
        } else {
            let b = r as usize * 2 * d;
            (self.boxes[b + i], self.boxes[b + d + i])
        }
    }

    /// Recomputes node `n`'s box from its children's (no allocation: this
    /// runs for every ancestor of every deleted point).
    fn refit(&mut self, n: u32) {
        let d = self.dims;
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let base = n as usize * 2 * d;
        for i in 0..d {
            let ((llo, lhi), (rlo, rhi)) = (self.corner(l, i), self.corner(r, i));
            self.boxes[base + i] = llo.min(rlo);
            self.boxes[base + d + i] = lhi.max(rhi);
        }
    }

    /// CoDisp of the point at `leaf` and where it was isolated.
    pub fn displacement(&self, leaf: u32) -> Displacement {
        let mut best = Displacement {
            codisp: 0.0,
            dim: 0,
            above: false,
        };
        let mut node = leaf | LEAF;
        let mut up = self.leaves[leaf as usize].parent;
        while up != NONE {
            let p = &self.nodes[up as usize];
            let (sibling, above) = if p.left == node {
                (p.right, false)
            } else {
                (p.left, true)
            };
            let disp = f64::from(self.count(sibling)) / f64::from(self.count(node));
            if disp > best.codisp {
                best = Displacement {
                    codisp: disp,
                    dim: p.dim as usize,
                    above,
                };
            }
            node = up;
            up = p.parent;
        }
        best
    }

    /// Checks every invariant (tests): counts add up, parents match,
    /// boxes are exactly the hull of the points below, cuts separate.
    #[cfg(test)]
    pub fn check(&self) -> u32 {
        if self.root == NONE {
            return 0;
        }
        assert_eq!(self.parent(self.root), NONE);
        self.check_at(self.root)
    }

    #[cfg(test)]
    fn check_at(&self, r: Ref) -> u32 {
        if is_leaf(r) {
            let c = self.count(r);
            assert!(c > 0);
            return c;
        }
        let n = &self.nodes[r as usize];
        assert_eq!(self.parent(n.left), r);
        assert_eq!(self.parent(n.right), r);
        let c = self.check_at(n.left) + self.check_at(n.right);
        assert_eq!(c, n.count);
        let d = self.dims;
        let (llo, lhi) = self.bounds(n.left);
        let (rlo, rhi) = self.bounds(n.right);
        let (lo, hi) = self.bounds(r);
        for i in 0..d {
            assert_eq!(lo[i], llo[i].min(rlo[i]));
            assert_eq!(hi[i], lhi[i].max(rhi[i]));
        }
        let k = n.dim as usize;
        assert!(lhi[k] <= n.cut && rlo[k] > n.cut, "cut separates");
        c
    }
}

/// Draws a cut over the box `merged` (mins then maxes) whose extents sum
/// to `total` > 0: a dimension with probability proportional to its
/// extent, and a position uniform along it, in `[min, max)`.
fn draw_cut(merged: &[f64], total: f64, rng: &mut Rng) -> (usize, f64) {
    let d = merged.len() / 2;
    let mut r = rng.next_f64() * total;
    let mut last = 0;
    for i in 0..d {
        let span = merged[d + i] - merged[i];
        if span <= 0.0 {
            continue;
        }
        last = i;
        if r < span {
            let cut = merged[i] + r;
            // Rounding can land on the max; the cut must stay below it.
            return (i, if cut < merged[d + i] { cut } else { merged[i] });
        }
        r -= span;
    }
    // Rounding ran past the last dimension with extent.
    (last, merged[last])
}
