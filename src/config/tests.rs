use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, Error> {
    let dir = std::env::temp_dir().join(format!(
        "wcgid-config-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wcgid.toml");
    std::fs::write(&path, toml).unwrap();
    let overrides = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::load_with(&path, overrides)
}

fn err(toml: &str) -> String {
    load(toml, &[]).unwrap_err().to_string()
}

#[test]
fn the_reference_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wcgid.toml");
    let config = Config::load_with(&path, Default::default()).unwrap();
    assert!(config.apps.iter().any(|a| a.name == "hello" && a.route == "/hello"));
    assert!(config.admin.is_some());
}

#[test]
fn the_packaged_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/debian/wcgid.toml");
    let config = Config::load_with(&path, Default::default()).unwrap();
    assert_eq!(config.apps[0].module, Path::new("/usr/share/wcgid/examples/hello.wasm"));
    assert_eq!(
        config.admin.map(|a| a.listen),
        Some(Listen::Unix("/run/wcgid/admin.sock".into()))
    );
}

#[test]
fn defaults() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.server.socket.listen, Listen::Unix("/run/wcgid/wcgid.sock".into()));
    assert_eq!(c.server.socket.mode, 0o660);
    assert!(c.server.workers >= 1);
    assert!(c.apps.is_empty() && c.cgi_bin.is_none());
}

#[test]
fn unknown_keys_are_errors() {
    assert!(err("[server]\nlisten = \"tcp:127.0.0.1:9\"\nlisten_typo = 1\n").contains("listen_typo"));
    assert!(err("[nope]\n").contains("nope"));
    assert!(err("[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nenvv={}\n").contains("envv"));
}

