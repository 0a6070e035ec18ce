//! [`LineSet`]: a set of line numbers stored as merged inclusive ranges.

/// Sorted set of 1-based line numbers, stored as sorted, non-overlapping, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineSet {
    /// Invariant: sorted by start; for consecutive `(a, b)`, `(c, d)`: `a <= b` and `b + 1 < c`.
    ranges: Vec<(usize, usize)>,
}

impl LineSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one line, merging it with neighbouring ranges.
    pub fn insert(&mut self, line: usize) {
        self.insert_range(line, line);
    }

    /// Adds the lines `first..=last`, merging with overlapping or adjacent ranges; `first > last` is a no-op.
    pub fn insert_range(&mut self, first: usize, last: usize) {
        if first > last {
            return;
        }
        // Ranges lo..hi overlap or touch first..=last; those before lo end before first - 1, those from hi
        // start after last + 1. Every range before lo also starts before last + 1, so lo <= hi.
        let lo = self
            .ranges
            .partition_point(|&(_, end)| end.saturating_add(1) < first);
        let hi = self
            .ranges
            .partition_point(|&(start, _)| start <= last.saturating_add(1));
        match (
            self.ranges.get(lo),
            hi.checked_sub(1).and_then(|i| self.ranges.get(i)),
        ) {
            (Some(&(lo_start, _)), Some(&(_, hi_end))) if lo < hi => {
                let merged = (first.min(lo_start), last.max(hi_end));
                self.ranges.splice(lo..hi, std::iter::once(merged));
            }
            _ => self.ranges.insert(lo.min(self.ranges.len()), (first, last)),
        }
    }

    /// Whether `line` is in the set (binary search).
    pub fn contains(&self, line: usize) -> bool {
        let idx = self.ranges.partition_point(|&(_, end)| end < line);
        self.ranges
            .get(idx)
            .is_some_and(|&(start, _)| start <= line)
    }

    /// Whether any line of `first..=last` is in the set; false when `first > last`.
    pub fn intersects(&self, first: usize, last: usize) -> bool {
        if first > last {
            return false;
        }
        let idx = self.ranges.partition_point(|&(_, end)| end < first);
        self.ranges
            .get(idx)
            .is_some_and(|&(start, _)| start <= last)
    }

    /// Number of lines in the set (saturating at `usize::MAX`).
    pub fn len(&self) -> usize {
        self.ranges.iter().fold(0usize, |acc, &(start, end)| {
            acc.saturating_add((end - start).saturating_add(1))
        })
    }

    /// Whether the set has no line.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The lines in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.ranges.iter().flat_map(|&(start, end)| start..=end)
    }

    /// The inclusive ranges, sorted, non-overlapping and non-adjacent.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }
}

impl FromIterator<usize> for LineSet {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut lines: Vec<usize> = iter.into_iter().collect();
        lines.sort_unstable();
        lines.dedup();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for line in lines {
            match ranges.last_mut() {
                Some((_, end)) if end.checked_add(1) == Some(line) => *end = line,
                _ => ranges.push((line, line)),
            }
        }
        LineSet { ranges }
    }
}

impl Extend<usize> for LineSet {
    fn extend<I: IntoIterator<Item = usize>>(&mut self, iter: I) {
        for line in iter {
            self.insert(line);
        }
    }
}
