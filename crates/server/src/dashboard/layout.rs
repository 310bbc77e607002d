//! The page around every page: head, navigation, sign-out; and the small pieces pages share
//! (times in words, error boxes, the CSRF field).

use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// The navigation: (key, label, path). Reports and notifications are places to be filled.
const NAV: &[(&str, &str, &str)] = &[
    ("accounts", "Accounts", "/accounts"),
    ("new", "New connection", "/accounts/new"),
    ("sql", "SQL", "/sql"),
    ("reports", "Reports", "/reports"),
    ("notifications", "Notifications", "/notifications"),
    ("settings", "Settings", "/settings"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · stripe-mirror" }
            // No icon to fetch (a missing one is a failed request in the console).
            link rel="icon" href="data:,";
            link rel="stylesheet" href="/static/dashboard.css";
            script src="/static/dashboard.js" defer {}
        }
    }
}

/// A page for a signed-in person; `current` is the navigation entry it belongs to.
pub fn shell(session: &Session, title: &str, current: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/accounts" { "stripe-mirror" }
                    nav aria-label="Main" {
                        ul {
                            @for (key, label, path) in NAV {
                                li {
                                    @if *key == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/signout" {
                        (csrf(session))
                        span.who { "Signed in with " code { (session.token.name) }
                            @if session.read_only() { " (read-only)" } }
                        button.link type="submit" { "Sign out" }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A page without navigation (sign-in, refusals).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { span.brand { "stripe-mirror" } }
                main #main.narrow { (body) }
            }
        }
    }
}

/// The sign-in page, with an error in words when the last try failed.
pub fn signin(next: &str, error: Option<&str>) -> Markup {
    bare(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p { "Sign in with an API token of this mirror. Make one on the machine that runs it:" }
            pre { code { "stripe-mirror token create --name my-laptop" } }
            @if let Some(error) = error {
                (error_box(error, None))
            }
            form method="post" action="/signin" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password"
                    required placeholder="smt_…" autofocus;
                button.primary type="submit" { "Sign in" }
            }
        },
    )
}

/// The CSRF field every form carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

/// An error in words, with what to do.
pub fn error_box(message: &str, hint: Option<&str>) -> Markup {
    html! {
        div.error role="alert" {
            p { strong { "Not done: " } (message) }
            @if let Some(hint) = hint { p { "What to do: " (hint) } }
        }
    }
}

/// A notice that something was done.
pub fn done_box(message: &str) -> Markup {
    html! { div.done role="status" { (message) } }
}

/// `3 min ago`, with the exact time (UTC) on hover and for machines.
pub fn ago(unix: Option<i64>, now: i64) -> Markup {
    match unix {
        None => html! { span.muted { "never" } },
        Some(at) => {
            let exact = sm_stripe::http_date::iso(at);
            html! { time datetime=(exact.replace(' ', "T") + "Z") title=(exact.clone() + " UTC") { (words_ago(now - at)) } }
        }
    }
}

/// A duration in the past, in words.
pub fn words_ago(secs: i64) -> String {
    match secs {
        i64::MIN..=9 => "just now".into(),
        10..=59 => format!("{secs} s ago"),
        60..=3_599 => format!("{} min ago", secs / 60),
        3_600..=86_399 => format!("{} h ago", secs / 3_600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A duration, in words: `4.2 s`, `3 min 5 s`.
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let whole = secs as u64;
        format!("{} min {} s", whole / 60, whole % 60)
    }
}

/// A count with thousands separated: `1,045,507`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
