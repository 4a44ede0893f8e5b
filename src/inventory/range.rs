//! Ansible host ranges: `web[01:20].example.com`, `db-[a:c]`, `node[0:10:2]`.
//!
//! Every inventory format accepts them in host names (INI host lines, YAML host keys,
//! tend.toml host tables and group `hosts` lists), so a fleet of twenty web servers is
//! one line. The rules are Ansible's: a numeric range whose start has a leading zero is
//! zero-padded to that width (start and end must then have the same width), letters
//! range over single ASCII letters, an optional third field is the step, and a name may
//! hold several ranges (`r[1:2]-n[a:b]` is four hosts).

/// The most hosts one name may expand to, its ranges multiplied together
/// (`h[0:999]x[0:999]` is a million).
pub(crate) const MAX_PER_NAME: usize = 100_000;

/// Expand every `[start:end(:step)]` in `name`; a name without brackets is returned as is.
/// The error says what is wrong with the range; the caller adds where it was written.
pub(crate) fn expand(name: &str) -> Result<Vec<String>, String> {
    let Some(open) = name.find('[') else {
        return Ok(vec![name.to_string()]);
    };
    let close = name[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("host range in `{name}` has `[` without a closing `]`"))?;
    let head = &name[..open];
    let inner = &name[open + 1..close];
    let tail = &name[close + 1..];

    let fields: Vec<&str> = inner.split(':').collect();
    if fields.len() < 2 || fields.len() > 3 {
        return Err(format!(
            "host range `[{inner}]` in `{name}` must be `[start:end]` or `[start:end:step]`, \
             e.g. `web[01:20]` or `db-[a:c]`"
        ));
    }
    let (beg, end) = (fields[0].trim(), fields[1].trim());
    let step = match fields.get(2).map(|s| s.trim()) {
        None | Some("") => 1,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "host range step `{s}` in `{name}` must be a positive whole number"
                ))
            }
        },
    };
    if end.is_empty() {
        return Err(format!(
            "host range in `{name}` has no end: write `[start:end]`"
        ));
    }
    let beg = if beg.is_empty() { "0" } else { beg };

    let middles: Vec<String> = if let (Some(b), Some(e)) = (single_letter(beg), single_letter(end))
    {
        if b > e {
            return Err(format!(
                "host range `[{inner}]` in `{name}`: `{beg}` comes after `{end}`"
            ));
        }
        (b..=e).step_by(step).map(|c| c.to_string()).collect()
    } else {
        let (b, e) = match (beg.parse::<u64>(), end.parse::<u64>()) {
            (Ok(b), Ok(e)) => (b, e),
            _ => {
                return Err(format!(
                    "host range `[{inner}]` in `{name}` must be numbers (`[01:20]`) or single \
                     letters (`[a:f]`)"
                ))
            }
        };
        if b > e {
            return Err(format!(
                "host range `[{inner}]` in `{name}`: {beg} is greater than {end}"
            ));
        }
        let width = if beg.len() > 1 && beg.starts_with('0') {
            if beg.len() != end.len() {
                return Err(format!(
                    "host range `[{inner}]` in `{name}`: a zero-padded start and its end must \
                     have the same number of digits (e.g. `[01:20]`)"
                ));
            }
            beg.len()
        } else {
            0
        };
        if (e - b) / step as u64 >= MAX_PER_NAME as u64 {
            return Err(format!(
                "host range `[{inner}]` in `{name}` would make more than {MAX_PER_NAME} hosts"
            ));
        }
        (b..=e)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    };

    let tails = expand(tail)?;
    // Each range is capped above; checked before allocating, their product is too.
    if middles.len().saturating_mul(tails.len()) > MAX_PER_NAME {
        return Err(format!(
            "the ranges in `{name}` would make {} hosts together, more than {MAX_PER_NAME}; \
             split it into smaller ranges or groups",
            middles.len() as u128 * tails.len() as u128
        ));
    }
    let mut out = Vec::with_capacity(middles.len() * tails.len());
    for m in &middles {
        for t in &tails {
            out.push(format!("{head}{m}{t}"));
        }
    }
    Ok(out)
}

fn single_letter(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{expand, MAX_PER_NAME};

    #[test]
    fn inventory_range_numeric_keeps_zero_padding() {
        assert_eq!(
            expand("web[01:03].example.com").unwrap(),
            [
                "web01.example.com",
                "web02.example.com",
                "web03.example.com"
            ]
        );
        assert_eq!(expand("n[8:10]").unwrap(), ["n8", "n9", "n10"]);
        assert_eq!(expand("n[0:6:3]").unwrap(), ["n0", "n3", "n6"]);
        assert_eq!(expand("n[:1]").unwrap(), ["n0", "n1"]);
    }

    #[test]
    fn inventory_range_letters_and_several_ranges() {
        assert_eq!(expand("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        assert_eq!(
            expand("r[1:2]-[a:b]").unwrap(),
            ["r1-a", "r1-b", "r2-a", "r2-b"]
        );
        assert_eq!(expand("plain").unwrap(), ["plain"]);
    }

    #[test]
    fn inventory_range_errors_say_what_is_wrong() {
        assert!(expand("web[03:01]").unwrap_err().contains("greater"));
        assert!(expand("web[01:100]")
            .unwrap_err()
            .contains("same number of digits"));
        assert!(expand("web[1-3]").unwrap_err().contains("[start:end]"));
        assert!(expand("web[1:3").unwrap_err().contains("closing"));
        assert!(expand("web[a:3]").unwrap_err().contains("numbers"));
        assert!(expand("h[0:99999]x[0:99999]")
            .unwrap_err()
            .contains("10000000000 hosts together"));
        assert_eq!(expand("h[1:1000]x[1:100]").unwrap().len(), MAX_PER_NAME);
    }
}
