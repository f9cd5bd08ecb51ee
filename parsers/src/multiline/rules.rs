//! The built-in stack-trace rules, one table per language.
//!
//! Each rule reads "in any of these states, a line matching this expression moves
//! to that state". `start` is the state between events. The tables follow what the
//! runtimes print: the JVM's `Exception: message` / `\tat frame` / `Caused by:`,
//! Python's `Traceback (most recent call last):` / `  File ...` / code line /
//! `Error: message`, Go's `panic:` / `goroutine N [running]:` / frame / `\tfile:line`,
//! Ruby's `file.rb:N:in 'method': message (Error)` / `\tfrom ...` (and Rails'
//! `Error (message):`), V8's `Error: message` / `    at frame`.

use super::config::Language;

/// The state between events.
pub(crate) const START: &str = "start";

/// One rule: (from states, expression, to state).
pub(crate) type RuleSpec = (&'static [&'static str], &'static str, &'static str);

const JAVA: &[RuleSpec] = &[
    (
        &[START, "java_start_exception"],
        r"(?:Exception|Error|Throwable|V8 errors stack trace)(?::|$)",
        "java_after_exception",
    ),
    (
        &["java_after_exception"],
        r"^[\t ]*nested exception is:[\t ]*",
        "java_start_exception",
    ),
    (
        &["java_after_exception"],
        r"^[\r\n]*$",
        "java_after_exception",
    ),
    // V8 stacks match these rules too; Node prints an error's own properties
    // after its last frame: `    at f (x.js:1:2) {`, `  code: 'E'`, `}`.
    (
        &["java_after_exception", "java"],
        r"^[\t ]+at .*\{$",
        "java_props",
    ),
    (
        &["java_props"],
        r"^[\t ]+(?:[\w$]+|'[^']*'|\[[^\]]+\]): ",
        "java_props",
    ),
    (&["java_props"], r"^\}$", START),
    (
        &["java_after_exception", "java"],
        r"^[\t ]+(?:eval )?at ",
        "java",
    ),
    (
        &["java_after_exception", "java"],
        r"^[\t ]+--- End of inner exception stack trace ---$",
        "java",
    ),
    (
        &["java_after_exception", "java"],
        r"^--- End of stack trace from previous location(?: where exception was thrown)? ---$",
        "java",
    ),
    (
        &["java_after_exception", "java"],
        r"^[\t ]*(?:Caused by|Suppressed):",
        "java_after_exception",
    ),
    (
        &["java_after_exception", "java"],
        r"^[\t ]*\.\.\. \d+ (?:more|common frames omitted)",
        "java",
    ),
];

const PYTHON: &[RuleSpec] = &[
    (
        &[START],
        r"^Traceback \(most recent call last\):$",
        "python",
    ),
    (&["python", "python_code"], r"^[\t ]+File ", "python_code"),
    // The code line under a `File` line (absent for code typed at a prompt).
    (&["python_code"], r"^[\t ]+\S", "python"),
    // Python 3.11+ marks the failing expression under the code line.
    (&["python"], r"^[\t ]+[~^]+[\t ]*$", "python"),
    // The last line names the exception; the event ends with it.
    (
        &["python", "python_code"],
        r"^(?:[^\s.():]+\.)*[^\s.():]+:",
        START,
    ),
    (
        &["python", "python_code"],
        r"^(?:\w+\.)*[A-Z]\w*(?:Error|Exception|Warning|Interrupt|Exit)$",
        START,
    ),
];

const GO: &[RuleSpec] = &[
    (&[START], r"\bpanic: ", "go_after_panic"),
    (&[START], r"http: panic serving", "go_goroutine"),
    (
        &["go_after_panic", "go_after_signal", "go_frame_1"],
        r"^$",
        "go_goroutine",
    ),
    (&["go_after_panic"], r"^\[signal ", "go_after_signal"),
    (
        &["go_goroutine"],
        r"^goroutine \d+ \[[^\]]+\]:$",
        "go_frame_1",
    ),
    (
        &["go_frame_1"],
        r"^(?:[^\s.:]+\.)*[^\s.():]+\(|^created by ",
        "go_frame_2",
    ),
    (&["go_frame_2"], r"^\s", "go_frame_1"),
];

const RUBY: &[RuleSpec] = &[
    // Rails: `ActionView::Template::Error (undefined method ...):`.
    (&[START], r"Error \(.*\):$", "ruby_before_rails_trace"),
    (&["ruby_before_rails_trace"], r"^  $", "ruby"),
    // The template excerpt Rails prints under a template error.
    (
        &["ruby_before_rails_trace"],
        r"^[\t ]+\d+: ",
        "ruby_before_rails_trace",
    ),
    (
        &["ruby_before_rails_trace", "ruby"],
        r"^[\t ]+.*?\.\w+:\d+:in ",
        "ruby",
    ),
    // Plain Ruby: `app.rb:3:in 'call': message (RuntimeError)`, then `\tfrom ...`.
    (
        &[START],
        r"\.rb:\d+:in .*\((?:[A-Z]\w*::)*[A-Z]\w*\)$",
        "ruby",
    ),
    (&["ruby"], r"^[\t ]+from .*?:\d+:in ", "ruby"),
];

const NODEJS: &[RuleSpec] = &[
    (
        &[START],
        r"(?:^|[\s:])(?:[A-Z][\w$]*)?Error(?: \[[A-Z_]+\])?(?::|$)",
        "js_after_error",
    ),
    // A frame followed by the error's own properties, as `util.inspect` prints
    // them: `    at f (x.js:1:2) {`, `  code: 'E'`, `}`.
    (&["js_after_error", "js"], r"^[\t ]+at .*\{$", "js_props"),
    (&["js_after_error", "js"], r"^[\t ]+at ", "js"),
    (
        &["js_props"],
        r"^[\t ]+(?:[\w$]+|'[^']*'|\[[^\]]+\]): ",
        "js_props",
    ),
    (&["js_props"], r"^\}$", START),
    (&["js"], r"^[\t ]*\.\.\. \d+ more", "js"),
    (
        &["js_after_error", "js"],
        r"^[\t ]*\[cause\]: ",
        "js_after_error",
    ),
];

/// The rules of `language`.
pub(crate) fn rules(language: Language) -> Vec<RuleSpec> {
    match language {
        Language::Java => JAVA.to_vec(),
        Language::Python => PYTHON.to_vec(),
        Language::Go => GO.to_vec(),
        Language::Ruby => RUBY.to_vec(),
        Language::Nodejs => NODEJS.to_vec(),
        Language::All => [JAVA, PYTHON, GO, RUBY, NODEJS].concat(),
    }
}
