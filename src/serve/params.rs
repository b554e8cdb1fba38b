//! Query-string parameters: decoding, duplicates and unknown names refused, typed getters whose
//! errors name the parameter.

use super::Error;
use std::collections::BTreeMap;

/// Longest query string accepted (colour maps in JSON make the longest).
const MAX_QUERY_BYTES: usize = 8 * 1024;

/// Decoded parameters of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// The parameter the token may travel in (for pages that cannot set headers).
pub const TOKEN_PARAM: &str = "access_token";

impl Params {
    /// Parses `a=1&b=x%20y` (`+` is a space); a name given twice is an error.
    pub fn parse(query: &str) -> Result<Params, Error> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(Error::bad("query", "the query string is longer than 8 KiB"));
        }
        let mut map = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(k).ok_or_else(|| Error::bad(k, "not valid percent-encoded UTF-8"))?;
            let value =
                decode(v).ok_or_else(|| Error::bad(&key, "not valid percent-encoded UTF-8"))?;
            if map.insert(key.clone(), value).is_some() {
                return Err(Error::bad(&key, "given more than once"));
            }
        }
        Ok(Params { map })
    }

    /// Refuses any parameter not in `allowed` (the token is always allowed).
    pub fn only(&self, allowed: &[&str]) -> Result<(), Error> {
        match self
            .map
            .keys()
            .find(|k| k.as_str() != TOKEN_PARAM && !allowed.contains(&k.as_str()))
        {
            Some(k) => Err(Error::bad(
                k,
                &format!(
                    "unknown parameter (this endpoint takes {})",
                    allowed.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// The raw value, if given (an empty value counts as given).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A non-empty value, if given.
    pub fn text(&self, name: &str) -> Result<Option<&str>, Error> {
        match self.get(name) {
            Some(v) if v.trim().is_empty() => Err(Error::bad(name, "empty value")),
            Some(v) => Ok(Some(v.trim())),
            None => Ok(None),
        }
    }

    /// A finite number.
    pub fn number(&self, name: &str) -> Result<Option<f64>, Error> {
        self.text(name)?
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| Error::bad(name, &format!("{v:?} is not a number")))
            })
            .transpose()
    }

    /// A required finite number.
    pub fn required_number(&self, name: &str) -> Result<f64, Error> {
        self.number(name)?
            .ok_or_else(|| Error::bad(name, "required"))
    }

    /// A comma-separated list of non-empty items.
    pub fn list(&self, name: &str) -> Result<Option<Vec<String>>, Error> {
        self.text(name)?
            .map(|v| {
                let items: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
                if items.iter().any(String::is_empty) {
                    return Err(Error::bad(name, "an empty item in the list"));
                }
                Ok(items)
            })
            .transpose()
    }

    /// A comma-separated list of finite numbers.
    pub fn numbers(&self, name: &str) -> Result<Option<Vec<f64>>, Error> {
        self.list(name)?
            .map(|items| {
                items
                    .iter()
                    .map(|v| {
                        v.parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| Error::bad(name, &format!("{v:?} is not a number")))
                    })
                    .collect()
            })
            .transpose()
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`); a bare name is true.
    pub fn flag(&self, name: &str) -> Result<bool, Error> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) => match v.as_str() {
                "" | "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(Error::bad(name, "use true or false")),
            },
        }
    }

    /// One of `choices`.
    pub fn choice(&self, name: &str, choices: &[&str]) -> Result<Option<String>, Error> {
        match self.text(name)? {
            None => Ok(None),
            Some(v) => {
                let lower = v.to_ascii_lowercase();
                if choices.contains(&lower.as_str()) {
                    Ok(Some(lower))
                } else {
                    Err(Error::bad(
                        name,
                        &format!("{v:?} is not one of {}", choices.join(", ")),
                    ))
                }
            }
        }
    }

    /// A value parsed by `FromStr`, its error in the message.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Error>
    where
        T::Err: std::fmt::Display,
    {
        self.text(name)?
            .map(|v| v.parse::<T>().map_err(|e| Error::bad(name, &e.to_string())))
            .transpose()
    }

    /// The parameters in a stable order without the token (for cache keys).
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.map {
            if k == TOKEN_PARAM {
                continue;
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v.trim());
            out.push('&');
        }
        out
    }
}

/// Percent-decodes one query component (`+` is a space); `None` when it is not UTF-8.
pub fn decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_types_values() {
        let p = Params::parse("bands=red,nir&lon=127.5&expr=(nir+-+red)&x=%7B%7D&f").unwrap();
        assert_eq!(
            p.list("bands").unwrap().unwrap(),
            vec!["red".to_string(), "nir".to_string()]
        );
        assert_eq!(p.required_number("lon").unwrap(), 127.5);
        assert_eq!(p.get("expr"), Some("(nir - red)"));
        assert_eq!(p.get("x"), Some("{}"));
        assert!(p.flag("f").unwrap());
        assert!(!p.flag("g").unwrap());
        assert_eq!(
            p.canonical(),
            "bands=red,nir&expr=(nir - red)&f=&lon=127.5&x={}&"
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = |q: &str, f: &dyn Fn(&Params) -> Result<(), Error>| {
            let err = Params::parse(q).and_then(|p| f(&p)).unwrap_err();
            (err.parameter().unwrap_or("").to_string(), err.to_string())
        };
        assert_eq!(e("a=1&a=2", &|_| Ok(())).0, "a");
        assert_eq!(e("lon=east", &|p| p.number("lon").map(|_| ())).0, "lon");
        assert_eq!(e("lat=", &|p| p.number("lat").map(|_| ())).0, "lat");
        assert_eq!(e("", &|p| p.required_number("lon").map(|_| ())).0, "lon");
        assert_eq!(e("zz=1", &|p| p.only(&["lon"])).0, "zz");
        assert_eq!(e("r=1,,2", &|p| p.numbers("r").map(|_| ())).0, "r");
        assert_eq!(e("f=maybe", &|p| p.flag("f").map(|_| ())).0, "f");
        assert_eq!(e("b=%FF", &|_| Ok(())).0, "b");
        let (name, text) = e("c=jet", &|p| p.choice("c", &["a", "b"]).map(|_| ()));
        assert_eq!(name, "c");
        assert!(text.contains("not one of a, b"), "{text}");
        assert!(Params::parse(&"a".repeat(9000)).is_err());
        assert!(Params::parse("access_token=s").unwrap().only(&[]).is_ok());
    }
}
