//! A parsed SCIM filter on Users turned into the store's typed filter tree, which
//! the store turns into SQL with bound values on either backend. An attribute the
//! store cannot filter on is `invalidFilter` naming it, never a silent match-all.

use chrono::DateTime;
use gatehouse_identity_store::users::search::{
    Comparison, EmailAttribute, EmailFilter, FilterValue, UserAttribute, UserFilter,
};
use gatehouse_scim::schema::{CORE_GROUP_SCHEMA, CORE_USER_SCHEMA};
use gatehouse_scim::{AttrPath, CompValue, CompareOp, Filter, ScimError};

fn comparison(op: CompareOp) -> Comparison {
    match op {
        CompareOp::Eq => Comparison::Eq,
        CompareOp::Ne => Comparison::Ne,
        CompareOp::Co => Comparison::Contains,
        CompareOp::Sw => Comparison::StartsWith,
        CompareOp::Ew => Comparison::EndsWith,
        CompareOp::Gt => Comparison::Greater,
        CompareOp::Ge => Comparison::GreaterOrEqual,
        CompareOp::Lt => Comparison::Less,
        CompareOp::Le => Comparison::LessOrEqual,
    }
}

fn unfilterable(path: &AttrPath) -> ScimError {
    ScimError::invalid_filter(format!("`{path}` cannot be filtered on"))
}

/// The store's attribute for a core User attribute path, if it is one.
fn user_attribute(path: &AttrPath) -> Option<UserAttribute> {
    if path
        .urn
        .as_deref()
        .is_some_and(|urn| !urn.eq_ignore_ascii_case(CORE_USER_SCHEMA))
    {
        return None;
    }
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    Some(match (name.as_str(), sub.as_deref()) {
        ("id", None) => UserAttribute::Id,
        ("username", None) => UserAttribute::UserName,
        ("externalid", None) => UserAttribute::ExternalId,
        ("displayname", None) => UserAttribute::DisplayName,
        ("nickname", None) => UserAttribute::NickName,
        ("title", None) => UserAttribute::Title,
        ("usertype", None) => UserAttribute::UserType,
        ("preferredlanguage", None) => UserAttribute::PreferredLanguage,
        ("locale", None) => UserAttribute::Locale,
        ("timezone", None) => UserAttribute::Timezone,
        ("active", None) => UserAttribute::Active,
        ("name", Some("givenname")) => UserAttribute::GivenName,
        ("name", Some("familyname")) => UserAttribute::FamilyName,
        ("name", Some("middlename")) => UserAttribute::MiddleName,
        ("name", Some("honorificprefix")) => UserAttribute::HonorificPrefix,
        ("name", Some("honorificsuffix")) => UserAttribute::HonorificSuffix,
        ("meta", Some("created")) => UserAttribute::Created,
        ("meta", Some("lastmodified")) => UserAttribute::LastModified,
        _ => return None,
    })
}

fn email_attribute(sub: Option<&str>) -> Option<EmailAttribute> {
    match sub.map(str::to_ascii_lowercase).as_deref() {
        None | Some("value") => Some(EmailAttribute::Value),
        Some("type") => Some(EmailAttribute::Type),
        Some("primary") => Some(EmailAttribute::Primary),
        _ => None,
    }
}

fn is_emails(path: &AttrPath) -> bool {
    path.name.eq_ignore_ascii_case("emails")
        && path
            .urn
            .as_deref()
            .is_none_or(|urn| urn.eq_ignore_ascii_case(CORE_USER_SCHEMA))
}

/// The filter's value as the store compares it with `attribute`.
fn value(
    attribute: UserAttribute,
    value: &CompValue,
    path: &AttrPath,
) -> Result<FilterValue, ScimError> {
    let wrong = |what: &str| ScimError::invalid_filter(format!("`{path}` compares with {what}"));
    Ok(match (attribute, value) {
        (_, CompValue::Null) => FilterValue::Null,
        (UserAttribute::Active, CompValue::Bool(flag)) => FilterValue::Bool(*flag),
        (UserAttribute::Active, _) => return Err(wrong("true or false")),
        (UserAttribute::Created | UserAttribute::LastModified, CompValue::String(text)) => {
            let at =
                DateTime::parse_from_rfc3339(text).map_err(|_| wrong("an RFC 3339 date-time"))?;
            FilterValue::Time(at.to_utc())
        }
        (UserAttribute::Created | UserAttribute::LastModified, _) => {
            return Err(wrong("an RFC 3339 date-time"));
        }
        (_, CompValue::String(text)) => FilterValue::Text(text.clone()),
        _ => return Err(wrong("a string")),
    })
}

