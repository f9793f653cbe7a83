use serde::{Deserialize, Serialize};

/// A member's role in a workspace, ordered by power: member < admin < owner.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    /// Every role, from the least to the most powerful.
    pub const ALL: [Role; 3] = [Role::Member, Role::Admin, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn at_least(self, required: Role) -> bool {
        self >= required
    }
}

impl std::str::FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(()),
        }
    }
}

/// Why a membership change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MembershipRuleError {
    #[error("Insufficient permissions. Required: {required}, Current: {current}")]
    Insufficient {
        required: &'static str,
        current: &'static str,
    },
    #[error("Cannot change your own role")]
    OwnRole,
    #[error("A workspace must keep at least one owner")]
    LastOwner,
}

/// May `actor` move `target` from `from` to `to` (None = remove)? Admins manage members and
/// admins; only an owner grants or revokes ownership; the last owner stays. `owners` is the
/// number of active owners before the change.
pub fn check_membership_change(
    actor: Role,
    actor_is_target: bool,
    from: Role,
    to: Option<Role>,
    owners: i64,
) -> Result<(), MembershipRuleError> {
    let touches_owner = from == Role::Owner || to == Some(Role::Owner);
    let required = if touches_owner {
        Role::Owner
    } else {
        Role::Admin
    };
    // Leaving a workspace is always allowed (subject to the last-owner rule).
    let leaving = actor_is_target && to.is_none();
    if !leaving && !actor.at_least(required) {
        return Err(MembershipRuleError::Insufficient {
            required: required.as_str(),
            current: actor.as_str(),
        });
    }
    if actor_is_target && to.is_some() {
        return Err(MembershipRuleError::OwnRole);
    }
    if from == Role::Owner && to != Some(Role::Owner) && owners <= 1 {
        return Err(MembershipRuleError::LastOwner);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn admins_manage_members_but_not_owners() {
        assert!(check_membership_change(Admin, false, Member, Some(Admin), 1).is_ok());
        assert!(check_membership_change(Admin, false, Member, Some(Owner), 1).is_err());
        assert!(check_membership_change(Admin, false, Owner, None, 2).is_err());
        assert!(check_membership_change(Member, false, Member, None, 1).is_err());
    }

    #[test]
    fn last_owner_cannot_leave_or_be_demoted() {
        assert_eq!(
            check_membership_change(Owner, true, Owner, None, 1),
            Err(MembershipRuleError::LastOwner)
        );
        assert_eq!(
            check_membership_change(Owner, false, Owner, Some(Admin), 1),
            Err(MembershipRuleError::LastOwner)
        );
        assert!(check_membership_change(Owner, false, Owner, Some(Admin), 2).is_ok());
        assert!(check_membership_change(Owner, true, Owner, None, 2).is_ok());
    }

    #[test]
    fn members_may_leave_but_not_change_their_own_role() {
        assert!(check_membership_change(Member, true, Member, None, 1).is_ok());
        assert_eq!(
            check_membership_change(Owner, true, Owner, Some(Admin), 3),
            Err(MembershipRuleError::OwnRole)
        );
    }
}
