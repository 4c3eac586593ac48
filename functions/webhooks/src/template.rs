//! Subscription bodies: Go `text/template` (the `gotmpl` port) executed with the
//! [`EventView`](crate::view::EventView) as `.`, as Tsuru does (`docs/protocols.md` §5.3), so
//! `{{.Kind.Name}} event for {{.Target.Type}} named {{.Target.Value}}` works on every source.
//!
//! Differences from Tsuru, on purpose:
//! - A template that does not parse is refused when the subscription is written (Tsuru sends
//!   the raw text). An execution error fails that delivery, without retries.
//! - Event data is attacker-controlled and runs through every template, so execution is
//!   bounded: at most [`MAX_TEMPLATE_BYTES`] of source, no `{{define}}`, `{{block}}` or
//!   `{{template}}` (nested calls multiply work exponentially with depth), at most
//!   [`MAX_RANGE_ITERATIONS`] `range` iterations in all, at most [`MAX_OUTPUT_BYTES`] of output,
//!   and at most [`MAX_STRING_WORK_BYTES`] produced by the string functions (`print`, `printf`,
//!   `println`, `html`, `js`, `urlquery`, `json`) in one execution, which is what stops
//!   doubling a variable until memory runs out. Execution is synchronous CPU work bounded by
//!   these limits; async callers may run it on a blocking thread.
//! - One function more than Go: `json`, the JSON text of its argument (`{"text": {{json
//!   .Error}}}` is valid JSON whatever the error holds).

use crate::model::Subscription;
use crate::view::EventView;
use bytes::Bytes;
use gotmpl::parse::{Expr, ListNode, Node, Parser, PipeNode};
use gotmpl::{FuncMap, Value};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
pub const MAX_RANGE_ITERATIONS: u64 = 10_000;
pub const MAX_STRING_WORK_BYTES: usize = 4 * MAX_OUTPUT_BYTES;
/// More arguments than any sensible `printf` takes; it bounds the cached helper templates.
const MAX_FUNCTION_ARGS: usize = 32;
const STRING_FUNCTIONS: [&str; 6] = ["print", "printf", "println", "html", "js", "urlquery"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("body template is longer than {MAX_TEMPLATE_BYTES} bytes")]
    SourceTooLong,
    #[error("body template does not parse: {0}")]
    Parse(String),
    #[error("body template may not use define, block or template")]
    NestedTemplate,
    #[error("body template failed: {0}")]
    Exec(String),
    #[error("body template output exceeds {MAX_OUTPUT_BYTES} bytes")]
    OutputTooLarge,
    #[error("body template used more than {MAX_STRING_WORK_BYTES} bytes of string work")]
    WorkLimit,
    #[error("event view cannot be given to the template: {0}")]
    Data(String),
}

thread_local! {
    /// What the string functions may still produce in the execution running on this thread.
    /// Executions are synchronous, so a thread runs one at a time.
    static STRING_WORK_LEFT: Cell<usize> = const { Cell::new(0) };
    static WORK_EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

/// A parsed body template, checked against the limits above.
pub struct BodyTemplate {
    inner: gotmpl::Template,
}

impl std::fmt::Debug for BodyTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyTemplate")
    }
}

