//! GDAL's private metadata tags: `GDAL_METADATA` (XML items) and `GDAL_NODATA`.

/// One `<Item>` of the `GDAL_METADATA` XML.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Item {
    pub name: String,
    /// Band index (0-based) for band items, `None` for dataset items.
    pub sample: Option<usize>,
    /// `description`, `scale`, `offset`, `unittype`, ... for band properties.
    pub role: Option<String>,
    /// Metadata domain (`None` = default domain).
    pub domain: Option<String>,
    pub value: String,
}

/// Parses the items of a `GDAL_METADATA` document. Anything unparsable is skipped: metadata
/// never makes a file unreadable.
pub(crate) fn parse_items(xml: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Item") {
        rest = &rest[start + 5..];
        let Some(tag_end) = rest.find('>') else { break };
        let attrs = &rest[..tag_end];
        let self_closing = attrs.ends_with('/');
        rest = &rest[tag_end + 1..];
        let value = if self_closing {
            String::new()
        } else {
            let Some(close) = rest.find("</Item>") else {
                break;
            };
            let v = unescape(&rest[..close]);
            rest = &rest[close + 7..];
            v
        };
        let Some(name) = attribute(attrs, "name") else {
            continue;
        };
        items.push(Item {
            name,
            sample: attribute(attrs, "sample").and_then(|s| s.trim().parse().ok()),
            role: attribute(attrs, "role"),
            domain: attribute(attrs, "domain").filter(|d| !d.is_empty()),
            value,
        });
    }
    items
}

fn attribute(attrs: &str, key: &str) -> Option<String> {
    let mut search = attrs;
    loop {
        let at = search.find(key)?;
        let before_ok = at == 0 || search.as_bytes()[at - 1].is_ascii_whitespace();
        let after = search[at + key.len()..].trim_start();
        if before_ok {
            if let Some(eq) = after.strip_prefix('=') {
                let eq = eq.trim_start();
                let quote = eq.chars().next()?;
                if quote == '"' || quote == '\'' {
                    let body = &eq[1..];
                    let end = body.find(quote)?;
                    return Some(unescape(&body[..end]));
                }
            }
        }
        search = &search[at + key.len()..];
    }
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses `GDAL_NODATA` (ASCII: a number, `nan`, `inf`, `-inf`).
pub(crate) fn parse_nodata(text: &str) -> Option<f64> {
    let t = text.trim().trim_end_matches('\0').trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dataset_and_band_items() {
        let xml = r#"<GDALMetadata>
  <Item name="ACQUISITION_DATETIME">2023-06-11T02:16:59Z</Item>
  <Item name="DESCRIPTION" sample="0" role="description">B02 &amp; blue</Item>
  <Item name="SCALE" sample="3" role="scale">0.0001</Item>
  <Item name="empty" sample="1"/>
</GDALMetadata>"#;
        let items = parse_items(xml);
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].name, "ACQUISITION_DATETIME");
        assert_eq!(items[0].sample, None);
        assert_eq!(items[1].value, "B02 & blue");
        assert_eq!(items[1].role.as_deref(), Some("description"));
        assert_eq!(items[2].sample, Some(3));
        assert_eq!(items[3].value, "");
    }

    #[test]
    fn garbage_never_panics() {
        for xml in [
            "<Item",
            "<Item name=\"a\">x",
            "<Item name=>",
            "<Item name='a'>&#xZZ;</Item>",
            "&&&;",
        ] {
            let _ = parse_items(xml);
        }
        assert_eq!(
            parse_items("<Item name='a'>&#65;&lt;</Item>")[0].value,
            "A<"
        );
    }

    #[test]
    fn nodata_forms() {
        assert_eq!(parse_nodata("0"), Some(0.0));
        assert_eq!(parse_nodata("-9999\0"), Some(-9999.0));
        assert!(parse_nodata("nan").unwrap().is_nan());
        assert_eq!(parse_nodata("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_nodata("abc"), None);
    }
}
