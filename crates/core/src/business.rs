//! The business an authorization acts for (Yoco's `authorized_business_id`): one rule for the
//! consent page's preselection, the consent form without a choice, and the password grant.

use uuid::Uuid;

/// The business an authorization acts for when the person names none: the one they chose for
/// this app before, then their default business, then the first they joined; each only while
/// they still belong to it (`member_of`, oldest membership first). `None` for a person who
/// belongs to no business.
pub fn business_for(member_of: &[Uuid], earlier: Option<Uuid>, default: Option<Uuid>) -> Option<Uuid> {
    let belongs = |b: &Uuid| member_of.contains(b);
    earlier.filter(belongs).or(default.filter(belongs)).or_else(|| member_of.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_business_counts_only_while_the_person_belongs_to_it() {
        let (a, b, gone) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let member_of = [a, b];
        assert_eq!(business_for(&member_of, Some(b), Some(a)), Some(b), "the earlier choice first");
        assert_eq!(business_for(&member_of, None, Some(b)), Some(b), "then the default");
        assert_eq!(business_for(&member_of, Some(gone), Some(gone)), Some(a), "then the first joined");
        assert_eq!(business_for(&member_of, None, None), Some(a));
        assert_eq!(business_for(&[], Some(gone), Some(gone)), None, "no business at all");
    }
}
