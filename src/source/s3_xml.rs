//! The XML documents S3 answers with: bucket listings (`ListObjectsV2`), multipart-upload
//! answers and error bodies. Bodies come from the network, so parsing is bounded: documents
//! over [`MAX_DOCUMENT`] bytes, more than [`MAX_ENTRIES`] entries or unparsable XML are
//! errors, never panics or unbounded allocation (fuzzed: `fuzz/fuzz_targets/s3_xml.rs`).

use quick_xml::events::Event;
use quick_xml::Reader;

/// Largest XML document parsed (a 1,000-key listing is about 300 KiB).
pub const MAX_DOCUMENT: usize = 8 << 20;
/// Most entries taken from one listing page.
pub const MAX_ENTRIES: usize = 10_000;

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// `LastModified` as sent (ISO 8601).
    pub last_modified: String,
}

/// One page of `ListObjectsV2`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Objects on this page.
    pub objects: Vec<ListedObject>,
    /// Token of the next page, when the listing is truncated.
    pub next_token: Option<String>,
}

/// An S3 error body (`<Error><Code>..</Code><Message>..</Message></Error>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Error {
    /// Machine-readable code, e.g. `PreconditionFailed`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// What [`walk`] reports: text inside the element path, or the close of the innermost element.
enum Node<'a> {
    Text(&'a [String], String),
    Close(&'a [String]),
}

/// Walks the elements of a document, calling `on` for every text node with the path of
/// element names leading to it (e.g. `["ListBucketResult", "Contents", "Key"]`) and for every
/// closing element.
fn walk(xml: &[u8], mut on: impl FnMut(Node<'_>) -> Result<(), String>) -> Result<(), String> {
    if xml.len() > MAX_DOCUMENT {
        return Err(format!("XML document of {} bytes is too large", xml.len()));
    }
    let mut reader = Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                if path.len() > 32 {
                    return Err("XML nested too deeply".into());
                }
                path.push(e.local_name().as_ref().to_string());
            }
            Ok(Event::End(_)) => {
                on(Node::Close(&path))?;
                path.pop();
            }
            // Text outside the root element is whitespace between declarations: not content.
            Ok(Event::Text(_)) if path.is_empty() => {}
            Ok(Event::Text(t)) => on(Node::Text(&path, t.xml10_content().into_owned()))?,
            Ok(Event::GeneralRef(r)) => {
                // `&#34;`, `&amp;` and friends arrive apart from the text around them.
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown XML entity &{name};"))?
                            .to_string()
                    }
                    Err(e) => return Err(format!("bad XML character reference: {e}")),
                };
                on(Node::Text(&path, resolved))?;
            }
            Ok(Event::CData(c)) => on(Node::Text(&path, c.xml10_content().into_owned()))?,
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("bad XML at byte {}: {e}", reader.buffer_position())),
        }
        buf.clear();
    }
    if !path.is_empty() {
        return Err("XML document ends inside an element".into());
    }
    Ok(())
}

fn is(path: &[String], names: &[&str]) -> bool {
    path.len() == names.len() && path.iter().zip(names).all(|(a, b)| a == b)
}

/// Parses a `ListObjectsV2` answer.
pub fn parse_list(xml: &[u8]) -> Result<ListPage, String> {
    let mut page = ListPage::default();
    let mut current = (String::new(), None::<u64>, String::new());
    let mut truncated = false;
    let mut token = String::new();
    walk(xml, |node| match node {
        Node::Text(path, text) => {
            if path.first().map(String::as_str) != Some("ListBucketResult") {
                return Err(format!("not a bucket listing (root {:?})", path.first()));
            }
            if is(path, &["ListBucketResult", "Contents", "Key"]) {
                current.0.push_str(&text);
            } else if is(path, &["ListBucketResult", "Contents", "Size"]) {
                let size = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad object size {text:?}"))?;
                current.1 = Some(size);
            } else if is(path, &["ListBucketResult", "Contents", "LastModified"]) {
                current.2.push_str(text.trim());
            } else if is(path, &["ListBucketResult", "IsTruncated"]) {
                truncated = text.trim().eq_ignore_ascii_case("true");
            } else if is(path, &["ListBucketResult", "NextContinuationToken"]) {
                token.push_str(&text);
            }
            Ok(())
        }
        Node::Close(path) => {
            if path.first().map(String::as_str) != Some("ListBucketResult") {
                return Err(format!("not a bucket listing (root {:?})", path.first()));
            }
            if is(path, &["ListBucketResult", "Contents"]) {
                let (key, size, modified) = std::mem::take(&mut current);
                if key.is_empty() {
                    return Err("a listed object has no key".into());
                }
                let size = size.ok_or_else(|| format!("listed object {key:?} has no size"))?;
                if page.objects.len() >= MAX_ENTRIES {
                    return Err(format!("more than {MAX_ENTRIES} objects on one page"));
                }
                page.objects.push(ListedObject {
                    key,
                    size,
                    last_modified: modified,
                });
            }
            Ok(())
        }
    })?;
    if truncated {
        if token.is_empty() {
            return Err("a truncated listing without NextContinuationToken".into());
        }
        page.next_token = Some(token);
    }
    Ok(page)
}

