//! Scene ids by product and acquisition time, from a snapshot's scene table. An observation
//! of a fragment is stamped with its scene's acquisition time, so where one scene of a
//! product has that time, the table names the observation without the fragment's scene
//! dictionary: on object storage a read then needs no request for the dictionary.

use std::collections::HashMap;
use std::sync::Arc;

/// Scene ids by (product, acquisition time in microseconds); a time two scenes of one
/// product share names neither (the dictionary has to say which).
#[derive(Debug, Default)]
pub(crate) struct SceneNames {
    by_product: HashMap<String, Product>,
}

/// One product's scenes by time, and the times several share (sorted).
#[derive(Debug, Default)]
struct Product {
    by_time: HashMap<i64, Option<Arc<str>>>,
    shared: Vec<i64>,
}

impl SceneNames {
    /// The names of `scenes`: (product, acquisition time in microseconds, scene id).
    pub(crate) fn new<'a>(scenes: impl IntoIterator<Item = (&'a str, i64, &'a str)>) -> Self {
        let mut by_product: HashMap<String, Product> = HashMap::new();
        for (product, time, id) in scenes {
            if !by_product.contains_key(product) {
                by_product.insert(product.to_string(), Product::default());
            }
            let p = by_product.get_mut(product).expect("just inserted");
            p.by_time
                .entry(time)
                .and_modify(|named| {
                    if named.as_deref() != Some(id) {
                        *named = None;
                    }
                })
                .or_insert_with(|| Some(Arc::from(id)));
        }
        for p in by_product.values_mut() {
            p.shared = p
                .by_time
                .iter()
                .filter(|(_, named)| named.is_none())
                .map(|(&t, _)| t)
                .collect();
            p.shared.sort_unstable();
        }
        SceneNames { by_product }
    }

    /// The one scene of `product` acquired at `time`, if exactly one is.
    pub(crate) fn get(&self, product: &str, time: i64) -> Option<&str> {
        self.by_product.get(product)?.by_time.get(&time)?.as_deref()
    }

    /// True when two scenes of `product` share a time in `[from, to]` (microseconds): a
    /// fragment of that span may need its dictionary.
    pub(crate) fn shares_time_in(&self, product: &str, from: i64, to: i64) -> bool {
        self.by_product.get(product).is_some_and(|p| {
            let i = p.shared.partition_point(|&t| t < from);
            p.shared.get(i).is_some_and(|&t| t <= to)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_time_names_no_scene() {
        let names = SceneNames::new([
            ("s2", 10, "a"),
            ("s2", 20, "b"),
            ("s2", 20, "c"),
            ("l8", 10, "d"),
            ("s2", 30, "e"),
            ("s2", 30, "e"),
        ]);
        assert_eq!(names.get("s2", 10), Some("a"));
        assert_eq!(names.get("l8", 10), Some("d"));
        assert_eq!(names.get("s2", 20), None);
        assert_eq!(names.get("s2", 30), Some("e"));
        assert_eq!(names.get("s2", 40), None);
        assert_eq!(names.get("l9", 10), None);
        assert!(names.shares_time_in("s2", 20, 20) && names.shares_time_in("s2", 0, 100));
        assert!(!names.shares_time_in("s2", 21, 100) && !names.shares_time_in("s2", 0, 19));
        assert!(!names.shares_time_in("l8", 0, 100) && !names.shares_time_in("l9", 0, 100));
    }
}
