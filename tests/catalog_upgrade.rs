//! A warehouse whose catalog table was made before a column existed (the scenes' `scaling`)
//! takes the new column with its next commit: the commit declares the added nullable column
//! in the table's schema, older parts read as null, and `deltalake` agrees at every version.

mod store_support;

use pixelquery::store::*;
use std::collections::BTreeMap;
use store_support::*;

/// Rewrites version 0's schema without the `scaling` column, as an older version wrote it.
fn make_old(dir: &std::path::Path) {
    let path = dir.join("catalog/_delta_log/00000000000000000000.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut action: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(m) = action.get_mut("metaData") {
            let mut schema: serde_json::Value =
                serde_json::from_str(m["schemaString"].as_str().unwrap()).unwrap();
            schema["fields"]
                .as_array_mut()
                .unwrap()
                .retain(|f| f["name"] != "scaling");
            m["schemaString"] = serde_json::Value::String(schema.to_string());
        }
        out.push_str(&action.to_string());
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

fn schema_names(dir: &std::path::Path, version: u64) -> Option<Vec<String>> {
    let path = dir.join(format!("catalog/_delta_log/{version:020}.json"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            let s: serde_json::Value =
                serde_json::from_str(a.get("metaData")?["schemaString"].as_str()?).unwrap();
            Some(
                s["fields"]
                    .as_array()?
                    .iter()
                    .map(|f| f["name"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
}

#[test]
fn an_older_catalog_takes_the_scaling_column_with_its_next_commit() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let wh = Warehouse::create(&dir, WarehouseConfig::new(grid())).unwrap();
    drop(wh);
    make_old(&dir);
    assert!(!schema_names(&dir, 0)
        .unwrap()
        .contains(&"scaling".to_string()));
    let wh = Warehouse::open(&dir).unwrap();
    // Scenes without their own scaling: the commit adds the column anyway (its parts have it).
    ingest(&wh, "a", 0..2).unwrap();
    let v1 = schema_names(&dir, 1).expect("the first commit declares the new column");
    assert_eq!(v1.last().map(String::as_str), Some("scaling"));
    assert!(schema_names(&dir, 2).is_none(), "declared once");
    // A scene with its own scale and offset.
    let batch = wh.begin_batch();
    let mut rec = scene("b", 7);
    rec.scaling = BTreeMap::from([(
        "B04".to_string(),
        BandScaling {
            scale: 1e-4,
            offset: -0.1,
        },
    )]);
    for &(c, r) in &TILES {
        batch
            .write_fragment(fragment("b", 7, pixelquery::TileId::new(c, r), 0))
            .unwrap();
    }
    batch.add_scene(rec.clone()).unwrap();
    batch.commit().unwrap();
    let snap = wh.snapshot(None).unwrap();
    let back = snap.scene("S2", &rec.scene_id).unwrap();
    assert_eq!(back.scene.scaling, rec.scaling);
    assert!(snap.scene("S2", "a-0000").unwrap().scene.scaling.is_empty());

    let Some(python) = common::python() else {
        return;
    };
    let latest = wh.latest_version().unwrap();
    let pairs: Vec<_> = (0..=latest).map(|v| (dir.clone(), v)).collect();
    assert_eq!(assert_delta_agrees(&python, &pairs), pairs.len());
}
