//! Templates: what is a placeholder, how each value is quoted for its shell context, what
//! is refused and with which message, `--raw`, path templates; and a property test
//! against real sshd logins whose shells are dash and bash: for random values and
//! templates, the remote `printf` prints exactly the value or rexec refuses the template,
//! and nothing else ever runs.

use crate::harness;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::{Sshd, SshdConfig, TEST_USER};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rexec::{ErrorKind, HostSettings, Inventory, Pool, Session, Template};

/// `template` rendered with `v` (and `name`) defined.
fn render(template: &str, v: &str) -> rexec::Result<String> {
    Template::parse(template)?.render(|name| match name {
        "v" => Some(v.to_owned()),
        "name" => Some("web01".to_owned()),
        _ => None,
    })
}

/// The message of the refusal of `template`.
fn refusal(template: &str) -> String {
    let err = Template::parse(template).expect_err(template);
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{template}");
    err.to_string()
}

#[test]
fn a_placeholder_is_double_braces_around_an_identifier() {
    let t = Template::parse("a {{name}} {{ v }} {{\tv\t}} {{_x1}}").unwrap();
    assert_eq!(t.placeholders(), ["name", "v", "_x1"]);
    assert_eq!(
        Template::parse("{{name}}-{{ v }}")
            .unwrap()
            .render(|n| Some(n.to_owned()))
            .unwrap(),
        "'name'-'v'"
    );
    // Everything else is text, sent untouched.
    for text in [
        "jq '{name}'",
        "awk '{print}'",
        "awk '{print $1}' /etc/passwd",
        "docker ps --format '{{.Names}}'",
        "docker inspect -f '{{ json . }}' x",
        "echo ${HOME} {a,b} {name} {{1x}} {{ x y }} {{x}",
        "echo {{ name }",
    ] {
        let t = Template::parse(text).unwrap();
        assert!(t.placeholders().is_empty(), "{text}");
        assert_eq!(t.render(|_| None).unwrap(), text);
        assert_eq!(t.to_string(), text);
    }
}

#[test]
fn a_go_template_word_reads_as_a_placeholder_and_fails_if_undefined() {
    let err = render("docker ps --format '{{range .}}{{end}}'", "x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "{{end}} at 1:32 is not defined for this host"
    );
    // Positions count lines and characters.
    let err = render("echo é\n  {{nope}}", "x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "{{nope}} at 2:3 is not defined for this host"
    );
}

