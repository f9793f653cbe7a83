//! The page shell and the form pieces every page shares. Markup is escaped by maud; no page
//! carries inline script or style (the CSP forbids both).

use maud::{html, Markup, DOCTYPE};

use crate::api::{ApiFailure, Workspace};
use crate::assets;

/// What the header shows: the session's state and, inside a workspace, the switcher.
pub struct Nav<'a> {
    pub csrf: &'a str,
    pub signed_in: bool,
    pub workspace: Option<&'a Workspace>,
    pub workspaces: &'a [Workspace],
}

fn head(title: &str, refresh: Option<u32>) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · Ghostworks" }
        link rel="stylesheet" href=(assets::CSS.url());
        script src=(assets::JS.url()) defer {}
        @if let Some(s) = refresh {
            noscript { meta http-equiv="refresh" content=(s); }
        }
    }
}

/// A page without navigation (errors).
pub fn bare(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, None)) }
            body { main id="main" { (main) } }
        }
    }
}

pub fn layout(title: &str, nav: &Nav, main: Markup) -> Markup {
    layout_refreshing(title, nav, None, main)
}

/// A page that reloads itself every `refresh` seconds when script is off (script swaps the
/// live region instead).
pub fn layout_refreshing(title: &str, nav: &Nav, refresh: Option<u32>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, refresh)) }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/" { "Ghostworks" }
                    nav aria-label="Main" {
                        ul {
                            @if nav.signed_in {
                                li { a href="/workspaces" { "Workspaces" } }
                            }
                            li { a href="/tour" { "Tour" } }
                            li { a href="/ops" { "Operations" } }
                            @if !nav.signed_in {
                                li { a href="/login" { "Log in" } }
                                li { a href="/register" { "Register" } }
                            }
                        }
                    }
                    @if let Some(ws) = nav.workspace {
                        form class="switcher" method="get" action="/switch" {
                            label for="switch-workspace" { "Workspace" }
                            select id="switch-workspace" name="workspace" data-autosubmit {
                                @for w in nav.workspaces {
                                    option value=(w.id) selected[w.id == ws.id] { (w.name) }
                                }
                            }
                            button type="submit" { "Switch" }
                        }
                    }
                    @if nav.signed_in {
                        form class="logout" method="post" action="/logout" {
                            (csrf_field(nav.csrf))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                @if let Some(ws) = nav.workspace {
                    nav class="tabs" aria-label=(format!("{} sections", ws.name)) {
                        ul {
                            li { a href=(format!("/w/{}/artifacts", ws.id)) { "Artifacts" } }
                            li { a href=(format!("/w/{}/settings", ws.id)) { "Settings" } }
                            @if ws.can_manage() {
                                li { a href=(format!("/w/{}/members", ws.id)) { "Members" } }
                            }
                        }
                    }
                }
                div id="flash" role="status" aria-live="polite" {}
                main id="main" { (main) }
            }
        }
    }
}

pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(crate::session::CSRF_FIELD) value=(token); }
}

/// The form-level message for a refusal, announced to screen readers.
pub fn form_error(err: Option<&ApiFailure>) -> Markup {
    html! {
        @if let Some(e) = err {
            p class="error" role="alert" data-form-error { (e.summary()) }
        } @else {
            p class="error" role="alert" data-form-error hidden {}
        }
    }
}

/// A labelled input whose API error (if any) sits under it and is tied to it for assistive
/// technology; the value the user typed is always put back.
pub struct Field<'a> {
    label: &'a str,
    name: &'a str,
    kind: &'a str,
    value: &'a str,
    autocomplete: Option<&'a str>,
    hint: Option<&'a str>,
    required: bool,
    multiline: bool,
}

impl<'a> Field<'a> {
    pub fn new(label: &'a str, name: &'a str, value: &'a str) -> Self {
        Self {
            label,
            name,
            kind: "text",
            value,
            autocomplete: None,
            hint: None,
            required: false,
            multiline: false,
        }
    }

    pub fn kind(mut self, kind: &'a str) -> Self {
        self.kind = kind;
        self
    }

    pub fn auto(mut self, a: &'a str) -> Self {
        self.autocomplete = Some(a);
        self
    }

    pub fn hint(mut self, h: &'a str) -> Self {
        self.hint = Some(h);
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn multiline(mut self) -> Self {
        self.multiline = true;
        self
    }

    pub fn render(&self, err: Option<&ApiFailure>) -> Markup {
        let id = format!("f-{}", self.name);
        let msg = err.and_then(|e| e.field(self.name));
        let err_id = format!("{id}-error");
        let hint_id = format!("{id}-hint");
        let described = match (msg.is_some(), self.hint.is_some()) {
            (true, true) => Some(format!("{err_id} {hint_id}")),
            (true, false) => Some(err_id.clone()),
            (false, true) => Some(hint_id.clone()),
            (false, false) => None,
        };
        let invalid = msg.map(|_| "true");
        html! {
            div class="field" data-field=(self.name) {
                label for=(id) { (self.label) }
                @if let Some(h) = self.hint { span class="hint" id=(hint_id) { (h) } }
                @if self.multiline {
                    textarea id=(id) name=(self.name) rows="4" required[self.required]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()] { (self.value) }
                } @else {
                    input id=(id) name=(self.name) type=(self.kind) value=(self.value)
                        required[self.required] autocomplete=[self.autocomplete]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()];
                }
                p class="field-error" id=(err_id) hidden[msg.is_none()] { (msg.unwrap_or_default()) }
            }
        }
    }
}

/// A polyline chart of `points` (oldest first) as inline SVG, with a text summary for
/// screen readers.
pub fn chart(title: &str, unit: &str, series: &[(&str, &[f64])]) -> Markup {
    let (w, h) = (480.0_f64, 140.0_f64);
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let lines: Vec<(String, String, String)> = series
        .iter()
        .enumerate()
        .map(|(i, (name, pts))| {
            let n = pts.len().max(2) as f64 - 1.0;
            let path = pts
                .iter()
                .enumerate()
                .map(|(x, y)| format!("{:.1},{:.1}", x as f64 / n * w, h - y / max * (h - 10.0)))
                .collect::<Vec<_>>()
                .join(" ");
            let last = pts.last().copied().unwrap_or(0.0);
            (
                format!("series-{i}"),
                path,
                format!("{name}: {last:.2} {unit}"),
            )
        })
        .collect();
    html! {
        figure class="chart" {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {w} {h}")) preserveAspectRatio="none" role="img" aria-label=(format!("{title}; peak {max:.2} {unit}")) {
                line class="axis" x1="0" y1=(h) x2=(w) y2=(h) {}
                @for (class, path, _) in &lines {
                    polyline class=(class) fill="none" points=(path) {}
                }
            }
            ul class="legend" {
                @for (class, _, label) in &lines { li class=(class) { (label) } }
                li { "peak " (format!("{max:.2}")) " " (unit) }
            }
        }
    }
}

/// Text for a page-level notice from a query flag.
pub fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = text { p class="notice" role="status" { (t) } }
    }
}
