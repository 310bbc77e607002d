//! What the benchmarks share: readings of this machine from /proc (CPU ticks per process, thread
//! and machine, memory, load) and the small number helpers their reports use. Linux only, as
//! the benchmarks are.

use std::time::Duration;

use serde_json::Value;

/// A `Vm…` line (`VmHWM`, `VmRSS`, …) of /proc/{pid}/status, in kB; 0 when unreadable.
pub fn vm_kb_of(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// A `Vm…` line of this process's status, in kB.
pub fn vm_kb(field: &str) -> u64 {
    vm_kb_of("self", field)
}

/// utime + stime of a `/proc/…/stat` file's text, in ticks.
pub fn stat_ticks(stat: &str) -> u64 {
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> u64 { fields.get(n).and_then(|f| f.parse().ok()).unwrap_or(0) };
    field(11) + field(12)
}

/// CPU ticks of a whole process (`self` for this one).
pub fn process_ticks(pid: &str) -> u64 {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// CPU ticks of a process's threads whose name starts with `prefix`.
pub fn thread_ticks(pid: &str, prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with(prefix))
        })
        .map(|task| {
            stat_ticks(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default())
        })
        .sum()
}

/// Busy and total ticks of the whole machine (all cores), from /proc/stat.
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// The one-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// Seconds (negative taken as 0) as a duration.
pub fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

/// `value` rounded to `places` decimals, for reports.
pub fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

/// Objects in a full list page, as the benchmarks ask for them.
pub const PAGE_LIMIT: usize = 100;

/// What a client needs from a list page.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub last_id: Option<String>,
    pub has_more: bool,
    pub count: u64,
}

/// The whole page through serde_json, as a real client reads it.
pub fn parse_page(body: &[u8]) -> Option<Page> {
    let page: Value = serde_json::from_slice(body).ok()?;
    let data = page["data"].as_array()?;
    Some(Page {
        last_id: data
            .last()
            .and_then(|o| o["id"].as_str())
            .map(str::to_owned),
        has_more: page["has_more"].as_bool()?,
        count: data.len() as u64,
    })
}

/// The last object's id and `has_more`, reading only the end of the body: the emulator and the
/// mirror render
/// `{"object":"list","data":[…],"has_more":…,"url":"…"}`, so the last object is found by walking
/// back from the `]` before `"has_more"` to its opening brace, then its top-level `"id"` read.
/// A full page (`has_more`) holds `limit` objects; the short last page is counted by parsing it.
pub fn scan_page(body: &[u8]) -> Option<Page> {
    const TAIL: &[u8] = b"],\"has_more\":";
    let tail = body.windows(TAIL.len()).rposition(|w| w == TAIL)?;
    let has_more = body[tail + TAIL.len()..].starts_with(b"true");
    if !has_more {
        // The last page: only its size matters (the walk starts again at the top).
        return Some(Page {
            last_id: None,
            has_more,
            count: count_objects(body)?,
        });
    }
    let end = tail.checked_sub(1)?;
    if body[end] != b'}' {
        return None;
    }
    // Back to the brace that opens the last object, skipping strings.
    let (mut depth, mut in_string, mut start) = (0usize, false, None);
    let mut i = end + 1;
    while i > 0 {
        i -= 1;
        let c = body[i];
        if in_string {
            if c == b'"' && body[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0 {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'}' | b']' => depth += 1,
            b'{' | b'[' => {
                depth -= 1;
                if depth == 0 {
                    start = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let object = &body[start?..=end];
    // Forward through the object for its own `"id":"…"` (depth 1, at a string's start).
    const ID: &[u8] = b"\"id\":\"";
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &c) in object.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => {
                if depth == 1 && object[i..].starts_with(ID) {
                    let value = &object[i + ID.len()..];
                    let len = value.iter().position(|&b| b == b'"')?;
                    let id = std::str::from_utf8(&value[..len]).ok()?;
                    return Some(Page {
                        last_id: Some(id.to_owned()),
                        has_more,
                        count: PAGE_LIMIT as u64,
                    });
                }
                in_string = true;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// How many objects a list page's `data` holds, by counting the braces that open its elements.
fn count_objects(body: &[u8]) -> Option<u64> {
    const DATA: &[u8] = b"\"data\":[";
    let start = body.windows(DATA.len()).position(|w| w == DATA)? + DATA.len();
    let (mut depth, mut in_string, mut escaped, mut count) = (0usize, false, false, 0u64);
    for &c in &body[start..] {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => {
                if depth == 0 {
                    count += 1;
                }
                depth += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    return Some(count);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// `serve` syncs every account once at start: wait for that run, so it does not overlap.
pub async fn wait_for_first_sync(
    base: &str,
    label: &str,
    token: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let health: serde_json::Value = serde_json::from_slice(
            &http
                .get(format!("{base}/healthz"))
                .bearer_auth(token)
                .send()
                .await?
                .bytes()
                .await?,
        )?;
        let account = &health["accounts"][label];
        if !account["last_success"].is_null() {
            return Ok(());
        }
        if !account["last_error"].is_null() {
            return Err(format!("serve's first sync failed: {health}").into());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("serve's first sync did not end within 60 s: {health}").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheap_scan_finds_the_last_top_level_id() {
        let body = br#"{"object":"list","data":[{"a":{"id":"x_1"},"id":"ch_1"},{"b":"\"}{","c":[{"id":"re_9"}],"id":"ch_2","z":{"id":"q"}}],"has_more":true,"url":"/v1/charges"}"#;
        assert_eq!(
            scan_page(body),
            Some(Page {
                last_id: Some("ch_2".into()),
                has_more: true,
                count: PAGE_LIMIT as u64
            })
        );
        let last = br#"{"object":"list","data":[{"id":"ch_1","x":["}"]},{"id":"ch_2"}],"has_more":false,"url":"/v1/charges"}"#;
        assert_eq!(
            scan_page(last),
            Some(Page {
                last_id: None,
                has_more: false,
                count: 2
            })
        );
        let empty = br#"{"object":"list","data":[],"has_more":false,"url":"/v1/charges"}"#;
        assert_eq!(scan_page(empty).map(|p| p.count), Some(0));
    }
}