/// Parses an S3 error body; `None` when the body is not one.
pub fn parse_error(xml: &[u8]) -> Option<S3Error> {
    let mut err = S3Error::default();
    let mut seen = false;
    walk(xml, |node| {
        if let Node::Text(path, text) = node {
            if path.first().map(String::as_str) == Some("Error") {
                seen = true;
                if is(path, &["Error", "Code"]) && err.code.len() < 256 {
                    err.code.push_str(&text);
                } else if is(path, &["Error", "Message"]) && err.message.len() < 1024 {
                    err.message.push_str(&text);
                }
            }
        }
        Ok(())
    })
    .ok()?;
    (seen && !err.code.is_empty()).then_some(err)
}

/// The `UploadId` of an `InitiateMultipartUploadResult`.
pub fn parse_upload_id(xml: &[u8]) -> Result<String, String> {
    let mut id = String::new();
    walk(xml, |node| {
        if let Node::Text(path, text) = node {
            if is(path, &["InitiateMultipartUploadResult", "UploadId"]) && id.len() < 4096 {
                id.push_str(&text);
            }
        }
        Ok(())
    })?;
    if id.is_empty() {
        return Err("no UploadId in the answer".into());
    }
    Ok(id)
}

/// True when a `CompleteMultipartUpload` answer reports success. S3 may answer 200 with an
/// `<Error>` body when completing fails late.
pub fn complete_succeeded(xml: &[u8]) -> Result<(), String> {
    if let Some(e) = parse_error(xml) {
        return Err(format!("{}: {}", e.code, e.message));
    }
    let mut ok = false;
    walk(xml, |node| {
        if let Node::Close(path) = node {
            ok |= is(path, &["CompleteMultipartUploadResult"]);
        }
        Ok(())
    })?;
    if ok {
        Ok(())
    } else {
        Err("the answer is not a CompleteMultipartUploadResult".into())
    }
}

/// The body of `CompleteMultipartUpload` for parts `(number, etag)`.
pub fn complete_body(parts: &[(u32, String)]) -> String {
    let mut out = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        out.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            quick_xml::escape::escape(etag.as_str())
        ));
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>pqwh</Name><Prefix>a/</Prefix><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>a/1.json</Key><ETag>&#34;b19&#34;</ETag><Size>6</Size><LastModified>2026-11-30T17:58:17Z</LastModified></Contents><Contents><Key>a/x &amp; y</Key><Size>0</Size><LastModified>2026-11-30T17:58:18.000Z</LastModified></Contents><NextContinuationToken>tok/+=</NextContinuationToken><KeyCount>2</KeyCount></ListBucketResult>"#;

    #[test]
    fn listings_parse_with_escapes_and_tokens() {
        let page = parse_list(LISTING.as_bytes()).unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "a/1.json");
        assert_eq!(page.objects[0].size, 6);
        assert_eq!(page.objects[0].last_modified, "2026-11-30T17:58:17Z");
        assert_eq!(page.objects[1].key, "a/x & y");
        assert_eq!(page.next_token.as_deref(), Some("tok/+="));
        let last = LISTING.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(parse_list(last.as_bytes()).unwrap().next_token, None);
    }

    #[test]
    fn bad_listings_are_errors() {
        for bad in [
            "",
            "<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Key>",
            "<Error><Code>AccessDenied</Code></Error>",
            "<a><b></a>",
        ] {
            if bad.is_empty() {
                assert_eq!(parse_list(bad.as_bytes()).unwrap(), ListPage::default());
                continue;
            }
            assert!(parse_list(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_bodies_and_multipart_answers() {
        let e = parse_error(b"<?xml version=\"1.0\"?><Error><Code>PreconditionFailed</Code><Message>At least one &lt;pre-condition&gt;</Message></Error>").unwrap();
        assert_eq!(e.code, "PreconditionFailed");
        assert_eq!(e.message, "At least one <pre-condition>");
        assert_eq!(parse_error(b"not xml <<<"), None);
        assert_eq!(parse_error(b"<Other/>"), None);
        assert_eq!(
            parse_upload_id(b"<InitiateMultipartUploadResult><Bucket>b</Bucket><UploadId>u-1</UploadId></InitiateMultipartUploadResult>")
                .unwrap(),
            "u-1"
        );
        assert!(parse_upload_id(b"<InitiateMultipartUploadResult/>").is_err());
        assert!(complete_succeeded(
            b"<CompleteMultipartUploadResult><ETag>x</ETag></CompleteMultipartUploadResult>"
        )
        .is_ok());
        assert!(complete_succeeded(
            b"<Error><Code>InternalError</Code><Message>m</Message></Error>"
        )
        .is_err());
        let body = complete_body(&[(1, "\"a&b\"".into())]);
        assert_eq!(
            body,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&amp;b&quot;</ETag></Part></CompleteMultipartUpload>"
        );
    }

    #[test]
    fn huge_or_deep_documents_are_refused() {
        let deep = "<a>".repeat(100);
        assert!(parse_list(deep.as_bytes()).is_err());
        let big = vec![b' '; MAX_DOCUMENT + 1];
        assert!(parse_list(&big).is_err());
    }
}
