//! A spatial index of keyed positions (available volunteers, alerts waiting
//! for one), answering "nearest first" and "all within r" in logarithmic
//! time, in earth-centred metres (see `geo`).

use std::collections::HashMap;
use std::hash::Hash;

use rstar::RTree;
use rstar::primitives::GeomWithData;

use super::geo::{Position, chord_for_distance};

type Entry<K> = GeomWithData<[f64; 3], K>;

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
        let max_d2 = chord_for_distance(radius_m).powi(2);
        let mut found: Vec<(f64, K)> = Vec::new();
        for (entry, d2) in self
            .tree
            .nearest_neighbor_iter_with_distance_2(&from.to_ecef())
        {
            if d2 > max_d2 {
                break;
            }
            // Past `limit` keep going only through ties with the last kept.
            if found.len() >= limit && d2 > found[limit - 1].0 {
                break;
            }
            if keep(&entry.data) {
                found.push((d2, entry.data.clone()));
            }
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        found.truncate(limit);
        found.into_iter().map(|(_, k)| k).collect()
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
}
