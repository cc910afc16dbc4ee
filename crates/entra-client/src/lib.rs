//! A client for the Microsoft identity platform and Microsoft Graph v1.0.
//!
//! (Skeleton: filled in by the client work of issue 3.)
