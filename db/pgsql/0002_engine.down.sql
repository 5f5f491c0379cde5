-- 0002_engine (PostgreSQL), down.
DROP INDEX steps_tenant_finished;
DROP INDEX runs_finished;
ALTER TABLE agents DROP COLUMN step_reserve_micro_usd;
ALTER TABLE agents DROP COLUMN step_reserve_tokens;
ALTER TABLE runs DROP COLUMN reserved_micro_usd;
ALTER TABLE runs DROP COLUMN reserved_tokens;
ALTER TABLE runs DROP COLUMN reserved_agent_id;
ALTER TABLE runs DROP COLUMN reserved_day;
ALTER TABLE runs DROP COLUMN stage;