impl BodyTemplate {
    pub fn parse(source: &str) -> Result<BodyTemplate, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::SourceTooLong);
        }
        let (tree, defines) = Parser::new(source, "{{", "}}")
            .and_then(Parser::parse)
            .map_err(|e| TemplateError::Parse(e.to_string()))?;
        check_blocks(source).map_err(TemplateError::Parse)?;
        if !defines.is_empty() || calls_template(&tree) {
            return Err(TemplateError::NestedTemplate);
        }
        if let Some(unknown) = unknown_function(&tree) {
            return Err(TemplateError::Parse(format!(
                "function {unknown:?} not defined"
            )));
        }
        let inner = gotmpl::Template::new("body")
            .max_range_iters(MAX_RANGE_ITERATIONS)
            .funcs(guarded_functions())
            .parse(source)
            .map_err(|e| TemplateError::Parse(e.to_string()))?;
        Ok(BodyTemplate { inner })
    }

    /// Executes the template with `view` as `.`.
    pub fn render(&self, view: &EventView) -> Result<String, TemplateError> {
        let data = gotmpl::to_value(view).map_err(|e| TemplateError::Data(e.to_string()))?;
        self.render_value(&data)
    }

    fn render_value(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = CappedWriter::new(MAX_OUTPUT_BYTES);
        STRING_WORK_LEFT.with(|left| left.set(MAX_STRING_WORK_BYTES));
        WORK_EXCEEDED.with(|flag| flag.set(false));
        let result = self.inner.execute_fmt(&mut out, data);
        STRING_WORK_LEFT.with(|left| left.set(0));
        let work_exceeded = WORK_EXCEEDED.with(Cell::take);
        match result {
            Ok(()) => Ok(out.text),
            Err(_) if out.overflowed => Err(TemplateError::OutputTooLarge),
            Err(_) if work_exceeded => Err(TemplateError::WorkLimit),
            Err(e) => Err(TemplateError::Exec(e.to_string())),
        }
    }
}

/// The request body for one event: the rendered template, or without one the event view as
/// JSON (and then `application/json`). Tsuru sends the default body only with POST, PUT and
/// PATCH; so do we.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedBody {
    pub bytes: Bytes,
    /// The `Content-Type` to add unless the subscription's headers set one.
    pub content_type: Option<&'static str>,
}

pub fn render_body(
    subscription: &Subscription,
    view: &EventView,
) -> Result<RenderedBody, TemplateError> {
    if !subscription.body.is_empty() {
        let rendered = BodyTemplate::parse(&subscription.body)?.render(view)?;
        return Ok(RenderedBody {
            bytes: Bytes::from(rendered),
            content_type: None,
        });
    }
    let method = subscription.effective_method();
    if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        let json = serde_json::to_vec(view).map_err(|e| TemplateError::Data(e.to_string()))?;
        Ok(RenderedBody {
            bytes: Bytes::from(json),
            content_type: Some("application/json"),
        })
    } else {
        Ok(RenderedBody {
            bytes: Bytes::new(),
            content_type: None,
        })
    }
}

