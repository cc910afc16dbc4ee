//! The default properties Graph v1.0 returns, null or empty when unset, as Microsoft's
//! published OpenAPI description lists them (microsoftgraph/msgraph-sdk-powershell,
//! `openApiDocs/v1.0/`; the schemas derived from it are in `tests/data/graph-v1.0/`, and
//! `tests/graph_schemas.rs` checks every answer against them).

use serde_json::{Map, Value, json};

/// `verifiedPublisher` of an app without a verified publisher: Graph returns the object with
/// its three properties null.
pub fn unverified_publisher() -> Value {
    json!({"addedDateTime": null, "displayName": null, "verifiedPublisherId": null})
}

/// Properties an application has, with the values Graph returns when nothing set them: what a
/// client may send, except [`APP_READ_ONLY`].
pub fn application_defaults() -> Map<String, Value> {
    let v = json!({
        "addIns": [],
        "api": {"acceptMappedClaims": null, "knownClientApplications": [], "requestedAccessTokenVersion": null, "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
        "applicationTemplateId": null,
        "appRoles": [],
        "certification": null,
        "defaultRedirectUri": null,
        "description": null,
        "disabledByMicrosoftStatus": null,
        "displayName": null,
        "groupMembershipClaims": null,
        "identifierUris": [],
        "info": {"logoUrl": null, "marketingUrl": null, "privacyStatementUrl": null, "supportUrl": null, "termsOfServiceUrl": null},
        "isDeviceOnlyAuthSupported": null,
        "isFallbackPublicClient": null,
        "keyCredentials": [],
        "nativeAuthenticationApisEnabled": null,
        "notes": null,
        "oauth2RequirePostResponse": false,
        "optionalClaims": null,
        "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
        "publicClient": {"redirectUris": []},
        "requestSignatureVerification": null,
        "requiredResourceAccess": [],
        "samlMetadataUrl": null,
        "serviceManagementReference": null,
        "servicePrincipalLockConfiguration": null,
        "signInAudience": "AzureADMyOrg",
        "spa": {"redirectUris": []},
        "tags": [],
        "tokenEncryptionKeyId": null,
        "uniqueName": null,
        "verifiedPublisher": unverified_publisher(),
        "web": {"homePageUrl": null, "implicitGrantSettings": {"enableAccessTokenIssuance": false, "enableIdTokenIssuance": false}, "logoutUrl": null, "redirectUris": [], "redirectUriSettings": []},
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Application properties only Graph sets. A body that names one is refused with 400
/// `Request_BadRequest` "Property '<name>' is read-only and cannot be set." (seen from Graph for
/// `disabledByMicrosoftStatus`). Microsoft's application resource page marks `id`, `appId`,
/// `applicationTemplateId`, `createdDateTime`, `deletedDateTime` and `publisherDomain`
/// "Read-only"; `disabledByMicrosoftStatus` and `certification` are Microsoft's verdicts on the
/// app, and `verifiedPublisher` is "set using setVerifiedPublisher and can only be removed using
/// unsetVerifiedPublisher" (verifiedPublisher resource).
pub const APP_READ_ONLY: &[&str] = &[
    "id",
    "appId",
    "applicationTemplateId",
    "createdDateTime",
    "deletedDateTime",
    "publisherDomain",
    "disabledByMicrosoftStatus",
    "certification",
    "verifiedPublisher",
];

/// `servicePrincipal`'s v1.0 properties (Microsoft's OpenAPI description, as in
/// `tests/data/graph-v1.0/servicePrincipal.json`): a create body naming anything else is refused.
pub const SP_PROPERTIES: &[&str] = &[
    "accountEnabled",
    "addIns",
    "alternativeNames",
    "appDescription",
    "appDisplayName",
    "appId",
    "appOwnerOrganizationId",
    "appRoleAssignmentRequired",
    "appRoles",
    "applicationTemplateId",
    "customSecurityAttributes",
    "deletedDateTime",
    "description",
    "disabledByMicrosoftStatus",
    "displayName",
    "homepage",
    "id",
    "info",
    "keyCredentials",
    "loginUrl",
    "logoutUrl",
    "notes",
    "notificationEmailAddresses",
    "oauth2PermissionScopes",
    "passwordCredentials",
    "preferredSingleSignOnMode",
    "preferredTokenSigningKeyThumbprint",
    "replyUrls",
    "resourceSpecificApplicationPermissions",
    "samlSingleSignOnSettings",
    "servicePrincipalNames",
    "servicePrincipalType",
    "signInAudience",
    "tags",
    "tokenEncryptionKeyId",
    "verifiedPublisher",
];

/// `appRoleAssignment`'s v1.0 properties (`tests/data/graph-v1.0/appRoleAssignment.json`).
pub const APP_ROLE_ASSIGNMENT_PROPERTIES: &[&str] = &[
    "appRoleId",
    "createdDateTime",
    "deletedDateTime",
    "id",
    "principalDisplayName",
    "principalId",
    "principalType",
    "resourceDisplayName",
    "resourceId",
];

/// `unifiedRoleAssignment`'s v1.0 properties (`tests/data/graph-v1.0/unifiedRoleAssignment.json`).
pub const ROLE_ASSIGNMENT_PROPERTIES: &[&str] = &[
    "appScopeId",
    "condition",
    "directoryScopeId",
    "id",
    "principalId",
    "roleDefinitionId",
];

/// Adds to `value` every property of `defaults` it lacks, one level into nested objects (a
/// client that PATCHes `web` without `redirectUriSettings` still reads it back).
pub fn fill_missing(value: &mut Value, defaults: &Value) {
    let (Value::Object(m), Value::Object(d)) = (value, defaults) else {
        return;
    };
    for (k, dv) in d {
        match m.get_mut(k) {
            None => {
                m.insert(k.clone(), dv.clone());
            }
            Some(v) if v.is_object() && dv.is_object() => fill_missing(v, dv),
            Some(_) => {}
        }
    }
}

/// An `appRole` with every property Graph returns (`origin` is set by Graph).
pub fn app_role(mut v: Value) -> Value {
    fill_missing(
        &mut v,
        &json!({"allowedMemberTypes": [], "description": null, "displayName": null, "isEnabled": true, "origin": "Application", "value": null}),
    );
    v
}

/// A `permissionScope` with every property Graph returns.
pub fn permission_scope(mut v: Value) -> Value {
    fill_missing(
        &mut v,
        &json!({"adminConsentDescription": null, "adminConsentDisplayName": null, "isEnabled": true, "origin": "Application", "type": null, "userConsentDescription": null, "userConsentDisplayName": null, "value": null}),
    );
    v
}

/// Applies [`app_role`] / [`permission_scope`] to the arrays under `key`.
pub fn normalize_list(m: &mut Map<String, Value>, key: &str, f: fn(Value) -> Value) {
    if let Some(Value::Array(items)) = m.get_mut(key) {
        for item in items.iter_mut() {
            *item = f(std::mem::take(item));
        }
    }
}

/// The `securityIdentifier` Entra gives a cloud user: `S-1-12-1-` and the object id's 16
/// bytes (Microsoft's GUID byte order) as four little-endian 32-bit numbers.
pub fn security_identifier(object_id: &str) -> Option<String> {
    let bytes = uuid::Uuid::parse_str(object_id).ok()?.to_bytes_le();
    let parts: Vec<String> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
        .collect();
    Some(format!("S-1-12-1-{}", parts.join("-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_defaults_fill_only_what_is_missing() {
        let mut v = json!({"web": {"redirectUris": ["https://a"]}, "notes": "x"});
        let mut d = Value::Object(application_defaults());
        fill_missing(&mut v, &d);
        assert_eq!(v["web"]["redirectUris"], json!(["https://a"]));
        assert_eq!(v["web"]["redirectUriSettings"], json!([]));
        assert_eq!(v["notes"], "x");
        assert!(v["verifiedPublisher"].is_object());
        d["notes"] = json!("y");
        fill_missing(&mut v, &d);
        assert_eq!(v["notes"], "x");
    }

    #[test]
    fn cloud_user_sid_has_the_documented_shape() {
        let sid = security_identifier("00000000-0000-0000-0000-000000000001").unwrap();
        assert_eq!(sid, "S-1-12-1-0-0-0-16777216");
        assert!(security_identifier("not a guid").is_none());
    }
}
