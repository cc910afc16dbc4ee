//! Fixed two-column tables of Microsoft's names and ids (directory role templates, delegated
//! Graph permissions), read either way and compared ASCII case-insensitively, as Entra compares
//! both names and GUIDs.

/// A table of `(name, id)` pairs.
pub type Pairs = [(&'static str, &'static str)];

/// The id paired with `name`, if the table has it.
pub fn id_of(table: &Pairs, name: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, id)| *id)
}

/// The name paired with `id`, if the table has it.
pub fn name_of(table: &Pairs, id: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(_, i)| i.eq_ignore_ascii_case(id))
        .map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &Pairs = &[("Alpha", "AB-1"), ("beta", "cd-2")];

    #[test]
    fn both_ways_ignoring_ascii_case() {
        assert_eq!(id_of(T, "alpha"), Some("AB-1"));
        assert_eq!(id_of(T, "BETA"), Some("cd-2"));
        assert_eq!(id_of(T, "gamma"), None);
        assert_eq!(name_of(T, "ab-1"), Some("Alpha"));
        assert_eq!(name_of(T, "CD-2"), Some("beta"));
        assert_eq!(name_of(T, "Alpha"), None);
    }
}
