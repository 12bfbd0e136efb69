//! "Did you mean ...?" for names people type: labs, profiles. A typo should
//! cost one glance at the error, not a trip to the list.

/// The known name closest to `typed`, if one is close enough to be what was
/// meant: at most a third of its length in edits (at least one, at most
/// three), compared without regard to case, `-` or `_`. `None` when nothing
/// is that close, so an unrelated word gets no misleading suggestion.
pub fn closest<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm =
        |s: &str| -> Vec<char> { s.chars().map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() }).collect() };
    let typed_n = norm(typed);
    let allowed = (typed_n.len() / 3).clamp(1, 3);
    known
        .into_iter()
        .map(|name| {
            let name_n = norm(name);
            // Of two equally near names, the one that continues what was typed.
            (edit_distance(&typed_n, &name_n), !name_n.starts_with(&typed_n), name)
        })
        .filter(|(d, _, _)| *d <= allowed)
        .min_by_key(|(d, not_prefix, _)| (*d, *not_prefix))
        .map(|(_, _, name)| name)
}

/// ` (did you mean "x"?)`, or nothing: for appending to an error message.
pub fn did_you_mean<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(typed, known).map_or_else(String::new, |name| format!(" (did you mean {name:?}?)"))
}

/// Levenshtein distance with adjacent transpositions counted once (`tcp`
/// for `tpc` is one slip of the fingers).
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut previous2: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            current[j] = (previous[j] + 1).min(current[j - 1] + 1).min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = current[j].min(previous2[j - 2] + 1);
            }
        }
        previous2 = std::mem::replace(&mut previous, current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABS: [&str; 3] = ["three-way-handshake", "four-way-close", "time-wait"];

    #[test]
    fn a_typo_finds_the_name_it_meant() {
        assert_eq!(closest("three-way-handshak", LABS), Some("three-way-handshake"));
        assert_eq!(closest("three_way_handshake", LABS), Some("three-way-handshake"));
        assert_eq!(closest("TIME-WIAT", LABS), Some("time-wait"));
        assert_eq!(closest("time_wait_of", ["time_wait_on", "time_wait_off"]), Some("time_wait_off"));
        assert_eq!(closest("fredbsd", ["rfc793", "rfc9293", "freebsd", "linux"]), Some("freebsd"));
    }

    #[test]
    fn an_unrelated_word_gets_no_suggestion() {
        assert_eq!(closest("congestion", LABS), None);
        assert_eq!(closest("bsd", ["rfc793", "rfc9293", "freebsd", "linux"]), None);
        assert_eq!(did_you_mean("congestion", LABS), "");
        assert_eq!(did_you_mean("linx", ["linux"]), " (did you mean \"linux\"?)");
    }
}
