//! A spatial index of keyed positions (available volunteers, alerts waiting
//! for one), answering "nearest first" and "all within r" in logarithmic
//! time, in earth-centred metres (see `geo`).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

use rstar::primitives::GeomWithData;
use rstar::{PointDistance, RTree, RTreeNode};

use super::geo::{Position, chord_for_distance};

type Entry<K> = GeomWithData<[f64; 3], K>;

/// A node or a point of the tree waiting to be looked at, by its (least)
/// squared distance to the query; the heap pops the nearest first.
struct Pending<'a, K> {
    d2: f64,
    node: &'a RTreeNode<Entry<K>>,
}

impl<K> PartialEq for Pending<'_, K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Pending<'_, K> {}

impl<K> PartialOrd for Pending<'_, K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Pending<'_, K> {
    /// Reversed: `BinaryHeap` is a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        other.d2.total_cmp(&self.d2)
    }
}

/// Pushes the children of a node that are no farther than `bound`.
fn push_children<'a, K>(
    heap: &mut BinaryHeap<Pending<'a, K>>,
    children: &'a [RTreeNode<Entry<K>>],
    q: &[f64; 3],
    bound: f64,
) {
    for node in children {
        let d2 = match node {
            RTreeNode::Leaf(entry) => entry.distance_2(q),
            RTreeNode::Parent(p) => p.envelope().distance_2(q),
        };
        if d2 <= bound {
            heap.push(Pending { d2, node });
        }
    }
}

/// Keyed points; a key is in the index at most once.
#[derive(Debug)]
pub struct NearbyIndex<K: Clone + Eq + Hash> {
    tree: RTree<Entry<K>>,
    points: HashMap<K, [f64; 3]>,
}

impl<K: Clone + Eq + Hash + Ord> Default for NearbyIndex<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Ord> NearbyIndex<K> {
    pub fn new() -> Self {
        Self {
            tree: RTree::new(),
            points: HashMap::new(),
        }
    }

    /// Builds an index from many entries at once (bulk loading is much
    /// faster than one insert at a time; used at start-up).
    pub fn bulk(entries: impl IntoIterator<Item = (K, Position)>) -> Self {
        let mut points = HashMap::new();
        for (k, p) in entries {
            points.insert(k, p.to_ecef());
        }
        let tree = RTree::bulk_load(
            points
                .iter()
                .map(|(k, p)| GeomWithData::new(*p, k.clone()))
                .collect(),
        );
        Self { tree, points }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.points.contains_key(key)
    }

    /// Puts `key` at `position`, moving it if it was elsewhere.
    pub fn insert(&mut self, key: K, position: Position) {
        self.remove(&key);
        let p = position.to_ecef();
        self.points.insert(key.clone(), p);
        self.tree.insert(GeomWithData::new(p, key));
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(p) = self.points.remove(key) {
            self.tree.remove(&GeomWithData::new(p, key.clone()));
        }
    }

