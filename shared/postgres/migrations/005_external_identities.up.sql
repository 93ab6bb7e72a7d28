-- Users provisioned from an external OpenID provider, keyed by (issuer,
-- subject): never by email, so an external account cannot take over a local
-- one that happens to share its address.
CREATE TABLE external_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (issuer, subject)
);
