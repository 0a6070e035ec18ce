use super::Lcg;
use crate::diff::LineSet;
use std::collections::BTreeSet;

#[test]
fn line_set_merges_overlapping_and_adjacent_ranges() {
    let mut s = LineSet::new();
    s.insert(5);
    s.insert(7);
    assert_eq!(s.ranges(), &[(5, 5), (7, 7)]);
    s.insert(6);
    assert_eq!(s.ranges(), &[(5, 7)]);
    s.insert_range(10, 12);
    s.insert_range(1, 3);
    assert_eq!(s.ranges(), &[(1, 3), (5, 7), (10, 12)]);
    s.insert_range(4, 4);
    assert_eq!(s.ranges(), &[(1, 7), (10, 12)]);
    s.insert_range(8, 20);
    assert_eq!(s.ranges(), &[(1, 20)]);
    s.insert_range(30, 25);
    assert_eq!(s.ranges(), &[(1, 20)], "first > last is a no-op");
    s.insert_range(0, usize::MAX);
    assert_eq!(s.ranges(), &[(0, usize::MAX)]);
    assert_eq!(s.len(), usize::MAX, "len saturates");
}

#[test]
fn line_set_queries() {
    let s: LineSet = [9, 3, 4, 5, 3, 12, 10, 11].into_iter().collect();
    assert_eq!(s.ranges(), &[(3, 5), (9, 12)]);
    assert_eq!(s.len(), 7);
    assert!(!s.is_empty());
    assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 4, 5, 9, 10, 11, 12]);
    assert!(s.contains(3) && s.contains(5) && s.contains(9) && s.contains(12));
    assert!(!s.contains(2) && !s.contains(6) && !s.contains(8) && !s.contains(13));
    assert!(s.intersects(6, 9));
    assert!(s.intersects(1, 3));
    assert!(s.intersects(12, 100));
    assert!(!s.intersects(6, 8));
    assert!(!s.intersects(13, 100));
    assert!(!s.intersects(5, 3), "empty query range");
    assert!(LineSet::new().is_empty());
    assert_eq!(LineSet::new().len(), 0);
    assert!(!LineSet::new().contains(1));
    let mut e = LineSet::new();
    e.extend([usize::MAX, usize::MAX - 1]);
    assert_eq!(e.ranges(), &[(usize::MAX - 1, usize::MAX)]);
}

#[test]
fn line_set_matches_a_btreeset_model() {
    let mut rng = Lcg::new(7);
    for round in 0..300 {
        let mut set = LineSet::new();
        let mut model = BTreeSet::new();
        for _ in 0..rng.below(30) {
            let first = rng.below(60);
            let last = first + rng.below(6);
            if rng.below(3) == 0 {
                set.insert(first);
                model.insert(first);
            } else {
                set.insert_range(first, last);
                model.extend(first..=last);
            }
        }
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            model.iter().copied().collect::<Vec<_>>(),
            "round {round}"
        );
        assert_eq!(set.len(), model.len());
        assert_eq!(
            set,
            model.iter().copied().collect::<LineSet>(),
            "FromIterator builds the same ranges"
        );
        for w in set.ranges().windows(2) {
            assert!(
                w[0].1 + 1 < w[1].0,
                "ranges must be sorted, disjoint and non-adjacent: {:?}",
                set.ranges()
            );
        }
        for line in 0..70 {
            assert_eq!(set.contains(line), model.contains(&line));
            let last = line + rng.below(5);
            assert_eq!(
                set.intersects(line, last),
                model.range(line..=last).next().is_some()
            );
        }
    }
}
