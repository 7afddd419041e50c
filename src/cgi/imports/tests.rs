use std::path::Path;

use super::*;

fn names(imports: &[Import]) -> Vec<(&str, usize, bool, bool)> {
    imports
        .iter()
        .map(|i| (i.module.as_str(), i.line, i.optional, i.eager))
        .collect()
}

#[test]
fn perl_use_and_require() {
    let text = "#!/usr/bin/perl -w\n\
                use strict; use warnings;\n\
                use CGI qw(:standard);   # forms\n\
                use POSIX ();\n\
                require Data::Dumper;\n\
                use 5.010;\n\
                use v5.36;\n\
                require \"cgi-lib.pl\";\n\
                my $ok = eval { require JSON::XS; 1 };\n\
                eval \"use Storable; 1\" or die;\n\
                if ($x) { require File::Temp }\n\
                # use Commented::Out;\n\
                print \"use Not::A::Module;\\n\";\n";
    let scan = perl(text, Path::new("/cgi"));
    assert_eq!(
        names(&scan.imports),
        [
            ("strict", 2, false, true),
            ("warnings", 2, false, true),
            ("CGI", 3, false, true),
            ("POSIX", 4, false, true),
            ("Data::Dumper", 5, false, false),
            ("JSON::XS", 9, true, false),
            ("Storable", 10, true, true),
            ("File::Temp", 11, false, false),
        ]
    );
}

#[test]
fn perl_pod_heredocs_and_end_are_not_code() {
    let text = "use A;\n\
                =head1 SYNOPSIS\n\n  use Pod::Example;\n\n=cut\n\
                print <<\"HTML\", <<~EOT;\n\
                use Html::Text;\n\
                HTML\n\
                \x20 use Indented::Text;\n\
                \x20 EOT\n\
                my $n = 1 << 2;\n\
                print qq{<p>\n  use the form below,\n  require more help?\n</p>};\n\
                use B;\n\
                __END__\n\
                use After::End;\n";
    assert_eq!(
        perl(text, Path::new("/"))
            .imports
            .iter()
            .map(|i| i.module.as_str())
            .collect::<Vec<_>>(),
        ["A", "B"]
    );
}

#[test]
fn perl_base_parent_and_lib() {
    let text = "use base qw(Class::Accessor\n  My::Base);\n\
                use parent -norequire, 'Local::Thing';\n\
                use parent 'Some::Parent';\n\
                use FindBin;\n\
                use lib \"$FindBin::Bin/lib\", 'vendor', '/opt/site/lib';\n\
                use lib $FindBin::RealBin . '/../lib';\n\
                use lib qw(/usr/local/myapp);\n\
                use lib $ENV{MYAPP_LIB};\n";
    let scan = perl(text, Path::new("/srv/cgi"));
    let modules: Vec<_> = scan.imports.iter().map(|i| i.module.as_str()).collect();
    assert_eq!(
        modules,
        [
            "base",
            "Class::Accessor",
            "My::Base",
            "parent",
            "parent",
            "Some::Parent",
            "FindBin",
            "lib",
            "lib",
            "lib",
            "lib"
        ]
    );
    assert_eq!(scan.imports[2].line, 1);
    assert_eq!(
        scan.libs,
        [
            "/srv/cgi/lib",
            "/srv/cgi/vendor",
            "/opt/site/lib",
            "/srv/cgi/../lib",
            "/usr/local/myapp"
        ]
        .map(PathBuf::from)
    );
    assert_eq!(scan.unknown_libs, ["$ENV{MYAPP_LIB}"]);
}

#[test]
fn perl_switches_find_taint_and_includes() {
    let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(perl_switches(&args("-w")), (false, vec![]));
    assert_eq!(perl_switches(&args("-wT")), (true, vec![]));
    assert_eq!(perl_switches(&args("-t")), (true, vec![]));
    assert_eq!(
        perl_switches(&args("-Ilib -I /opt/lib -w")),
        (false, vec!["lib".into(), "/opt/lib".into()])
    );
    // -M's argument is no switch.
    assert_eq!(perl_switches(&args("-MTest")), (false, vec![]));
}

#[test]
fn python_imports() {
    let text = "#!/usr/bin/env python3\n\
                \"\"\"A docstring.\n\
                import not_code\n\
                \"\"\"\n\
                import os, sys as system\n\
                import xml.etree.ElementTree\n\
                from email.mime.text import MIMEText\n\
                from . import sibling\n\
                from .pkg import thing\n\
                from __future__ import annotations\n\
                from helpers import (greet,\n\
                \x20   farewell)\n\
                x = 'import in_a_string'  # import in_a_comment\n\
                import json; import cgi\n\
                try:\n\
                \x20   import simplejson\n\
                except ImportError:\n\
                \x20   import fallback\n\
                try: import inline_try\n\
                except ImportError: pass\n\
                def f():\n\
                \x20   import lazy\n";
    let scan = python(text);
    assert_eq!(
        names(&scan.imports),
        [
            ("os", 5, false, true),
            ("sys", 5, false, true),
            ("xml.etree.ElementTree", 6, false, true),
            ("email.mime.text", 7, false, true),
            ("helpers", 11, false, true),
            ("json", 14, false, true),
            ("cgi", 14, false, true),
            ("simplejson", 16, true, false),
            ("fallback", 18, true, false),
            ("inline_try", 19, true, false),
            ("lazy", 22, false, false),
        ]
    );
    assert_eq!(scan.imports[2].top_level(), "xml");
    assert_eq!(scan.python2, None);
}

#[test]
fn python2_statements_are_found() {
    let first = |text: &str| python(text).python2;
    assert_eq!(first("import os\nprint \"hello\"\n"), Some((2, "a print statement")));
    assert_eq!(first("print >>sys.stderr, 'x'\n"), Some((1, "a print statement")));
    assert_eq!(
        first("try:\n    pass\nexcept ValueError, e:\n    pass\n"),
        Some((3, "except E, name:"))
    );
    assert_eq!(first("raise ValueError, 'bad'\n"), Some((1, "raise E, value")));
    assert_eq!(first("exec \"x = 1\"\n"), Some((1, "an exec statement")));
    assert_eq!(first("x = `y`\n"), Some((1, "backquotes")));
    // Python 3.
    for text in [
        "print('x')\n",
        "print ('x', file=sys.stderr)\n",
        "print\n",
        "print = log\n",
        "except (A, B) as e:\n",
        "raise ValueError('a, b')\n",
        "s = \"print 'x'\"\n",
        "x = '`'\n",
    ] {
        assert_eq!(first(text), None, "{text}");
    }
}
