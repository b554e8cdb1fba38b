//! `s3://bucket/key` locations: mapped onto the bucket's HTTPS endpoint and, when AWS
//! credentials are in the environment, signed with AWS Signature Version 4.
//!
//! * URL: `https://{bucket}.s3.{region}.amazonaws.com/{key}` (virtual-hosted style); buckets
//!   with dots use path style (`https://s3.{region}.amazonaws.com/{bucket}/{key}`) because
//!   the wildcard certificate does not cover them. An endpoint override
//!   ([`RemoteOptions::s3_endpoint`], `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`) is used
//!   path-style, as MinIO and most S3-compatible stores expect.
//! * Region: [`RemoteOptions::s3_region`], `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-west-2`
//!   (where the public Sentinel-2 and Landsat COG buckets live).
//! * Credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//!   without them, or with `AWS_NO_SIGN_REQUEST=YES`, requests are anonymous (public buckets).
//!   Profiles (`~/.aws/credentials`), SSO and instance roles are not read.

use super::http::{HttpSource, RemoteOptions, Sign};
use super::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// SHA-256 of an empty payload (a GET has no body).
pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Region used when neither the options nor the environment name one.
pub const DEFAULT_REGION: &str = "us-west-2";

/// A parsed `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Object key (without the leading `/`).
    pub key: String,
}

impl S3Location {
    /// Parses `s3://bucket/key`.
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("s3://"))
            .map(|_| &url[5..])
            .ok_or_else(|| invalid("an S3 URL starts with s3://"))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("no key after the bucket"))?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(invalid(
                "bucket names have 3-63 lower-case letters, digits, dots and hyphens",
            ));
        }
        if key.is_empty() {
            return Err(invalid("no key after the bucket"));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// AWS credentials for signing.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where and how `s3://` URLs are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Region of the bucket.
    pub region: String,
    /// Endpoint override (path-style), e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Credentials; `None` for anonymous requests.
    pub credentials: Option<Credentials>,
}

impl S3Config {
    /// From the options, then the process environment.
    pub fn from_env(options: &RemoteOptions) -> Self {
        Self::from_lookup(options, |name| std::env::var(name).ok())
    }