/// Checks that blocks nest as Go's parser requires. gotmpl 0.6 accepts an unclosed `{{if}}`,
/// a stray `{{end}}` or `{{else}}` (and silently drops what follows), which Go refuses; a
/// subscription with such a body would not send what its author wrote. This scans the actions
/// (skipping comments and quoted strings, which may hold `}}`) and follows their keywords.
fn check_blocks(source: &str) -> Result<(), String> {
    struct Frame<'s> {
        keyword: &'s str,
        plain_else: bool,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let bytes = source.as_bytes();
    let mut at = 0;
    let line = |offset: usize| source[..offset].matches('\n').count() + 1;
    while let Some(found) = source[at..].find("{{") {
        let start = at + found;
        let mut i = start + 2;
        // A trim marker is a dash followed by a space; "{{-3}}" is the number -3.
        if bytes.get(i) == Some(&b'-') && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if source[i..].starts_with("/*") {
            let close = source[i..]
                .find("*/")
                .ok_or_else(|| format!("line {}: unclosed comment", line(start)))?;
            let rest = i + close + 2;
            at = source[rest..]
                .find("}}")
                .map(|end| rest + end + 2)
                .ok_or_else(|| format!("line {}: unclosed comment", line(start)))?;
            continue;
        }
        let word_end = source[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(source.len(), |n| i + n);
        let keyword = &source[i..word_end];
        let mut rest_start = word_end;
        while bytes.get(rest_start).is_some_and(u8::is_ascii_whitespace) {
            rest_start += 1;
        }
        let next_word = source[rest_start..]
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        let here = line(start);
        match keyword {
            "if" | "range" | "with" | "define" | "block" => stack.push(Frame {
                keyword,
                plain_else: false,
            }),
            "end" => {
                stack
                    .pop()
                    .ok_or_else(|| format!("line {here}: unexpected {{{{end}}}}"))?;
            }
            "else" => {
                let frame = stack
                    .last_mut()
                    .filter(|f| matches!(f.keyword, "if" | "range" | "with"))
                    .ok_or_else(|| format!("line {here}: unexpected {{{{else}}}}"))?;
                if frame.plain_else {
                    return Err(format!(
                        "line {here}: expected {{{{end}}}}, found {{{{else}}}}"
                    ));
                }
                if !matches!(next_word, "if" | "with") {
                    frame.plain_else = true;
                }
            }
            "break" | "continue" if !stack.iter().any(|f| f.keyword == "range") => {
                return Err(format!(
                    "line {here}: {{{{{keyword}}}}} outside {{{{range}}}}"
                ));
            }
            _ => {}
        }
        at = action_end(source, word_end).ok_or_else(|| format!("line {here}: unclosed action"))?;
    }
    match stack.last() {
        Some(frame) => Err(format!(
            "unexpected EOF: {{{{{}}}}} has no {{{{end}}}}",
            frame.keyword
        )),
        None => Ok(()),
    }
}

/// The offset just past the `}}` that closes the action whose text continues at `from`.
fn action_end(source: &str, from: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i + 2),
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Every function a body may call: Go's builtins and `json`.
const FUNCTIONS: [&str; 20] = [
    "and", "call", "eq", "ge", "gt", "html", "index", "js", "json", "le", "len", "lt", "ne", "not",
    "or", "print", "printf", "println", "slice", "urlquery",
];

/// The first call of a function that does not exist. Go refuses these when parsing; gotmpl
/// only when executing, which would be too late: the subscription is already stored.
fn unknown_function(list: &ListNode) -> Option<String> {
    fn in_pipe(pipe: &PipeNode) -> Option<String> {
        pipe.commands
            .iter()
            .flat_map(|command| command.args.iter())
            .find_map(in_expr)
    }
    fn in_expr(expr: &Expr) -> Option<String> {
        match expr {
            Expr::Identifier(_, name) if !FUNCTIONS.contains(&name.as_str()) => {
                Some(name.to_string())
            }
            Expr::Pipe(_, pipe) => in_pipe(pipe),
            Expr::Chain(_, inner, _) => in_expr(inner),
            _ => None,
        }
    }
    list.nodes.iter().find_map(|node| match node {
        Node::Action(action) => in_pipe(&action.pipe),
        Node::List(inner) => unknown_function(inner),
        Node::If(branch) | Node::Range(branch) | Node::With(branch) => in_pipe(&branch.pipe)
            .or_else(|| unknown_function(&branch.body))
            .or_else(|| branch.else_body.as_ref().and_then(unknown_function)),
        Node::Template(call) => call.pipe.as_ref().and_then(in_pipe),
        _ => None,
    })
}

fn calls_template(list: &ListNode) -> bool {
    list.nodes.iter().any(|node| match node {
        Node::Template(_) | Node::Define(_) => true,
        Node::List(inner) => calls_template(inner),
        Node::If(branch) | Node::Range(branch) | Node::With(branch) => {
            calls_template(&branch.body) || branch.else_body.as_ref().is_some_and(calls_template)
        }
        _ => false,
    })
}

/// Collects output up to a cap, then fails the write (which stops the execution).
struct CappedWriter {
    text: String,
    cap: usize,
    overflowed: bool,
}

impl CappedWriter {
    fn new(cap: usize) -> Self {
        CappedWriter {
            text: String::new(),
            cap,
            overflowed: false,
        }
    }
}

impl std::fmt::Write for CappedWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > self.cap {
            self.overflowed = true;
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// Takes `bytes` from this execution's string-work budget, or fails the call.
fn charge(bytes: usize) -> gotmpl::Result<()> {
    let ok = STRING_WORK_LEFT.with(|left| match left.get().checked_sub(bytes) {
        Some(rest) => {
            left.set(rest);
            true
        }
        None => {
            left.set(0);
            false
        }
    });
    if ok {
        Ok(())
    } else {
        WORK_EXCEEDED.with(|flag| flag.set(true));
        Err(gotmpl::TemplateError::Exec(
            "string work limit exceeded".into(),
        ))
    }
}

/// An upper estimate of the text a value formats to, counting no further than `limit`.
fn text_size(value: &Value, limit: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        total += match value {
            Value::String(s) => s.len(),
            Value::Map(map) => {
                for (key, item) in map.iter() {
                    total += key.len() + 2;
                    stack.push(item);
                }
                5
            }
            Value::List(items) => {
                stack.extend(items.iter());
                2 + items.len()
            }
            // Numbers, booleans, nil and functions format to a few dozen bytes at most.
            _ => 32,
        };
        if total > limit {
            return total;
        }
    }
    total
}

/// The string functions, each charged to the execution's budget before it runs and for what
/// it produces, delegating to gotmpl's own builtin through a helper template.
fn guarded_functions() -> FuncMap {
    let mut functions = FuncMap::new();
    for name in STRING_FUNCTIONS {
        functions.insert(
            name.to_owned(),
            Arc::new(move |args: &[Value]| {
                let input: usize = args
                    .iter()
                    .map(|arg| text_size(arg, MAX_STRING_WORK_BYTES))
                    .fold(0usize, usize::saturating_add);
                charge(input)?;
                let output = call_builtin(name, args)?;
                charge(output.len())?;
                Ok(Value::String(output.into()))
            }),
        );
    }
    functions.insert(
        "json".to_owned(),
        Arc::new(|args: &[Value]| {
            let [arg] = args else {
                return Err(gotmpl::TemplateError::Exec(
                    "json takes one argument".into(),
                ));
            };
            charge(text_size(arg, MAX_STRING_WORK_BYTES))?;
            let text = serde_json::to_string(&to_json(arg))
                .map_err(|e| gotmpl::TemplateError::Exec(e.to_string()))?;
            charge(text.len())?;
            Ok(Value::String(text.into()))
        }),
    );
    functions
}

type HelperCache = Mutex<HashMap<(&'static str, usize), Arc<gotmpl::Template>>>;

/// `{{NAME (index . 0) (index . 1) ...}}` for each arity used, built once. gotmpl does not
/// export its builtins, and a fresh Template has them, so this is how a guard calls one.
static HELPERS: LazyLock<HelperCache> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn call_builtin(name: &'static str, args: &[Value]) -> gotmpl::Result<String> {
    if args.len() > MAX_FUNCTION_ARGS {
        return Err(gotmpl::TemplateError::Exec(format!(
            "{name} takes at most {MAX_FUNCTION_ARGS} arguments here"
        )));
    }
    let helper = {
        let mut cache = HELPERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match cache.get(&(name, args.len())) {
            Some(helper) => helper.clone(),
            None => {
                let mut source = format!("{{{{{name}");
                for index in 0..args.len() {
                    source.push_str(&format!(" (index . {index})"));
                }
                source.push_str("}}");
                let helper = Arc::new(gotmpl::Template::new(name).parse(&source)?);
                cache.insert((name, args.len()), helper.clone());
                helper
            }
        }
    };
    // The inputs were charged already, so the output is bounded (escaping at most multiplies
    // it by a small constant); the cap is a second fence.
    let mut out = CappedWriter::new(MAX_STRING_WORK_BYTES);
    helper
        .execute_fmt(&mut out, &Value::List(args.to_vec().into()))
        .inspect_err(|_| {
            if out.overflowed {
                WORK_EXCEEDED.with(|flag| flag.set(true));
            }
        })?;
    Ok(out.text)
}

fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::Uint(n) => J::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => J::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
        Value::Function(_) => J::Null,
        // gotmpl's `html` feature adds a variant; another crate enabling it must not break this.
        #[allow(unreachable_patterns)]
        _ => J::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Kind, Target};
    use chrono::TimeZone;
    use hub_core::{Event, Source};
    use serde_json::json;

    const TSURU_EXAMPLE: &str = "{{.Kind.Name}} event for {{.Target.Type}} named {{.Target.Value}}";

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
    }

    fn render(source: &str, view: &EventView) -> Result<String, TemplateError> {
        BodyTemplate::parse(source)?.render(view)
    }

    fn stack_view() -> EventView {
        let e = Event::new(
            Source::Stack,
            "e-1",
            "UPDATE_ROLLBACK_COMPLETE",
            "web",
            r#"{"StatusReason":"quota \"exceeded\"","Outputs":[{"OutputKey":"Url","OutputValue":"https://x"}],"Count":3}"#,
            at(),
        )
        .alias(Some("id-9".into()));
        EventView::from_event(&e)
    }

    #[test]
    fn tsuru_example_renders_on_every_source() {
        let events = [
            Event::new(Source::Stack, "a", "UPDATE_COMPLETE", "web", "{}", at()),
            Event::new(
                Source::S3,
                "b",
                "ObjectCreated:Put",
                "photos/cat.jpg",
                "{}",
                at(),
            ),
            Event::new(
                Source::Dingtalk,
                "c",
                "bpms_task_change",
                "proc-1",
                "{}",
                at(),
            ),
            Event::new(Source::Mns, "d", "orders", "orders", "{}", at()),
        ];
        let expected = [
            "stack.UPDATE_COMPLETE event for stack named web",
            "s3.ObjectCreated.Put event for s3-object named photos/cat.jpg",
            "dingtalk.bpms_task_change event for dingtalk-subject named proc-1",
            "mns.orders event for mns-topic named orders",
        ];
        let template = BodyTemplate::parse(TSURU_EXAMPLE).unwrap();
        for (event, expected) in events.iter().zip(expected) {
            assert_eq!(
                template.render(&EventView::from_event(event)).unwrap(),
                expected
            );
        }
        // Tsuru's own test: app.update.env.set for app myapp.
        let mut view = stack_view();
        view.kind = Kind {
            kind_type: "permission".into(),
            name: "app.update.env.set".into(),
        };
        view.target = Target::new("app", "myapp");
        assert_eq!(
            template.render(&view).unwrap(),
            "app.update.env.set event for app named myapp"
        );
    }

    #[test]
    fn control_flow_and_functions_work_on_the_view() {
        let view = stack_view();
        let source = r#"{{if .Error}}FAILED: {{.Error}}{{else}}ok{{end}}|{{range .ExtraTargets}}{{.Target.Type}}={{.Target.Value}};{{end}}|{{with .Payload.Outputs}}{{(index . 0).OutputValue}}{{end}}|{{len .Payload.Outputs}}|{{if eq .Source "stack"}}s{{end}}|{{printf "%s/%d" .Target.Value .Payload.Count}}|{{.Payload.Missing}}"#;
        assert_eq!(
            render(source, &view).unwrap(),
            r#"FAILED: quota "exceeded"|stack-id=id-9;|https://x|1|s|web/3|<no value>"#
        );
    }

    #[test]
    fn json_function_makes_valid_json_bodies() {
        let view = stack_view();
        let out = render(
            r#"{"text": {{json .Error}}, "kind": {{json .Kind}}, "n": {{json .Payload.Count}}}"#,
            &view,
        )
        .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            parsed,
            json!({"text": "quota \"exceeded\"", "kind": {"Name": "stack.UPDATE_ROLLBACK_COMPLETE", "Type": "stack"}, "n": 3})
        );
        assert!(matches!(
            render("{{json}}", &view),
            Err(TemplateError::Exec(_))
        ));
    }

    #[test]
    fn parse_errors_are_reported() {
        for bad in [
            "ahoy {{ --",
            "{{.Kind.Name",
            "{{if .Error}}x",
            "{{end}}",
            "a{{end}}b",
            "{{else}}",
            "{{range .ExtraTargets}}x{{else}}y{{else}}z{{end}}",
            "{{if 1}}{{else}}{{else if 2}}{{end}}",
            "{{with .Kind}}{{range .Name}}{{end}}",
            "{{break}}",
            "{{if 1}}{{continue}}{{end}}",
            "{{nosuchfunc 1}}",
            "{{if 1}}{{printf \"%s\" (upper .Kind.Name)}}{{end}}",
            "{{range .ExtraTargets}}{{else}}{{.Target | toJson}}{{end}}",
        ] {
            assert!(
                matches!(BodyTemplate::parse(bad), Err(TemplateError::Parse(_))),
                "{bad}"
            );
        }
        for good in [
            "plain text, no actions",
            "{{if 1}}a{{else if 2}}b{{else with .Kind}}c{{else}}d{{end}}",
            "{{range .ExtraTargets}}{{if .Lock}}{{break}}{{end}}{{continue}}{{end}}",
            "{{/* {{end}} in a comment */}}{{- /* trimmed */ -}}",
            r#"{{printf "}} {{end}} %s" "x"}}{{print `{{else}}`}}{{print '}'}}"#,
            "{{- if 1 -}} a {{- end -}}",
            "{{-3}}",
            // Words that start like keywords are not keywords.
            "{{with .Kind}}{{index $.ExtraTargets 0}}{{end}}{{$end := 1}}{{$end}}",
        ] {
            let result = BodyTemplate::parse(good);
            assert!(result.is_ok(), "{good}: {result:?}");
        }
    }

    #[test]
    fn nested_templates_are_refused() {
        for bad in [
            r#"{{define "x"}}a{{end}}{{template "x"}}"#,
            r#"{{block "x" .}}a{{end}}"#,
            r#"{{if .Error}}{{else}}{{range .ExtraTargets}}{{template "body" .}}{{end}}{{end}}"#,
        ] {
            assert_eq!(
                BodyTemplate::parse(bad).unwrap_err(),
                TemplateError::NestedTemplate,
                "{bad}"
            );
        }
    }

    #[test]
    fn source_size_is_capped() {
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert_eq!(
            BodyTemplate::parse(&long).unwrap_err(),
            TemplateError::SourceTooLong
        );
        assert!(BodyTemplate::parse(&"x".repeat(MAX_TEMPLATE_BYTES)).is_ok());
    }

    #[test]
    fn deep_nesting_is_a_parse_error_not_a_crash() {
        let deep = format!("{{{{{}1{}}}}}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(
            BodyTemplate::parse(&deep),
            Err(TemplateError::Parse(_)) | Err(TemplateError::SourceTooLong)
        ));
        let ifs = format!("{}x{}", "{{if 1}}".repeat(1000), "{{end}}".repeat(1000));
        assert!(ifs.len() <= MAX_TEMPLATE_BYTES);
        let err = BodyTemplate::parse(&ifs).unwrap_err();
        assert!(err.to_string().contains("depth"), "{err}");
        // Nesting within the parser's limit executes within the executor's.
        let fifty = format!("{}x{}", "{{with .}}".repeat(50), "{{end}}".repeat(50));
        assert_eq!(render(&fifty, &stack_view()).unwrap(), "x");
    }

    #[test]
    fn output_is_capped() {
        let view = stack_view();
        let err = render(r#"{{range 100000}}0123456789abcdef{{end}}"#, &view).unwrap_err();
        // Either fence may trip first; neither lets the output grow past the cap.
        assert!(
            matches!(err, TemplateError::OutputTooLarge | TemplateError::Exec(_)),
            "{err:?}"
        );
        let big = "y".repeat(MAX_TEMPLATE_BYTES - 100);
        let err = render(&format!("{{{{range 20}}}}{big}{{{{end}}}}"), &view).unwrap_err();
        assert_eq!(err, TemplateError::OutputTooLarge);
    }

    #[test]
    fn range_iterations_are_capped() {
        let view = stack_view();
        let err = render("{{range 20000}}{{end}}", &view).unwrap_err();
        assert!(err.to_string().contains("range"), "{err}");
        assert_eq!(render("{{range 100}}{{end}}done", &view).unwrap(), "done");
    }

    #[test]
    fn doubling_a_string_is_stopped_by_the_work_limit() {
        let view = stack_view();
        let mut source = String::from(r#"{{$x := "0123456789abcdef0123456789abcdef"}}"#);
        for _ in 0..40 {
            source.push_str("{{$x = printf \"%s%s\" $x $x}}");
        }
        source.push_str("{{len $x}}");
        assert_eq!(
            render(&source, &view).unwrap_err(),
            TemplateError::WorkLimit
        );
        // Repeating cheap work without output is stopped too.
        let repeated = r#"{{range 10000}}{{$y := print $.Payload $.Payload $.Payload}}{{end}}"#;
        let mut big = stack_view();
        big.payload = json!({"blob": "z".repeat(100_000)});
        assert_eq!(
            render(repeated, &big).unwrap_err(),
            TemplateError::WorkLimit
        );
    }

    #[test]
    fn budget_is_per_execution() {
        // Each render may use most of the budget; a previous one must not eat into the next.
        let template =
            BodyTemplate::parse(r#"{{$a := printf "%s" .Payload.blob}}{{len $a}}"#).unwrap();
        let mut view = stack_view();
        view.payload = json!({"blob": "z".repeat(MAX_STRING_WORK_BYTES / 3)});
        for _ in 0..5 {
            assert_eq!(
                template.render(&view).unwrap(),
                (MAX_STRING_WORK_BYTES / 3).to_string()
            );
        }
    }

    #[test]
    fn guarded_functions_keep_go_semantics() {
        let view = stack_view();
        assert_eq!(
            render(r#"{{print "a" 1 2 "b"}}|{{println "x" 3}}|{{html "<a&b>"}}|{{urlquery "a b&c"}}|{{js "it's"}}|{{printf "%05d|%-4s|%v" 42 "ab" true}}"#, &view).unwrap(),
            "a1 2b|x 3\n|&lt;a&amp;b&gt;|a+b%26c|it\\'s|00042|ab  |true"
        );
        assert_eq!(
            render("{{.Kind.Name | printf \"<%s>\"}}", &view).unwrap(),
            "<stack.UPDATE_ROLLBACK_COMPLETE>"
        );
    }

    #[test]
    fn execution_errors_are_exec_errors() {
        let view = stack_view();
        for bad in [
            "{{index .ExtraTargets 5}}",
            "{{eq .Payload .Payload}}",
            "{{len 3}}",
        ] {
            assert!(
                matches!(render(bad, &view), Err(TemplateError::Exec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn default_body_is_the_view_as_json_for_methods_with_bodies() {
        let view = stack_view();
        let mut sub: Subscription = serde_json::from_value(json!({
            "name": "s", "url": "https://example.com/hook"
        }))
        .unwrap();
        let body = render_body(&sub, &view).unwrap();
        assert_eq!(body.content_type, Some("application/json"));
        let parsed: EventView = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(parsed, view);

        sub.method = "get".into();
        let body = render_body(&sub, &view).unwrap();
        assert!(body.bytes.is_empty());
        assert_eq!(body.content_type, None);

        sub.body = TSURU_EXAMPLE.into();
        let body = render_body(&sub, &view).unwrap();
        assert_eq!(
            body.bytes,
            Bytes::from("stack.UPDATE_ROLLBACK_COMPLETE event for stack named web")
        );
        assert_eq!(
            body.content_type, None,
            "Tsuru adds no Content-Type to templates"
        );
    }
}
