//! Pushed authorization requests (RFC 9126): a client sends its authorization
//! parameters straight to the server, authenticated, and gets a short-lived
//! `request_uri` to put in the browser redirect instead. The parameters never pass
//! through the browser, so they cannot be read or changed there.

use chrono::Duration;
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::pushed_requests::{self, PushedRequest};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::client_auth::PresentedClient;
use crate::code_flow::{AuthorizationRequest, AuthorizeError, PARAMETERS, digest, random_token};
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::service::{Issuer, internal};

/// Long enough for a person to sign in, short enough to limit replay: a pushed
/// request also stops working once a code has been issued from it.
pub const LIFETIME: Duration = Duration::seconds(300);
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The 201 response of RFC 9126 §2.2.
#[derive(Debug, Clone, Serialize)]
pub struct PushedAuthorizationResponse {
    pub request_uri: String,
    pub expires_in: i64,
}

impl Issuer {
    /// RFC 9126 §2: authenticates the client, validates the request as the
    /// authorization endpoint would, and stores it.
    pub fn push_authorization_request(
        &self,
        tenant: TenantId,
        presented: &PresentedClient,
        parameters: Vec<(String, String)>,
    ) -> Result<PushedAuthorizationResponse, OAuthError> {
        let client = self.authenticate_client(tenant, presented)?;
        let client_id = client.data.client_id.as_str();
        if parameters.iter().any(|(name, _)| name == "request_uri") {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "request_uri must not be pushed",
            ));
        }
        let parameters: Vec<(String, String)> = parameters
            .into_iter()
            .filter(|(name, _)| PARAMETERS.contains(&name.as_str()))
            .collect();
        let mut request = AuthorizationRequest::from_pairs(
            parameters.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        );
        // §2.1: a client_id in the body must be the authenticated client's.
        if request
            .client_id
            .as_deref()
            .is_some_and(|id| !bool::from(id.as_bytes().ct_eq(client_id.as_bytes())))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "client_id does not match the authenticated client",
            ));
        }
        request.client_id = Some(client_id.to_owned());
        let request_uri = format!("{REQUEST_URI_PREFIX}{}", random_token());
        let hash = digest(&request_uri);
        // §2.3: the errors the authorization endpoint would send to the redirect URI
        // come back here instead.
        self.check_authorization(tenant, &request, Some(hash.clone()))
            .map_err(|error| match error {
                AuthorizeError::Page(reason) => OAuthError::new(ErrorCode::InvalidRequest, reason),
                AuthorizeError::Redirect {
                    error, description, ..
                } => OAuthError::new(error, description),
            })?;
        let now = self.clock_now();
        let mut conn = self.pool().get().map_err(internal)?;
        pushed_requests::insert(
            &mut conn,
            now,
            tenant,
            &hash,
            client_id,
            &parameters,
            now + LIFETIME,
        )
        .map_err(internal)?;
        Ok(PushedAuthorizationResponse {
            request_uri,
            expires_in: LIFETIME.num_seconds(),
        })
    }

    /// The live pushed request behind `request_uri`, with the hash it is stored under.
    pub(crate) fn pushed_request(
        &self,
        tenant: TenantId,
        request_uri: &str,
    ) -> Result<Option<(PushedRequest, String)>, StoreError> {
        if !request_uri.starts_with(REQUEST_URI_PREFIX) {
            return Ok(None);
        }
        let hash = digest(request_uri);
        let mut conn = self.pool().get()?;
        Ok(
            pushed_requests::find_live(&mut conn, self.clock_now(), tenant, &hash)?
                .map(|found| (found, hash)),
        )
    }
}
