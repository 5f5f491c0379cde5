-- 0001_initial (SQLite), down: drops everything the up file created,
-- children before parents (DROP TABLE deletes the rows first, and the
-- foreign keys are enforced).  Indexes go with their tables.
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
