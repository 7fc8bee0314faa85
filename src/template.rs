//! Command and path templates: `{{name}}` placeholders filled in per host, rendered for
//! the shell so that no value can change how the command line is read.
//!
//! A shell template is lexed the way a POSIX shell reads a command line (POSIX Shell
//! Command Language, 2.2 Quoting and 2.3 Token Recognition; bash, dash and zsh agree on
//! everything rexec accepts), and each placeholder is quoted for the context it sits in,
//! or refused when rexec cannot quote a value there. The lexer only has to be right about
//! quoting contexts; where the shells differ or rexec cannot follow, placeholders are
//! refused: a refusal is a clear error, a mis-read context would be an injection.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// A command line or path with `{{name}}` placeholders, checked once and rendered per
/// host.
///
/// # Syntax
///
/// - `{{ident}}` is a placeholder: `ident` is `[A-Za-z_][A-Za-z0-9_]*`, with optional
///   spaces or tabs inside the braces (`{{ name }}`).
/// - `{{ '...' }}` or `{{ "..." }}` is a literal: the quoted text is put in as written
///   (`{{ '{{' }}end}}` gives `{{end}}`).
/// - `{{` right after an odd number of backslashes is not a placeholder (`\{{name}}` is
///   sent as it is; outside quotes the shell then reads `{{name}}`).
/// - Anything else is text sent untouched: `{name}`, `${x}`, `{a,b}`, `awk '{print}'`,
///   `jq '{name}'`, Go templates such as `{{.Names}}` or `{{ json . }}`. A Go template
///   that uses a plain word (`{{end}}`) reads as a placeholder: send such a line as it
///   is (the CLI's `--raw`, or a plain `&str` to
///   [`Pool::run`](crate::Pool::run)).
///
/// # Shell templates ([`Template::parse`])
///
/// Each placeholder is rendered for its quoting context, so that the shell reads exactly
/// the value, whatever its characters:
///
/// | context | rendered as |
/// | --- | --- |
/// | outside quotes (`echo {{v}}`, `a{{v}}b`) | one single-quoted word, each `'` written `'\''` |
/// | inside `'...'` | the value with each `'` written `'\''` |
/// | inside `"..."` | the value with `\`, `"`, `$` and `` ` `` escaped by a backslash |
///
/// Always quoting outside quotes keeps a value from becoming an assignment
/// (`PATH=/x`), a reserved word (`if`) or a tilde or glob expansion.
///
/// A placeholder is refused (an error from [`Template::parse`], before anything
/// connects) inside `$'...'` or `$"..."`, inside backquotes, `$(...)`, `${...}`,
/// `$((...))` or `$[...]`, in a comment, in a here-document's delimiter or body, right
/// after an unescaped `$` (`${{v}}` would read as `$'...'`) or an unescaped backslash,
/// right after `$name` inside `"..."` (`"$HOME{{v}}"`: the value would extend the name), and
/// after any construct whose end the shells find differently or rexec cannot find
/// (`((...))`, `<<<`, `case` inside `$(...)`, a here-document inside `$(...)`, quotes
/// inside backquotes or `${...}`, `\'` inside `$'...'`, a here-document body with `\`,
/// `` ` ``, `$(` or `${`, a line continuation (`\` ending a line) that does not follow a
/// blank). A template without placeholders is never refused.
///
/// The promise is about the shell's reading of the line: the value reaches the command
/// as exactly the text it is. What the command does with it is the command's business:
/// `eval {{v}}`, `sh -c {{v}}`, and bash's arithmetic (`let {{v}}`, `[[ {{v}} -eq 1 ]]`,
/// array subscripts) run text as code. The remote shell must read the line as UTF-8 or a
/// single-byte charset (in GB18030, Big5 or Shift-JIS a second byte can be a backslash).
///
/// # Path templates ([`Template::parse_path`])
///
/// Values are put in raw: SFTP paths and local directories are not shell code. A value
/// containing NUL is an error.
///
/// ```
/// use rexec::Template;
///
/// let t = Template::parse("echo {{role}} \"in {{dc}}\" '{{ '{{' }}end}}'")?;
/// let line = t.render(|name| match name {
///     "role" => Some("a b; touch /tmp/pwned".to_owned()),
///     "dc" => Some("$HOME".to_owned()),
///     _ => None,
/// })?;
/// assert_eq!(line, r#"echo 'a b; touch /tmp/pwned' "in \$HOME" '{{end}}'"#);
///
/// let err = Template::parse("echo $'{{role}}'").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "{{role}} at 1:8 is inside $'...', where rexec cannot quote a value safely; \
///      move it outside the quotes"
/// );
/// # Ok::<(), rexec::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    kind: Kind,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shell,
    Path,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Value {
        name: String,
        at: Pos,
        quoting: Quoting,
    },
}

