//! Request parameters as they arrive, with the hygiene rules of OAuth 2.1 applied.

use crate::OAuthError;

/// The parameters of one request (query string or body), in arrival order.
///
/// OAuth 2.1 §3.1 and §3.2: "Parameters sent without a value MUST be treated as if they were
/// omitted from the request", and request and response parameters "MUST NOT be included more
/// than once". Unrecognized parameters are ignored; only the ones a handler asks for are checked
/// for repetition.
#[derive(Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// Names only: values may be secrets (`client_secret`, `password`, `code`, tokens).
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pairs.iter().map(|(k, _)| k)).finish()
    }
}

impl Params {
    /// Keeps every pair whose value is not empty.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { pairs: pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect() }
    }

    /// Parses an `application/x-www-form-urlencoded` string, as the URL Standard's parser does
    /// (`url::form_urlencoded::parse`): pairs split on `&`, empty ones skipped, name and value
    /// on the first `=`, `+` a space, `%XX` a byte, bytes that are not UTF-8 U+FFFD. A pair
    /// with neither `+` nor `%` (most of them: tokens, codes, ids) is copied as it is, without
    /// the byte-by-byte decoding that a long token otherwise costs on every request.
    pub fn from_urlencoded(s: &str) -> Self {
        Self::new(s.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
            if pair.bytes().any(|b| b == b'+' || b == b'%') {
                // A pair holds no `&`, so it is exactly one pair of the standard parser.
                url::form_urlencoded::parse(pair.as_bytes()).into_owned().next().unwrap_or_default()
            } else {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_owned(), value.to_owned())
            }
        }))
    }

    /// The value of a single-valued parameter; a repeated one is `invalid_request`.
    pub fn get(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(OAuthError::invalid_request(format!("parameter_repeated: {name} must not be sent more than once")));
        }
        Ok(first)
    }

    /// Every value of a parameter that may repeat (YouCan's `scope[]`).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Serializes back to `application/x-www-form-urlencoded`, for carrying a request through
    /// the login and consent pages.
    pub fn to_urlencoded(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.pairs).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_absent_and_repeats_are_refused() {
        let p = Params::from_urlencoded("scope=&client_id=a&client_id=b&extra=1&extra=2&state=s");
        assert_eq!(p.get("scope"), Ok(None));
        assert_eq!(p.get("client_id").unwrap_err().code, crate::ErrorCode::InvalidRequest);
        assert_eq!(p.get("state"), Ok(Some("s")));
        assert_eq!(p.get_all("extra").count(), 2);
    }

    #[test]
    fn debug_shows_names_only() {
        let p = Params::from_urlencoded("client_secret=s3cret&password=hunter2");
        assert_eq!(format!("{p:?}"), r#"["client_secret", "password"]"#);
    }

    #[test]
    fn round_trips_through_urlencoding() {
        let p = Params::from_urlencoded("a=1+2&b=%26%3D&scope%5B%5D=x");
        let q = Params::from_urlencoded(&p.to_urlencoded());
        assert_eq!(q.get("a"), Ok(Some("1 2")));
        assert_eq!(q.get("b"), Ok(Some("&=")));
        assert_eq!(q.get_all("scope[]").collect::<Vec<_>>(), vec!["x"]);
    }
}
