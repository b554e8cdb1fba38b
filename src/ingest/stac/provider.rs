//! What a provider's assets need before they can be read. Planetary Computer's are Azure blobs
//! readable with a SAS token per collection from its token endpoint: tokens are fetched once
//! per collection, kept until shortly before they expire, and added only to blob-storage
//! hrefs that carry none. (Earth Search's requester-pays Landsat hrefs are marked per asset
//! by [`super::assets`] and signed by the S3 source.)

use super::search::Provider;
use crate::ingest::discover::SceneSource;
use crate::source::api::{JsonClient, Request};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Planetary Computer's SAS token endpoint (a collection id is appended).
pub const PC_SAS_URL: &str = "https://planetarycomputer.microsoft.com/api/sas/v1/token";

/// A token is renewed this long before it expires.
const RENEW_BEFORE: i64 = 5 * 60;

/// Where tokens come from and which hrefs take them.
#[derive(Debug, Clone, Default)]
pub struct SigningOptions {
    /// Token endpoint; else `PC_SDK_SAS_URL`, else [`PC_SAS_URL`].
    pub sas_url: Option<String>,
    /// Subscription key sent with token requests; else `PC_SDK_SUBSCRIPTION_KEY`.
    pub subscription_key: Option<String>,
    /// Hosts whose hrefs are signed besides `*.blob.core.windows.net` (`host:port`, e.g. a
    /// storage emulator).
    pub blob_hosts: Vec<String>,
}

/// Adds what a provider's assets need to be read.
#[derive(Debug)]
pub struct Signer {
    provider: Provider,
    sas_url: String,
    subscription_key: Option<String>,
    blob_hosts: Vec<String>,
    tokens: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
    fetched: AtomicU64,
}

/// The host (with port) of an http(s) URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    rest.split(['/', '?', '#']).next()
}

impl Signer {
    /// A signer for `provider` (only Planetary Computer signs anything).
    pub fn new(provider: Provider, options: &SigningOptions) -> Signer {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Signer {
            provider,
            sas_url: options
                .sas_url
                .clone()
                .or_else(|| env("PC_SDK_SAS_URL"))
                .unwrap_or_else(|| PC_SAS_URL.to_string())
                .trim_end_matches('/')
                .to_string(),
            subscription_key: options
                .subscription_key
                .clone()
                .or_else(|| env("PC_SDK_SUBSCRIPTION_KEY")),
            blob_hosts: options.blob_hosts.clone(),
            tokens: Mutex::new(HashMap::new()),
            fetched: AtomicU64::new(0),
        }
    }

    /// Tokens fetched so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    fn needs_token(&self, href: &str) -> bool {
        let Some(host) = host_of(href) else {
            return false;
        };
        let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let blob = name.ends_with(".blob.core.windows.net")
            || self.blob_hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
        let signed = href
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("sig=")));
        blob && !signed
    }

    /// The token of `collection`, fetched or from the cache.
    fn token(&self, collection: &str, client: &JsonClient) -> Result<String, String> {
        let now = Utc::now();
        {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((t, expiry)) = tokens.get(collection) {
                if *expiry - Duration::seconds(RENEW_BEFORE) > now {
                    return Ok(t.clone());
                }
            }
        }
        let mut request = Request::get(&format!("{}/{collection}", self.sas_url));
        if let Some(key) = &self.subscription_key {
            request
                .headers
                .push(("Ocp-Apim-Subscription-Key".into(), key.clone()));
        }
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let answer = client
            .send(&request)
            .map_err(|e| format!("SAS token for collection {collection}: {e}"))?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                format!(
                    "SAS token for collection {collection}: {}: the answer has no \"token\"",
                    request.url
                )
            })?
            .trim_start_matches('?')
            .to_string();
        // Without an expiry, assume the endpoint's usual hour.
        let expiry = answer
            .get("msft:expiry")
            .and_then(Value::as_str)
            .and_then(crate::time::parse_datetime)
            .unwrap_or(now + Duration::minutes(60));
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(collection.to_string(), (token.clone(), expiry));
        Ok(token)
    }

    /// Adds a SAS token to each blob-storage asset of `scene` that has none (Planetary
    /// Computer); other providers' scenes are left as they are.
    pub fn sign(
        &self,
        scene: &mut SceneSource,
        collection: Option<&str>,
        client: &JsonClient,
    ) -> Result<(), String> {
        if self.provider != Provider::PlanetaryComputer {
            return Ok(());
        }
        for asset in &mut scene.assets {
            if !self.needs_token(&asset.location) {
                continue;
            }
            let collection = collection.ok_or_else(|| {
                format!(
                    "item {}: no collection to ask a SAS token for ({})",
                    scene.id, asset.location
                )
            })?;
            asset.url_query = Some(self.token(collection, client)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unsigned_blob_hrefs_take_a_token() {
        let s = Signer::new(
            Provider::PlanetaryComputer,
            &SigningOptions {
                blob_hosts: vec!["127.0.0.1:9000".into()],
                ..Default::default()
            },
        );
        assert!(s.needs_token("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/B04.tif"));
        assert!(s.needs_token("https://x.blob.core.windows.net/c/B04.tif?st=2023"));
        assert!(!s.needs_token("https://x.blob.core.windows.net/c/B04.tif?st=1&sig=abc"));
        assert!(s.needs_token("http://127.0.0.1:9000/c/B04.tif"));
        assert!(!s.needs_token("http://127.0.0.1:9001/c/B04.tif"));
        assert!(!s.needs_token("https://sentinel-cogs.s3.us-west-2.amazonaws.com/B04.tif"));
        assert!(!s.needs_token("s3://usgs-landsat/B04.TIF"));
        assert_eq!(host_of("https://a.b:8080/x?y"), Some("a.b:8080"));
    }
}
