-- 0001_initial (PostgreSQL), down: drops everything the up file created,
-- children before parents.  Indexes, constraints and the identity
-- sequences go with their tables.  No CASCADE: if a later object still
-- depends on one of these tables, failing is right.
DROP TABLE forget_requests;
DROP TABLE consent;
DROP TABLE idempotency;
DROP TABLE journal;
DROP TABLE usage;
DROP TABLE events;
DROP TABLE approvals;
DROP TABLE steps;
DROP TABLE runs;
DROP TABLE workflows;
DROP TABLE agents;
DROP TABLE api_keys;
DROP TABLE users;
DROP TABLE tenants;
