//! What a WebSocket upgrade asks for, read from its URL query and its
//! Authorization header before anything is checked.

use crate::auth::bearer_token;

/// The parameters of `GET /v1/ws`. Values are as the client sent them,
/// percent-decoded; the upgrade handler verifies the token first, then the
/// channel, so a bad token is refused before a bad channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectRequest {
    /// `?token=`, or else the Authorization header's bearer token.
    pub token: Option<String>,
    /// `?channel=`: the channel to subscribe right away.
    pub channel: Option<String>,
    /// `?format=`: `proto` asks for binary frames.
    pub format: Option<String>,
}

impl ConnectRequest {
    /// Reads the raw query string (without the `?`) and the Authorization
    /// header's value. Unknown keys are ignored, and a key given twice
    /// keeps its last value.
    pub fn parse(query: &str, authorization: Option<&str>) -> Self {
        let mut request = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*key {
                "token" => &mut request.token,
                "channel" => &mut request.channel,
                "format" => &mut request.format,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        if request.token.is_none() {
            request.token = authorization.and_then(bearer_token).map(str::to_owned);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn the_query_is_read_and_the_header_is_the_fallback() {
        let r = ConnectRequest::parse("token=t1&channel=lobby&format=proto&x=1", None);
        assert_eq!(
            r,
            ConnectRequest {
                token: some("t1"),
                channel: some("lobby"),
                format: some("proto"),
            }
        );
        let r = ConnectRequest::parse("channel=a%3Ab&channel=c", Some("bearer t2"));
        assert_eq!((r.token, r.channel), (some("t2"), some("c")));
        let r = ConnectRequest::parse("token=t1", Some("Bearer t2"));
        assert_eq!(r.token, some("t1"));
        assert_eq!(
            ConnectRequest::parse("", Some("Basic abc")),
            ConnectRequest::default()
        );
    }

    #[test]
    fn odd_queries_are_read_without_failing() {
        for raw in ["%", "%zz", "token", "=&=&", "token=%FF%FE", "&&&", "a=b=c"] {
            let _ = ConnectRequest::parse(raw, Some(raw));
        }
        assert_eq!(
            ConnectRequest::parse("token=%FF", None).token,
            some("\u{fffd}")
        );
        assert_eq!(ConnectRequest::parse("token", None).token, some(""));
    }
}
