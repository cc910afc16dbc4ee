#!/usr/bin/env python3
"""Faithfulness check: Microsoft's own MSAL for Python against the Entra emulator.

1. Device code flow with the provider's token app (PublicClientApplication), completed by the
   emulator's /_sim/devicelogin the way a person would on the sign-in page, then a silent
   refresh with the refresh token; again with the `cp1` client capability, whose `claims`
   parameter the emulator must read (the access token then carries `xms_cc`).
2. Graph calls with that delegated token: create an application, its service principal and a
   client secret, and grant it Microsoft Graph's User.Read.All app role.
3. Client credentials with the new secret (ConfidentialClientApplication.acquire_token_for_client),
   checking the app-only token's roles, that Graph accepts it, and that a wrong secret fails with
   AADSTS7000215.

Usage: msal_check.py --base https://127.0.0.1:PORT --ca STATE_DIR/ca.pem
"""

import argparse
import base64
import json
import os
import sys

import msal
import requests

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]


def claims(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def check(cond, what, detail=None):
    if not cond:
        print(f"FAIL: {what}" + (f": {detail}" if detail is not None else ""))
        sys.exit(1)
    print(f"ok: {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--ca", required=True)
    args = ap.parse_args()
    base, ca = args.base.rstrip("/"), args.ca
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override a
    # session's `verify` (psf/requests#3829), which MSAL's `verify=` relies on: point them at
    # the emulator's CA too.
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    os.environ.pop("CURL_CA_BUNDLE", None)

    info = requests.get(f"{base}/_sim/info", verify=ca, timeout=10).json()
    tenant = info["tenant_id"]
    authority = f"{base}/{tenant}"
    admin = next(u for u in info["users"] if "Global Administrator" in u["roles"])

    def device_sign_in(capabilities, what):
        """A device-code sign-in of the admin by MSAL, completed on the emulator's page."""
        app = msal.PublicClientApplication(
            info["token_app_client_id"], authority=authority, instance_discovery=False, verify=ca,
            client_capabilities=capabilities,
        )
        flow = app.initiate_device_flow(scopes=GRAPH_SCOPE)
        check("user_code" in flow, f"initiate_device_flow returned a user code{what}", flow)
        check(flow["verification_uri"].startswith(base), "verification_uri points at the emulator", flow)
        r = requests.post(
            f"{base}/_sim/devicelogin",
            data={"user_code": flow["user_code"], "upn": admin["upn"]},
            verify=ca,
            timeout=10,
        )
        check(r.status_code == 200, f"device sign-in completed{what}", r.text)
        result = app.acquire_token_by_device_flow(flow)
        check("access_token" in result, f"acquire_token_by_device_flow got tokens{what}", result)
        return app, result

    # 1. Device code flow.
    pca, result = device_sign_in(None, "")
    check(
        result.get("id_token_claims", {}).get("preferred_username") == admin["upn"],
        "id token names the admin",
        result.get("id_token_claims"),
    )
    at = claims(result["access_token"])
    check(at["tid"] == tenant and at["upn"] == admin["upn"], "access token tid/upn", at)
    accounts = pca.get_accounts()
    check(len(accounts) == 1, "MSAL cached the account", accounts)
    silent = pca.acquire_token_silent(GRAPH_SCOPE, account=accounts[0], force_refresh=True)
    check(silent and "access_token" in silent, "refresh token redeemed by acquire_token_silent", silent)
    delegated = silent["access_token"]
    check("xms_cc" not in claims(delegated), "no client capability declared, none in the token", claims(delegated))

    # 1b. The same with the `cp1` client capability (Continuous Access Evaluation): MSAL sends
    # it in the `claims` parameter of each token request, the emulator puts it in the token.
    cae, result = device_sign_in(["cp1"], " with cp1")
    check(claims(result["access_token"]).get("xms_cc") == ["cp1"], "the cp1 token carries xms_cc",
          claims(result["access_token"]))
    refreshed = cae.acquire_token_silent(GRAPH_SCOPE, account=cae.get_accounts()[0], force_refresh=True)
    check(refreshed and claims(refreshed["access_token"]).get("xms_cc") == ["cp1"],
          "the refreshed cp1 token carries xms_cc", refreshed)

    # 2. Graph with the delegated token.
    g = requests.Session()
    g.verify = ca
    g.headers["Authorization"] = f"Bearer {delegated}"
    graph = f"{base}/v1.0"
    r = g.post(f"{graph}/applications", json={"displayName": "msal-check", "signInAudience": "AzureADMyOrg"})
    check(r.status_code == 201, "POST /applications", r.text)
    app = r.json()
    r = g.post(f"{graph}/servicePrincipals", json={"appId": app["appId"]})
    check(r.status_code == 201, "POST /servicePrincipals", r.text)
    sp = r.json()
    r = g.post(f"{graph}/applications/{app['id']}/addPassword", json={"passwordCredential": {"displayName": "msal"}})
    check(r.status_code == 200 and r.json().get("secretText"), "addPassword returned the secret once", r.status_code)
    secret = r.json()["secretText"]
    r = g.get(f"{graph}/servicePrincipals(appId='{GRAPH_APP_ID}')", params={"$select": "id,appRoles"})
    check(r.status_code == 200, "resource SP lookup", r.text)
    graph_sp = r.json()
    role = next(x["id"] for x in graph_sp["appRoles"] if x["value"] == "User.Read.All")
    r = g.post(
        f"{graph}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
        json={"principalId": sp["id"], "resourceId": graph_sp["id"], "appRoleId": role},
    )
    check(r.status_code == 201, "admin consent to User.Read.All", r.text)

    # 3. Client credentials with the new secret.
    cca = msal.ConfidentialClientApplication(
        app["appId"], client_credential=secret, authority=authority, instance_discovery=False, verify=ca
    )
    cc = cca.acquire_token_for_client(GRAPH_SCOPE)
    check("access_token" in cc, "acquire_token_for_client got a token", cc)
    app_claims = claims(cc["access_token"])
    check(app_claims.get("roles") == ["User.Read.All"], "app-only token carries the granted role", app_claims.get("roles"))
    check(app_claims.get("appid") == app["appId"] and app_claims.get("tid") == tenant, "app-only token appid/tid")
    r = requests.get(f"{graph}/users", headers={"Authorization": f"Bearer {cc['access_token']}"}, verify=ca, timeout=10)
    check(r.status_code == 200 and len(r.json()["value"]) >= 4, "Graph accepts the app-only token", r.status_code)

    bad = msal.ConfidentialClientApplication(
        app["appId"], client_credential="not-the-secret", authority=authority, instance_discovery=False, verify=ca
    )
    err = bad.acquire_token_for_client(GRAPH_SCOPE)
    check(err.get("error") == "invalid_client" and 7000215 in err.get("error_codes", []), "wrong secret -> AADSTS7000215", err)

    print("msal check: all passed")


if __name__ == "__main__":
    main()