#[test]
fn literals_and_backslashes_escape_placeholders() {
    assert_eq!(render("echo {{ '{{' }}end}}", "x").unwrap(), "echo {{end}}");
    assert_eq!(render("echo {{ \"}}\" }}", "x").unwrap(), "echo }}");
    assert_eq!(render("echo '{{ '{{' }}v}}'", "x").unwrap(), "echo '{{v}}'");
    assert_eq!(render("echo {{''}}", "x").unwrap(), "echo ");
    // An odd number of backslashes: not a placeholder.
    for text in [
        r"echo \{{v}}",
        r#"echo "\{{v}}""#,
        r"echo '\{{v}}'",
        r"echo \\\{{v}}",
    ] {
        assert_eq!(render(text, "x").unwrap(), text);
    }
    // An even number: a backslash, then the value.
    assert_eq!(render(r"echo \\{{v}}", "x").unwrap(), r"echo \\'x'");
    assert_eq!(render(r#"echo "\\{{v}}""#, "$").unwrap(), r#"echo "\\\$""#);
}

#[test]
fn values_are_quoted_for_their_context() {
    let v = r#"it's "a" $b `c` \d"#;
    assert_eq!(
        render("echo {{v}}", v).unwrap(),
        r#"echo 'it'\''s "a" $b `c` \d'"#
    );
    assert_eq!(render("echo a{{v}}b", "x y").unwrap(), "echo a'x y'b");
    assert_eq!(
        render("echo 'pre {{v}} post'", v).unwrap(),
        r#"echo 'pre it'\''s "a" $b `c` \d post'"#
    );
    assert_eq!(
        render(r#"echo "pre {{v}} post""#, v).unwrap(),
        r#"echo "pre it's \"a\" \$b \`c\` \\d post""#
    );
    // Always quoted outside quotes: never an assignment, reserved word or expansion.
    assert_eq!(render("{{v}} ls", "PATH=/tmp").unwrap(), "'PATH=/tmp' ls");
    assert_eq!(render("{{v}}", "if").unwrap(), "'if'");
    assert_eq!(render("echo {{v}}", "").unwrap(), "echo ''");
    // After constructs rexec follows, placeholders are still placed.
    for (before, expected) in [
        (
            r#": "$(printf '%s' ')' )"; "#,
            r#": "$(printf '%s' ')' )"; "#,
        ),
        (
            ": ${NOPE:-x} $((1 + (2))) `echo a` $'a\\nb' $\"c\"; ",
            ": ${NOPE:-x} $((1 + (2))) `echo a` $'a\\nb' $\"c\"; ",
        ),
        ("# it's a comment\n", "# it's a comment\n"),
        (
            "cat <<'E' >/dev/null\n'\"`$(\nE\n",
            "cat <<'E' >/dev/null\n'\"`$(\nE\n",
        ),
        ("cat <<-E\n\t' $x\n\tE\n", "cat <<-E\n\t' $x\n\tE\n"),
        ("case x in x) : ;; esac; ", "case x in x) : ;; esac; "),
        (": a \\\n  b \"c \\\nd\"; ", ": a \\\n  b \"c \\\nd\"; "),
        (": `echo \"a b\"`; ", ": `echo \"a b\"`; "),
    ] {
        assert_eq!(
            render(&format!("{before}echo {{{{v}}}}"), "a b").unwrap(),
            format!("{expected}echo 'a b'"),
            "{before}"
        );
    }
}

#[test]
fn each_refused_context_has_its_message() {
    let cases = [
        (
            "echo $'{{v}}'",
            "{{v}} at 1:8 is inside $'...', where rexec cannot quote a value safely; move it \
             outside the quotes",
        ),
        (
            "echo $\"{{v}}\"",
            "{{v}} at 1:8 is inside $\"...\", where rexec cannot quote a value safely; move it \
             outside the quotes",
        ),
        (
            "echo `echo {{v}}`",
            "{{v}} at 1:12 is inside backquotes, where rexec cannot quote a value safely; \
             assign it to a variable first (v={{...}}; then use \"$v\")",
        ),
        (
            "echo \"`echo {{v}}`\"",
            "{{v}} at 1:13 is inside backquotes, where rexec cannot quote a value safely; \
             assign it to a variable first (v={{...}}; then use \"$v\")",
        ),
        (
            "echo $(echo '{{v}}')",
            "{{v}} at 1:14 is inside $(...), where rexec does not follow the shell's quoting; \
             assign it to a variable first (v={{...}}; then use \"$v\")",
        ),
        (
            "echo \"$(echo {{v}})\"",
            "{{v}} at 1:14 is inside $(...), where rexec does not follow the shell's quoting; \
             assign it to a variable first (v={{...}}; then use \"$v\")",
        ),
        (
            "echo ${x:-{{v}}}",
            "{{v}} at 1:11 is inside ${...}, where rexec cannot quote a value safely; assign \
             it to a variable first (v={{...}}; then use ${v...})",
        ),
        (
            "echo $(( {{v}} + 1 ))",
            "{{v}} at 1:10 is inside an arithmetic expression, which the shell evaluates as \
             code; rexec will not put a value there",
        ),
        (
            "echo $[{{v}}]",
            "{{v}} at 1:8 is inside an arithmetic expression, which the shell evaluates as \
             code; rexec will not put a value there",
        ),
        (
            "echo a # {{v}}",
            "{{v}} at 1:10 is in a comment, which a value with a line break would end; move \
             it out of the comment",
        ),
        (
            "cat <<EOF\n{{v}}\nEOF",
            "{{v}} at 2:1 is in a here-document, where rexec cannot quote a value safely; \
             pass it as an argument or a variable instead",
        ),
        (
            "cat <<'EOF'\nx {{v}}\nEOF",
            "{{v}} at 2:3 is in a here-document, where rexec cannot quote a value safely; \
             pass it as an argument or a variable instead",
        ),
        (
            "cat <<{{v}}\nx\n",
            "{{v}} at 1:7 is in a here-document delimiter, where rexec will not put a value",
        ),
        (
            "echo ${{v}}",
            "{{v}} at 1:7 is right after an unescaped $, where its quotes would read as \
             $'...'; escape the $ (\\$) or separate the two",
        ),
        (
            "echo \"${{v}}\"",
            "{{v}} at 1:8 is right after an unescaped $, where its quotes would read as \
             $'...'; escape the $ (\\$) or separate the two",
        ),
        (
            "echo \"$HOME{{v}}\"",
            "{{v}} at 1:12 is right after $name inside \"...\", where the value would extend \
             the name; write ${name}",
        ),
        (
            "echo {{ '\\' }}{{v}}",
            "{{v}} at 1:15 is right after an unescaped backslash, which would take the \
             value's first quote; remove the backslash",
        ),
        (
            "echo \"{{ '\\' }}{{v}}\"",
            "{{v}} at 1:16 is right after an unescaped backslash, which would take the \
             value's first quote; remove the backslash",
        ),
    ];
    for (template, message) in cases {
        assert_eq!(refusal(template), message, "{template}");
    }
}

#[test]
fn constructs_rexec_cannot_follow_refuse_the_placeholders_after_them() {
    let lost = [
        (
            "echo $(case a in a) :;; esac) {{v}}",
            "case inside $(...) at 1:8",
        ),
        ("((1 < 2)); echo {{v}}", "(( at 1:1"),
        ("cat <<<x; echo {{v}}", "<<< at 1:5"),
        (
            "echo $(cat <<E\nE\n) {{v}}",
            "a here-document inside $(...) at 1:12",
        ),
        (
            "echo `echo \"`\"` {{v}}",
            "a backquote inside quotes inside `...` at 1:13",
        ),
        (
            "echo ${x:-'}'} {{v}}",
            "quotes or braces inside ${...} at 1:11",
        ),
        ("echo $'a\\'b' {{v}}", "\\' inside $'...' at 1:9"),
        (
            "cat <<E\n\\\nE\necho {{v}}",
            "a here-document body with \\, `, $( or ${ at 2:1",
        ),
        (
            "cat <<E'x'\nE\necho {{v}}",
            "a here-document delimiter rexec cannot read at 1:7",
        ),
        // A line continuation joins what is around it: `$\⏎{{v}}` would be `$'...'`.
        (
            "echo $\\\n{{v}}",
            "a line continuation (\\ at the end of a line) inside a word at 1:7",
        ),
        (
            "echo \"$HOME\\\n{{v}}\"",
            "a line continuation (\\ at the end of a line) inside a word at 1:12",
        ),
        (
            "cat <\\\n<E\n{{v}}\nE",
            "a line continuation (\\ at the end of a line) inside a word at 1:6",
        ),
        (
            "echo `a\\\nb` {{v}}",
            "a line continuation inside `...` at 1:8",
        ),
        (
            "echo ${x\\\n} {{v}}",
            "a line continuation inside ${...} at 1:9",
        ),
    ];
    for (template, construct) in lost {
        let expected_end = format!(
            "comes after {construct}, past which rexec cannot tell how every shell reads the \
             line; move the placeholder before it"
        );
        let message = refusal(template);
        eprintln!("{message}");
        assert!(message.starts_with("{{v}} at "), "{message}");
        assert!(message.ends_with(&expected_end), "{template}: {message}");
        // Without placeholders after it, the same line is accepted and sent as it is.
        let before = template.replace("{{v}}", "x");
        assert_eq!(render(&before, "").unwrap(), before);
    }
    // A placeholder before the construct is fine.
    assert_eq!(
        render("echo {{v}}; ((1 < 2))", "a").unwrap(),
        "echo 'a'; ((1 < 2))"
    );
}

#[test]
fn a_value_with_nul_is_an_error() {
    let err = render("echo {{v}}", "a\0b").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "the value of {{v}} contains a NUL character"
    );
    let err = Template::parse_path("/tmp/{{v}}")
        .render(|_| Some("a\0b".to_owned()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the value of {{v}} contains a NUL character"
    );
}

#[test]
fn path_templates_insert_values_raw() {
    let t = Template::parse_path("/etc/app/{{ name }}.conf");
    assert_eq!(t.placeholders(), ["name"]);
    assert_eq!(
        t.render(|_| Some("it's a $x".to_owned())).unwrap(),
        "/etc/app/it's a $x.conf"
    );
    // No shell reading: quotes in the path are just characters.
    let t = Template::parse_path("/tmp/it's/{{name}}/{x}/{{ '{{' }}");
    assert_eq!(
        t.render(|_| Some("w".to_owned())).unwrap(),
        "/tmp/it's/w/{x}/{{"
    );
    let err = t.render(|_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "{{name}} in the path \"/tmp/it's/{{name}}/{x}/{{ '{{' }}\" is not defined for this host"
    );
}

#[test]
fn an_inventory_address_may_use_the_name_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.toml");
    std::fs::write(
        &path,
        "[defaults]\naddress = \"{{name}}.example.net\"\n[hosts]\nweb1 = {}\n",
    )
    .unwrap();
    let inventory = Inventory::from_file(&path, &HostSettings::default()).unwrap();
    let hosts = inventory.select("all").unwrap();
    assert_eq!(hosts[0].hostname(), "web1.example.net");
}

// ----- The command line and the pool against a real sshd -----

fn rexec(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rexec"));
    cmd.args(args)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory every user may write, for canary files that must never appear.
pub(crate) fn canary_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// An inventory with host `web1` on `sshd`, logging in as the test user, with `vars`.
fn inventory(sshd: &Sshd, dir: &Path, vars: &str) -> PathBuf {
    let path = dir.join("hosts.toml");
    std::fs::write(
        &path,
        format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_files = [\"{}\"]\nknown_hosts = \"{}\"\n\
             [hosts]\nweb1 = {{ address = \"127.0.0.1\", port = {}, vars = {{ {vars} }} }}\n",
            sshd.user_key.display(),
            sshd.known_hosts.display(),
            sshd.port
        ),
    )
    .unwrap();
    path
}

fn json_stdout(out: &Output) -> String {
    let first = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let v: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    v["stdout"].as_str().unwrap_or_default().to_owned()
}

/// Regression (issue "Hostile and unusual input"): `echo '{role}'` with a value holding
/// `; touch` ran the touch.
#[test]
fn the_readme_example_cannot_inject() {
    let sshd = Sshd::start();
    let canary = canary_dir();
    let pwned = canary.path().join("pwned");
    let work = tempfile::tempdir().unwrap();
    let role = format!("a b; touch {}", pwned.display());
    let inv = inventory(&sshd, work.path(), &format!("role = \"{role}\""));
    let inv = inv.to_str().unwrap();
    for line in [
        "echo '{{role}}'",
        "echo {{role}}",
        "echo \"{{ role }}\"",
        // The README's fix for a refused place: a variable.
        "v={{role}}; echo \"$(printf %s \"$v\")\"",
    ] {
        let out = rexec(&["-i", inv, "--json", line], &[]);
        assert_eq!(out.status.code(), Some(0), "{line}: {}", text(&out.stderr));
        assert_eq!(json_stdout(&out), format!("{role}\n"), "{line}");
        assert!(!pwned.exists(), "{line} ran the value");
    }
}

#[test]
fn placeholders_name_the_host_address_port_and_login_user() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, work.path(), "dc = \"x y\"");
    let out = rexec(
        &[
            "-i",
            inv.to_str().unwrap(),
            "--json",
            "printf '%s|' {{name}} {{host}} {{port}} {{user}} {{dc}}",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json_stdout(&out),
        format!("web1|127.0.0.1|{}|{TEST_USER}|x y|", sshd.port)
    );
}

/// `{{user}}` is the login user even when the inventory sets none: the local user name.
#[test]
fn the_user_placeholder_is_the_effective_login_user() {
    let work = tempfile::tempdir().unwrap();
    let inv = work.path().join("hosts.toml");
    std::fs::write(
        &inv,
        "[hosts]\nme = { transport = \"local\" }\nthem = { transport = \"local\", user = \"deploy\" }\n",
    )
    .unwrap();
    let out = rexec(
        &[
            "-i",
            inv.to_str().unwrap(),
            "--json",
            "printf '%s@%s' {{user}} {{host}}",
        ],
        &[("USER", "someone-local")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stdout_of = |host: &str| {
        lines
            .iter()
            .find(|v| v["host"] == host)
            .map(|v| v["stdout"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(stdout_of("me"), "someone-local@me");
    assert_eq!(stdout_of("them"), "deploy@them");
}

#[test]
fn raw_sends_go_templates_untouched_and_refusals_stop_before_connecting() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, work.path(), "role = \"r\"");
    let inv = inv.to_str().unwrap();
    let go = "printf '%s' '{{range .}}{{.Names}}{{end}} {name} {{role}}'";

    // A placeholder that no host defines: exit 2, naming host and position, no connection.
    let out = rexec(&["-i", inv, go], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "rexec: web1: {{end}} at 1:35 is not defined for this host\n"
    );
    // A refused context: exit 2 before connecting.
    let out = rexec(&["-i", inv, "echo $'{{role}}'"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "rexec: {{role}} at 1:8 is inside $'...', where rexec cannot quote a value safely; \
         move it outside the quotes\n"
    );
    assert!(!sshd.log().contains("Connection from"), "{}", sshd.log());

    // --raw: sent exactly as given.
    let out = rexec(&["-i", inv, "--json", "--raw", go], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json_stdout(&out),
        "{{range .}}{{.Names}}{{end}} {name} {{role}}"
    );
    // Without --raw, the Go template words that are not identifiers stay untouched.
    let out = rexec(
        &[
            "-i",
            inv,
            "--json",
            "printf '%s' '{{.Names}} {{ json . }}' jq '{name}' awk '{print}' {{ '{{' }}end}}",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        json_stdout(&out),
        "{{.Names}} {{ json . }}jq{name}awk{print}{{end}}"
    );
}

#[test]
fn put_and_get_paths_use_placeholders_raw_unless_raw_is_given() {
    let sshd = Sshd::start();
    let up = sshd.user_dir("up");
    let work = tempfile::tempdir().unwrap();
    let inv = inventory(
        &sshd,
        work.path(),
        &format!("dir = \"{}\", tag = \"it's $x\"", up.display()),
    );
    let inv = inv.to_str().unwrap();
    let local = work.path().join("payload");
    std::fs::write(&local, "data").unwrap();
    let out = rexec(
        &[
            "-i",
            inv,
            "-q",
            "put",
            local.to_str().unwrap(),
            "{{dir}}/{{name}} {{ tag }}",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(up.join("web1 it's $x")).unwrap(),
        "data"
    );
    let literal = format!("{}/{{{{name}}}}", up.display());
    let out = rexec(
        &[
            "-i",
            inv,
            "-q",
            "--raw",
            "put",
            local.to_str().unwrap(),
            &literal,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(up.join("{{name}}")).unwrap(),
        "data"
    );
    // get: a LOCAL_DIR with a placeholder is each host's own directory.
    let fetched = work.path().join("fetched-{{name}}");
    let out = rexec(
        &[
            "-i",
            inv,
            "-q",
            "get",
            "{{dir}}/{{name}} {{tag}}",
            fetched.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(work.path().join("fetched-web1/web1 it's $x")).unwrap(),
        "data"
    );
}

#[tokio::test]
async fn the_pool_renders_templates_and_sends_plain_lines_as_given() {
    let sshd = Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let inv = inventory(&sshd, work.path(), "role = \"it's\"");
    let inventory = Inventory::from_file(&inv, &HostSettings::default()).unwrap();
    // The pool takes the inventory's hosts as they are.
    let pool = Pool::new(inventory.select("all").unwrap()).concurrency(4);
    let plain = pool.run("printf '%s' '{{name}}' {name}").await;
    assert_eq!(plain[0].result.as_ref().unwrap().stdout, b"{{name}}{name}");
    let template = Template::parse("printf '%s' {{name}} \"{{role}}\"").unwrap();
    let rendered = pool.run(&template).await;
    assert_eq!(rendered[0].result.as_ref().unwrap().stdout, b"web1it's");
    // An undefined placeholder is that host's error; nothing runs there.
    let template = Template::parse("printf x {{nope}}").unwrap();
    let failed = pool.run(&template).await;
    let err = failed[0].result.as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "web1: {{nope}} at 1:10 is not defined for this host"
    );
}

// ----- Property test: random values and templates, dash and bash -----

/// A piece of a command line: its template text, what `printf '%s'` prints for it (with
/// `\u{1}` standing for the value), whether it holds a placeholder, and whether rexec
/// must refuse it.
#[derive(Clone, Debug)]
struct Fragment {
    text: &'static str,
    prints: &'static str,
    holes: bool,
    refused: bool,
}

const fn ok(text: &'static str, prints: &'static str, holes: bool) -> Fragment {
    Fragment {
        text,
        prints,
        holes,
        refused: false,
    }
}

const fn refused(text: &'static str) -> Fragment {
    Fragment {
        text,
        prints: "",
        holes: true,
        refused: true,
    }
}

/// Arguments of `printf '%s'`.
const WORDS: &[Fragment] = &[
    ok("{{v}}", "\u{1}", true),
    ok("{{ v }}", "\u{1}", true),
    ok("a{{v}}b", "a\u{1}b", true),
    ok("'x{{v}}y'", "x\u{1}y", true),
    ok("\"x{{v}}y\"", "x\u{1}y", true),
    ok("\"{{v}}\"'{{v}}'{{v}}", "\u{1}\u{1}\u{1}", true),
    ok("''{{v}}''", "\u{1}", true),
    ok("x{{v}}'y'\"z\"", "x\u{1}yz", true),
    ok("'it'\\''s {{v}}'", "it's \u{1}", true),
    ok("\"a\\\"{{v}}\\\"b\"", "a\"\u{1}\"b", true),
    ok("$NOPE{{v}}", "\u{1}", true),
    ok("\"${NOPE}{{v}}\"", "\u{1}", true),
    ok("\\\\{{v}}", "\\\u{1}", true),
    ok("\"\\\\{{v}}\"", "\\\u{1}", true),
    ok("{{ '$' }}NOPE{{v}}", "\u{1}", true),
    ok("'{{ '{{' }}v}}'", "{{v}}", false),
    ok("\\{{v}}", "{{v}}", false),
    ok("\"\\{{v}}\"", "\\{{v}}", false),
    ok("'\\{{v}}'", "\\{{v}}", false),
    ok("\"{{ '$' }}\"", "$", false),
    ok("'{name}'{a}", "{name}{a}", false),
    ok("\\\n{{v}}", "\u{1}", true),
    ok("\"a \\\n{{v}}\"", "a \u{1}", true),
];

const REFUSED_WORDS: &[Fragment] = &[
    refused("$'{{v}}'"),
    refused("$\"{{v}}\""),
    refused("`printf %s {{v}}`"),
    refused("\"`printf %s {{v}}`\""),
    refused("$(printf %s {{v}})"),
    refused("\"$(printf %s {{v}})\""),
    refused("${NOPE:-{{v}}}"),
    refused("\"${NOPE:-{{v}}}\""),
    refused("$(( {{v}} ))"),
    refused("$[{{v}}]"),
    refused("${{v}}"),
    refused("\"${{v}}\""),
    refused("\"$NOPE{{v}}\""),
    refused("{{ '\\' }}{{v}}"),
    refused("\"{{ '\\' }}{{v}}\""),
    refused("$\\\n{{v}}"),
    refused("\"$\\\n{{v}}\""),
];

/// Lines before the `printf`: constructs rexec follows (`holes: false`), or cannot
/// follow (`refused: true`: every placeholder after them is refused).
const BEFORE: &[Fragment] = &[
    ok("", "", false),
    ok(": \"$(printf '%s' ')' )\"; ", "", false),
    ok(": ${NOPE:-x}; ", "", false),
    ok(": $((1 + (2))); ", "", false),
    ok(": `echo \"a b\"`; ", "", false),
    ok("# it's a comment\n", "", false),
    ok(": <<'E' >/dev/null\n'\"`$(\nE\n", "", false),
    ok(": <<E\nplain $NOPE line\nE\n", "", false),
    ok(": <<-E\n\t'\n\tE\n", "", false),
    ok(": $'a\\nb'; ", "", false),
    ok("x='it'\\''s'; ", "", false),
    ok(": \"a\\\"b\"; ", "", false),
    ok("case x in x) : ;; esac; ", "", false),
    ok(": a \\\n  b \"c \\\nd\"; ", "", false),
    Fragment {
        text: ": $(case a in a) : ;; esac); ",
        prints: "",
        holes: false,
        refused: true,
    },
    Fragment {
        text: ": ${NOPE:-'}'}; ",
        prints: "",
        holes: false,
        refused: true,
    },
];

/// Lines after the `printf`.
const AFTER: &[Fragment] = &[
    ok("", "", false),
    ok("\n# it's a comment", "", false),
    ok("\n: <<'E'\nbody ' \"\nE", "", false),
    refused("\n# {{v}}"),
    refused("\n: <<E\n{{v}}\nE"),
    refused("\n: <<'E'\n{{v}}\nE"),
    refused("\n: <<{{v}}\nE"),
];

#[derive(Clone, Debug)]
struct Case {
    before: Fragment,
    words: Vec<Fragment>,
    after: Fragment,
}

impl Case {
    fn template(&self) -> String {
        let words: Vec<&str> = self.words.iter().map(|w| w.text).collect();
        format!(
            "{}printf '%s' {}{}",
            self.before.text,
            words.join(" "),
            self.after.text
        )
    }

    fn refused(&self) -> bool {
        let holes_after = self.words.iter().any(|w| w.holes) || self.after.holes;
        self.words.iter().any(|w| w.refused)
            || self.after.refused
            || (self.before.refused && holes_after)
    }

    fn prints(&self, value: &str) -> String {
        self.words
            .iter()
            .map(|w| w.prints.replace('\u{1}', value))
            .collect()
    }
}

fn cases() -> impl Strategy<Value = Case> {
    let word = prop_oneof![
        8 => prop::sample::select(WORDS),
        1 => prop::sample::select(REFUSED_WORDS),
    ];
    let before = prop_oneof![
        4 => Just(BEFORE[0].clone()),
        3 => prop::sample::select(BEFORE),
    ];
    let after = prop_oneof![
        6 => Just(AFTER[0].clone()),
        2 => prop::sample::select(AFTER),
    ];
    (before, prop::collection::vec(word, 1..5), after).prop_map(|(before, words, after)| Case {
        before,
        words,
        after,
    })
}

/// Values biased toward what the shell treats specially, including attempts to create
/// `canary`.
pub(crate) fn values(canary: &Path) -> impl Strategy<Value = String> {
    let c = canary.display().to_string();
    let attacks: Vec<String> = vec![
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("'; touch {c}; '"),
        format!("\"; touch {c}; \""),
        format!("\ntouch {c}\n"),
        format!("'$(touch {c})'"),
        format!("\\'; touch {c} #"),
        format!("'\\''; touch {c}; '"),
        format!("}}}}; touch {c}; {{{{"),
        format!("\nEOF\ntouch {c}\nEOF\n"),
        format!("\"$(touch {c})\""),
        format!("${{x:-$(touch {c})}}"),
    ];
    let special: Vec<&'static str> = vec![
        "'", "\"", "\\", "$", "`", "\n", ";", "|", "&", "<", ">", "(", ")", "{", "}", "*", "?",
        "[", "]", "~", "#", "!", " ", "\t", "'\\''", "EOF", "\nEOF\n", "$(", "${", "{{", "}}",
        "%s", "-", "=", "\r", "\\'", "\\\"", "$'", "<<", "é", "\u{3000}", "\u{202e}",
    ];
    let piece = prop_oneof![
        6 => prop::sample::select(special).prop_map(str::to_owned),
        2 => prop::sample::select(attacks),
        2 => "[a-z0-9_]{1,4}",
        1 => any::<char>().prop_filter("no NUL", |c| *c != '\0').prop_map(String::from),
    ];
    prop_oneof![
        5 => prop::collection::vec(piece, 0..8).prop_map(|p| p.concat()),
        1 => any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
}

/// Runs the property test over one kept session logged in as `user`; returns how many
/// cases ran remotely and how many were refused.
fn rendered_values_arrive_exactly(user: &str, sshd: &Sshd, cases_to_run: u32) -> (usize, usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = rt
        .block_on(Session::connect(&sshd.options_as(user)))
        .unwrap();
    let canary_home = canary_dir();
    let canary = canary_home.path().join("canary");
    let counts = std::cell::Cell::new((0usize, 0usize));
    let mut runner = TestRunner::new(Config {
        cases: cases_to_run,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(cases(), values(&canary)), |(case, value)| {
            let template = case.template();
            let parsed = Template::parse(&template);
            let (ran, refusals) = counts.get();
            if case.refused() {
                let err = parsed
                    .err()
                    .ok_or_else(|| TestCaseError::fail(format!("not refused: {template:?}")))?;
                prop_assert_eq!(err.kind(), ErrorKind::InvalidInput);
                prop_assert!(err.to_string().starts_with("{{v}} at "), "{}", err);
                counts.set((ran, refusals + 1));
                return Ok(());
            }
            let parsed =
                parsed.map_err(|e| TestCaseError::fail(format!("refused: {template:?}: {e}")))?;
            let line = parsed
                .render(|name| (name == "v").then(|| value.clone()))
                .unwrap();
            let mut command = session.raw_command(line.clone());
            command.timeout(Duration::from_secs(20));
            let out = rt.block_on(command.output()).unwrap();
            counts.set((ran + 1, refusals));
            if canary.exists() {
                // Removed so that shrinking finds the smallest case that creates it.
                std::fs::remove_file(&canary).unwrap();
                prop_assert!(false, "the value ran: {line:?}");
            }
            prop_assert_eq!(
                text(&out.stdout),
                case.prints(&value),
                "template {:?} rendered {:?}; stderr {:?}",
                template,
                line,
                text(&out.stderr)
            );
            prop_assert!(
                out.stderr.is_empty(),
                "stderr {:?} for {:?}",
                text(&out.stderr),
                line
            );
            prop_assert!(out.status.success(), "{:?} for {:?}", out.status, line);
            Ok(())
        })
        .unwrap();
    assert!(!canary.exists());
    let _ = rt.block_on(session.close());
    counts.get()
}

/// Tokens of random command lines. None of them can turn data into code (no `eval`,
/// `sh`, `.`, no assignments or `$_`, no digits for `$0`), so only an injection can create
/// the canary; file names they create land in the current directory (a temp dir).
const SOUP: &[&str] = &[
    "{{v}}",
    "{{v}}",
    "{{v}}",
    "{{ v }}",
    "'",
    "'",
    "\"",
    "\"",
    "\\",
    "$",
    "`",
    "(",
    ")",
    "{",
    "}",
    "#",
    "\n",
    " ",
    " ",
    "\t",
    ";",
    "|",
    "&",
    "<",
    ">",
    "<<",
    "<<-",
    "E",
    "'E'",
    "a",
    "x",
    ":",
    "echo",
    "printf",
    "case",
    "in",
    "esac",
    ";;",
    "$(",
    "${",
    "$((",
    "$[",
    "$'",
    "$\"",
    "((",
    "-",
    "*",
    "?",
    "~",
    "!",
    "[",
    "]",
    "{{ '\\' }}",
    "{{ '{{' }}",
    "\\\n",
    "$x",
];

/// Runs random command lines built from [`SOUP`] with hostile values: whatever rexec
/// accepts runs remotely, and the canary must never appear. Returns how many ran and how
/// many were refused.
fn random_lines_never_run_a_value(user: &str, sshd: &Sshd, cases_to_run: u32) -> (usize, usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = rt
        .block_on(Session::connect(&sshd.options_as(user)))
        .unwrap();
    let canary_home = canary_dir();
    let canary = canary_home.path().join("canary");
    let scratch = canary_dir();
    let counts = std::cell::Cell::new((0usize, 0usize));
    let c = canary.display().to_string();
    let attacks: Vec<String> = vec![
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("'; touch {c}; '"),
        format!("\"; touch {c}; \""),
        format!("\ntouch {c}\n"),
        format!("\nE\ntouch {c}\nE\n"),
        format!("E\ntouch {c}\n"),
        format!("'\\''; touch {c} #"),
        format!(") ; touch {c} ; ("),
        format!("}}; touch {c}; {{"),
        format!("\\\ntouch {c}"),
    ];
    let lines = prop::collection::vec(prop::sample::select(SOUP), 1..25).prop_map(|t| t.concat());
    let mut runner = TestRunner::new(Config {
        cases: cases_to_run,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(lines, prop::sample::select(attacks)), |(line, value)| {
            let (ran, refusals) = counts.get();
            let Ok(template) = Template::parse(&line) else {
                counts.set((ran, refusals + 1));
                return Ok(());
            };
            let rendered = template
                .render(|name| (name == "v").then(|| value.clone()))
                .unwrap();
            let full = format!("cd {} || exit 99\n{rendered}", scratch.path().display());
            let mut command = session.raw_command(full);
            command.timeout(Duration::from_secs(10));
            rt.block_on(command.output()).unwrap();
            counts.set((ran + 1, refusals));
            if canary.exists() {
                std::fs::remove_file(&canary).unwrap();
                prop_assert!(false, "the value ran: {line:?} rendered {rendered:?}");
            }
            Ok(())
        })
        .unwrap();
    let _ = rt.block_on(session.close());
    counts.get()
}

/// Cases per property and shell: 300, or `REXEC_TEMPLATE_CASES` for a longer hunt.
pub(crate) fn property_cases() -> u32 {
    std::env::var("REXEC_TEMPLATE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

pub(crate) fn bash_sshd() -> Sshd {
    harness::bash_user();
    Sshd::start_with(SshdConfig {
        extra: vec![harness::allow_bash_user()],
        ..SshdConfig::default()
    })
}

#[test]
fn dash_reads_every_rendered_value_exactly() {
    let sshd = Sshd::start();
    // The test user's login shell is /bin/sh, which is dash here.
    let shell = harness::run(Command::new("getent").args(["passwd", TEST_USER]));
    assert!(shell.trim_end().ends_with(":/bin/sh"), "{shell}");
    let (ran, refused) = rendered_values_arrive_exactly(TEST_USER, &sshd, property_cases());
    eprintln!("dash: {ran} cases ran remotely, {refused} refused");
    assert!(ran >= property_cases() as usize / 4, "only {ran} cases ran");
    assert!(refused > 0);
    let (ran, refused) = random_lines_never_run_a_value(TEST_USER, &sshd, property_cases());
    eprintln!("dash, random lines: {ran} ran remotely, {refused} refused");
    assert!(
        ran >= property_cases() as usize / 4,
        "only {ran} random lines ran"
    );
}

#[test]
fn bash_reads_every_rendered_value_exactly() {
    let sshd = bash_sshd();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shell = rt.block_on(async {
        let session = Session::connect(&sshd.options_as(harness::BASH_USER))
            .await
            .unwrap();
        session
            .raw_command("echo $BASH_VERSION")
            .output()
            .await
            .unwrap()
    });
    assert!(text(&shell.stdout).starts_with('5'), "not bash: {shell:?}");
    drop(rt);
    let (ran, refused) =
        rendered_values_arrive_exactly(harness::BASH_USER, &sshd, property_cases());
    eprintln!("bash: {ran} cases ran remotely, {refused} refused");
    assert!(ran >= property_cases() as usize / 4, "only {ran} cases ran");
    assert!(refused > 0);
    let (ran, refused) =
        random_lines_never_run_a_value(harness::BASH_USER, &sshd, property_cases());
    eprintln!("bash, random lines: {ran} ran remotely, {refused} refused");
    assert!(
        ran >= property_cases() as usize / 4,
        "only {ran} random lines ran"
    );
}