    /// From the options, then `var` (an environment lookup: testable without touching the
    /// process environment).
    pub fn from_lookup(options: &RemoteOptions, var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let region = options
            .s3_region
            .clone()
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let endpoint = options
            .s3_endpoint
            .clone()
            .or_else(|| var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .map(|e| e.trim_end_matches('/').to_string());
        let anonymous = var("AWS_NO_SIGN_REQUEST").is_some_and(|v| {
            v.eq_ignore_ascii_case("yes") || v.eq_ignore_ascii_case("true") || v == "1"
        });
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            _ if options.s3_credentials.is_some() => options.s3_credentials.clone(),
            (Some(access_key_id), Some(secret_access_key)) if !anonymous => Some(Credentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        };
        Self {
            region,
            endpoint,
            credentials,
        }
    }

    /// The HTTP(S) URL of an object, its `Host` header value and its path (already
    /// percent-encoded, as signed).
    pub fn object_url(&self, location: &S3Location) -> (String, String, String) {
        let key = uri_encode(&location.key, false);
        let (base, host, path) = match &self.endpoint {
            Some(endpoint) => {
                let host = endpoint
                    .split_once("://")
                    .map_or(endpoint.as_str(), |(_, rest)| rest)
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                (
                    endpoint.clone(),
                    host,
                    format!("/{}/{key}", location.bucket),
                )
            }
            None if location.bucket.contains('.') => {
                let host = format!("s3.{}.amazonaws.com", self.region);
                (
                    format!("https://{host}"),
                    host,
                    format!("/{}/{key}", location.bucket),
                )
            }
            None => {
                let host = format!("{}.s3.{}.amazonaws.com", location.bucket, self.region);
                (format!("https://{host}"), host, format!("/{key}"))
            }
        };
        (format!("{base}{path}"), host, path)
    }
}

/// Opens `s3://bucket/key` as an [`HttpSource`] over the bucket's endpoint. With
/// [`RemoteOptions::s3_requester_pays`], requests say the requester pays, and credentials are
/// required.
pub fn open(url: &str, options: &RemoteOptions) -> Result<HttpSource> {
    let location = S3Location::parse(url)?;
    let config = S3Config::from_env(options);
    if options.s3_requester_pays && config.credentials.is_none() {
        return Err(Error::RequesterPays {
            url: url.to_string(),
        });
    }
    let (http_url, host, path) = config.object_url(&location);
    let signer = Signer {
        credentials: config.credentials.clone(),
        region: config.region.clone(),
        host,
        path,
        requester_pays: options.s3_requester_pays,
    };
    HttpSource::open_as(url.to_string(), http_url, Some(Box::new(signer)), options)
}

/// Signs GETs of one object (or only gives hints, when anonymous).
#[derive(Debug)]
struct Signer {
    credentials: Option<Credentials>,
    region: String,
    host: String,
    path: String,
    /// Send (and sign) `x-amz-request-payer: requester`.
    requester_pays: bool,
}

impl Sign for Signer {
    fn headers(&self) -> Vec<(String, String)> {
        let Some(credentials) = &self.credentials else {
            return Vec::new();
        };
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let mut headers = vec![
            ("host".to_string(), self.host.clone()),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        if let Some(token) = &credentials.session_token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        if self.requester_pays {
            headers.push(("x-amz-request-payer".to_string(), "requester".to_string()));
        }
        let request = CanonicalRequest {
            method: "GET",
            path: &self.path,
            query: "",
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        let authorization = authorization(credentials, &self.region, &request, &amz_date);
        headers.retain(|(name, _)| name != "host"); // the client sends Host itself
        headers.push(("authorization".to_string(), authorization));
        headers
    }

    fn hint(&self, status: u16, headers: &ureq::http::HeaderMap) -> Option<String> {
        let bucket_region = headers
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .filter(|r| *r != self.region);
        if let Some(region) = bucket_region {
            return Some(format!(
                "the bucket is in {region}, not {}: set AWS_REGION={region}",
                self.region
            ));
        }
        match (status, &self.credentials) {
            (403, Some(_)) if !self.requester_pays => Some(
                "access denied: check the credentials, the region and the key; if the bucket is \
                 requester-pays, say so (STAC: storage:requester_pays)"
                    .to_string(),
            ),
            (403, None) => Some(
                "anonymous access denied: the bucket is not public; set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY"
                    .to_string(),
            ),
            (403, Some(_)) => {
                Some("access denied: check the credentials, the region and the key".to_string())
            }
            (301, _) => Some("the bucket is in another region: set AWS_REGION".to_string()),
            _ => None,
        }
    }
}

/// The parts of a request that SigV4 signs.
#[derive(Debug, Clone)]
pub struct CanonicalRequest<'a> {
    /// HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// The URL path, percent-encoded as sent.
    pub path: &'a str,
    /// The canonical query string (sorted, encoded), empty for none.
    pub query: &'a str,
    /// Headers to sign, including `host` and `x-amz-date`; names in any case.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the payload (or `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

impl CanonicalRequest<'_> {
    /// The signed header names (`a;b;c`) and the canonical request text.
    fn canonical(&self) -> (String, String) {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
                (n.to_ascii_lowercase(), value)
            })
            .collect();
        headers.sort();
        let signed = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let mut text = format!("{}\n{}\n{}\n", self.method, self.path, self.query);
        for (n, v) in &headers {
            let _ = writeln!(text, "{n}:{v}");
        }
        let _ = write!(text, "\n{signed}\n{}", self.payload_sha256);
        (signed, text)
    }
}

