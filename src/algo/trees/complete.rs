//! A second scoring layout for numeric trees up to depth 12: each tree padded to a complete
//! binary tree (node `i`'s children are `2i + 1` and `2i + 2`; a leaf above the last level
//! becomes nodes that send every row left, to copies of itself), so that every row's walk is
//! exactly `depth` steps of the same arithmetic with no test for "reached a leaf". A block of
//! rows then advances one level at a time in a plain counted loop whose steps are independent
//! across rows, and the core overlaps them; the flat walk of [`super::flat`] tests every row
//! for a leaf at every level. The leaves reached are the flat walk's, so scores agree to the
//! bit. (AVX2 gathers were tried for the same walk: no faster on this machine's cores, and
//! unsafe.)

use super::flat::{FlatNode, LEAF, is_categorical};

/// Deepest tree padded (4,095 nodes); deeper trees keep the flat walk.
const MAX_DEPTH: u32 = 12;

#[derive(Clone, Debug)]
pub struct CompleteTrees {
    /// Per tree: its depth and where its nodes and leaves start.
    trees: Vec<TreeSpan>,
    /// Node tests; a padding node tests feature 0 against +inf (`x > +inf` is false for every
    /// value, NaN included: left).
    nodes: Vec<Test>,
    /// Leaf links (as the flat layout's) of each tree's last level.
    leaves: Vec<u32>,
    /// The largest feature index tested; rows must be wider.
    max_feature: usize,
}

/// One node: right when the row's value at `feature` is above `threshold` (NaN: left).
#[derive(Clone, Copy, Debug)]
struct Test {
    feature: u32,
    threshold: f32,
}

const PADDING: Test = Test {
    feature: 0,
    threshold: f32::INFINITY,
};

#[derive(Clone, Copy, Debug)]
struct TreeSpan {
    depth: u32,
    nodes: usize,
    leaves: usize,
}

impl CompleteTrees {
    /// The padded layout, or `None` when a tree has a categorical split, is deeper than
    /// [`MAX_DEPTH`], or padding would take over eight times the flat layout's nodes (a walk
    /// costs its depth whatever the padding; only memory grows with it).
    pub fn new(nodes: &[FlatNode], roots: &[u32]) -> Option<CompleteTrees> {
        let mut depths = Vec::with_capacity(roots.len());
        for &root in roots {
            depths.push(depth(nodes, root)?);
        }
        let padded: usize = depths.iter().map(|depth| (1usize << depth) - 1).sum();
        if padded > 8 * nodes.len() + 64 * roots.len() {
            return None;
        }
        let mut complete = CompleteTrees {
            trees: Vec::with_capacity(roots.len()),
            nodes: Vec::with_capacity(padded),
            leaves: Vec::new(),
            max_feature: 0,
        };
        for (&root, &depth) in roots.iter().zip(&depths) {
            let span = TreeSpan {
                depth,
                nodes: complete.nodes.len(),
                leaves: complete.leaves.len(),
            };
            complete
                .nodes
                .resize(span.nodes + (1 << depth) - 1, PADDING);
            complete.leaves.resize(span.leaves + (1 << depth), LEAF);
            complete.fill(nodes, span, root, 0, 0);
            complete.trees.push(span);
        }
        Some(complete)
    }

    /// Places `link` at position `position` (level `level`) of the tree at `span`.
    fn fill(&mut self, nodes: &[FlatNode], span: TreeSpan, link: u32, position: usize, level: u32) {
        if level == span.depth {
            self.leaves[span.leaves + position + 1 - (1 << span.depth)] = link;
            return;
        }
        let (left, right) = if link & LEAF == 0 {
            let node = &nodes[link as usize];
            self.nodes[span.nodes + position] = Test {
                feature: node.feature,
                threshold: node.threshold,
            };
            self.max_feature = self.max_feature.max(node.feature as usize);
            (node.left, node.right)
        } else {
            // Padding: the node sends every row left; both subtrees end in this leaf.
            (link, link)
        };
        self.fill(nodes, span, left, 2 * position + 1, level + 1);
        self.fill(nodes, span, right, 2 * position + 2, level + 1);
    }

    /// Whether [`CompleteTrees::leaves`] can score rows `features` wide.
    pub fn usable(&self, features: usize) -> bool {
        self.max_feature < features
    }

    /// The leaf links the rows of `block` (row-major, `features` wide, at most [`BLOCK`] rows)
    /// reach in tree `tree`.
    pub fn leaves(&self, tree: usize, block: &[f32], features: usize, out: &mut [u32]) {
        let span = self.trees[tree];
        let nodes = &self.nodes[span.nodes..span.nodes + (1 << span.depth) - 1];
        let mut positions = [0u32; BLOCK];
        let rows = out.len().min(BLOCK);
        for _ in 0..span.depth {
            for (row, position) in positions[..rows].iter_mut().enumerate() {
                let node = nodes[*position as usize];
                let value = block[row * features + node.feature as usize];
                *position = 2 * *position + 1 + u32::from(value > node.threshold);
            }
        }
        let leaves = &self.leaves[span.leaves..span.leaves + (1 << span.depth)];
        for (slot, position) in out.iter_mut().zip(positions) {
            *slot = leaves[position as usize + 1 - (1 << span.depth)];
        }
    }
}

/// Rows that walk a tree side by side.
pub const BLOCK: usize = 64;

/// The depth of the subtree at `link`, or `None` for a categorical split or a depth past
/// [`MAX_DEPTH`].
fn depth(nodes: &[FlatNode], link: u32) -> Option<u32> {
    if link & LEAF != 0 {
        return Some(0);
    }
    let node = &nodes[link as usize];
    if is_categorical(node) {
        return None;
    }
    let below = depth(nodes, node.left)?.max(depth(nodes, node.right)?) + 1;
    (below <= MAX_DEPTH).then_some(below)
}
