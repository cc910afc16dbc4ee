//! The invitation email, rendered as subject, plain text and HTML.

use crate::store::InvitationRecord;

/// A rendered email. Its bodies hold the activation link, and so the invitation token: its
/// `Debug` shows the subject only.
#[derive(Clone)]
pub struct Email {
    /// The subject line.
    pub subject: String,
    /// The plain text body.
    pub text: String,
    /// The HTML body; every value from the request is escaped.
    pub html: String,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Renders the invitation email. The token appears only inside `activation_url`.
pub fn render(
    inv: &InvitationRecord,
    service_display_name: &str,
    activation_url: &str,
    expires: &str,
) -> Email {
    let subject = format!(
        "{}: connect {} to {} (Microsoft 365)",
        inv.provider_name, inv.customer, service_display_name
    );
    let admin = if inv.admin_upn.is_empty() {
        String::new()
    } else {
        format!(" It is meant for {}.", inv.admin_upn)
    };
    let text = format!(
        "Hello,\n\n{provider} invites {customer} to connect its Microsoft 365 tenant to \
         {service} (service {service_id}).{admin}\n\n\
         Follow this link and sign in with an account that holds the Application \
         Administrator role (or higher):\n\n{url}\n\n\
         The link can be used once and expires at {expires}.\n\n{provider}\n",
        provider = inv.provider_name,
        customer = inv.customer,
        service = service_display_name,
        service_id = inv.service_id,
        url = activation_url,
    );
    let html = format!(
        "<!DOCTYPE html>\n<html><body>\n<p>Hello,</p>\n\
         <p>{provider} invites <strong>{customer}</strong> to connect its Microsoft 365 tenant \
         to {service} (service {service_id}).{admin}</p>\n\
         <p>Follow this link and sign in with an account that holds the Application \
         Administrator role (or higher):</p>\n\
         <p><a href=\"{url}\">Connect Microsoft 365</a></p>\n\
         <p>The link can be used once and expires at {expires}.</p>\n\
         <p>{provider}</p>\n</body></html>\n",
        provider = escape(&inv.provider_name),
        customer = escape(&inv.customer),
        service = escape(service_display_name),
        service_id = escape(&inv.service_id),
        admin = escape(&admin),
        url = escape(activation_url),
        expires = escape(expires),
    );
    Email {
        subject,
        text,
        html,
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_shows_the_subject_and_never_the_link() {
        let email = super::Email {
            subject: "Contoso: connect".into(),
            text: "https://x/wizard#token=tok-SECRET".into(),
            html: "<a href=\"https://x/wizard#token=tok-SECRET\">".into(),
        };
        let shown = format!("{email:?}");
        assert!(
            shown.contains("Contoso: connect") && !shown.contains("SECRET"),
            "{shown}"
        );
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
