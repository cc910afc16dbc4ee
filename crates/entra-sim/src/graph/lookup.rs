//! What many handlers share: reading a required body property, finding the object a key
//! names, and the standard answers (200 entity or 404, 201 after a create, 404 on a delete
//! that matched nothing).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{Ctx, Key, Reply, authz, odata};
use crate::model::{Application, Directory, ServicePrincipal};
use crate::state::Inner;

/// An alternate key of an entity type: the property's name, and whether an object has the
/// given value there.
pub type AltKey<T> = (&'static str, fn(&T, &str) -> bool);

/// A directory object with an object id.
pub trait HasId {
    /// The object id.
    fn object_id(&self) -> &str;
}

impl HasId for Application {
    fn object_id(&self) -> &str {
        &self.id
    }
}

impl HasId for ServicePrincipal {
    fn object_id(&self) -> &str {
        &self.id
    }
}

impl Ctx<'_> {
    /// String property `property` of the body, or 400 Request_BadRequest saying `message` when
    /// it is missing or not a string.
    pub fn body_str(&self, property: &str, message: &str) -> Result<String, Response> {
        self.body
            .as_ref()
            .and_then(|b| b[property].as_str())
            .map(str::to_string)
            .ok_or_else(|| self.bad_request(message))
    }

    /// Graph's answer to a body property that type `microsoft.graph.{entity_type}` does not
    /// have: 400 `BadRequest` in OData's words.
    pub fn unknown_property(&self, entity_type: &str, property: &str) -> Response {
        self.err(StatusCode::BAD_REQUEST, "BadRequest", &format!("The property '{property}' does not exist on type 'microsoft.graph.{entity_type}'. Make sure to only use property names that are defined by the type or mark the type as open type."))
    }

    /// Refuses a body naming a property outside `known` (the properties of
    /// `microsoft.graph.{entity_type}`) as Graph does, instead of ignoring it. OData
    /// annotations such as `@odata.type` are not properties and pass.
    pub fn only_known(&self, entity_type: &str, known: &[&str]) -> Result<(), Response> {
        let Some(body) = self.body.as_ref().and_then(Value::as_object) else {
            return Ok(());
        };
        match body
            .keys()
            .find(|k| !k.starts_with('@') && !known.contains(&k.as_str()))
        {
            Some(k) => Err(self.unknown_property(entity_type, k)),
            None => Ok(()),
        }
    }

    /// The object id of a `collection/{id}` key; an alternate key there is a 404.
    pub fn object_id<'k>(&self, key: &'k Key) -> Result<&'k str, Response> {
        match key {
            Key::Id(id) => Ok(id),
            Key::Alt(..) => Err(self.not_found("")),
        }
    }

    /// 200 with `found` as an entity of `entity_set`, or 404 for object `id` when `None`.
    pub fn found(&self, entity_set: &str, id: &str, found: Option<Value>) -> Reply {
        match found {
            Some(v) => Ok(odata::entity(self, entity_set, StatusCode::OK, v)),
            None => Err(self.not_found(id)),
        }
    }

    /// Index of the object `key` names in `items` (of Graph type `microsoft.graph.{entity_type}`):
    /// by object id, or by one of the type's `alt_keys` (names compared case-insensitively).
    /// Another property is 400; no object, or one `visible` says has not replicated, is 404.
    pub fn find_key<T>(
        &self,
        items: &[T],
        key: &Key,
        entity_type: &str,
        alt_keys: &[AltKey<T>],
        visible: impl Fn(&T) -> bool,
    ) -> Result<usize, Response>
    where
        T: HasId,
    {
        let (idx, shown) = match key {
            Key::Id(id) => (items.iter().position(|x| x.object_id() == id), id),
            Key::Alt(p, v) => match alt_keys.iter().find(|(n, _)| p.eq_ignore_ascii_case(n)) {
                Some((_, has)) => (items.iter().position(|x| has(x, v)), v),
                None => {
                    return Err(self.err(StatusCode::BAD_REQUEST, "BadRequest", &format!("The property '{p}' is not an alternate key of type 'microsoft.graph.{entity_type}'.")));
                }
            },
        };
        match idx {
            Some(i) if visible(&items[i]) => Ok(i),
            _ => Err(self.not_found(shown)),
        }
    }

    /// A list request's checks: the caller holds `need` in `dir`, and `$filter` names only
    /// `filters`, properties of Graph type `entity_type`.
    pub fn may_list(
        &self,
        dir: &Directory,
        need: &authz::Need,
        entity_type: &str,
        filters: &[&str],
    ) -> Result<(), Response> {
        authz::require(self, dir, need, &[])?;
        odata::check_filter(self, entity_type, filters)
    }

    /// Persists `inner` after a create, then 201 with `json` as an entity of `entity_set`.
    pub fn created(&self, inner: &Inner, entity_set: &str, json: Value) -> Response {
        self.s.persist(inner);
        odata::entity(self, entity_set, StatusCode::CREATED, json)
    }

    /// Removes the items of `items` that `is_it` picks, or 404 for object `id` when none does.
    pub fn remove<T>(
        &self,
        items: &mut Vec<T>,
        id: &str,
        is_it: impl Fn(&T) -> bool,
    ) -> Result<(), Response> {
        let before = items.len();
        items.retain(|x| !is_it(x));
        if items.len() == before {
            return Err(self.not_found(id));
        }
        Ok(())
    }
}
