//! What `wcgid migrate` writes: the configuration (conf/wcgid.toml
//! documents every key), and the web server lines that send the cgi-bin's
//! requests to wcgid instead of fcgiwrap or mod_cgi, in the forms
//! conf/nginx-wcgid.conf and the Apache integration test use.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::config::{Driver, Listen};

/// The URL path the cgi-bin is served under, as fcgiwrap's and Debian's
/// Apache `ScriptAlias` set it up.
pub const URL_PREFIX: &str = "/cgi-bin/";

/// An `[[interpreter]]` section.
#[derive(Debug)]
pub struct Interpreter {
    pub driver: Driver,
    pub module: PathBuf,
    /// The `#!` names its scripts use, when the default ones do not cover
    /// them; empty otherwise.
    pub names: Vec<String>,
    pub lib: BTreeSet<PathBuf>,
    pub preload: BTreeSet<String>,
}

/// The configuration file that serves `root` on `listen`; `header` is its
/// opening comment, without the `# `.
pub fn config(header: &[String], root: &Path, listen: &Listen, interpreters: &[Interpreter]) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    for line in header {
        let _ = writeln!(text, "{}", format!("# {line}").trim_end());
    }
    let _ = write!(text, "\n[server]\nlisten = {}\n", quoted(&listen.to_string()));
    if let Listen::Unix(_) = listen {
        text.push_str(
            "# The web server's user must be able to connect: 0660 with its group, e.g.\n\
             # socket_group = \"www-data\" (Debian's nginx and Apache). Under systemd,\n\
             # wcgid.socket sets both.\n\
             socket_mode = \"0660\"\n",
        );
    }
    let _ = write!(text, "\n[cgi_bin]\nroot = {}\n", quoted(&root.display().to_string()));
    for interpreter in interpreters {
        let name = interpreter.driver.name();
        let _ = write!(
            text,
            "\n[[interpreter]]\nname = {}\ndriver = {}\nmodule = {}\n",
            quoted(name),
            quoted(name),
            quoted(&interpreter.module.display().to_string())
        );
        if !interpreter.names.is_empty() {
            let _ = writeln!(text, "names = {}", list(interpreter.names.iter()));
        }
        if !interpreter.lib.is_empty() {
            text.push_str("# Where the modules its scripts load that it does not have built in are.\n");
            let dirs = interpreter.lib.iter().map(|d| d.display().to_string());
            let _ = writeln!(text, "lib = {}", list(dirs));
        }
        if !interpreter.preload.is_empty() {
            text.push_str("# Loaded into its warm snapshot: what the portable scripts import.\n");
            let _ = writeln!(text, "preload = {}", list(interpreter.preload.iter()));
        }
    }
    text
}

/// A TOML basic string (TOML 1.0, "String"): quotes, backslashes and control
/// characters escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<String> = items.map(|s| quoted(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// nginx's `location` for the cgi-bin, in place of an fcgiwrap one. When
/// the directory is named `cgi-bin`, its parent is the location's root, as
/// in conf/nginx-wcgid.conf; otherwise `alias` maps the URL onto it.
pub fn nginx(root: &Path, listen: &Listen) -> String {
    let pass = match listen {
        Listen::Unix(path) => format!("unix:{}", path.display()),
        Listen::Tcp(addr) => addr.to_string(),
    };
    let (mapping, filename) = match root.parent().filter(|_| root.ends_with("cgi-bin")) {
        Some(parent) => (
            format!("root {};", nginx_word(&parent.display().to_string())),
            "$document_root$fastcgi_script_name",
        ),
        None => (
            format!("alias {};", nginx_word(&format!("{}/", root.display()))),
            "$request_filename",
        ),
    };
    format!(
        "location ^~ {URL_PREFIX} {{\n    \
             {mapping}\n    \
             include fastcgi_params;\n    \
             # {URL_PREFIX}form.pl/extra: wcgid runs {root}/form.pl with PATH_INFO=/extra.\n    \
             fastcgi_param SCRIPT_FILENAME {filename};\n    \
             fastcgi_param HTTP_PROXY \"\";\n    \
             fastcgi_pass {pass};\n\
         }}\n",
        pass = nginx_word(&pass),
        root = root.display(),
    )
}

/// A word of nginx's configuration, quoted when it has to be.
fn nginx_word(word: &str) -> String {
    match word.contains(|c: char| c.is_whitespace() || "\"';{}#".contains(c)) {
        true => format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\"")),
        false => word.to_owned(),
    }
}

/// Apache's line (mod_proxy_fcgi), in place of a `ScriptAlias`: wcgid drops
/// the `proxy:fcgi://localhost` that Apache puts before SCRIPT_FILENAME.
pub fn apache(root: &Path, listen: &Listen) -> String {
    let target = match listen {
        Listen::Unix(path) => format!("unix:{}|fcgi://localhost", path.display()),
        Listen::Tcp(addr) => format!("fcgi://{addr}"),
    };
    format!(
        "ProxyPassMatch \"^{URL_PREFIX}(.*)$\" \"{target}{}/$1\"\n",
        root.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_as_toml_wants() {
        assert_eq!(quoted("/srv/a b"), "\"/srv/a b\"");
        assert_eq!(quoted("a\"b\\c\nd\u{7f}"), "\"a\\\"b\\\\c\\nd\\u007F\"");
    }

    #[test]
    fn nginx_maps_the_url_onto_the_directory() {
        let unix = Listen::Unix("/run/wcgid/wcgid.sock".into());
        let block = nginx(Path::new("/usr/lib/cgi-bin"), &unix);
        assert!(block.contains("root /usr/lib;"), "{block}");
        assert!(block.contains("SCRIPT_FILENAME $document_root$fastcgi_script_name;"));
        assert!(block.contains("fastcgi_pass unix:/run/wcgid/wcgid.sock;"));
        let block = nginx(
            Path::new("/srv/old site/scripts"),
            &Listen::Tcp("127.0.0.1:9000".parse().unwrap()),
        );
        assert!(block.contains("alias \"/srv/old site/scripts/\";"), "{block}");
        assert!(block.contains("SCRIPT_FILENAME $request_filename;"));
        assert!(block.contains("fastcgi_pass 127.0.0.1:9000;"));
    }

    #[test]
    fn apache_passes_the_path_under_the_directory() {
        let unix = Listen::Unix("/run/wcgid/wcgid.sock".into());
        assert_eq!(
            apache(Path::new("/srv/cgi-bin"), &unix),
            "ProxyPassMatch \"^/cgi-bin/(.*)$\" \"unix:/run/wcgid/wcgid.sock|fcgi://localhost/srv/cgi-bin/$1\"\n"
        );
        let tcp = Listen::Tcp("127.0.0.1:9000".parse().unwrap());
        assert!(apache(Path::new("/srv/x"), &tcp).contains("\"fcgi://127.0.0.1:9000/srv/x/$1\""));
    }
}