fn email_value(
    attribute: EmailAttribute,
    value: &CompValue,
    path: &AttrPath,
) -> Result<FilterValue, ScimError> {
    let wrong = |what: &str| ScimError::invalid_filter(format!("`{path}` compares with {what}"));
    Ok(match (attribute, value) {
        (_, CompValue::Null) => FilterValue::Null,
        (EmailAttribute::Primary, CompValue::Bool(flag)) => FilterValue::Bool(*flag),
        (EmailAttribute::Primary, _) => return Err(wrong("true or false")),
        (_, CompValue::String(text)) => FilterValue::Text(text.clone()),
        _ => return Err(wrong("a string")),
    })
}

/// Whether `path` names an attribute Groups have and Users do not.
fn group_only(path: &AttrPath) -> bool {
    path.name.eq_ignore_ascii_case("members")
        || path
            .urn
            .as_deref()
            .is_some_and(|urn| urn.eq_ignore_ascii_case(CORE_GROUP_SCHEMA))
}

/// A condition no user meets (every user has an id).
fn no_user() -> UserFilter {
    UserFilter::Not(Box::new(UserFilter::Present(UserAttribute::Id)))
}

/// A filter on Users as the store's tree. `across_types` (a search of every
/// resource type): a Group's attribute is one no user has, so its comparison is
/// false for users instead of an error.
pub(crate) fn users(filter: &Filter, across_types: bool) -> Result<UserFilter, ScimError> {
    let users = |f: &Filter| users(f, across_types);
    Ok(match filter {
        Filter::And(a, b) => UserFilter::And(Box::new(users(a)?), Box::new(users(b)?)),
        Filter::Or(a, b) => UserFilter::Or(Box::new(users(a)?), Box::new(users(b)?)),
        Filter::Not(inner) => UserFilter::Not(Box::new(users(inner)?)),
        Filter::Present(path) | Filter::Compare { path, .. } | Filter::ValuePath { path, .. }
            if across_types && group_only(path) =>
        {
            no_user()
        }
        Filter::Present(path) if is_emails(path) => {
            let attribute =
                email_attribute(path.sub.as_deref()).ok_or_else(|| unfilterable(path))?;
            UserFilter::Email(EmailFilter::Present(attribute))
        }
        Filter::Present(path) => {
            UserFilter::Present(user_attribute(path).ok_or_else(|| unfilterable(path))?)
        }
        Filter::Compare { path, op, value: v } if is_emails(path) => {
            let attribute =
                email_attribute(path.sub.as_deref()).ok_or_else(|| unfilterable(path))?;
            UserFilter::Email(EmailFilter::Compare(
                attribute,
                comparison(*op),
                email_value(attribute, v, path)?,
            ))
        }
        Filter::Compare { path, op, value: v } => {
            let attribute = user_attribute(path).ok_or_else(|| unfilterable(path))?;
            UserFilter::Compare(attribute, comparison(*op), value(attribute, v, path)?)
        }
        Filter::ValuePath { path, filter } if is_emails(path) && path.sub.is_none() => {
            UserFilter::Email(emails(filter, path)?)
        }
        Filter::ValuePath { path, .. } => return Err(unfilterable(path)),
    })
}

/// The inside of `emails[…]`: its paths name sub-attributes of an email.
fn emails(filter: &Filter, outer: &AttrPath) -> Result<EmailFilter, ScimError> {
    let attribute = |path: &AttrPath| {
        if path.sub.is_some() || path.urn.is_some() {
            return Err(unfilterable(path));
        }
        email_attribute(Some(&path.name)).ok_or_else(|| unfilterable(path))
    };
    Ok(match filter {
        Filter::And(a, b) => {
            EmailFilter::And(Box::new(emails(a, outer)?), Box::new(emails(b, outer)?))
        }
        Filter::Or(a, b) => {
            EmailFilter::Or(Box::new(emails(a, outer)?), Box::new(emails(b, outer)?))
        }
        Filter::Not(inner) => EmailFilter::Not(Box::new(emails(inner, outer)?)),
        Filter::Present(path) => EmailFilter::Present(attribute(path)?),
        Filter::Compare { path, op, value } => {
            let which = attribute(path)?;
            EmailFilter::Compare(which, comparison(*op), email_value(which, value, path)?)
        }
        Filter::ValuePath { .. } => {
            return Err(ScimError::invalid_filter(format!(
                "`{outer}[…]` cannot hold another value path"
            )));
        }
    })
}

/// The store's attribute to sort Users by (§3.4.2.3).
pub(super) fn sort_attribute(text: &str) -> Result<UserAttribute, ScimError> {
    let path = gatehouse_scim::parse_attr_path(text)
        .map_err(|_| ScimError::invalid_value(format!("cannot sort by `{text}`")))?;
    user_attribute(&path)
        .ok_or_else(|| ScimError::invalid_value(format!("cannot sort by `{text}`")))
}
