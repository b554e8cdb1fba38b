//! Entry points for the `cargo fuzz` targets of warehouse files (called from
//! `crate::fuzzing`): each takes bytes as a hostile co-writer could leave them and runs them
//! through the reader the warehouse uses. Any input must give `Ok` or a clean `Err`.

use super::catalog;
use super::delta::action::{self, Action, Format, Metadata, Protocol};
use super::delta::{checkpoint, TableState, MAX_COMMIT_ACTIONS};
use super::fragment::Fragment;
use super::storage::LocalStorage;
use crate::grid::TileId;
use std::collections::BTreeMap;
use std::path::Path;

fn empty_state() -> TableState {
    TableState::new(
        Protocol::minimal(),
        Metadata {
            id: "fuzz".into(),
            name: None,
            description: None,
            format: Format {
                provider: "parquet".into(),
                options: BTreeMap::new(),
            },
            schema_string: "{}".into(),
            partition_columns: vec![],
            configuration: BTreeMap::new(),
            created_time: None,
        },
    )
}

/// A JSON commit of the Delta log: streamed, applied to a table state (with tombstones),
/// its parts described and its product profiles checked.
pub fn delta_commit(data: &[u8]) {
    let Ok(actions) = action::read_commit(data, MAX_COMMIT_ACTIONS) else {
        return;
    };
    let _ = action::encode_commit(&actions);
    let mut state = empty_state();
    if state.apply_commit(1, &actions).is_err() {
        return;
    }
    let storage = LocalStorage::new("/nonexistent-fuzz-warehouse");
    let _ = super::snapshot::parts_of(&storage, &state);
    let _ = super::products_checked(&storage, &state);
    let _ = actions.iter().any(|a| matches!(a, Action::CommitInfo(_)));
}

/// A checkpoint (hostile Parquet), read with and without its tombstones.
pub fn checkpoint(data: &[u8]) {
    for tombstones in [false, true] {
        if let Ok(d) = checkpoint::decode(data.to_vec(), tombstones) {
            let mut state = empty_state();
            let adds = d.adds.into_iter().map(Action::Add);
            let removes = d.removes.into_iter().map(Action::Remove);
            let actions: Vec<Action> = adds.chain(removes).collect();
            let _ = state.apply_commit(1, &actions);
        }
    }
}

/// A catalog part (hostile Parquet) read as fragment rows and as scene rows; fragment rows
/// are checked against a grid as snapshots check them.
pub fn catalog_part(data: &[u8]) {
    let path = Path::new("catalog/kind=fragment/part-fuzz.parquet");
    if let Ok(rows) = catalog::decode_fragments(path, data.to_vec()) {
        for r in &rows {
            assert!(r.window.fits(r.width, r.height), "row window checked");
            assert!(
                r.resolution.is_finite() && r.resolution > 0.0,
                "resolution checked"
            );
        }
    }
    let _ = catalog::decode_scenes(path, data.to_vec());
}

/// `pixelquery.json`: parsed and checked; a configuration that passes must give a grid
/// whose tiles can be computed.
pub fn warehouse_config(data: &[u8]) {
    let Ok(config) = super::parse_config(Path::new("pixelquery.json"), data) else {
        return;
    };
    let g = config.grid;
    let tile = g.tile_at(
        g.origin_x + 1.5 * g.tile_size,
        g.origin_y - 0.5 * g.tile_size,
    );
    assert_eq!(tile, TileId::new(1, 0), "{g:?}");
    let b = g.tile_bounds(tile);
    assert!(b.min_x.is_finite() && b.max_y.is_finite(), "{g:?}");
    let _ = g.tile_pixels(10.0);
    let _ = g.tiles_in(&b);
}

/// A fragment file, opened from memory and read through its public accessors.
pub fn fragment(data: &[u8]) {
    let path = Path::new("fragments/x0_y0/B04/fuzz.arrow");
    let bytes = arrow_buffer::Buffer::from_vec(data.to_vec());
    let Ok(f) = Fragment::from_buffer(path, bytes) else {
        return;
    };
    let _ = f.meta();
    let _ = f.window();
    for i in 0..f.len() {
        let _ = f.time(i);
        let _ = f.scene_id(i);
        let _ = f.pixel_bytes(i);
        let _ = f.validity(i);
        let _ = f.observation(i);
    }
}
