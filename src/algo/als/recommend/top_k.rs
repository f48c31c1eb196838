//! The per-user top-k of [`super::ItemScorer`]: a heap with the worst kept entry at its root.

/// The `k` largest scores seen so far, as a binary heap with the worst entry at the root (an
/// entry enters in `log k` steps, where keeping the minimum of an unsorted array took `k`).
/// "Worse" is a lower score, and among equal scores the higher item index.
pub(super) struct TopK {
    capacity: usize,
    entries: Vec<(u32, f32)>,
    /// The score a new entry must beat: -inf until full, then the root's.
    limit: f32,
}

impl TopK {
    pub(super) fn new(capacity: usize) -> TopK {
        TopK {
            capacity,
            entries: Vec::with_capacity(capacity),
            limit: if capacity == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            },
        }
    }

    /// Scores at or below this cannot enter (NaN and -inf never do).
    pub(super) fn threshold(&self) -> f32 {
        self.limit
    }

    /// Whether `(item, score)` belongs among the best so far: a higher score than the worst
    /// kept, or an equal one on a lower item index (NaN and -inf never).
    pub(super) fn accepts(&self, item: u32, score: f32) -> bool {
        score > self.limit
            || (score == self.limit
                && self.capacity > 0
                && self.entries.len() == self.capacity
                && Self::worse(self.entries[0], (item, score)))
    }

    fn worse(a: (u32, f32), b: (u32, f32)) -> bool {
        a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)).is_lt()
    }

    /// Takes `(item, score)`, which [`TopK::accepts`] said belongs, in place of the worst.
    pub(super) fn offer(&mut self, item: u32, score: f32) {
        if self.capacity == 0 || score.is_nan() {
            return;
        }
        let entries = &mut self.entries;
        if entries.len() < self.capacity {
            entries.push((item, score));
            let mut at = entries.len() - 1;
            while at > 0 {
                let parent = (at - 1) / 2;
                if !Self::worse(entries[at], entries[parent]) {
                    break;
                }
                entries.swap(at, parent);
                at = parent;
            }
        } else {
            entries[0] = (item, score);
            let mut at = 0;
            loop {
                let (left, right) = (2 * at + 1, 2 * at + 2);
                let mut worst = at;
                if left < entries.len() && Self::worse(entries[left], entries[worst]) {
                    worst = left;
                }
                if right < entries.len() && Self::worse(entries[right], entries[worst]) {
                    worst = right;
                }
                if worst == at {
                    break;
                }
                entries.swap(at, worst);
                at = worst;
            }
        }
        if entries.len() == self.capacity {
            self.limit = entries[0].1;
        }
    }

    pub(super) fn into_sorted(mut self) -> Vec<(u32, f32)> {
        self.entries
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.entries
    }
}
