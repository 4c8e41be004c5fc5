//! HTTP `Range: bytes=…` requests against a file of known length
//! (RFC 9110 §14).

/// What a `Range` header asks of a representation of `total` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// No usable range: send everything with `200`.
    Full,
    /// Half-open byte ranges `[start, end)`, sorted, non-empty, coalesced
    /// where they overlap or touch: send `206`.
    Parts(Vec<(u64, u64)>),
    /// Nothing satisfiable, or a malformed or over-long range set: `416`.
    Unsatisfiable(String),
}

/// Interprets a `Range` header value. Units other than `bytes` are ignored
/// (as RFC 9110 requires); malformed specs and more than `max_count` ranges
/// are refused.
pub(crate) fn parse(header: &str, total: u64, max_count: usize) -> Ranges {
    let header = header.trim();
    let Some((unit, set)) = header.split_once('=') else {
        return Ranges::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Full;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if specs.is_empty() {
        return Ranges::Unsatisfiable(format!("empty byte range set in {header:?}"));
    }
    if specs.len() > max_count {
        return Ranges::Unsatisfiable(format!(
            "{} byte ranges requested; this server answers at most {max_count} per request",
            specs.len()
        ));
    }
    let mut parts = Vec::new();
    for spec in specs {
        let bad = || Ranges::Unsatisfiable(format!("malformed byte range {spec:?}"));
        let Some((first, last)) = spec.split_once('-') else {
            return bad();
        };
        let (first, last) = (first.trim(), last.trim());
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        if first.is_empty() {
            // Suffix range: the last `n` bytes.
            let Some(n) = num(last) else { return bad() };
            if n > 0 && total > 0 {
                parts.push((total - n.min(total), total));
            }
        } else {
            let Some(start) = num(first) else {
                return bad();
            };
            let end = if last.is_empty() {
                total
            } else {
                let Some(last) = num(last) else { return bad() };
                if last < start {
                    return bad();
                }
                last.saturating_add(1).min(total)
            };
            if start < total {
                parts.push((start, end));
            }
        }
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable(format!(
            "no part of {header:?} lies within the {total} bytes of the file"
        ));
    }
    parts.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
    for (s, e) in parts {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    Ranges::Parts(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-9", 100, 4), Ranges::Parts(vec![(0, 10)]));
        assert_eq!(parse("bytes=90-", 100, 4), Ranges::Parts(vec![(90, 100)]));
        assert_eq!(
            parse("bytes=90-500", 100, 4),
            Ranges::Parts(vec![(90, 100)])
        );
        assert_eq!(parse("bytes=-10", 100, 4), Ranges::Parts(vec![(90, 100)]));
        assert_eq!(parse("bytes=-1000", 100, 4), Ranges::Parts(vec![(0, 100)]));
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse("bytes=100-", 100, 4),
            Ranges::Unsatisfiable(_)
        ));
        assert!(matches!(
            parse("bytes=-0", 100, 4),
            Ranges::Unsatisfiable(_)
        ));
        assert!(matches!(
            parse("bytes=5-2", 100, 4),
            Ranges::Unsatisfiable(_)
        ));
        assert!(matches!(
            parse("bytes=x-2", 100, 4),
            Ranges::Unsatisfiable(_)
        ));
        assert!(matches!(parse("bytes=0-0", 0, 4), Ranges::Unsatisfiable(_)));
        assert!(matches!(
            parse("bytes=0-1,2-3,4-5", 100, 2),
            Ranges::Unsatisfiable(_)
        ));
        assert_eq!(parse("items=0-5", 100, 4), Ranges::Full);
        assert_eq!(parse("garbage", 100, 4), Ranges::Full);
    }

    #[test]
    fn multiple_ranges_coalesce() {
        assert_eq!(
            parse("bytes=50-59, 0-9", 100, 4),
            Ranges::Parts(vec![(0, 10), (50, 60)])
        );
        assert_eq!(
            parse("bytes=0-9,5-20,-5", 100, 4),
            Ranges::Parts(vec![(0, 21), (95, 100)])
        );
        assert_eq!(
            parse("bytes=0-9,10-19", 100, 4),
            Ranges::Parts(vec![(0, 20)])
        );
        assert_eq!(
            parse("bytes=0-9,200-300", 100, 4),
            Ranges::Parts(vec![(0, 10)])
        );
    }
}