/// How a value is written where its placeholder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// Outside quotes: one single-quoted word.
    Word,
    /// Inside `'...'`.
    Single,
    /// Inside `"..."`.
    Double,
    /// As it is (paths).
    Raw,
}

/// A 1-based line and column (in characters) of the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Template {
    /// Parses a shell command line: finds its placeholders and the quoting context of
    /// each (see the type's documentation).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a placeholder in a context where rexec cannot
    /// quote a value; the message names the placeholder, its `line:column` and why.
    pub fn parse(text: &str) -> Result<Template> {
        let items = scan(text);
        let quotings = Lexer::new(&items).run()?;
        // Every placeholder has been placed or refused; never fall back to a guess.
        for (index, item) in items.iter().enumerate() {
            if let Item::Hole(name, at) = item {
                if quotings.get(index).copied().flatten().is_none() {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("{{{{{name}}}}} at {at}: rexec could not tell where it stands"),
                    ));
                }
            }
        }
        Ok(Template {
            source: text.to_owned(),
            kind: Kind::Shell,
            segments: segments(items, |hole| {
                quotings
                    .get(hole)
                    .copied()
                    .flatten()
                    .unwrap_or(Quoting::Word)
            }),
        })
    }

    /// Parses a path (a remote SFTP path or a local directory): placeholders and
    /// literals as for commands, values put in raw. Never fails.
    pub fn parse_path(text: &str) -> Template {
        Template {
            source: text.to_owned(),
            kind: Kind::Path,
            segments: segments(scan(text), |_| Quoting::Raw),
        }
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The names of the placeholders, each once, in order of first use.
    pub fn placeholders(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for segment in &self.segments {
            if let Segment::Value { name, .. } = segment {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// The template with each placeholder replaced by `lookup(name)`, quoted for its
    /// context (shell templates) or raw (path templates).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when `lookup` returns `None` for a placeholder (the
    /// message names it and its position) or a value contains NUL.
    pub fn render(&self, mut lookup: impl FnMut(&str) -> Option<String>) -> Result<String> {
        let mut out = String::with_capacity(self.source.len());
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Value { name, at, quoting } => {
                    let Some(value) = lookup(name) else {
                        let place = match self.kind {
                            Kind::Shell => format!("at {at}"),
                            Kind::Path => format!("in the path {:?}", self.source),
                        };
                        return Err(Error::new(
                            ErrorKind::InvalidInput,
                            format!("{{{{{name}}}}} {place} is not defined for this host"),
                        ));
                    };
                    if value.contains('\0') {
                        return Err(Error::new(
                            ErrorKind::InvalidInput,
                            format!("the value of {{{{{name}}}}} contains a NUL character"),
                        ));
                    }
                    push_value(&mut out, &value, *quoting);
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn push_value(out: &mut String, value: &str, quoting: Quoting) {
    match quoting {
        Quoting::Raw => out.push_str(value),
        Quoting::Word => {
            out.push('\'');
            push_value(out, value, Quoting::Single);
            out.push('\'');
        }
        Quoting::Single => {
            for c in value.chars() {
                if c == '\'' {
                    out.push_str("'\\''");
                } else {
                    out.push(c);
                }
            }
        }
        Quoting::Double => {
            for c in value.chars() {
                if matches!(c, '\\' | '"' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
}

/// A character of the template (literal text included) or a placeholder.
#[derive(Debug)]
enum Item {
    Char(char, Pos),
    Hole(String, Pos),
}

/// Splits the template text into characters and placeholders; literals `{{ '...' }}`
/// become their characters.
fn scan(text: &str) -> Vec<Item> {
    let chars: Vec<(char, Pos)> = positions(text);
    let mut items = Vec::with_capacity(chars.len());
    let mut backslashes = 0usize;
    let mut i = 0;
    while let Some(&(c, at)) = chars.get(i) {
        if c == '{' && backslashes.is_multiple_of(2) && char_at(&chars, i + 1) == Some('{') {
            if let Some((item, next)) = placeholder(&chars, i + 2) {
                match item {
                    Found::Hole(name) => items.push(Item::Hole(name, at)),
                    Found::Literal(text) => {
                        items.extend(text.chars().map(|c| Item::Char(c, at)));
                    }
                }
                backslashes = 0;
                i = next;
                continue;
            }
        }
        backslashes = if c == '\\' { backslashes + 1 } else { 0 };
        items.push(Item::Char(c, at));
        i += 1;
    }
    items
}

fn positions(text: &str) -> Vec<(char, Pos)> {
    let mut at = Pos { line: 1, column: 1 };
    text.chars()
        .map(|c| {
            let here = at;
            if c == '\n' {
                at = Pos {
                    line: at.line + 1,
                    column: 1,
                };
            } else {
                at.column += 1;
            }
            (c, here)
        })
        .collect()
}

fn char_at(chars: &[(char, Pos)], i: usize) -> Option<char> {
    chars.get(i).map(|(c, _)| *c)
}

enum Found {
    Hole(String),
    Literal(String),
}

/// The placeholder or literal whose body starts at `i` (just after `{{`), and the index
/// after its `}}`.
fn placeholder(chars: &[(char, Pos)], mut i: usize) -> Option<(Found, usize)> {
    let blank = |c: Option<char>| matches!(c, Some(' ' | '\t'));
    while blank(char_at(chars, i)) {
        i += 1;
    }
    let first = char_at(chars, i)?;
    let found = if first.is_ascii_alphabetic() || first == '_' {
        let mut name = String::new();
        while let Some(c) = char_at(chars, i).filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
            i += 1;
        }
        Found::Hole(name)
    } else if first == '\'' || first == '"' {
        i += 1;
        let mut text = String::new();
        loop {
            let c = char_at(chars, i)?;
            i += 1;
            if c == first {
                break;
            }
            text.push(c);
        }
        Found::Literal(text)
    } else {
        return None;
    };
    while blank(char_at(chars, i)) {
        i += 1;
    }
    (char_at(chars, i) == Some('}') && char_at(chars, i + 1) == Some('}')).then_some((found, i + 2))
}

/// The template's text and values, with each value's quoting from `quoting(hole index)`.
fn segments(items: Vec<Item>, quoting: impl Fn(usize) -> Quoting) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut text = String::new();
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Item::Char(c, _) => text.push(c),
            Item::Hole(name, at) => {
                if !text.is_empty() {
                    out.push(Segment::Text(std::mem::take(&mut text)));
                }
                out.push(Segment::Value {
                    name,
                    at,
                    quoting: quoting(index),
                });
            }
        }
    }
    if !text.is_empty() {
        out.push(Segment::Text(text));
    }
    out
}

/// Why a placeholder cannot go where it is.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    AnsiC,
    Locale,
    Backquote,
    CommandSubstitution,
    Parameter,
    Arithmetic,
    Comment,
    HeredocDelimiter,
    Heredoc,
    AfterDollar,
    AfterParameter,
    AfterBackslash,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::AnsiC => {
                "is inside $'...', where rexec cannot quote a value safely; move it outside the quotes"
            }
            Refusal::Locale => {
                "is inside $\"...\", where rexec cannot quote a value safely; move it outside the quotes"
            }
            Refusal::Backquote => {
                "is inside backquotes, where rexec cannot quote a value safely; assign it to a \
                 variable first (v={{...}}; then use \"$v\")"
            }
            Refusal::CommandSubstitution => {
                "is inside $(...), where rexec does not follow the shell's quoting; assign it to \
                 a variable first (v={{...}}; then use \"$v\")"
            }
            Refusal::Parameter => {
                "is inside ${...}, where rexec cannot quote a value safely; assign it to a \
                 variable first (v={{...}}; then use ${v...})"
            }
            Refusal::Arithmetic => {
                "is inside an arithmetic expression, which the shell evaluates as code; rexec \
                 will not put a value there"
            }
            Refusal::Comment => {
                "is in a comment, which a value with a line break would end; move it out of \
                 the comment"
            }
            Refusal::HeredocDelimiter => {
                "is in a here-document delimiter, where rexec will not put a value"
            }
            Refusal::Heredoc => {
                "is in a here-document, where rexec cannot quote a value safely; pass it as an \
                 argument or a variable instead"
            }
            Refusal::AfterDollar => {
                "is right after an unescaped $, where its quotes would read as $'...'; escape \
                 the $ (\\$) or separate the two"
            }
            Refusal::AfterParameter => {
                "is right after $name inside \"...\", where the value would extend the name; \
                 write ${name}"
            }
            Refusal::AfterBackslash => {
                "is right after an unescaped backslash, which would take the value's first \
                 quote; remove the backslash"
            }
        }
    }
}

/// Why lexing stopped early.
enum Stop {
    /// A placeholder that cannot be rendered.
    Refused(Error),
    /// A construct past which rexec cannot tell how every shell reads the line.
    Lost { what: &'static str, at: Pos },
}

type Lex<T = ()> = std::result::Result<T, Stop>;

/// A here-document waiting for its body (which starts after the next line break).
struct Heredoc {
    delimiter: String,
    quoted: bool,
    strip_tabs: bool,
}

/// Follows the shell's quoting through the items and records each placeholder's
/// quoting (indexed by item).
struct Lexer<'a> {
    items: &'a [Item],
    i: usize,
    quotings: Vec<Option<Quoting>>,
    /// Depth of `$(...)` around the current position.
    substitutions: usize,
    heredocs: Vec<Heredoc>,
}

impl<'a> Lexer<'a> {
    fn new(items: &'a [Item]) -> Lexer<'a> {
        Lexer {
            items,
            i: 0,
            quotings: items.iter().map(|_| None).collect(),
            substitutions: 0,
            heredocs: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Vec<Option<Quoting>>> {
        match self.commands() {
            Ok(()) => Ok(self.quotings),
            Err(Stop::Refused(e)) => Err(e),
            Err(Stop::Lost { what, at }) => {
                // Every placeholder before this point has been placed or refused.
                match self
                    .items
                    .get(self.i..)
                    .unwrap_or_default()
                    .iter()
                    .find_map(|item| match item {
                        Item::Hole(name, hole_at) => Some((name, *hole_at)),
                        Item::Char(..) => None,
                    }) {
                    None => Ok(self.quotings),
                    Some((name, hole_at)) => Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "{{{{{name}}}}} at {hole_at} comes after {what} at {at}, past which \
                             rexec cannot tell how every shell reads the line; move the \
                             placeholder before it"
                        ),
                    )),
                }
            }
        }
    }

    fn peek(&self) -> Option<&'a Item> {
        self.items.get(self.i)
    }

    fn char_ahead(&self, k: usize) -> Option<char> {
        match self.items.get(self.i + k) {
            Some(Item::Char(c, _)) => Some(*c),
            _ => None,
        }
    }

    fn at(&self) -> Pos {
        match self.items.get(self.i).or_else(|| self.items.last()) {
            Some(Item::Char(_, at) | Item::Hole(_, at)) => *at,
            None => Pos { line: 1, column: 1 },
        }
    }

    fn lost<T>(&self, what: &'static str) -> Lex<T> {
        Self::lost_at(what, self.at())
    }

    fn lost_at<T>(what: &'static str, at: Pos) -> Lex<T> {
        Err(Stop::Lost { what, at })
    }

    /// Records the quoting of the placeholder at the current position and moves past it.
    fn place(&mut self, quoting: Quoting) -> Lex {
        if self.substitutions > 0 {
            return self.refuse(Refusal::CommandSubstitution);
        }
        if let Some(slot) = self.quotings.get_mut(self.i) {
            *slot = Some(quoting);
        }
        self.i += 1;
        Ok(())
    }

    /// Refuses the placeholder at the current position.
    fn refuse<T>(&self, why: Refusal) -> Lex<T> {
        let (name, at) = match self.peek() {
            Some(Item::Hole(name, at)) => (name.as_str(), *at),
            _ => ("", self.at()),
        };
        Err(Stop::Refused(Error::new(
            ErrorKind::InvalidInput,
            format!("{{{{{name}}}}} at {at} {}", why.reason()),
        )))
    }

    /// A line break outside the command level while here-documents wait for their body:
    /// the shells differ on where such a body starts.
    fn line_break_inside(&self) -> Lex {
        if self.heredocs.is_empty() {
            Ok(())
        } else {
            self.lost("a line break inside quotes or a substitution before a here-document body")
        }
    }

    /// At a backslash outside single quotes: a line continuation (backslash, line break)
    /// is removed before the shell splits tokens (2.2.1), so it joins what is around it
    /// (`$\⏎(` is `$(`, `<\⏎<` is `<<`). rexec follows one only after a blank or a line
    /// break, where it cannot join anything.
    fn continuation(&self) -> Lex {
        if self.char_ahead(1) != Some('\n') {
            return Ok(());
        }
        let after_blank = match self.i.checked_sub(1).and_then(|i| self.items.get(i)) {
            None => true,
            Some(Item::Char(c, _)) => matches!(c, ' ' | '\t' | '\n'),
            Some(Item::Hole(..)) => false,
        };
        if after_blank {
            Ok(())
        } else {
            self.lost("a line continuation (\\ at the end of a line) inside a word")
        }
    }

    /// The command level (2.3 Token Recognition): the whole line, or the inside of a
    /// `$(...)` when `nested`, which ends at its unmatched `)`.
    fn commands(&mut self) -> Lex {
        self.command_level(false)
    }

    fn command_level(&mut self, nested: bool) -> Lex {
        let mut word_start = true;
        let mut parens = 0usize;
        while let Some(item) = self.peek() {
            let c = match item {
                Item::Hole(..) => {
                    self.place(Quoting::Word)?;
                    word_start = false;
                    continue;
                }
                Item::Char(c, _) => *c,
            };
            match c {
                '\\' => {
                    self.continuation()?;
                    self.i += 1;
                    match self.peek() {
                        Some(Item::Hole(..)) => return self.refuse(Refusal::AfterBackslash),
                        Some(Item::Char('\n', _)) => self.i += 1,
                        Some(Item::Char(..)) => {
                            self.i += 1;
                            word_start = false;
                        }
                        None => {}
                    }
                }
                '\'' => {
                    self.i += 1;
                    self.single()?;
                    word_start = false;
                }
                '"' => {
                    self.i += 1;
                    self.double(false)?;
                    word_start = false;
                }
                '`' => {
                    self.i += 1;
                    self.backquote()?;
                    word_start = false;
                }
                '$' => {
                    self.i += 1;
                    self.dollar(false)?;
                    word_start = false;
                }
                '#' if word_start => self.comment()?,
                '\n' => {
                    self.i += 1;
                    word_start = true;
                    if nested {
                        self.line_break_inside()?;
                    } else if !self.heredocs.is_empty() {
                        self.heredoc_bodies()?;
                    }
                }
                ' ' | '\t' | ';' | '&' | '|' | '>' => {
                    self.i += 1;
                    word_start = true;
                }
                '(' => {
                    if self.char_ahead(1) == Some('(') {
                        return self.lost("((");
                    }
                    self.i += 1;
                    parens += 1;
                    word_start = true;
                }
                ')' => {
                    self.i += 1;
                    word_start = true;
                    if nested {
                        if parens == 0 {
                            return Ok(());
                        }
                        parens -= 1;
                    }
                }
                '<' => {
                    if self.char_ahead(1) == Some('<') {
                        if self.char_ahead(2) == Some('<') {
                            return self.lost("<<<");
                        }
                        if nested {
                            return self.lost("a here-document inside $(...)");
                        }
                        self.i += 2;
                        self.heredoc_operator()?;
                    } else {
                        self.i += 1;
                    }
                    word_start = true;
                }
                _ => {
                    if nested && word_start && self.word_is("case") {
                        return self.lost("case inside $(...)");
                    }
                    self.i += 1;
                    word_start = false;
                }
            }
        }
        Ok(())
    }

    /// Whether the word at the current position is `word`.
    fn word_is(&self, word: &str) -> bool {
        word.chars()
            .enumerate()
            .all(|(k, c)| self.char_ahead(k) == Some(c))
            && !matches!(
                self.items.get(self.i + word.chars().count()),
                Some(Item::Char(c, _)) if c.is_ascii_alphanumeric() || *c == '_'
            )
    }

    /// Inside `'...'` (2.2.2): nothing is special but the closing quote.
    fn single(&mut self) -> Lex {
        while let Some(item) = self.peek() {
            match item {
                Item::Hole(..) => self.place(Quoting::Single)?,
                Item::Char('\'', _) => {
                    self.i += 1;
                    return Ok(());
                }
                Item::Char(c, _) => {
                    if *c == '\n' {
                        self.line_break_inside()?;
                    }
                    self.i += 1;
                }
            }
        }
        Ok(())
    }

    /// Inside `"..."` (2.2.3), or bash's `$"..."` when `locale`: `\`, `$` and `` ` ``
    /// stay special.
    fn double(&mut self, locale: bool) -> Lex {
        while let Some(item) = self.peek() {
            let c = match item {
                Item::Hole(..) if locale => return self.refuse(Refusal::Locale),
                Item::Hole(..) => {
                    self.place(Quoting::Double)?;
                    continue;
                }
                Item::Char(c, _) => *c,
            };
            if c == '\\' {
                self.continuation()?;
            }
            self.i += 1;
            match c {
                '"' => return Ok(()),
                '\\' => match self.peek() {
                    Some(Item::Hole(..)) => return self.refuse(Refusal::AfterBackslash),
                    Some(Item::Char(..)) => self.i += 1,
                    None => {}
                },
                '$' => self.dollar(true)?,
                '`' => self.backquote()?,
                '\n' => self.line_break_inside()?,
                _ => {}
            }
        }
        Ok(())
    }

    /// After an unescaped `$` (2.6): a parameter, a substitution, or bash's and zsh's
    /// `$'...'` and `$"..."` outside double quotes.
    fn dollar(&mut self, in_double: bool) -> Lex {
        match self.peek() {
            Some(Item::Hole(..)) => self.refuse(Refusal::AfterDollar),
            Some(Item::Char('{', _)) => {
                self.i += 1;
                self.parameter()
            }
            Some(Item::Char('(', _)) if self.char_ahead(1) == Some('(') => {
                self.i += 2;
                self.arithmetic('(', ')', 2)
            }
            Some(Item::Char('(', _)) => {
                self.i += 1;
                self.substitutions += 1;
                let inside = self.command_level(true);
                self.substitutions -= 1;
                inside
            }
            Some(Item::Char('[', _)) => {
                self.i += 1;
                self.arithmetic('[', ']', 1)
            }
            Some(Item::Char('\'', _)) if !in_double => {
                self.i += 1;
                self.ansi_c()
            }
            Some(Item::Char(c, _)) if in_double && (c.is_ascii_alphabetic() || *c == '_') => {
                while matches!(self.peek(), Some(Item::Char(c, _)) if c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.i += 1;
                }
                match self.peek() {
                    Some(Item::Hole(..)) => self.refuse(Refusal::AfterParameter),
                    _ => Ok(()),
                }
            }
            Some(Item::Char('"', _)) if !in_double => {
                self.i += 1;
                self.double(true)
            }
            _ => Ok(()),
        }
    }

    /// Inside bash's and zsh's `$'...'`. dash 0.5.12 reads `$'a\'b'` as `$` and `'a\'`:
    /// the end is only certain without `\'`.
    fn ansi_c(&mut self) -> Lex {
        while let Some(item) = self.peek() {
            match item {
                Item::Hole(..) => return self.refuse(Refusal::AnsiC),
                Item::Char(c, _) => {
                    let c = *c;
                    if c == '\\' && self.char_ahead(1) == Some('\'') {
                        return self.lost("\\' inside $'...'");
                    }
                    self.i += 1;
                    match c {
                        '\'' => return Ok(()),
                        '\\' => self.i += 1,
                        '\n' => self.line_break_inside()?,
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Inside `` `...` `` (2.6.3): ends at the first unescaped backquote; quotes, `$(`,
    /// comments and here-documents inside make the end uncertain ("undefined results").
    fn backquote(&mut self) -> Lex {
        let (mut single, mut double) = (false, false);
        while let Some(item) = self.peek() {
            let c = match item {
                Item::Hole(..) => return self.refuse(Refusal::Backquote),
                Item::Char(c, _) => *c,
            };
            match c {
                '\\' if self.char_ahead(1) == Some('\n') => {
                    return self.lost("a line continuation inside `...`");
                }
                '\\' => {
                    self.i += 1;
                    if let Some(Item::Hole(..)) = self.peek() {
                        return self.refuse(Refusal::Backquote);
                    }
                }
                '\'' if !double => single = !single,
                '"' if !single => double = !double,
                '`' if single || double => {
                    return self.lost("a backquote inside quotes inside `...`")
                }
                '`' => {
                    self.i += 1;
                    return Ok(());
                }
                '#' => return self.lost("# inside `...`"),
                '$' if self.char_ahead(1) == Some('(') => return self.lost("$( inside `...`"),
                '<' if self.char_ahead(1) == Some('<') => return self.lost("<< inside `...`"),
                '\n' => self.line_break_inside()?,
                _ => {}
            }
            self.i += 1;
        }
        Ok(())
    }

    /// Inside `${...}` (2.6.2): ends at the matching `}`; quotes, substitutions and plain
    /// braces inside make the end uncertain across shells.
    fn parameter(&mut self) -> Lex {
        let mut depth = 1usize;
        while let Some(item) = self.peek() {
            let c = match item {
                Item::Hole(..) => return self.refuse(Refusal::Parameter),
                Item::Char(c, _) => *c,
            };
            match c {
                '\\' if self.char_ahead(1) == Some('\n') => {
                    return self.lost("a line continuation inside ${...}");
                }
                '\\' => {
                    self.i += 1;
                    if let Some(Item::Hole(..)) = self.peek() {
                        return self.refuse(Refusal::Parameter);
                    }
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                '$' if self.char_ahead(1) == Some('{') => {
                    depth += 1;
                    self.i += 1;
                }
                '\'' | '"' | '`' | '{' => return self.lost("quotes or braces inside ${...}"),
                '$' if matches!(self.char_ahead(1), Some('(' | '[' | '\'' | '"')) => {
                    return self.lost("a substitution inside ${...}");
                }
                '\n' => self.line_break_inside()?,
                _ => {}
            }
            self.i += 1;
        }
        Ok(())
    }

    /// Inside `$((...))` or bash's `$[...]`, `depth` brackets deep: ends when the
    /// brackets balance; anything but plain text inside makes the end uncertain (bash
    /// reads `$((` as a command substitution when it is not arithmetic).
    fn arithmetic(&mut self, open: char, close: char, mut depth: usize) -> Lex {
        while let Some(item) = self.peek() {
            let c = match item {
                Item::Hole(..) => return self.refuse(Refusal::Arithmetic),
                Item::Char(c, _) => *c,
            };
            if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    self.i += 1;
                    return Ok(());
                }
            } else if matches!(c, '\'' | '"' | '`' | '\\' | '#' | '\n')
                || (c == '$' && matches!(self.char_ahead(1), Some('(' | '{' | '[')))
            {
                return self.lost("quotes or substitutions inside an arithmetic expression");
            }
            self.i += 1;
        }
        Ok(())
    }

    /// A comment (2.3 rule 9): from `#` at the start of a word to the line break.
    fn comment(&mut self) -> Lex {
        while let Some(item) = self.peek() {
            match item {
                Item::Hole(..) => return self.refuse(Refusal::Comment),
                Item::Char('\n', _) => return Ok(()),
                Item::Char(..) => self.i += 1,
            }
        }
        Ok(())
    }

    /// After `<<` (2.7.4): `-`, blanks, then the delimiter word, in the forms every shell
    /// reads alike: `WORD`, `'WORD'`, `"WORD"` or `\WORD`.
    fn heredoc_operator(&mut self) -> Lex {
        let strip_tabs = self.char_ahead(0) == Some('-');
        if strip_tabs {
            self.i += 1;
        }
        while matches!(self.char_ahead(0), Some(' ' | '\t')) {
            self.i += 1;
        }
        let start = self.at();
        let mut word = String::new();
        while let Some(item) = self.peek() {
            match item {
                Item::Hole(..) => return self.refuse(Refusal::HeredocDelimiter),
                Item::Char(c, _) => {
                    if c.is_whitespace() || ";&|()<>".contains(*c) {
                        break;
                    }
                    word.push(*c);
                    self.i += 1;
                }
            }
        }
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| !matches!(c, '\'' | '"' | '\\' | '$' | '`' | '{' | '}'))
        };
        let heredoc = |delimiter: &str, quoted| Heredoc {
            delimiter: delimiter.to_owned(),
            quoted,
            strip_tabs,
        };
        let unquoted = word
            .strip_prefix('\'')
            .and_then(|w| w.strip_suffix('\''))
            .or_else(|| word.strip_prefix('"').and_then(|w| w.strip_suffix('"')))
            .or_else(|| word.strip_prefix('\\'));
        let doc = match unquoted {
            Some(inner) if plain(inner) => heredoc(inner, true),
            None if plain(&word) => heredoc(&word, false),
            _ => return Self::lost_at("a here-document delimiter rexec cannot read", start),
        };
        self.heredocs.push(doc);
        Ok(())
    }

    /// The bodies of the waiting here-documents, right after the line break that ends
    /// their command line: each up to the line that is its delimiter.
    fn heredoc_bodies(&mut self) -> Lex {
        for doc in std::mem::take(&mut self.heredocs) {
            loop {
                if self.peek().is_none() {
                    return Ok(());
                }
                let start = self.at();
                let mut line = String::new();
                while let Some(item) = self.peek() {
                    match item {
                        Item::Hole(..) => return self.refuse(Refusal::Heredoc),
                        Item::Char('\n', _) => break,
                        Item::Char(c, _) => {
                            line.push(*c);
                            self.i += 1;
                        }
                    }
                }
                self.i += 1; // the line break
                let line = if doc.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    &line
                };
                if line == doc.delimiter {
                    break;
                }
                if !doc.quoted
                    && (line.contains(['\\', '`']) || line.contains("$(") || line.contains("${"))
                {
                    return Self::lost_at("a here-document body with \\, `, $( or ${", start);
                }
            }
        }
        Ok(())
    }
}
