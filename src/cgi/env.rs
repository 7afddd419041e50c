//! Request meta-variables (RFC 3875 §4.1) built from FastCGI params, and the
//! guest environment made from them.
//!
//! Every param the web server sends is a meta-variable: the §4.1 set, the
//! protocol-specific `HTTP_*` variables (§4.1.18) and extensions such as
//! `HTTPS`, `REQUEST_URI` or `DOCUMENT_ROOT`. Rules, in order:
//! - a name sent twice keeps its last value (as php-fpm does);
//! - an empty value means the variable is absent (§4.1);
//! - names keep their case; the variables wcgid reads itself are upper-case;
//! - `GATEWAY_INTERFACE` is always `CGI/1.1` (§4.1.4); `QUERY_STRING` is the
//!   empty string when absent (§4.1.7); `SERVER_SOFTWARE` defaults to wcgid's
//!   name and version (§4.1.17);
//! - `HTTP_PROXY` (any case) is dropped unless the app allows it: a client's
//!   `Proxy:` header must not become the guest's outbound proxy ("httpoxy",
//!   RFC 3875 §9.2 on untrusted variables);
//! - a name that is empty or holds `=` or NUL, or a value with NUL, cannot be
//!   an environment string and is dropped;
//! - the daemon's own environment never reaches a guest.

use bytes::Bytes;

use crate::fastcgi::Params;
use crate::sandbox::CStrings;

/// The request's meta-variables, sorted by name, names unique.
#[derive(Debug, Clone)]
pub struct MetaVars {
    vars: Vec<(Bytes, Bytes)>,
}

impl MetaVars {
    pub fn from_params(params: Params) -> MetaVars {
        let mut vars = params.into_pairs();
        // Stable sort keeps arrival order among equal names: the last one wins.
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(Bytes, Bytes)> = Vec::with_capacity(vars.len());
        for (name, value) in vars {
            match unique.last_mut() {
                Some(last) if last.0 == name => last.1 = value,
                _ => unique.push((name, value)),
            }
        }
        unique.retain(|(_, v)| !v.is_empty());
        let mut meta = MetaVars { vars: unique };
        meta.set("GATEWAY_INTERFACE", "CGI/1.1");
        if meta.get("QUERY_STRING").is_none() {
            meta.set("QUERY_STRING", "");
        }
        if meta.get("SERVER_SOFTWARE").is_none() {
            meta.set("SERVER_SOFTWARE", concat!("wcgid/", env!("CARGO_PKG_VERSION")));
        }
        meta
    }

    /// The value of `name`, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let i = self.find(name).ok()?;
        Some(&self.vars[i].1[..]).filter(|v| !v.is_empty())
    }

    /// `get` as UTF-8 text; a value that is not UTF-8 counts as absent.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn set(&mut self, name: &str, value: impl Into<Bytes>) {
        let value = value.into();
        match self.find(name) {
            Ok(i) => self.vars[i].1 = value,
            Err(i) => self.vars.insert(i, (Bytes::copy_from_slice(name.as_bytes()), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.vars.remove(i);
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.vars.binary_search_by(|(n, _)| n[..].cmp(name.as_bytes()))
    }

    /// The guest's environment: these variables (QUERY_STRING kept even when
    /// empty), filtered by the rules above.
    pub fn to_env(&self, pass_http_proxy: bool) -> CStrings {
        let mut env = CStrings::default();
        for (name, value) in &self.vars {
            if name.is_empty() || name.contains(&b'=') || (!pass_http_proxy && name.eq_ignore_ascii_case(b"HTTP_PROXY"))
            {
                continue;
            }
            // A NUL makes `push` refuse the pair; nothing else to do with it.
            env.push(&[name, b"=", value]);
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &[u8])]) -> MetaVars {
        let params: Params = pairs
            .iter()
            .map(|(n, v)| (Bytes::copy_from_slice(n.as_bytes()), Bytes::copy_from_slice(v)))
            .collect();
        MetaVars::from_params(params)
    }

    fn env_of(m: &MetaVars, pass_proxy: bool) -> Vec<String> {
        m.to_env(pass_proxy)
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn required_variables_are_synthesised() {
        let m = meta(&[("REQUEST_METHOD", b"GET")]);
        assert_eq!(m.get("GATEWAY_INTERFACE"), Some(&b"CGI/1.1"[..]));
        assert!(env_of(&m, false).contains(&"QUERY_STRING=".to_string()));
        assert!(m.get_str("SERVER_SOFTWARE").unwrap().starts_with("wcgid/"));
        let m = meta(&[("GATEWAY_INTERFACE", b"CGI/9"), ("SERVER_SOFTWARE", b"nginx/1.22")]);
        assert_eq!(m.get("GATEWAY_INTERFACE"), Some(&b"CGI/1.1"[..]));
        assert_eq!(m.get("SERVER_SOFTWARE"), Some(&b"nginx/1.22"[..]));
    }

    #[test]
    fn last_duplicate_wins_and_empty_is_absent() {
        let m = meta(&[("PATH_INFO", b"/a"), ("CONTENT_TYPE", b""), ("PATH_INFO", b"/b")]);
        assert_eq!(m.get("PATH_INFO"), Some(&b"/b"[..]));
        assert_eq!(m.get("CONTENT_TYPE"), None);
        assert!(!env_of(&m, false).iter().any(|e| e.starts_with("CONTENT_TYPE")));
        // An empty later value deletes an earlier one: the last one wins.
        let m = meta(&[("CONTENT_LENGTH", b"5"), ("CONTENT_LENGTH", b"")]);
        assert_eq!(m.get("CONTENT_LENGTH"), None);
    }

    #[test]
    fn httpoxy_is_dropped_unless_allowed() {
        let m = meta(&[
            ("HTTP_PROXY", b"http://evil/"),
            ("http_proxy", b"x"),
            ("HTTP_HOST", b"a"),
        ]);
        let env = env_of(&m, false);
        assert!(!env.iter().any(|e| e.to_ascii_uppercase().starts_with("HTTP_PROXY")));
        assert!(env.contains(&"HTTP_HOST=a".to_string()));
        assert!(env_of(&m, true).contains(&"HTTP_PROXY=http://evil/".to_string()));
    }

    #[test]
    fn unrepresentable_pairs_are_dropped_and_others_pass_verbatim() {
        let m = meta(&[
            ("A=B", b"1"),
            ("NUL", b"a\0b"),
            ("Mixed_Case", b"\xff\r\n"),
            ("K", b"v=w"),
        ]);
        let env: Vec<Vec<u8>> = m.to_env(false).iter().map(<[u8]>::to_vec).collect();
        assert!(env.contains(&b"Mixed_Case=\xff\r\n".to_vec()));
        assert!(env.contains(&b"K=v=w".to_vec()));
        assert!(!env.iter().any(|e| e.starts_with(b"A=B") || e.starts_with(b"NUL")));
    }
}
