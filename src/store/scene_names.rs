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
    by_product: HashMap<String, HashMap<i64, Option<Arc<str>>>>,
}

impl SceneNames {
    /// The names of `scenes`: (product, acquisition time in microseconds, scene id).
    pub(crate) fn new<'a>(scenes: impl IntoIterator<Item = (&'a str, i64, &'a str)>) -> Self {
        let mut by_product: HashMap<String, HashMap<i64, Option<Arc<str>>>> = HashMap::new();
        for (product, time, id) in scenes {
            let times = by_product.entry(product.to_string()).or_default();
            times
                .entry(time)
                .and_modify(|named| {
                    if named.as_deref() != Some(id) {
                        *named = None;
                    }
                })
                .or_insert_with(|| Some(Arc::from(id)));
        }
        SceneNames { by_product }
    }

    /// The one scene of `product` acquired at `time`, if exactly one is.
    pub(crate) fn get(&self, product: &str, time: i64) -> Option<&str> {
        self.by_product.get(product)?.get(&time)?.as_deref()
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
    }
}
