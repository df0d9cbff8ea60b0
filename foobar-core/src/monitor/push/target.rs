//! Where pushes go: a Prometheus Pushgateway group or any HTTP collector.

use base64::Engine as _;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Uri};

use super::{HeaderProblem, PushError, UrlProblem};

/// The Prometheus text format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A collector endpoint: URL, method, content type and extra headers.
///
/// ```
/// use foobar_core::monitor::PushTarget;
///
/// // A Pushgateway group: PUT /metrics/job/web/instance/web-1
/// let gateway = PushTarget::pushgateway("http://127.0.0.1:9091", "web", "web-1")?;
/// assert_eq!(gateway.uri().path(), "/metrics/job/web/instance/web-1");
///
/// // A generic HTTP source (a log service's collector URL), with its own
/// // content type and headers.
/// let source = PushTarget::http("https://collector.example/receiver/v1/http/TOKEN")?
///     .content_type("application/vnd.sumologic.prometheus")?
///     .header("X-Sumo-Category", "prod/web/metrics")?;
/// # let _ = source;
/// # Ok::<(), foobar_core::monitor::PushError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PushTarget {
    uri: Uri,
    method: Method,
    headers: HeaderMap,
}

impl PushTarget {
    /// A Pushgateway group `job`/`instance` under `base_url` (scheme, host,
    /// port, optional path prefix). Pushes are `PUT`s: each replaces the
    /// whole group, so metrics that disappear here disappear there too.
    /// Label values with characters outside `[A-Za-z0-9_.:-]` are sent in
    /// the gateway's base64 form.
    ///
    /// # Errors
    /// [`PushError::InvalidUrl`] for a malformed URL or an empty job.
    pub fn pushgateway(base_url: &str, job: &str, instance: &str) -> Result<Self, PushError> {
        if job.is_empty() {
            return Err(PushError::InvalidUrl {
                url: base_url.to_owned(),
                problem: UrlProblem::EmptyJob,
            });
        }
        let base = base_url.trim_end_matches('/');
        let mut url = format!("{base}/metrics/job{}", path_label(job));
        if !instance.is_empty() {
            url.push_str("/instance");
            url.push_str(&path_label(instance));
        }
        let mut target = Self::http(&url)?;
        target.method = Method::PUT;
        Ok(target)
    }

    /// Any HTTP(S) endpoint taking the Prometheus text format by `POST`
    /// (change with [`content_type`](Self::content_type),
    /// [`method`](Self::method) and [`header`](Self::header)).
    ///
    /// # Errors
    /// [`PushError::InvalidUrl`] unless `url` is an absolute `http` or
    /// `https` URL.
    pub fn http(url: &str) -> Result<Self, PushError> {
        let invalid = |problem| PushError::InvalidUrl {
            url: url.to_owned(),
            problem,
        };
        let uri: Uri = url.parse().map_err(|e| invalid(UrlProblem::Syntax(e)))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => return Err(invalid(UrlProblem::Scheme(other.to_owned()))),
            None => return Err(invalid(UrlProblem::NotAbsolute)),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid(UrlProblem::NoHost));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
        Ok(Self {
            uri,
            method: Method::POST,
            headers,
        })
    }

    /// The request method (`PUT` for a Pushgateway, `POST` otherwise).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The `Content-Type` to send.
    ///
    /// # Errors
    /// [`PushError::InvalidHeader`] if it is not a valid header value.
    pub fn content_type(self, content_type: &str) -> Result<Self, PushError> {
        self.header(CONTENT_TYPE.as_str(), content_type)
    }

    /// Adds a header to every push (a category, an API key, an
    /// `Authorization`), replacing one of the same name.
    ///
    /// # Errors
    /// [`PushError::InvalidHeader`] for an invalid name or value.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, PushError> {
        let invalid = |source: HeaderProblem| PushError::InvalidHeader {
            name: name.to_owned(),
            source,
        };
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.into()))?;
        let mut header_value = HeaderValue::from_str(value).map_err(|e| invalid(e.into()))?;
        if header_name == http::header::AUTHORIZATION {
            header_value.set_sensitive(true);
        }
        self.headers.insert(header_name, header_value);
        Ok(self)
    }

    /// The URL pushed to.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub(super) fn method_ref(&self) -> &Method {
        &self.method
    }

    pub(super) fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// `/<value>`, or `@base64/<value in base64url>` when it holds characters a
/// path segment cannot carry as is (the Pushgateway's convention).
fn path_label(value: &str) -> String {
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if plain {
        format!("/{value}")
    } else if value.is_empty() {
        // The gateway's spelling of an empty label value.
        "@base64/=".to_owned()
    } else {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value);
        format!("@base64/{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushgateway_paths() {
        let t = PushTarget::pushgateway("http://127.0.0.1:9091/", "web", "10.0.0.1:8080").unwrap();
        assert_eq!(t.uri().path(), "/metrics/job/web/instance/10.0.0.1:8080");
        assert_eq!(t.method_ref(), Method::PUT);
        let t = PushTarget::pushgateway("http://gw:9091/prefix", "a/b", "").unwrap();
        assert_eq!(t.uri().path(), "/prefix/metrics/job@base64/YS9i");
    }

    #[test]
    fn bad_input_is_named() {
        let err = PushTarget::http("ftp://x/").unwrap_err();
        assert!(err.to_string().contains("ftp://x/"), "{err}");
        let err = PushTarget::http("/relative").unwrap_err();
        assert!(matches!(
            err,
            PushError::InvalidUrl {
                problem: UrlProblem::NotAbsolute,
                ..
            }
        ));
        let err = PushTarget::pushgateway("http://gw", "", "i").unwrap_err();
        assert!(
            matches!(
                err,
                PushError::InvalidUrl {
                    problem: UrlProblem::EmptyJob,
                    ..
                }
            ),
            "{err}"
        );
        let err = PushTarget::http("http://gw/")
            .unwrap()
            .header("bad header", "v")
            .unwrap_err();
        assert!(err.to_string().contains("bad header"), "{err}");
        let err = PushTarget::http("http://gw/")
            .unwrap()
            .content_type("text/plain\n")
            .unwrap_err();
        assert!(matches!(
            err,
            PushError::InvalidHeader {
                source: HeaderProblem::Value(_),
                ..
            }
        ));
    }
}
