//! The params → RFC 3875 environment builder: any PARAMS stream either fails
//! to decode or becomes an environment, never a panic.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wcgid::cgi::MetaVars;
use wcgid::fastcgi::Params;

fuzz_target!(|data: &[u8]| {
    let Ok(params) = Params::decode(Bytes::copy_from_slice(data), 1000) else {
        return;
    };
    let vars = MetaVars::from_params(params);
    for pass_http_proxy in [false, true] {
        let env = vars.to_env(pass_http_proxy);
        // Every entry is NAME=VALUE.
        assert!(env.iter().all(|e| e.contains(&b'=')));
    }
});
