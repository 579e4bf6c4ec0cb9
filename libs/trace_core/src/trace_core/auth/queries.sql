-- name: principal_by_token_hash --
SELECT u.user_id, u.name AS user_name, o.org_id, o.name AS org_name,
       coalesce(array_agg(r.name) FILTER (WHERE r.name IS NOT NULL), '{}') AS roles
FROM api_tokens t
JOIN users u ON u.user_id = t.user_id AND u.disabled_at IS NULL
JOIN orgs o ON o.org_id = u.org_id
LEFT JOIN org_role_memberships m ON m.user_id = u.user_id
LEFT JOIN org_roles r ON r.role_id = m.role_id
WHERE t.token_hash = %(token_hash)s
  AND t.revoked_at IS NULL
  AND (t.expires_at IS NULL OR t.expires_at > now())
GROUP BY u.user_id, o.org_id;

-- name: touch_token --
UPDATE api_tokens SET last_used_at = now()
WHERE token_hash = %(token_hash)s
  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: insert_org --
INSERT INTO orgs (name) VALUES (%(name)s)
ON CONFLICT (name) DO NOTHING
RETURNING org_id;

-- name: insert_system_roles --
INSERT INTO org_roles (org_id, name, is_system, description)
VALUES (%(org_id)s, 'admin', true, 'Everything, including roles, read access and purges'),
       (%(org_id)s, 'writer', true, 'Deploy and operate DAGs, read datasets'),
       (%(org_id)s, 'reader', true, 'Read datasets and status');

-- name: insert_user --
INSERT INTO users (org_id, name, email) VALUES (%(org_id)s, %(name)s, %(email)s)
RETURNING user_id;

-- name: grant_role --
INSERT INTO org_role_memberships (org_id, role_id, user_id, granted_by)
SELECT %(org_id)s, role_id, %(user_id)s, %(granted_by)s
FROM org_roles WHERE org_id = %(org_id)s AND name = %(role)s
ON CONFLICT (role_id, user_id) DO NOTHING
RETURNING role_id;

-- name: insert_token --
INSERT INTO api_tokens (org_id, user_id, token_hash, display_prefix, label)
VALUES (%(org_id)s, %(user_id)s, %(token_hash)s, %(display_prefix)s, %(label)s)
RETURNING token_id;

-- name: user_by_name --
SELECT u.user_id, u.org_id FROM users u JOIN orgs o ON o.org_id = u.org_id
WHERE o.name = %(org_name)s AND u.name = %(user_name)s;