/// The `Authorization` header value of an S3 request signed with AWS Signature Version 4;
/// `amz_date` is the request's `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
pub fn authorization(
    credentials: &Credentials,
    region: &str,
    request: &CanonicalRequest<'_>,
    amz_date: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/s3/aws4_request");
    let (signed, canonical) = request.canonical();
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let secret = format!("AWS4{}", credentials.secret_access_key);
    let mut key = hmac(secret.as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
        credentials.access_key_id
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Percent-encodes all but RFC 3986 unreserved characters (and `/` unless `slash`).
pub(crate) fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example: "GET Object" in *Authenticating Requests: Using the
    /// Authorization Header (AWS Signature Version 4)*, S3 API reference.
    #[test]
    fn signature_matches_aws_documented_example() {
        let credentials = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()));
        let request = CanonicalRequest {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        let (_, canonical) = request.canonical();
        assert_eq!(
            hex(&Sha256::digest(canonical.as_bytes())),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            authorization(&credentials, "us-east-1", &request, "20130524T000000Z"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn parses_and_maps_s3_urls() {
        let loc = S3Location::parse("s3://sentinel-cogs/sentinel-s2-l2a-cogs/B04 x.tif").unwrap();
        assert_eq!(loc.bucket, "sentinel-cogs");
        let env = |_: &str| None;
        let config = S3Config::from_lookup(&RemoteOptions::default(), env);
        assert_eq!(config.region, "us-west-2");
        assert!(config.credentials.is_none());
        let (url, host, path) = config.object_url(&loc);
        assert_eq!(
            url,
            "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/B04%20x.tif"
        );
        assert_eq!(host, "sentinel-cogs.s3.us-west-2.amazonaws.com");
        assert_eq!(path, "/sentinel-s2-l2a-cogs/B04%20x.tif");
        let dotted = S3Location::parse("s3://my.bucket/k").unwrap();
        assert_eq!(
            config.object_url(&dotted).0,
            "https://s3.us-west-2.amazonaws.com/my.bucket/k"
        );
        for bad in [
            "s3://",
            "s3://bucket",
            "s3://bucket/",
            "s3://Bad_Bucket/k",
            "http://b/k",
        ] {
            let err = S3Location::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with(bad), "{err}");
        }
    }

    #[test]
    fn environment_sets_region_endpoint_and_credentials() {
        let vars = |name: &str| {
            match name {
                "AWS_DEFAULT_REGION" => Some("eu-central-1"),
                "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000/"),
                "AWS_ACCESS_KEY_ID" => Some("AKID"),
                "AWS_SECRET_ACCESS_KEY" => Some("secret"),
                "AWS_SESSION_TOKEN" => Some("tok"),
                _ => None,
            }
            .map(str::to_string)
        };
        let config = S3Config::from_lookup(&RemoteOptions::default(), vars);
        assert_eq!(config.region, "eu-central-1");
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        let creds = config.credentials.clone().unwrap();
        assert_eq!(creds.session_token.as_deref(), Some("tok"));
        assert!(!format!("{creds:?}").contains("secret"));
        let (url, host, _) = config.object_url(&S3Location::parse("s3://bkt/a/b.tif").unwrap());
        assert_eq!(url, "http://127.0.0.1:9000/bkt/a/b.tif");
        assert_eq!(host, "127.0.0.1:9000");

        let options = RemoteOptions {
            s3_region: Some("ap-south-1".into()),
            ..Default::default()
        };
        let anonymous = |name: &str| match name {
            "AWS_NO_SIGN_REQUEST" => Some("YES".to_string()),
            other => vars(other),
        };
        let config = S3Config::from_lookup(&options, anonymous);
        assert_eq!(config.region, "ap-south-1");
        assert!(config.credentials.is_none());
    }

    #[test]
    fn signer_adds_date_hash_token_and_authorization() {
        let signer = Signer {
            credentials: Some(Credentials {
                access_key_id: "AKID".into(),
                secret_access_key: "secret".into(),
                session_token: Some("tok".into()),
            }),
            region: "us-west-2".into(),
            host: "b.s3.us-west-2.amazonaws.com".into(),
            path: "/k".into(),
            requester_pays: false,
        };
        let headers = signer.headers();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-amz-content-sha256",
                "x-amz-date",
                "x-amz-security-token",
                "authorization"
            ]
        );
        let auth = &headers[3].1;
        assert!(auth
            .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"));
        let paying = Signer {
            requester_pays: true,
            credentials: signer.credentials.clone(),
            region: signer.region.clone(),
            host: signer.host.clone(),
            path: signer.path.clone(),
        };
        let headers = paying.headers();
        assert!(headers
            .iter()
            .any(|(n, v)| n == "x-amz-request-payer" && v == "requester"));
        let auth = &headers.last().unwrap().1;
        assert!(auth.contains(
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-request-payer;x-amz-security-token"
        ));
        let anonymous = Signer {
            credentials: None,
            ..signer
        };
        assert!(anonymous.headers().is_empty());
    }

    #[test]
    fn requester_pays_without_credentials_is_refused_before_any_request() {
        let options = RemoteOptions {
            s3_requester_pays: true,
            s3_endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        // The environment may hold credentials; the check is on what open() resolves.
        if S3Config::from_env(&options).credentials.is_some() {
            return;
        }
        let err = open("s3://usgs-landsat/collection02/x.TIF", &options)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s3://usgs-landsat/collection02/x.TIF")
                && err.contains("requester-pays")
                && err.contains("AWS_ACCESS_KEY_ID"),
            "{err}"
        );
    }
}
