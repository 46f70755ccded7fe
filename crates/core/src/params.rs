//! [`Params`]: an event's other parameters, by GA4 name, in name order.
//!
//! A sorted vector rather than a `BTreeMap`: an event carries at most
//! [`MAX_PARAMS`](crate::event::MAX_PARAMS), so a binary search is as quick,
//! and the browser's wasm does without the B-tree's insert, iterate and drop
//! code.

use alloc::{string::String, vec::Vec};

use crate::event::ParamValue;

/// An event's other parameters (`method`, `search_term`, `payment_type`,
/// `shipping_tier`, `page_location`, custom ones …), one value per name,
/// iterated in name order.
///
/// ```
/// use tally_core::{ParamValue, Params};
/// let mut p = Params::new();
/// p.insert("method".into(), ParamValue::Text("google".into()));
/// p.insert("coupon_kind".into(), ParamValue::Bool(true));
/// assert_eq!(p.insert("method".into(), ParamValue::Text("email".into())), Some(ParamValue::Text("google".into())));
/// let names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
/// assert_eq!(names, ["coupon_kind", "method"]);
/// assert_eq!(p.get("method"), Some(&ParamValue::Text("email".into())));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, ParamValue)>);

impl Params {
    /// No parameters.
    pub const fn new() -> Params {
        Params(Vec::new())
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// Sets `name` to `value`; the value it replaces, if any.
    pub fn insert(&mut self, name: String, value: ParamValue) -> Option<ParamValue> {
        match self.find(&name) {
            Ok(i) => Some(core::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// Whether `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Removes `name`; its value, if it was set.
    pub fn remove(&mut self, name: &str) -> Option<ParamValue> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// How many parameters are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(name, value)` pairs in name order.
    pub fn iter(&self) -> Iter<'_> {
        self.0.iter().map(pair)
    }
}

fn pair((k, v): &(String, ParamValue)) -> (&String, &ParamValue) {
    (k, v)
}

/// The iterator of [`Params::iter`].
pub type Iter<'a> =
    core::iter::Map<core::slice::Iter<'a, (String, ParamValue)>, fn(&(String, ParamValue)) -> (&String, &ParamValue)>;

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a String, &'a ParamValue);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(String, ParamValue)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, ParamValue)>>(iter: I) -> Params {
        let mut p = Params::new();
        for (k, v) in iter {
            p.insert(k, v);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn text(s: &str) -> ParamValue {
        ParamValue::Text(s.into())
    }

    #[test]
    fn keeps_one_value_per_name_in_name_order() {
        let p: Params =
            [("b", "1"), ("a", "2"), ("c", "3"), ("a", "4")].iter().map(|(k, v)| ((*k).into(), text(v))).collect();
        let got: Vec<(&str, &ParamValue)> = p.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(got, vec![("a", &text("4")), ("b", &text("1")), ("c", &text("3"))]);
        assert_eq!(p.len(), 3);
        assert!(p.contains_key("b") && !p.contains_key("d"));
        assert_eq!(p.get("d"), None);
    }

    #[test]
    fn remove_takes_out_only_that_name() {
        let mut p = Params::new();
        for k in ["x", "y", "z"] {
            p.insert(k.into(), text(k));
        }
        assert_eq!(p.remove("y"), Some(text("y")));
        assert_eq!(p.remove("y"), None);
        assert_eq!(p.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["x", "z"]);
        assert!(!p.is_empty());
    }
}
