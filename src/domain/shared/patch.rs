//! A change to an optional setting, which an update may leave as it is,
//! set, or clear: three cases that `Option<Option<T>>` spells `None`,
//! `Some(Some(_))` and `Some(None)`.

/// What an update does to one optional setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Leaves it as it is.
    #[default]
    Keep,
    /// Gives it this value.
    Set(T),
    /// Removes it.
    Clear,
}

impl<T> Patch<T> {
    /// What the setting becomes, if this changes it: `None` for `Keep`.
    pub fn change(self) -> Option<Option<T>> {
        match self {
            Patch::Keep => None,
            Patch::Set(value) => Some(Some(value)),
            Patch::Clear => Some(None),
        }
    }
}

/// The patch that leaves a setting as `value` says: set, or cleared.
impl<T> From<Option<T>> for Patch<T> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Patch::Clear, Patch::Set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_says_what_the_setting_becomes() {
        assert_eq!(Patch::<u8>::Keep.change(), None);
        assert_eq!(Patch::Set(3).change(), Some(Some(3)));
        assert_eq!(Patch::<u8>::Clear.change(), Some(None));
        assert_eq!(Patch::from(Some(3)), Patch::Set(3));
        assert_eq!(Patch::<u8>::from(None), Patch::Clear);
    }
}