    /// Keys nearest to `from` first, up to `radius_m` away, for which `keep`
    /// holds; at most `limit` of them. Equally distant keys come in key
    /// order, so the answer never depends on the tree's shape.
    ///
    /// A best-first search of the tree: nodes and points wait in a heap,
    /// nearest first, and one farther than the `limit`-th best found so far
    /// (or than the radius, until `limit` are found) is never pushed, so the
    /// heap stays small and the search ends as soon as nothing nearer can
    /// come. `keep` is asked in order of distance, and only about a key
    /// that would make the answer.
    pub fn nearest(
        &self,
        from: Position,
        radius_m: f64,
        limit: usize,
        mut keep: impl FnMut(&K) -> bool,
    ) -> Vec<K> {
        if limit == 0 {
            return Vec::new();
        }
        let q = from.to_ecef();
        let max_d2 = chord_for_distance(radius_m).powi(2);
        // The best so far, by (distance, key); at most `limit` of them.
        let mut found: Vec<(f64, &K)> = Vec::with_capacity(limit);
        let bound = |found: &[(f64, &K)]| match found.get(limit - 1) {
            Some((d2, _)) => *d2,
            None => max_d2,
        };
        let mut heap = BinaryHeap::with_capacity(64);
        push_children(&mut heap, self.tree.root().children(), &q, max_d2);
        while let Some(Pending { d2, node }) = heap.pop() {
            let b = bound(&found);
            if d2 > b {
                break;
            }
            match node {
                RTreeNode::Parent(p) => push_children(&mut heap, p.children(), &q, b),
                RTreeNode::Leaf(entry) => {
                    let key = &entry.data;
                    let makes_it = match found.get(limit - 1) {
                        Some((last_d2, last_key)) => d2 < *last_d2 || key < *last_key,
                        None => true,
                    };
                    if makes_it && keep(key) {
                        let at = found.partition_point(|(fd, fk)| {
                            fd.total_cmp(&d2).then_with(|| (*fk).cmp(key)) == Ordering::Less
                        });
                        found.insert(at, (d2, key));
                        found.truncate(limit);
                    }
                }
            }
        }
        found.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// Every key within `radius_m` of `from`, in no particular order.
    pub fn within(&self, from: Position, radius_m: f64) -> Vec<K> {
        let r = chord_for_distance(radius_m);
        self.tree
            .locate_within_distance(from.to_ecef(), r * r)
            .map(|e| e.data.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> Position {
        Position::new(lat, lon).unwrap()
    }

    #[test]
    fn nearest_comes_first() {
        let mut ix = NearbyIndex::new();
        ix.insert("far", p(30.60, 120.60));
        ix.insert("near", p(30.501, 120.60));
        ix.insert("mid", p(30.52, 120.60));
        let got = ix.nearest(p(30.50, 120.60), 50_000.0, 3, |_| true);
        assert_eq!(got, vec!["near", "mid", "far"]);
    }

    #[test]
    fn radius_is_a_great_circle_radius() {
        let mut ix = NearbyIndex::new();
        // 0.01 degree of latitude is about 1112 m.
        ix.insert("a", p(30.51, 120.60));
        assert_eq!(ix.nearest(p(30.50, 120.60), 1_100.0, 1, |_| true).len(), 0);
        assert_eq!(ix.nearest(p(30.50, 120.60), 1_120.0, 1, |_| true).len(), 1);
    }

    #[test]
    fn filtered_keys_are_skipped_not_counted() {
        let mut ix = NearbyIndex::new();
        ix.insert(1, p(30.501, 120.60));
        ix.insert(2, p(30.502, 120.60));
        ix.insert(3, p(30.503, 120.60));
        let got = ix.nearest(p(30.50, 120.60), 5_000.0, 2, |k| *k != 1);
        assert_eq!(got, vec![2, 3]);
    }

    #[test]
    fn ties_are_broken_by_key() {
        let mut ix = NearbyIndex::new();
        ix.insert("b", p(30.51, 120.60));
        ix.insert("c", p(30.51, 120.60));
        ix.insert("a", p(30.51, 120.60));
        let got = ix.nearest(p(30.50, 120.60), 5_000.0, 2, |_| true);
        assert_eq!(got, vec!["a", "b"]);
    }

    #[test]
    fn insert_moves_and_remove_forgets() {
        let mut ix = NearbyIndex::new();
        ix.insert("a", p(30.90, 120.60));
        ix.insert("a", p(30.501, 120.60));
        assert_eq!(ix.len(), 1);
        assert_eq!(
            ix.nearest(p(30.50, 120.60), 1_000.0, 5, |_| true),
            vec!["a"]
        );
        ix.remove(&"a");
        assert!(ix.is_empty());
        assert!(
            ix.nearest(p(30.50, 120.60), 1_000_000.0, 5, |_| true)
                .is_empty()
        );
    }

    #[test]
    fn within_finds_all_in_radius() {
        let ix = NearbyIndex::bulk([
            ("a", p(30.501, 120.60)),
            ("b", p(30.502, 120.60)),
            ("z", p(31.5, 120.60)),
        ]);
        let mut got = ix.within(p(30.50, 120.60), 1_000.0);
        got.sort();
        assert_eq!(got, vec!["a", "b"]);
    }

    #[test]
    fn across_the_antimeridian_neighbours_are_near() {
        let mut ix = NearbyIndex::new();
        ix.insert("east", p(0.0, 179.999));
        ix.insert("far", p(0.0, 179.0));
        let got = ix.nearest(p(0.0, -179.999), 1_000.0, 2, |_| true);
        assert_eq!(got, vec!["east"]);
    }

    /// The answer the index must give, by looking at every point.
    fn brute_force(
        points: &[(u32, Position)],
        from: Position,
        radius_m: f64,
        limit: usize,
        keep: impl Fn(&u32) -> bool,
    ) -> Vec<u32> {
        let max_d2 = chord_for_distance(radius_m).powi(2);
        let q = from.to_ecef();
        let mut all: Vec<(f64, u32)> = points
            .iter()
            .map(|(k, p)| {
                let e = p.to_ecef();
                let d2 = (0..3).map(|i| (e[i] - q[i]).powi(2)).sum::<f64>();
                (d2, *k)
            })
            .filter(|(d2, k)| *d2 <= max_d2 && keep(k))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(limit).map(|(_, k)| k).collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any points (many on the same few spots, for ties), any filter,
        /// radius and limit, built in bulk or one at a time with some
        /// removed: the same answer as a look at every point.
        #[test]
        fn nearest_is_what_a_scan_finds(
            spots in proptest::collection::vec((30.0f64..30.2, 120.0f64..120.2), 1..40),
            picks in proptest::collection::vec((0usize..1000, proptest::bool::ANY), 0..400),
            from in (29.95f64..30.25, 119.95f64..120.25),
            radius_m in 0.0f64..30_000.0,
            limit in 0usize..6,
            skip_mod in 1u32..5,
            bulk in proptest::bool::ANY,
        ) {
            let points: Vec<(u32, Position)> = picks
                .iter()
                .enumerate()
                .map(|(i, (s, _))| {
                    let (lat, lon) = spots[s % spots.len()];
                    (i as u32, p(lat, lon))
                })
                .collect();
            let (ix, kept) = if bulk {
                (NearbyIndex::bulk(points.clone()), points.clone())
            } else {
                let mut ix = NearbyIndex::new();
                for (k, pos) in &points {
                    ix.insert(*k, *pos);
                }
                let mut kept = Vec::new();
                for ((k, pos), (_, removed)) in points.iter().zip(&picks) {
                    if *removed {
                        ix.remove(k);
                    } else {
                        kept.push((*k, *pos));
                    }
                }
                (ix, kept)
            };
            let from = p(from.0, from.1);
            let keep = |k: &u32| k % skip_mod != 0;
            proptest::prop_assert_eq!(
                ix.nearest(from, radius_m, limit, keep),
                brute_force(&kept, from, radius_m, limit, keep)
            );
        }
    }
}
