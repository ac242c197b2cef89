//! The user a transaction serves (`context.user`), as the application knows them.

/// The user a transaction serves, sent as `context.user` with the transaction and with the
/// errors captured inside it, so that Kibana can tell whom an error or a slow request hit.
///
/// ```
/// apm::set_user(apm::User::id("42").username("ada").email("ada@example.com"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// The application's identifier for the user.
    pub id: Option<String>,
    /// The user's name.
    pub username: Option<String>,
    /// The user's e-mail address.
    pub email: Option<String>,
}

impl User {
    /// A user known by their identifier.
    pub fn id(id: impl Into<String>) -> User {
        User {
            id: Some(id.into()),
            ..User::default()
        }
    }
    /// With a user name.
    pub fn username(mut self, username: impl Into<String>) -> User {
        self.username = Some(username.into());
        self
    }
    /// With an e-mail address.
    pub fn email(mut self, email: impl Into<String>) -> User {
        self.email = Some(email.into());
        self
    }
}
