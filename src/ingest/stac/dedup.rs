//! One item per acquisition. The same tile and acquisition time come as several items when a
//! scene was reprocessed, under a new processing baseline, or when both `sentinel-2-l2a` and
//! `sentinel-2-c1-l2a` are searched: the one kept has the highest `s2:processing_baseline`,
//! then the latest `updated` (else `created`), then the smallest id; the others are reported
//! with the reason.
//!
//! The tile is the item's grid cell: `s2:mgrs_tile`, the `mgrs:*` fields, `grid:code`, or the
//! Landsat WRS path and row. Items without one are never taken for duplicates.

use super::item::Item;
use std::collections::HashMap;

/// An item left out as a duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    /// The item left out.
    pub item: String,
    /// Why, naming the item kept.
    pub reason: String,
}

/// The grid cell an item covers, normalised across providers (`MGRS-20EPT` and `20EPT` are
/// one tile; `WRS2-033032` and path 033 row 032 too).
pub fn tile_of(item: &Item) -> Option<String> {
    let text = |k: &str| item.text(k).map(str::trim).filter(|s| !s.is_empty());
    if let Some(t) = text("s2:mgrs_tile") {
        return Some(format!("MGRS-{}", t.to_ascii_uppercase()));
    }
    let zone = item
        .number("mgrs:utm_zone")
        .map(|z| format!("{z:02}"))
        .or_else(|| text("mgrs:utm_zone").map(|z| format!("{z:0>2}")));
    if let (Some(z), Some(b), Some(g)) =
        (zone, text("mgrs:latitude_band"), text("mgrs:grid_square"))
    {
        return Some(format!("MGRS-{z}{b}{g}").to_ascii_uppercase());
    }
    if let Some(code) = text("grid:code") {
        return Some(code.to_ascii_uppercase());
    }
    let path = text("landsat:wrs_path")
        .map(str::to_string)
        .or_else(|| item.number("landsat:wrs_path").map(|p| format!("{p:03}")));
    let row = text("landsat:wrs_row")
        .map(str::to_string)
        .or_else(|| item.number("landsat:wrs_row").map(|r| format!("{r:03}")));
    if let (Some(p), Some(r)) = (path, row) {
        return Some(format!("WRS2-{p:0>3}{r:0>3}"));
    }
    None
}

/// What orders duplicates: higher baseline, later update, then smaller id wins.
fn rank(item: &Item) -> (f64, String) {
    let updated = item
        .text("updated")
        .or_else(|| item.text("created"))
        .and_then(crate::time::parse_datetime)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    (
        item.processing_baseline().unwrap_or(f64::NEG_INFINITY),
        updated,
    )
}

fn better(a: &Item, b: &Item) -> bool {
    let (ra, rb) = (rank(a), rank(b));
    match ra.0.partial_cmp(&rb.0) {
        Some(std::cmp::Ordering::Greater) => true,
        Some(std::cmp::Ordering::Less) => false,
        _ => match ra.1.cmp(&rb.1) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => a.id < b.id,
        },
    }
}

fn why(kept: &Item, dropped: &Item, tile: &str) -> String {
    let (rk, rd) = (rank(kept), rank(dropped));
    let because = if rk.0 > rd.0 {
        let show = |i: &Item| {
            i.text("s2:processing_baseline")
                .unwrap_or("none")
                .to_string()
        };
        format!("processing baseline {} over {}", show(kept), show(dropped))
    } else if rk.1 > rd.1 {
        format!(
            "updated {} after {}",
            rk.1,
            if rd.1.is_empty() { "never" } else { &rd.1 }
        )
    } else {
        "same baseline and update time; the first id is kept".to_string()
    };
    let when = dropped
        .datetime
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    format!(
        "duplicate of {} (tile {tile}, acquired {when}): kept for its {because}",
        kept.id
    )
}

/// Splits `items` into those kept (in their order) and the duplicates left out.
pub fn dedup(items: Vec<Item>) -> (Vec<Item>, Vec<Duplicate>) {
    let mut best: HashMap<(String, i64), usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let (Some(tile), Some(t)) = (tile_of(item), item.datetime) else {
            continue;
        };
        let key = (tile, t.timestamp());
        match best.get(&key) {
            Some(&j) if !better(item, &items[j]) => {}
            _ => {
                best.insert(key, i);
            }
        }
    }
    let mut kept = Vec::with_capacity(items.len());
    let mut dropped = Vec::new();
    let winners: HashMap<usize, ()> = best.values().map(|&i| (i, ())).collect();
    let by_key: HashMap<(String, i64), usize> = best.clone();
    for (i, item) in items.iter().enumerate() {
        let key = tile_of(item).zip(item.datetime.map(|t| t.timestamp()));
        match key {
            Some(k) if !winners.contains_key(&i) => {
                let w = by_key[&k];
                dropped.push(Duplicate {
                    item: item.id.clone(),
                    reason: why(&items[w], item, &k.0),
                });
            }
            _ => kept.push(i),
        }
    }
    let mut items: Vec<Option<Item>> = items.into_iter().map(Some).collect();
    let kept = kept.into_iter().filter_map(|i| items[i].take()).collect();
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::super::item::parse;
    use super::*;
    use serde_json::json;

    fn item(id: &str, props: serde_json::Value) -> Item {
        let mut p = json!({"datetime": "2025-07-31T13:19:22.930000Z"});
        p.as_object_mut()
            .unwrap()
            .extend(props.as_object().unwrap().clone());
        parse(&json!({"id": id, "properties": p, "assets": {}}), None).unwrap()
    }

    #[test]
    fn keeps_the_highest_baseline_then_the_latest_update() {
        let items = vec![
            item(
                "l2a",
                json!({"grid:code": "MGRS-20EPT", "s2:processing_baseline": "05.11", "updated": "2025-07-31T15:02:20Z"}),
            ),
            item(
                "c1",
                json!({"mgrs:utm_zone": 20, "mgrs:latitude_band": "E", "mgrs:grid_square": "PT", "s2:processing_baseline": "05.11", "updated": "2025-07-31T15:00:24Z"}),
            ),
            item(
                "old",
                json!({"s2:mgrs_tile": "20EPT", "s2:processing_baseline": "04.00"}),
            ),
            item(
                "other-tile",
                json!({"s2:mgrs_tile": "20EPU", "s2:processing_baseline": "04.00"}),
            ),
            item("no-tile", json!({})),
            item("no-tile-2", json!({})),
        ];
        let (kept, dropped) = dedup(items);
        let ids: Vec<&str> = kept.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["l2a", "other-tile", "no-tile", "no-tile-2"]);
        assert_eq!(dropped.len(), 2);
        assert_eq!(dropped[0].item, "c1");
        assert!(
            dropped[0].reason.contains("duplicate of l2a") && dropped[0].reason.contains("updated"),
            "{}",
            dropped[0].reason
        );
        assert_eq!(dropped[1].item, "old");
        assert!(
            dropped[1].reason.contains("baseline 05.11 over 04.00"),
            "{}",
            dropped[1].reason
        );
    }

    #[test]
    fn landsat_tiles_from_wrs() {
        let a = item(
            "a",
            json!({"landsat:wrs_path": "033", "landsat:wrs_row": "032"}),
        );
        assert_eq!(tile_of(&a).as_deref(), Some("WRS2-033032"));
        let b = item("b", json!({"grid:code": "WRS2-033032"}));
        assert_eq!(tile_of(&b), tile_of(&a));
        let (kept, dropped) = dedup(vec![a, b]);
        assert_eq!((kept.len(), dropped.len()), (1, 1));
    }
}