#[test]
fn interpreters_default_their_names_and_extensions_by_driver() {
    let c = load(
        "[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"perl\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n\
         lib = [\"/usr\"]\n[[interpreter]]\nname = \"py\"\nmodule = \"/bin/sh\"\ndriver = \"python\"\n\
         names = [\"python3\"]\n",
        &[],
    )
    .unwrap();
    let [perl, py] = &c.interpreters[..] else {
        panic!("two interpreters")
    };
    assert_eq!(
        (perl.driver, &perl.names[..], &perl.extensions[..]),
        (
            Driver::Perl,
            &["perl".to_string(), "perl5".into()][..],
            &["pl".to_string()][..]
        )
    );
    assert_eq!(perl.lib, [PathBuf::from("/usr")]);
    assert_eq!(
        (py.driver, &py.names[..], &py.extensions[..]),
        (Driver::Python, &["python3".to_string()][..], &["py".to_string()][..])
    );
}

#[test]
fn interpreters_are_checked() {
    let one = |extra: &str| {
        err(&format!(
            "[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"p\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n{extra}"
        ))
    };
    assert!(one("lib = [\"relative\"]\n").contains("interpreter[0].lib"));
    assert!(one("extensions = [\".pl\"]\n").contains("without its dot"));
    assert!(one("extensions = [\"wasm\"]\n").contains("WebAssembly"));
    assert!(
        one("[[interpreter]]\nname = \"q\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n")
            .contains("interpreter[1].names")
    );
    let e = err("[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"p\"\nmodule = \"/bin/sh\"\ndriver = \"ruby\"\n");
    assert!(e.contains("interpreter[0].driver") && e.contains("perl, python"), "{e}");
    let e =
        err("[cgi_bin]\nroot = \"/\"\n[[interpreter]]\nname = \"p\"\nmodule = \"/nonexistent\"\ndriver = \"perl\"\n");
    assert!(e.contains("fetch-interpreters"), "{e}");
    let e = err("[[interpreter]]\nname = \"p\"\nmodule = \"/bin/sh\"\ndriver = \"perl\"\n");
    assert!(e.contains("[cgi_bin]"), "{e}");
}

#[test]
fn errors_name_key_and_value() {
    let e = err("[server]\nsocket_mode = \"999\"\n");
    assert!(e.contains("server.socket_mode") && e.contains("999"), "{e}");
    let e = err("[server]\nlisten = \"udp:1.2.3.4:5\"\n");
    assert!(e.contains("server.listen") && e.contains("udp:1.2.3.4:5"), "{e}");
    let e = err("[[app]]\nname=\"a\"\nroute=\"/a/../b\"\nmodule=\"a.wasm\"\n");
    assert!(e.contains("app[0].route") && e.contains("/a/../b"), "{e}");
    let e = err(
        "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n[[app]]\nname=\"a\"\nroute=\"/b\"\nmodule=\"b.wasm\"\n",
    );
    assert!(e.contains("app[1].name"), "{e}");
    let e = err(
        "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\"/nonexistent-dir\", guest=\"/d\"}]\n",
    );
    assert!(
        e.contains("app[0].mounts[0].host") && e.contains("/nonexistent-dir"),
        "{e}"
    );
    let e = err("[cgi_bin]\nroot = \"/nonexistent-cgi-bin\"\n");
    assert!(e.contains("cgi_bin.root"), "{e}");
}

#[test]
fn environment_overrides_scalars() {
    let c = load(
        "[server]\nlisten = \"unix:/tmp/a.sock\"\n",
        &[
            ("WCGID_SERVER__LISTEN", "tcp:127.0.0.1:9000"),
            ("WCGID_SERVER__WORKERS", "3"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.socket.listen, Listen::Tcp("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(c.server.workers, 3);
    let e = load("", &[("WCGID_SERVER__LISTN", "x")]).unwrap_err().to_string();
    assert!(e.contains("listn"), "{e}");
}

#[test]
fn routes_and_relative_paths() {
    let c = load("[[app]]\nname=\"a\"\nroute=\"/a/\"\nmodule=\"m/a.wasm\"\n[[app]]\nname=\"root\"\nroute=\"/\"\nmodule=\"/abs.wasm\"\n", &[]).unwrap();
    assert_eq!(c.apps[0].route, "/a");
    assert!(c.apps[0].module.ends_with("m/a.wasm") && c.apps[0].module.is_absolute());
    assert_eq!(c.apps[1].route, "/");
    assert_eq!(c.apps[1].module, PathBuf::from("/abs.wasm"));
}

#[test]
fn a_world_writable_socket_must_be_forced() {
    let c = load("[server]\nsocket_mode = \"0666\"\nforce_socket_mode = true\n", &[]).unwrap();
    assert_eq!(c.server.socket.mode, 0o666);
}

#[test]
fn the_admin_socket_is_optional_and_checked_like_the_server_socket() {
    assert_eq!(load("", &[]).unwrap().admin, None);
    let c = load("[admin]\nlisten = \"unix:/run/a.sock\"\n", &[]).unwrap();
    let admin = c.admin.unwrap();
    assert_eq!((admin.listen, admin.mode), (Listen::Unix("/run/a.sock".into()), 0o660));
    for (toml, needles) in [
        ("[admin]\nsocket_mode = \"0600\"\n", &["admin", "listen"][..]),
        (
            "[admin]\nlisten = \"unix:/run/a.sock\"\nsocket_mode = \"0666\"\n",
            &["admin.socket_mode", "admin.force_socket_mode"],
        ),
        (
            "[admin]\nlisten = \"unix:/run/wcgid/wcgid.sock\"\n",
            &["admin.listen", "server.listen"],
        ),
        ("[admin]\nlisten = \"a.sock\"\n", &["admin.listen", "unix:"]),
    ] {
        let e = err(toml);
        for needle in needles {
            assert!(e.contains(needle), "{toml:?}: {e:?} lacks {needle:?}");
        }
    }
}

#[test]
fn limits_have_defaults_and_apps_override_them() {
    let c = load("[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n", &[]).unwrap();
    let want = Limits {
        memory: 128 << 20,
        timeout: Duration::from_secs(30),
        max_body: 16 << 20,
        max_output: 64 << 20,
        max_stderr: 64 << 10,
        fuel: 0,
        scratch: 16 << 20,
    };
    assert_eq!(c.apps[0].guest.limits, want);
    assert_eq!(
        c.params,
        ParamsLimits {
            bytes: 1 << 20,
            count: 10_000
        }
    );
    let c = load(
        "[limits]\ntimeout = \"5s\"\nmemory = \"100000\"\n\
         [[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n\
         [app.limits]\ntimeout = \"250ms\"\nmax_body = \"1KiB\"\n\
         [[app]]\nname=\"b\"\nroute=\"/b\"\nmodule=\"b.wasm\"\n",
        &[("WCGID_LIMITS__MAX_OUTPUT", "2GiB")],
    )
    .unwrap();
    let (a, b) = (c.apps[0].guest.limits, c.apps[1].guest.limits);
    assert_eq!((a.timeout, a.max_body), (Duration::from_millis(250), 1024));
    assert_eq!((b.timeout, b.max_body), (Duration::from_secs(5), 16 << 20));
    // Whole Wasm pages, inherited by both.
    let page = wasmer::WASM_PAGE_SIZE as u64;
    assert_eq!((a.memory, b.memory), (page, page));
    assert_eq!((a.max_output, b.max_output), (2 << 30, 2 << 30));
}

#[test]
fn scratch_is_a_size_that_0_turns_off() {
    let c = load(
        "[limits]\nscratch = \"1MiB\"\n\
         [[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n\
         [app.limits]\nscratch = \"0\"\n\
         [[app]]\nname=\"b\"\nroute=\"/b\"\nmodule=\"b.wasm\"\n\
         [cgi_bin]\nroot = \".\"\n[cgi_bin.limits]\nscratch = \"64KiB\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.apps[0].guest.limits.scratch, 0);
    assert_eq!(c.apps[1].guest.limits.scratch, 1 << 20);
    assert_eq!(c.cgi_bin.unwrap().guest.limits.scratch, 64 << 10);
    for (toml, needles) in [
        ("[limits]\nscratch = \"8GiB\"\n", &["limits.scratch", "4GiB"][..]),
        ("[limits]\nscratch = \"-1\"\n", &["limits.scratch", "MiB"]),
        (
            "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\".\", guest=\"/tmp/\"}]\n",
            &["app[0].mounts[0].guest", "scratch directory", "app[0].limits.scratch"],
        ),
        (
            "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\".\", guest=\"/tmp/sub\"}]\n",
            &["app[0].mounts[0].guest"],
        ),
    ] {
        let e = err(toml);
        for needle in needles {
            assert!(e.contains(needle), "{toml:?}: {e:?} lacks {needle:?}");
        }
    }
    // Without a scratch directory, /tmp is free to mount; /tmpfoo always is.
    let c = load(
        "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\nmounts=[{host=\".\", guest=\"/tmp\"}]\n\
         [app.limits]\nscratch = \"0\"\n\
         [[app]]\nname=\"b\"\nroute=\"/b\"\nmodule=\"b.wasm\"\nmounts=[{host=\".\", guest=\"/tmpfoo\"}]\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.apps[0].guest.mounts[0].guest, "/tmp");
    assert_eq!(c.apps[1].guest.mounts[0].guest, "/tmpfoo");
}

#[test]
fn bad_limits_name_key_and_value() {
    for (toml, needles) in [
        ("[limits]\nmemory = \"lots\"\n", &["limits.memory", "lots", "MiB"][..]),
        ("[limits]\nmemory = \"8GiB\"\n", &["limits.memory", "4GiB"]),
        ("[limits]\ntimeout = \"30\"\n", &["limits.timeout", "ms, s, m or h"]),
        ("[limits]\ntimeout = \"0s\"\n", &["limits.timeout", "1ms"]),
        ("[limits]\nmax_params = \"1B\"\n", &["limits.max_params", "1KiB"]),
        ("[limits]\nmax_params_count = 0\n", &["limits.max_params_count"]),
        (
            "[server]\nsocket_mode = \"0666\"\n",
            &["server.socket_mode", "force_socket_mode"],
        ),
        (
            "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n[app.limits]\ntimeout = \"x\"\n",
            &["app[0].limits.timeout", "\"x\""],
        ),
        // PARAMS are bounded before any app is known.
        (
            "[[app]]\nname=\"a\"\nroute=\"/a\"\nmodule=\"a.wasm\"\n[app.limits]\nmax_params = \"1MiB\"\n",
            &["max_params"],
        ),
    ] {
        let e = err(toml);
        for needle in needles {
            assert!(e.contains(needle), "{toml:?}: {e:?} lacks {needle:?}");
        }
    }
}

#[test]
fn durations_take_the_documented_units() {
    for (text, ms) in [("250ms", 250), ("30s", 30_000), (" 5 m ", 300_000), ("1h", 3_600_000)] {
        assert_eq!(units::parse_duration(text), Ok(Duration::from_millis(ms)), "{text:?}");
    }
    for text in ["", "30", "s", "-1s", "1 fortnight"] {
        assert!(units::parse_duration(text).is_err(), "{text:?}");
    }
}
